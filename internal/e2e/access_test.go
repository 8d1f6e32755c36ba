package e2e

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/yatagarasu/yatagarasu/internal/auth/authtest"
	"github.com/yatagarasu/yatagarasu/internal/devstack"
	"github.com/yatagarasu/yatagarasu/internal/testenv"
)

func startStack(t *testing.T, buckets []devstack.Bucket, extra, server string) *devstack.Stack {
	t.Helper()
	st, err := devstack.Start(t.Context(), devstack.Options{S3: s3srv, Buckets: buckets, Dir: t.TempDir(),
		Logger: slog.New(slog.DiscardHandler), Extra: extra, ServerExtra: server})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

func signed(t *testing.T, k *authtest.Key, c jwt.MapClaims) string {
	base := jwt.MapClaims{"sub": "alice", "iss": "https://idp.e2e", "aud": "yatagarasu", "role": "reader",
		"exp": time.Now().Add(time.Hour).Unix(), "nbf": time.Now().Add(-time.Minute).Unix()}
	for k, v := range c {
		base[k] = v
	}
	return k.Sign(t, base)
}

func expectStatus(t *testing.T, st *devstack.Stack, path string, want int, hdr ...string) *http.Response {
	t.Helper()
	res, body := do(t, http.MethodGet, st.GatewayURL, path, hdr...)
	if res.StatusCode != want {
		t.Fatalf("GET %s = %d (%s), want %d", path, res.StatusCode, body, want)
	}
	if want == http.StatusOK && !bytes.Equal(body, objects["a.txt"]) {
		t.Fatalf("GET %s served the wrong body", path)
	}
	if want >= 400 {
		jsonError(t, res, body, want)
	}
	return res
}

// TestJWTThroughGateway: every algorithm, registered claims, token sources, kid rotation by
// reload and a JWKS that rotates and then goes down, all through the harness.
func TestJWTThroughGateway(t *testing.T) {
	dir := t.TempDir()
	algs := []string{"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"}
	keys := map[string]*authtest.Key{}
	var keyYAML strings.Builder
	for _, alg := range algs {
		k := authtest.NewKey(t, dir, alg, "kid-"+alg)
		keys[alg] = k
		if k.Secret != nil {
			keyYAML.WriteString("    - {id: " + k.Kid + ", algorithm: " + alg + ", secret: \"" + string(k.Secret) + "\"}\n")
		} else {
			keyYAML.WriteString("    - {id: " + k.Kid + ", algorithm: " + alg + ", path: \"" + k.PEMPath + "\"}\n")
		}
	}
	jwks1 := authtest.NewKey(t, dir, "RS256", "jwks-1")
	jwks2 := authtest.NewKey(t, dir, "ES256", "jwks-2")
	idp := authtest.NewJWKS(t, jwks1)
	oldKey := authtest.NewKey(t, dir, "ES256", "2026-10")
	newKey := authtest.NewKey(t, dir, "ES256", "2026-11")
	rotating := func(ks ...*authtest.Key) string {
		var b strings.Builder
		b.WriteString("auth:\n  jwt:\n    keys:\n")
		for _, k := range ks {
			b.WriteString("      - {id: \"" + k.Kid + "\", algorithm: ES256, path: \"" + k.PEMPath + "\"}\n")
		}
		return b.String()
	}
	buckets := func(rot string) []devstack.Bucket {
		return []devstack.Bucket{
			{Name: "products"},
			{Name: "private", S3Bucket: "products", Extra: "auth: {enabled: true}"},
			{Name: "rotating", S3Bucket: "products", Extra: rot},
			{Name: "idp", S3Bucket: "products", Extra: "jwt:\n  jwks_url: \"" + idp.URL() + "\"\n  jwks_refresh_interval_secs: 3600"},
		}
	}
	st := startStack(t, buckets(rotating(oldKey, newKey)), `jwt:
  issuer: "https://idp.e2e"
  audience: "yatagarasu"
  leeway: 5
  token_sources: [{type: bearer}, {type: header, name: X-Auth-Token, prefix: "Token "}, {type: query, name: access_token}]
  claims: [{claim: role, operator: in, value: [reader, admin]}]
  admin_claims: [{claim: role, operator: equals, value: admin}]
  keys:
`+keyYAML.String(), "")

	t.Run("public bucket needs nothing", func(t *testing.T) { expectStatus(t, st, "/products/a.txt", 200) })
	t.Run("every algorithm", func(t *testing.T) {
		for _, alg := range algs {
			expectStatus(t, st, "/private/a.txt", 200, "Authorization", "Bearer "+signed(t, keys[alg], nil))
		}
	})
	t.Run("token sources", func(t *testing.T) {
		tok := signed(t, keys["ES256"], jwt.MapClaims{"sub": "src"})
		res := expectStatus(t, st, "/private/a.txt", 401)
		if res.Header.Get("WWW-Authenticate") == "" {
			t.Error("401 without WWW-Authenticate")
		}
		expectStatus(t, st, "/private/a.txt", 200, "X-Auth-Token", "Token "+tok)
		expectStatus(t, st, "/private/a.txt", 401, "X-Auth-Token", tok) // prefix missing
		expectStatus(t, st, "/private/a.txt?access_token="+tok, 200)
	})
	t.Run("registered claims", func(t *testing.T) {
		k := keys["RS256"]
		expectStatus(t, st, "/private/a.txt", 403, "Authorization", "Bearer "+signed(t, k, jwt.MapClaims{"exp": time.Now().Add(-time.Minute).Unix()}))
		expectStatus(t, st, "/private/a.txt", 403, "Authorization", "Bearer "+signed(t, k, jwt.MapClaims{"nbf": time.Now().Add(time.Minute).Unix()}))
		expectStatus(t, st, "/private/a.txt", 403, "Authorization", "Bearer "+signed(t, k, jwt.MapClaims{"iss": "https://evil"}))
		expectStatus(t, st, "/private/a.txt", 403, "Authorization", "Bearer "+signed(t, k, jwt.MapClaims{"aud": "other"}))
		expectStatus(t, st, "/private/a.txt", 403, "Authorization", "Bearer "+signed(t, k, jwt.MapClaims{"role": "guest"}))
		stranger := authtest.NewKey(t, dir, "RS256", "kid-RS256") // same kid, other key
		expectStatus(t, st, "/private/a.txt", 403, "Authorization", "Bearer "+signed(t, stranger, nil))
	})
	t.Run("kid rotation", func(t *testing.T) {
		oldTok, newTok := signed(t, oldKey, nil), signed(t, newKey, nil)
		expectStatus(t, st, "/rotating/a.txt", 200, "Authorization", "Bearer "+oldTok)
		expectStatus(t, st, "/rotating/a.txt", 200, "Authorization", "Bearer "+newTok)
		if err := st.Rewrite(buckets(rotating(newKey))); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the old key to be retired", func() bool {
			res, _ := do(t, http.MethodGet, st.GatewayURL, "/rotating/a.txt", "Authorization", "Bearer "+oldTok)
			return res.StatusCode == http.StatusForbidden
		})
		expectStatus(t, st, "/rotating/a.txt", 200, "Authorization", "Bearer "+newTok)
	})
	t.Run("JWKS rotation and outage", func(t *testing.T) {
		expectStatus(t, st, "/idp/a.txt", 200, "Authorization", "Bearer "+signed(t, jwks1, nil))
		idp.Set(t, jwks1, jwks2)
		expectStatus(t, st, "/idp/a.txt", 200, "Authorization", "Bearer "+signed(t, jwks2, nil))
		idp.SetDown(true)
		// Fresh tokens (not in the verified-token cache) still verify with the last good key set.
		expectStatus(t, st, "/idp/a.txt", 200, "Authorization", "Bearer "+signed(t, jwks1, jwt.MapClaims{"sub": "down-1"}))
		expectStatus(t, st, "/idp/a.txt", 200, "Authorization", "Bearer "+signed(t, jwks2, jwt.MapClaims{"sub": "down-2"}))
		expectStatus(t, st, "/idp/a.txt", 403, "Authorization", "Bearer "+signed(t, authtest.NewKey(t, dir, "RS256", "jwks-3"), nil))
	})
	t.Run("admin API", func(t *testing.T) {
		st.ExtProc.Admin.HandleAdmin("GET /admin/e2e-ping", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "pong") }))
		call := func(tok string) int {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, st.AdminURL+"/admin/e2e-ping", nil)
			if tok != "" {
				req.Header.Set("Authorization", "Bearer "+tok)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			return res.StatusCode
		}
		if got := call(""); got != 401 {
			t.Errorf("admin without token = %d", got)
		}
		if got := call(signed(t, keys["ES384"], nil)); got != 403 {
			t.Errorf("admin with a reader token = %d", got)
		}
		if got := call(signed(t, keys["ES384"], jwt.MapClaims{"role": "admin"})); got != 200 {
			t.Errorf("admin with an admin token = %d", got)
		}
		reload := func(tok string) (int, string) {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, st.AdminURL+"/admin/reload", nil)
			if tok != "" {
				req.Header.Set("Authorization", "Bearer "+tok)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			body, _ := io.ReadAll(res.Body)
			return res.StatusCode, string(body)
		}
		if got, _ := reload(signed(t, keys["ES384"], nil)); got != 403 {
			t.Errorf("POST /admin/reload with a reader token = %d", got)
		}
		admin := signed(t, keys["ES384"], jwt.MapClaims{"role": "admin"})
		if got, body := reload(admin); got != 200 || !strings.Contains(body, `"reloaded"`) {
			t.Errorf("POST /admin/reload = %d %s", got, body)
		}
		// A broken file is refused with the reason and changes nothing.
		if err := st.WriteRaw([]byte("buckets:\n  - name: [broken\n")); err != nil {
			t.Fatal(err)
		}
		if got, body := reload(admin); got != http.StatusUnprocessableEntity || !strings.Contains(body, "yatagarasu.yaml") {
			t.Errorf("POST /admin/reload of a broken file = %d %s", got, body)
		}
		expectStatus(t, st, "/products/a.txt", 200)
		if err := st.Rewrite(buckets(rotating(newKey))); err != nil {
			t.Fatal(err)
		}
	})
}

// TestIPListsWithForwardedChains: the client is the entry trusted_hops left of the one the
// gateway appends; a spoofed leftmost entry changes nothing.
func TestIPListsWithForwardedChains(t *testing.T) {
	st := startStack(t, []devstack.Bucket{
		{Name: "products"},
		{Name: "office", S3Bucket: "products", Extra: "ip_filter:\n  allowlist: [\"198.51.100.0/24\", \"2001:db8:1::/48\"]\n  blocklist: [\"198.51.100.7\"]"},
	}, "", "trusted_hops: 1\nip_filter:\n  blocklist: [\"203.0.113.0/24\", \"2001:db8:bad::/48\"]\n")
	xff := func(chain string) []string { return []string{"X-Forwarded-For", chain} }
	expectStatus(t, st, "/products/a.txt", 200, xff("192.0.2.1")...)
	expectStatus(t, st, "/products/a.txt", 403, xff("203.0.113.9")...)
	expectStatus(t, st, "/products/a.txt", 403, xff("10.1.1.1, 2001:db8:bad::1")...)
	expectStatus(t, st, "/products/a.txt", 200, xff("203.0.113.9, 192.0.2.1")...) // spoofed entry ignored
	expectStatus(t, st, "/office/a.txt", 200, xff("198.51.100.20")...)
	expectStatus(t, st, "/office/a.txt", 200, xff("198.51.100.7")...) // allowlist wins over blocklist
	expectStatus(t, st, "/office/a.txt", 200, xff("2001:db8:1::9")...)
	expectStatus(t, st, "/office/a.txt", 403, xff("192.0.2.1")...)
	expectStatus(t, st, "/office/a.txt", 403, xff("198.51.100.20, 192.0.2.1")...)
}

// hitLimit sends requests until one is refused (at most n) and checks the 429's headers and reason.
func hitLimit(t *testing.T, st *devstack.Stack, path, reason string, n int, hdr func(i int) []string) {
	t.Helper()
	for i := range n {
		res, body := do(t, http.MethodGet, st.GatewayURL, path, hdr(i)...)
		if res.StatusCode == http.StatusOK {
			continue
		}
		e := jsonError(t, res, body, http.StatusTooManyRequests)
		if ra, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || ra < 1 {
			t.Fatalf("Retry-After = %q", res.Header.Get("Retry-After"))
		}
		for _, h := range []string{"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy"} {
			if res.Header.Get(h) == "" {
				t.Fatalf("429 without %s: %v", h, res.Header)
			}
		}
		if !strings.Contains(e.Message, reason) {
			t.Fatalf("429 message %q, want it to mention %q", e.Message, reason)
		}
		return
	}
	t.Fatalf("%s: no 429 after %d requests", path, n)
}

// TestRateLimitsWithRedis: each scope hits 429 and recovers; two extproc processes share one
// Redis budget; with Redis killed the local limiter decides and the metric says so.
func TestRateLimitsWithRedis(t *testing.T) {
	redisSrv, err := testenv.StartRedis(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer redisSrv.Close()
	key := authtest.NewKey(t, t.TempDir(), "ES256", "")
	redisYAML := "  backend: redis\n  redis: {url: \"redis://" + redisSrv.Addr() + "/0\", key_prefix: \"" + t.Name() + ":\", timeout: 500ms}\n"
	st := startStack(t, []devstack.Bucket{
		{Name: "products"},
		{Name: "limited", S3Bucket: "products", S3Extra: "rate_limit: {requests_per_second: 1, burst: 3}"},
		{Name: "private", S3Bucket: "products", Extra: "auth: {enabled: true}"},
	}, `jwt: {ecdsa_public_key_path: "`+key.PEMPath+`"}`, `trusted_hops: 1
rate_limit:
  per_ip: {requests_per_second: 1, burst: 6}
  per_user: {requests_per_second: 1, burst: 3}
`+redisYAML)
	ip := func(i int) string { return "198.51.100." + strconv.Itoa(10+i) }
	t.Run("per IP", func(t *testing.T) {
		hitLimit(t, st, "/products/a.txt", "IP address", 12, func(int) []string { return []string{"X-Forwarded-For", "192.0.2.1"} })
		expectStatus(t, st, "/products/a.txt", 200, "X-Forwarded-For", "192.0.2.2") // other clients unaffected
		eventually(t, "the IP bucket to refill", func() bool {
			res, _ := do(t, http.MethodGet, st.GatewayURL, "/products/a.txt", "X-Forwarded-For", "192.0.2.1")
			return res.StatusCode == http.StatusOK
		})
	})
	t.Run("per bucket", func(t *testing.T) {
		hitLimit(t, st, "/limited/a.txt", "bucket", 8, func(i int) []string { return []string{"X-Forwarded-For", ip(i)} })
		expectStatus(t, st, "/products/a.txt", 200, "X-Forwarded-For", "192.0.2.3")
		eventually(t, "the bucket to refill", func() bool {
			res, _ := do(t, http.MethodGet, st.GatewayURL, "/limited/a.txt", "X-Forwarded-For", "192.0.2.4")
			return res.StatusCode == http.StatusOK
		})
	})
	t.Run("per user", func(t *testing.T) {
		alice := key.Sign(t, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
		bob := key.Sign(t, jwt.MapClaims{"sub": "bob", "exp": time.Now().Add(time.Hour).Unix()})
		hitLimit(t, st, "/private/a.txt", "user", 8, func(i int) []string {
			return []string{"X-Forwarded-For", "203.0.113." + strconv.Itoa(i+1), "Authorization", "Bearer " + alice}
		})
		expectStatus(t, st, "/private/a.txt", 200, "X-Forwarded-For", "203.0.113.100", "Authorization", "Bearer "+bob)
		eventually(t, "alice's bucket to refill", func() bool {
			res, _ := do(t, http.MethodGet, st.GatewayURL, "/private/a.txt", "X-Forwarded-For", "203.0.113.101", "Authorization", "Bearer "+alice)
			return res.StatusCode == http.StatusOK
		})
	})

	t.Run("two extproc processes share the global limit", func(t *testing.T) {
		global := "rate_limit:\n  global: {requests_per_second: 0.01, burst: 4}\n" +
			"  backend: redis\n  redis: {url: \"redis://" + redisSrv.Addr() + "/0\", key_prefix: \"shared-global:\", timeout: 500ms, retry_interval: 1h}\n"
		a := startStack(t, []devstack.Bucket{{Name: "products"}}, "", global)
		b := startStack(t, []devstack.Bucket{{Name: "products"}}, "", global)
		for _, s := range []*devstack.Stack{a, b, a, b} {
			expectStatus(t, s, "/products/a.txt", 200)
		}
		expectStatus(t, a, "/products/a.txt", 429)
		expectStatus(t, b, "/products/a.txt", 429)

		redisSrv.Close() // Redis dies mid-test: the local limiter decides, requests never error
		for range 3 {
			res, _ := do(t, http.MethodGet, a.GatewayURL, "/products/a.txt")
			if res.StatusCode != 200 && res.StatusCode != 429 {
				t.Fatalf("with Redis down a request got %d", res.StatusCode)
			}
		}
		res, body := do(t, http.MethodGet, a.AdminURL, "/metrics")
		if res.StatusCode != 200 || !bytes.Contains(body, []byte("yatagarasu_ratelimit_redis_fallback_decisions_total 3")) ||
			!bytes.Contains(body, []byte("yatagarasu_ratelimit_redis_up 0")) {
			t.Fatalf("metrics do not report the fallback:\n%s", metricLines(body, "yatagarasu_ratelimit"))
		}
	})
}

// metricLines keeps the lines of a /metrics body that mention substr.
func metricLines(body []byte, substr string) string {
	var out []string
	for _, l := range strings.Split(string(body), "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
