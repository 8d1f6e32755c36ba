package auth

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/yatagarasu/yatagarasu/internal/auth/authtest"
	"github.com/yatagarasu/yatagarasu/internal/config"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// clock is a settable time source for the verifier.
type clock struct{ ns atomic.Int64 }

func newClock() *clock          { c := &clock{}; c.ns.Store(t0.UnixNano()); return c }
func (c *clock) now() time.Time { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) add(d time.Duration) {
	c.ns.Add(int64(d))
}

func claims(extra map[string]any) jwt.MapClaims {
	c := jwt.MapClaims{"sub": "alice", "iss": "https://idp.test", "aud": "gateway", "exp": t0.Add(time.Hour).Unix(), "nbf": t0.Add(-time.Minute).Unix()}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

// verifier builds a Verifier for one JWT section through the same path the gateway uses.
func verifier(t testing.TB, j config.JWT, c *clock) (*Verifier, *Registry) {
	t.Helper()
	j.Set, j.Enabled = true, true
	if j.TokenSources == nil {
		j.TokenSources = []config.TokenSource{{Type: "bearer"}}
	}
	if j.CacheSize == 0 {
		j.CacheSize = 100
	}
	spec, err := Compile(&j, j.Rules(), "jwt")
	if err != nil {
		t.Fatal(err)
	}
	reg := NewRegistry(slog.New(slog.DiscardHandler), nil, RegistryOptions{Now: c.now, UnknownKIDEvery: time.Nanosecond})
	t.Cleanup(reg.Close)
	b := reg.Bind(&Plan{Buckets: []*Spec{spec}})
	return b.Buckets[0], reg
}

func mustReason(t *testing.T, v *Verifier, token, reason string) {
	t.Helper()
	id, err := v.Verify(context.Background(), token)
	if err == nil {
		t.Fatalf("token accepted (sub %q); want %s", id.Subject, reason)
	}
	if err.Reason != reason {
		t.Fatalf("reason = %s (%v), want %s", err.Reason, err.err, reason)
	}
	if strings.Contains(err.Message, token) {
		t.Fatal("the client message contains the token")
	}
}

func mustAccept(t *testing.T, v *Verifier, token string) *Identity {
	t.Helper()
	id, err := v.Verify(context.Background(), token)
	if err != nil {
		t.Fatalf("token refused: %s (%v)", err.Reason, err.err)
	}
	return id
}

// TestEveryAlgorithm: each algorithm verifies with its configured key, single or in keys[].
func TestEveryAlgorithm(t *testing.T) {
	dir := t.TempDir()
	for _, alg := range []string{"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			k := authtest.NewKey(t, dir, alg, "k-"+alg)
			j := config.JWT{Algorithm: alg, Issuer: "https://idp.test", Audience: "gateway"}
			if k.Secret != nil {
				j.Secret = string(k.Secret)
			} else {
				j.PublicKeyPath = k.PEMPath
			}
			v, _ := verifier(t, j, newClock())
			if id := mustAccept(t, v, k.Sign(t, claims(nil))); id.Subject != "alice" || id.KeyID != "k-"+alg {
				t.Fatalf("identity = %+v", id)
			}
			other := authtest.NewKey(t, dir, alg, "other")
			mustReason(t, v, other.Sign(t, claims(nil)), "auth_bad_signature")
		})
	}
}

func TestRegisteredClaims(t *testing.T) {
	k := authtest.NewKey(t, t.TempDir(), "ES256", "")
	c := newClock()
	v, _ := verifier(t, config.JWT{PublicKeyPath: k.PEMPath, Issuer: "https://idp.test", Audience: "gateway", Leeway: config.Seconds(30 * time.Second)}, c)
	mustReason(t, v, k.Sign(t, claims(map[string]any{"exp": t0.Add(-31 * time.Second).Unix()})), "auth_token_expired")
	mustAccept(t, v, k.Sign(t, claims(map[string]any{"exp": t0.Add(-29 * time.Second).Unix()}))) // within leeway
	mustReason(t, v, k.Sign(t, claims(map[string]any{"nbf": t0.Add(time.Minute).Unix()})), "auth_token_not_yet_valid")
	mustReason(t, v, k.Sign(t, claims(map[string]any{"iss": "https://evil.test"})), "auth_wrong_issuer")
	mustReason(t, v, k.Sign(t, claims(map[string]any{"aud": []string{"other", "api"}})), "auth_wrong_audience")
	mustAccept(t, v, k.Sign(t, claims(map[string]any{"aud": []string{"other", "gateway"}})))
	mustReason(t, v, "not-a-token", "auth_malformed_token")
}

// TestAlgorithmIsPinnedByTheKey covers the classic JWT attacks.
func TestAlgorithmIsPinnedByTheKey(t *testing.T) {
	dir := t.TempDir()
	rsaKey := authtest.NewKey(t, dir, "RS256", "rsa")
	ecKey := authtest.NewKey(t, dir, "ES256", "ec")
	v, _ := verifier(t, config.JWT{Keys: []config.JWTKey{
		{ID: "rsa", Algorithm: "RS256", Path: rsaKey.PEMPath},
		{ID: "ec", Algorithm: "ES256", Path: ecKey.PEMPath},
	}}, newClock())
	mustAccept(t, v, rsaKey.Sign(t, claims(nil)))
	mustAccept(t, v, ecKey.Sign(t, claims(nil)))

	t.Run("alg none", func(t *testing.T) {
		tok := jwt.NewWithClaims(jwt.SigningMethodNone, claims(nil))
		tok.Header["kid"] = "rsa"
		s, _ := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
		mustReason(t, v, s, "auth_algorithm_rejected")
		mustReason(t, v, strings.TrimSuffix(s, "."), "auth_malformed_token")
	})
	t.Run("HS256 signed with the RSA public key", func(t *testing.T) {
		pemBytes, _ := os.ReadFile(rsaKey.PEMPath)
		der, _ := x509.MarshalPKIXPublicKey(rsaKey.Private.Public().(*rsa.PublicKey))
		for _, secret := range [][]byte{pemBytes, der} {
			tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(nil))
			tok.Header["kid"] = "rsa"
			s, _ := tok.SignedString(secret)
			mustReason(t, v, s, "auth_algorithm_rejected")
		}
		// Even a verifier that accepts HS256 for another key refuses it for the RSA kid.
		hs := authtest.NewKey(t, dir, "HS256", "hs")
		v2, _ := verifier(t, config.JWT{Keys: []config.JWTKey{
			{ID: "rsa", Algorithm: "RS256", Path: rsaKey.PEMPath},
			{ID: "hs", Algorithm: "HS256", Secret: string(hs.Secret)},
		}}, newClock())
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(nil))
		tok.Header["kid"] = "rsa"
		s, _ := tok.SignedString(pemBytes)
		mustReason(t, v2, s, "auth_key_mismatch")
		mustAccept(t, v2, hs.Sign(t, claims(nil)))
	})
	t.Run("kid of another key type", func(t *testing.T) {
		// An ES256 token that names the RSA key.
		forged := &authtest.Key{Alg: "ES256", Kid: "rsa", Private: ecKey.Private}
		mustReason(t, v, forged.Sign(t, claims(nil)), "auth_key_mismatch")
	})
	t.Run("unknown kid", func(t *testing.T) {
		stranger := authtest.NewKey(t, dir, "RS256", "stranger")
		mustReason(t, v, stranger.Sign(t, claims(nil)), "auth_unknown_key")
	})
	t.Run("tampered payload", func(t *testing.T) {
		s := rsaKey.Sign(t, claims(nil))
		parts := strings.Split(s, ".")
		parts[1] = base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"mallory","exp":9999999999}`))
		mustReason(t, v, strings.Join(parts, "."), "auth_bad_signature")
	})
}

// TestKidRotation: during the overlap both keys verify; a kid-less token tries every key of its
// algorithm; after the old key is removed its tokens fail.
func TestKidRotation(t *testing.T) {
	dir := t.TempDir()
	old := authtest.NewKey(t, dir, "RS256", "2026-10")
	next := authtest.NewKey(t, dir, "RS256", "2026-11")
	both := config.JWT{Keys: []config.JWTKey{{ID: old.Kid, Algorithm: "RS256", Path: old.PEMPath}, {ID: next.Kid, Algorithm: "RS256", Path: next.PEMPath}}}
	v, _ := verifier(t, both, newClock())
	mustAccept(t, v, old.Sign(t, claims(nil)))
	mustAccept(t, v, next.Sign(t, claims(nil)))
	noKid := &authtest.Key{Alg: "RS256", Private: next.Private}
	mustAccept(t, v, noKid.Sign(t, claims(nil)))
	after, _ := verifier(t, config.JWT{Keys: both.Keys[1:]}, newClock())
	mustReason(t, after, old.Sign(t, claims(nil)), "auth_unknown_key")
}

func TestClaimRulesGateAccess(t *testing.T) {
	k := authtest.NewKey(t, t.TempDir(), "HS256", "")
	v, _ := verifier(t, config.JWT{Secret: string(k.Secret), Claims: []config.ClaimRule{
		{Claim: "realm_access.roles", Operator: "contains", Value: "reader"},
		{Claim: "sub", Operator: "regex", Value: "^[a-z]+$"},
		{Claim: "level", Operator: "gte", Value: 2},
	}}, newClock())
	ok := map[string]any{"realm_access": map[string]any{"roles": []any{"reader", "x"}}, "level": 2}
	mustAccept(t, v, k.Sign(t, claims(ok)))
	mustReason(t, v, k.Sign(t, claims(map[string]any{"realm_access": map[string]any{"roles": []any{"x"}}, "level": 2})), "auth_claims_rejected")
	mustReason(t, v, k.Sign(t, claims(map[string]any{"realm_access": ok["realm_access"], "level": 1})), "auth_claims_rejected")
	mustReason(t, v, k.Sign(t, claims(map[string]any{"realm_access": ok["realm_access"], "level": 2, "sub": "Alice1"})), "auth_claims_rejected")
}

// TestCacheNeverOutlivesExp: a cached token is answered without verification until exp, and not after.
func TestCacheNeverOutlivesExp(t *testing.T) {
	k := authtest.NewKey(t, t.TempDir(), "RS256", "")
	c := newClock()
	v, _ := verifier(t, config.JWT{PublicKeyPath: k.PEMPath}, c) // default leeway 0 here
	tok := k.Sign(t, claims(map[string]any{"exp": t0.Add(2 * time.Minute).Unix()}))
	first := mustAccept(t, v, tok)
	if v.cacheLen() != 1 {
		t.Fatalf("cache holds %d entries", v.cacheLen())
	}
	if again := mustAccept(t, v, tok); again != first {
		t.Fatal("a repeated token must be answered from the cache")
	}
	c.add(2 * time.Minute)
	mustReason(t, v, tok, "auth_token_expired")
	if v.cacheLen() != 0 {
		t.Fatal("the expired entry must be dropped")
	}
	// A refused token is never cached.
	mustReason(t, v, "x.y.z", "auth_malformed_token")
	if v.cacheLen() != 0 {
		t.Fatal("refusals must not be cached")
	}
}

func TestCacheHitAllocations(t *testing.T) {
	k := authtest.NewKey(t, t.TempDir(), "RS256", "kid")
	v, _ := verifier(t, config.JWT{Keys: []config.JWTKey{{ID: "kid", Algorithm: "RS256", Path: k.PEMPath}}}, newClock())
	tok := k.Sign(t, claims(nil))
	mustAccept(t, v, tok)
	ctx := context.Background()
	if n := testing.AllocsPerRun(100, func() { _, _ = v.Verify(ctx, tok) }); n > 2 {
		t.Fatalf("cache hit allocates %v times, want ≤ 2", n)
	}
}

// TestJWKSRotationAndOutage: keys come from a JWKS; a rotation is picked up by the unknown-kid
// refetch; when the endpoint goes down the last good set keeps working.
func TestJWKSRotationAndOutage(t *testing.T) {
	dir := t.TempDir()
	k1 := authtest.NewKey(t, dir, "RS256", "one")
	k2 := authtest.NewKey(t, dir, "ES256", "two")
	srv := authtest.NewJWKS(t, k1)
	v, reg := verifier(t, config.JWT{JWKSURL: srv.URL(), JWKSRefreshInterval: config.Seconds(time.Hour)}, newClock())
	mustAccept(t, v, k1.Sign(t, claims(nil)))
	srv.Set(t, k1, k2) // rotation: k2 appears
	mustAccept(t, v, k2.Sign(t, claims(nil)))
	srv.SetDown(true)
	hits := srv.Hits.Load()
	stranger := authtest.NewKey(t, dir, "RS256", "stranger")
	mustReason(t, v, stranger.Sign(t, claims(nil)), "auth_unknown_key") // refetch fails
	if srv.Hits.Load() == hits {
		t.Fatal("an unknown kid must trigger a refetch")
	}
	mustAccept(t, v, k1.Sign(t, claims(map[string]any{"sub": "bob"}))) // last good set
	if got := int(testutil.ToFloat64(reg.refreshErrors)); got < 1 {
		t.Errorf("refresh errors = %d", got)
	}
	// A JWKS never lends an HMAC algorithm: HS256 with a published key is refused.
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(nil))
	hs.Header["kid"] = "one"
	s, _ := hs.SignedString([]byte("whatever-secret-whatever-secret!"))
	mustReason(t, v, s, "auth_algorithm_rejected")
}

func TestJWKSDownAtStart(t *testing.T) {
	k := authtest.NewKey(t, t.TempDir(), "ES256", "a")
	srv := authtest.NewJWKS(t, k)
	srv.SetDown(true)
	v, _ := verifier(t, config.JWT{JWKSURL: srv.URL()}, newClock())
	mustReason(t, v, k.Sign(t, claims(nil)), "auth_unknown_key")
	srv.SetDown(false)
	mustAccept(t, v, k.Sign(t, claims(map[string]any{"sub": "later"}))) // unknown kid refetches
}

// TestRegistryKeepsStateAcrossReloads: binding an unchanged plan reuses the cache; Retain stops
// what the new plan no longer uses.
func TestRegistryKeepsStateAcrossReloads(t *testing.T) {
	k := authtest.NewKey(t, t.TempDir(), "ES256", "a")
	srv := authtest.NewJWKS(t, k)
	j := config.JWT{Set: true, Enabled: true, JWKSURL: srv.URL(), CacheSize: 10, TokenSources: []config.TokenSource{{Type: "bearer"}}}
	spec, err := Compile(&j, nil, "jwt")
	if err != nil {
		t.Fatal(err)
	}
	reg := NewRegistry(slog.New(slog.DiscardHandler), nil, RegistryOptions{})
	defer reg.Close()
	b1 := reg.Bind(&Plan{Buckets: []*Spec{spec}})
	mustAccept(t, b1.Buckets[0], k.Sign(t, claims(map[string]any{"exp": time.Now().Add(time.Hour).Unix(), "nbf": nil})))
	hits := srv.Hits.Load()
	spec2, _ := Compile(&j, nil, "jwt")
	b2 := reg.Bind(&Plan{Buckets: []*Spec{spec2}})
	reg.Retain(b2)
	if b2.Buckets[0].cache != b1.Buckets[0].cache || len(reg.jwks) != 1 || srv.Hits.Load() != hits {
		t.Fatal("an unchanged config must keep its cache and JWKS without refetching")
	}
	reg.Retain()
	if len(reg.jwks) != 0 || len(reg.caches) != 0 {
		t.Fatal("Retain with nothing must release everything")
	}
}

func TestBuildFailsClosedAndShares(t *testing.T) {
	k := authtest.NewKey(t, t.TempDir(), "HS256", "")
	cfg := &config.Config{
		JWT: config.JWT{Set: true, Enabled: true, Secret: string(k.Secret), TokenSources: []config.TokenSource{{Type: "bearer"}},
			AdminClaims: []config.ClaimRule{{Claim: "role", Operator: "equals", Value: "admin"}}},
		Buckets: []config.Bucket{{Name: "a", Auth: config.BucketAuth{Enabled: true}}, {Name: "b"}, {Name: "c", Auth: config.BucketAuth{Enabled: true}}},
	}
	p, err := Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p.Buckets[0] == nil || p.Buckets[1] != nil || p.Buckets[0] != p.Buckets[2] || p.Admin == nil || len(p.Admin.Rules) != 1 {
		t.Fatalf("plan = %+v", p)
	}
	cfg.JWT.Secret = ""
	if _, err := Build(cfg); err == nil {
		t.Fatal("a protected bucket without a key must not build")
	}
}
