// Package auth verifies the JWT on a request (pipeline step 7): it finds the token in the
// configured sources, checks the signature with a key pinned to one algorithm (static keys, keys
// with ids for rotation, or a JWKS), checks exp/nbf/iss/aud and the claim rules, and remembers
// verified tokens so a repeated token costs no signature check.
package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/yatagarasu/yatagarasu/internal/config"
	"github.com/yatagarasu/yatagarasu/internal/jwtkey"
)

// Spec is one JWT configuration compiled for verification. Its ID changes whenever anything that
// decides a verification changes (settings, rules or key bytes), so caches keyed by it never
// serve a decision made under other rules.
type Spec struct {
	ID         string
	Where      string // config path, for logs
	Sources    []Source
	Rules      []Rule
	Keys       []jwtkey.Key
	JWKSURL    string
	JWKSEvery  time.Duration
	Algorithms map[string]bool // what a token may be signed with
	Issuer     string
	Audience   string
	Leeway     time.Duration
	CacheSize  int
}

// Plan is every Spec of one config version: one per bucket (nil = public) and one for the admin API.
type Plan struct {
	Buckets []*Spec
	Admin   *Spec // nil: the admin API is off
}

// Build compiles cfg's JWT settings. Buckets that share settings share one Spec.
func Build(cfg *config.Config) (*Plan, error) {
	p := &Plan{Buckets: make([]*Spec, len(cfg.Buckets))}
	byID := map[string]*Spec{}
	for i, b := range cfg.Buckets {
		j, where := cfg.EffectiveJWT(i)
		if j == nil {
			continue
		}
		s, err := Compile(j, j.Rules(), where)
		if err != nil {
			return nil, fmt.Errorf("bucket %q: %w", b.Name, err)
		}
		if prev, ok := byID[s.ID]; ok {
			s = prev
		}
		byID[s.ID] = s
		p.Buckets[i] = s
	}
	if cfg.JWT.Set && cfg.JWT.Enabled && len(cfg.JWT.AdminClaims) > 0 {
		rules := append(append([]config.ClaimRule{}, cfg.JWT.Rules()...), cfg.JWT.AdminClaims...)
		s, err := Compile(&cfg.JWT, rules, "jwt.admin_claims")
		if err != nil {
			return nil, fmt.Errorf("admin: %w", err)
		}
		p.Admin = s
	}
	return p, nil
}

// Compile builds a Spec from one JWT section and the rules that apply.
func Compile(j *config.JWT, rules []config.ClaimRule, where string) (*Spec, error) {
	s := &Spec{
		Where: where, Sources: Sources(j.TokenSources), JWKSURL: j.JWKSURL, JWKSEvery: j.RefreshInterval(),
		Issuer: j.Issuer, Audience: j.Audience, Leeway: j.Leeway.D(), CacheSize: j.CacheSize,
		Algorithms: map[string]bool{},
	}
	var err error
	if s.Rules, err = CompileRules(rules); err != nil {
		return nil, err
	}
	h := sha256.New()
	enc := json.NewEncoder(h)
	_ = enc.Encode(j)
	_ = enc.Encode(rules)
	addKey := func(k jwtkey.Key, err error) error {
		if err != nil {
			return err
		}
		s.Keys = append(s.Keys, k)
		s.Algorithms[k.Alg] = true
		fmt.Fprintf(h, "%s|%s|%v\n", k.ID, k.Alg, k.Material) // key bytes decide too
		return nil
	}
	single := singlePath(j)
	fam, _ := jwtkey.FamilyOf(j.Algorithm)
	if j.Secret != "" && (single == "" || fam == jwtkey.HMAC) {
		alg := j.Algorithm
		if alg == "" {
			alg = "HS256"
		}
		if err := addKey(jwtkey.FromSecret("", alg, j.Secret)); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
	} else if single != "" {
		if err := addKey(jwtkey.FromPEMFile("", j.Algorithm, single)); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
	}
	for i, k := range j.Keys {
		var err error
		if f, _ := jwtkey.FamilyOf(k.Algorithm); f == jwtkey.HMAC {
			err = addKey(jwtkey.FromSecret(k.ID, k.Algorithm, k.Secret))
		} else {
			err = addKey(jwtkey.FromPEMFile(k.ID, k.Algorithm, k.KeyPath()))
		}
		if err != nil {
			return nil, fmt.Errorf("%s.keys[%d]: %w", where, i, err)
		}
	}
	if s.JWKSURL != "" {
		algs := jwtkey.Asymmetric
		if j.Algorithm != "" {
			algs = []string{j.Algorithm}
		}
		for _, a := range algs {
			s.Algorithms[a] = true
		}
	}
	if len(s.Keys) == 0 && s.JWKSURL == "" {
		return nil, fmt.Errorf("%s: no usable key", where)
	}
	s.ID = hex.EncodeToString(h.Sum(nil))[:16] + "-" + strconv.Itoa(len(s.Keys))
	return s, nil
}

// singlePath is the section's own PEM path, whichever key set it.
func singlePath(j *config.JWT) string {
	for _, p := range []string{j.RSAPublicKeyPath, j.ECDSAPublicKeyPath, j.PublicKeyPath} {
		if p != "" {
			return p
		}
	}
	return ""
}
