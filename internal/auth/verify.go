package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/yatagarasu/yatagarasu/internal/jwtkey"
)

// Identity is what a verified token says about the caller; it is shared by every request that
// presents the same token and must not be modified.
type Identity struct {
	Subject string
	Claims  map[string]any
	KeyID   string
	expires time.Time // zero: no exp claim
}

// Error is a refused token: Reason labels metrics and audit records, Message is safe to send to
// the client (it never carries the token or key material).
type Error struct {
	Reason  string
	Message string
	err     error // the library's detail, for debug logs only
}

func (e *Error) Error() string { return e.Reason + ": " + e.Message }

// Unwrap exposes the underlying cause.
func (e *Error) Unwrap() error { return e.err }

// Sentinel causes raised by the key lookup.
var (
	errAlgorithm  = errors.New("algorithm not accepted")
	errUnknownKey = errors.New("unknown key id")
	errKeyType    = errors.New("key does not fit the algorithm")
)

// classify maps a verification failure to a reason and a client-safe message.
func classify(err error) *Error {
	e := &Error{err: err}
	switch {
	case errors.Is(err, errAlgorithm):
		e.Reason, e.Message = "auth_algorithm_rejected", "the token's signing algorithm is not accepted"
	case errors.Is(err, errUnknownKey):
		e.Reason, e.Message = "auth_unknown_key", "the token is signed with a key this gateway does not trust"
	case errors.Is(err, errKeyType):
		e.Reason, e.Message = "auth_key_mismatch", "the token's algorithm does not match its key"
	case errors.Is(err, jwt.ErrTokenMalformed):
		e.Reason, e.Message = "auth_malformed_token", "the token is malformed"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		e.Reason, e.Message = "auth_bad_signature", "the token signature is invalid"
	case errors.Is(err, jwt.ErrTokenExpired):
		e.Reason, e.Message = "auth_token_expired", "the token has expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		e.Reason, e.Message = "auth_token_not_yet_valid", "the token is not valid yet"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		e.Reason, e.Message = "auth_wrong_issuer", "the token was issued by an issuer this bucket does not accept"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		e.Reason, e.Message = "auth_wrong_audience", "the token is not meant for this audience"
	case errors.Is(err, jwt.ErrTokenInvalidClaims):
		e.Reason, e.Message = "auth_invalid_claims", "the token's registered claims are invalid"
	default:
		e.Reason, e.Message = "auth_invalid_token", "the token could not be verified"
	}
	return e
}

// Verifier checks tokens against one Spec, with the long-lived parts (token cache, JWKS) that a
// Registry keeps across reloads.
type Verifier struct {
	spec   *Spec
	parser *jwt.Parser
	cache  *tokenCache
	jwks   keyfunc.Keyfunc
	now    func() time.Time
	byKid  map[string]jwtkey.Key
	byAlg  map[string][]any // every static key, per algorithm (for tokens without kid)
	anon   map[string][]any // static keys configured without id, per algorithm
}

func newVerifier(s *Spec, cache *tokenCache, jwks keyfunc.Keyfunc, now func() time.Time) *Verifier {
	opts := []jwt.ParserOption{jwt.WithLeeway(s.Leeway), jwt.WithTimeFunc(now)}
	if s.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(s.Issuer))
	}
	if s.Audience != "" {
		opts = append(opts, jwt.WithAudience(s.Audience))
	}
	v := &Verifier{spec: s, parser: jwt.NewParser(opts...), cache: cache, jwks: jwks, now: now,
		byKid: map[string]jwtkey.Key{}, byAlg: map[string][]any{}, anon: map[string][]any{}}
	for _, k := range s.Keys {
		if k.ID != "" {
			v.byKid[k.ID] = k
		} else {
			v.anon[k.Alg] = append(v.anon[k.Alg], k.Material)
		}
		v.byAlg[k.Alg] = append(v.byAlg[k.Alg], k.Material)
	}
	return v
}

// Spec returns the compiled settings.
func (v *Verifier) Spec() *Spec { return v.spec }

// Sources returns where tokens are looked for.
func (v *Verifier) Sources() []Source { return v.spec.Sources }

// Verify checks token and returns who it identifies. A token seen before (and not yet expired)
// is answered from the cache without a signature check.
func (v *Verifier) Verify(ctx context.Context, token string) (*Identity, *Error) {
	now := v.now()
	var key [sha256.Size]byte
	if v.cache != nil {
		key = sha256.Sum256([]byte(token))
		if id := v.cache.get(key, now); id != nil {
			return id, nil
		}
	}
	id, err := v.verify(ctx, token)
	if err != nil {
		return nil, err
	}
	if v.cache != nil {
		v.cache.put(key, id, now)
	}
	return id, nil
}

func (v *Verifier) verify(ctx context.Context, token string) (*Identity, *Error) {
	var kid string
	t, err := v.parser.Parse(token, func(t *jwt.Token) (any, error) {
		kid, _ = t.Header["kid"].(string)
		return v.key(ctx, t, kid)
	})
	if err != nil {
		return nil, classify(err)
	}
	claims, _ := t.Claims.(jwt.MapClaims)
	if r := FirstFailing(v.spec.Rules, claims); r != nil {
		return nil, &Error{Reason: "auth_claims_rejected", Message: "the token's claims do not satisfy the rule on \"" + r.Path + "\""}
	}
	id := &Identity{Claims: claims, KeyID: kid}
	id.Subject, _ = claims["sub"].(string)
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		id.expires = exp.Time
	}
	return id, nil
}

// key finds the verification key for a token. The algorithm is pinned by the key: a configured
// key verifies only its own algorithm, a JWKS key only algorithms of its type, and "none" or any
// algorithm outside the configured set is refused before any key is tried.
func (v *Verifier) key(ctx context.Context, t *jwt.Token, kid string) (any, error) {
	alg := t.Method.Alg()
	if !v.spec.Algorithms[alg] {
		return nil, errAlgorithm
	}
	if kid != "" {
		if k, ok := v.byKid[kid]; ok {
			if k.Alg != alg {
				return nil, errKeyType
			}
			return k.Material, nil
		}
		if v.jwks == nil {
			// A key configured without an id answers for any kid of its algorithm.
			return pick(v.anon[alg])
		}
		ctx, cancel := context.WithTimeout(ctx, jwksFetchTimeout)
		defer cancel()
		material, err := v.jwks.KeyfuncCtx(ctx)(t)
		if err != nil {
			return nil, errors.Join(errUnknownKey, err)
		}
		if !asymmetric(material) || !jwtkey.Fits(material, alg) {
			return nil, errKeyType
		}
		return material, nil
	}
	keys := v.byAlg[alg]
	if v.jwks != nil {
		set, err := v.jwks.VerificationKeySet(ctx)
		if err == nil {
			for _, m := range set.Keys {
				if asymmetric(m) && jwtkey.Fits(m, alg) {
					keys = append(keys[:len(keys):len(keys)], m)
				}
			}
		}
	}
	return pick(keys)
}

// pick returns the one key, or a set golang-jwt tries in turn.
func pick(keys []any) (any, error) {
	switch len(keys) {
	case 0:
		return nil, errUnknownKey
	case 1:
		return keys[0], nil
	}
	set := jwt.VerificationKeySet{Keys: make([]jwt.VerificationKey, len(keys))}
	for i, k := range keys {
		set.Keys[i] = k
	}
	return set, nil
}

// asymmetric refuses shared secrets published in a JWKS: a key set is public.
func asymmetric(material any) bool {
	_, secret := material.([]byte)
	return material != nil && !secret
}

// jwksFetchTimeout bounds the refetch an unknown kid may trigger inside a request.
const jwksFetchTimeout = time.Second

// maxCacheAge bounds how long a verified token is trusted without a new check, so a key removed
// from the config or the JWKS stops being honoured within this time even for long-lived tokens.
const maxCacheAge = 5 * time.Minute

// tokenCache remembers verified tokens by the SHA-256 of the token (the token itself is not
// kept); an entry never outlives the token's exp.
type tokenCache struct {
	lru *lru.Cache[[sha256.Size]byte, cacheEntry]
}

type cacheEntry struct {
	id    *Identity
	until time.Time
}

func newTokenCache(size int) *tokenCache {
	if size <= 0 {
		return nil
	}
	c, _ := lru.New[[sha256.Size]byte, cacheEntry](size)
	return &tokenCache{lru: c}
}

func (c *tokenCache) get(key [sha256.Size]byte, now time.Time) *Identity {
	e, ok := c.lru.Get(key)
	if !ok {
		return nil
	}
	if !now.Before(e.until) {
		c.lru.Remove(key)
		return nil
	}
	return e.id
}

func (c *tokenCache) put(key [sha256.Size]byte, id *Identity, now time.Time) {
	until := now.Add(maxCacheAge)
	if !id.expires.IsZero() && id.expires.Before(until) {
		until = id.expires
	}
	if until.After(now) {
		c.lru.Add(key, cacheEntry{id: id, until: until})
	}
}

// cacheLen reports how many tokens are cached (for tests).
func (v *Verifier) cacheLen() int {
	if v.cache == nil {
		return 0
	}
	return v.cache.lru.Len()
}
