package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// withAccessDefaults fills want with the access-control defaults Load applies.
func withAccessDefaults(c *Config) {
	rl := &c.Server.RateLimit
	rateDefaults(&rl.Global, false)
	rateDefaults(&rl.PerIP, false)
	if rl.PerUser.Claim == "" {
		rl.PerUser.Claim = "sub"
	}
	rl.Backend = "local"
	rl.MaxKeys = DefaultRateLimitMaxKeys
	rl.Redis.KeyPrefix = DefaultRedisKeyPrefix
	rl.Redis.Timeout = Duration(DefaultRedisTimeout)
	rl.Redis.RetryInterval = Duration(DefaultRedisRetry)
	for i := range c.Buckets {
		rateDefaults(&c.Buckets[i].S3.RateLimit, false)
	}
}

const accessBase = `origin:
  shared_secret: "0123456789abcdef0123456789abcdef"
buckets:
  - name: b
    path_prefix: /b
    s3:
      bucket: b
      access_key: a
      secret_key: s
`

// writePEM writes a public key in PKIX PEM form and returns its path.
func writePEM(t *testing.T, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func parseAccess(t *testing.T, yaml string) (*Config, error) {
	t.Helper()
	return Parse("access.yaml", []byte(yaml), func(string) (string, bool) { return "", false })
}

func TestAccessSectionsDecodeWithDefaults(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaPath := writePEM(t, &rsaKey.PublicKey)
	cfg, err := parseAccess(t, accessBase+`    auth:
      enabled: true
    ip_filter:
      allowlist: ["10.0.0.0/8", "2001:db8::1"]
  - name: c
    path_prefix: /c
    s3: {bucket: c, access_key: a, secret_key: s, rate_limit: {requests_per_second: 2.5}}
    jwt:
      algorithm: RS256
      rsa_public_key_path: "`+rsaPath+`"
      token_sources: [{type: bearer_header}, {source_type: query, name: tok}]
      claims_verification:
        - name: realm_access.roles
          operator: contains
          value: admin
jwt:
  secret: "0123456789abcdef0123456789abcdef"
  admin_claims: [{claim: role, operator: equals, value: admin}]
server:
  trusted_hops: 1
  rate_limit:
    per_ip: {requests_per_second: 10, burst: 20}
    backend: redis
    redis: {url: "redis://127.0.0.1:6379/0"}
`)
	if err != nil {
		t.Fatal(err)
	}
	j, where := cfg.EffectiveJWT(0)
	if j != &cfg.JWT || where != "jwt" || !j.Enabled || j.Leeway.D() != DefaultJWTLeeway || j.TokenSources[0].Kind() != "bearer" {
		t.Errorf("bucket b jwt = %+v at %q", j, where)
	}
	j, where = cfg.EffectiveJWT(1)
	if where != "buckets[1].jwt" || j.Algorithm != "RS256" || j.TokenSources[0].Kind() != "bearer" || j.TokenSources[1].Kind() != "query" {
		t.Errorf("bucket c jwt = %+v at %q", j, where)
	}
	if r := j.Rules(); len(r) != 1 || r[0].Path() != "realm_access.roles" || r[0].Value != "admin" {
		t.Errorf("rules = %+v", r)
	}
	rl := cfg.Server.RateLimit
	if !rl.Enabled || rl.PerIP.Burst != 20 || rl.Backend != "redis" || rl.Redis.Timeout.D() != 50*time.Millisecond || rl.PerUser.Claim != "sub" {
		t.Errorf("rate_limit = %+v", rl)
	}
	if b := cfg.Buckets[1].S3.RateLimit; b.Burst != 3 {
		t.Errorf("bucket burst = %d, want ceil(2.5) = 3", b.Burst)
	}
	if cfg.Server.TrustedHops != 1 || len(cfg.Buckets[0].IPFilter.Allowlist) != 2 {
		t.Errorf("server = %+v", cfg.Server)
	}
}

// TestAccessConfigErrors: each bad section is an error naming the line and key.
func TestAccessConfigErrors(t *testing.T) {
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecPath := writePEM(t, &ecKey.PublicKey)
	cases := []struct {
		name, yaml, want string
	}{
		{"auth without jwt fails closed", accessBase + "    auth: {enabled: true}\n", "access.yaml:10:12: buckets[0].auth.enabled: bucket \"b\" requires auth but no jwt section"},
		{"jwt without key", accessBase + "jwt:\n  algorithm: RS256\n", "access.yaml:11:3: jwt.algorithm: RS256 needs a public key"},
		{"jwt with nothing", accessBase + "jwt:\n  enabled: true\n", "access.yaml:10:1: jwt: jwt is enabled but has no usable key"},
		{"short secret", accessBase + "jwt:\n  secret: short\n", "jwt.secret: the HS256 secret is 5 bytes; at least 32"},
		{"unknown alg", accessBase + "jwt:\n  algorithm: none\n  secret: x\n", "jwt.algorithm: unknown algorithm \"none\""},
		{"key of other type", accessBase + "jwt:\n  algorithm: RS256\n  rsa_public_key_path: " + ecPath + "\n", "verifies ES256 only, not RS256"},
		{"ES384 with P-256 key", accessBase + "jwt:\n  keys: [{id: a, algorithm: ES384, path: " + ecPath + "}]\n", "verifies ES256 only, not ES384"},
		{"missing key file", accessBase + "jwt:\n  algorithm: ES256\n  ecdsa_public_key_path: /nonexistent.pem\n", "jwt.ecdsa_public_key_path: \"/nonexistent.pem\": read public key"},
		{"duplicate kid", accessBase + "jwt:\n  keys:\n    - {id: a, algorithm: ES256, path: " + ecPath + "}\n    - {id: a, algorithm: ES256, path: " + ecPath + "}\n", "jwt.keys[1].id: key id \"a\" is already used"},
		{"jwks hmac", accessBase + "jwt:\n  jwks_url: https://x/jwks\n  algorithm: HS256\n", "needs a shared secret"},
		{"jwks url", accessBase + "jwt:\n  jwks_url: ftp://x\n", "jwt.jwks_url: \"ftp://x\" is not an http(s) URL"},
		{"bad operator", accessBase + "jwt:\n  secret: 0123456789abcdef0123456789abcdef\n  claims: [{claim: a, operator: like, value: b}]\n", "jwt.claims[0].operator: unknown operator \"like\""},
		{"in needs list", accessBase + "jwt:\n  secret: 0123456789abcdef0123456789abcdef\n  claims: [{claim: a, operator: in, value: b}]\n", "needs a list"},
		{"bad regex", accessBase + "jwt:\n  secret: 0123456789abcdef0123456789abcdef\n  claims: [{claim: a, operator: regex, value: \"(\"}]\n", "invalid regular expression"},
		{"gt needs number", accessBase + "jwt:\n  secret: 0123456789abcdef0123456789abcdef\n  claims: [{claim: a, operator: gt, value: x}]\n", "needs a number"},
		{"header source needs name", accessBase + "jwt:\n  secret: 0123456789abcdef0123456789abcdef\n  token_sources: [{type: header}]\n", "jwt.token_sources[0].name: a header token source needs a name"},
		{"typo in jwt key", accessBase + "jwt:\n  secert: x\n", "unknown key \"secert\""},
		{"bad cidr", accessBase + "    ip_filter: {blocklist: [\"10.0.0.1/8\"]}\n", "buckets[0].ip_filter.blocklist[0]: \"10.0.0.1/8\" is not an IP address or CIDR"},
		{"bad ip", accessBase + "server:\n  ip_filter:\n    allowlist: [\"300.1.1.1\"]\n", "access.yaml:12:"},
		{"zero rate", accessBase + "server:\n  rate_limit:\n    global: {requests_per_second: 0}\n", "server.rate_limit.global.requests_per_second: must be greater than 0"},
		{"zero burst", accessBase + "server:\n  rate_limit:\n    global: {requests_per_second: 5, burst: 0}\n", "server.rate_limit.global.burst: must be at least 1"},
		{"redis without url", accessBase + "server:\n  rate_limit:\n    backend: redis\n", "server.rate_limit.redis: the redis backend needs url or addresses"},
		{"redis password redacted", accessBase + "server:\n  rate_limit:\n    backend: redis\n    redis: {url: \"http://u:hunter2@x\"}\n", "xxxxx"},
		{"unknown backend", accessBase + "server:\n  rate_limit:\n    backend: memcached\n", "unknown backend \"memcached\""},
		{"contradiction", accessBase + "    auth: {enabled: false}\n    jwt: {secret: 0123456789abcdef0123456789abcdef}\n", "auth.enabled is false but the bucket's jwt section is enabled"},
		{"negative hops", accessBase + "server:\n  trusted_hops: -1\n", "server.trusted_hops: must not be negative"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseAccess(t, tc.yaml)
			if err == nil {
				t.Fatalf("loaded; want error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error:\n%v\nwant it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatal("the error leaks a password")
			}
		})
	}
}

func TestParseIPOrCIDR(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.0/8": "10.0.0.0/8", "192.168.1.7": "192.168.1.7/32", "2001:db8::/32": "2001:db8::/32",
		"::ffff:10.1.2.3": "10.1.2.3/32", " 10.0.0.1 ": "10.0.0.1/32",
	} {
		p, err := ParseIPOrCIDR(in)
		if err != nil || p.String() != want {
			t.Errorf("ParseIPOrCIDR(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
	for _, in := range []string{"", "10.0.0.1/8", "10.0.0.0/33", "host", "::ffff:10.0.0.0/104"} {
		if _, err := ParseIPOrCIDR(in); err == nil {
			t.Errorf("ParseIPOrCIDR(%q) accepted", in)
		}
	}
}
