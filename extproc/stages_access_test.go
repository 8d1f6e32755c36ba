package extproc

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/yatagarasu/yatagarasu/internal/admin"
	"github.com/yatagarasu/yatagarasu/internal/auth/authtest"
	"github.com/yatagarasu/yatagarasu/internal/config"
	"github.com/yatagarasu/yatagarasu/internal/runtime"
)

// accessConfig renders a config with bucket "open" (/open) and "private" (/private); s3Extra goes
// into private's s3 mapping, privateExtra under the bucket, extra at the top level.
func accessConfig(t testing.TB, extra, privateExtra, s3Extra string) *config.Config {
	t.Helper()
	yaml := `origin:
  shared_secret: "0123456789abcdef0123456789abcdef"
buckets:
  - name: open
    path_prefix: /open
    s3: {bucket: open, access_key: a, secret_key: s, endpoint: "http://127.0.0.1:1"}
  - name: private
    path_prefix: /private
    s3: {bucket: private, access_key: a, secret_key: s, endpoint: "http://127.0.0.1:1"` + s3Extra + `}
` + privateExtra + extra
	return accessConfigRaw(t, yaml)
}

// accessConfigRaw loads a whole config file given as a string.
func accessConfigRaw(t testing.TB, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("access.yaml", []byte(yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// accessPipeline builds the pipeline with the access stages the way the service does.
func accessPipeline(t testing.TB, cfg *config.Config) (*Pipeline, *Access, *runtime.Store) {
	t.Helper()
	snap, err := runtime.Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a := NewAccess(slog.New(slog.DiscardHandler), nil)
	t.Cleanup(func() { _ = a.Close() })
	if err := a.Bind(snap); err != nil {
		t.Fatal(err)
	}
	store := &runtime.Store{}
	store.Set(snap)
	return NewPipeline(store, time.Now, a.IPFilter(), a.RateLimit(), a.Auth(), a.UserRateLimit()), a, store
}

func request(path string, hdr ...string) *Request {
	r := &Request{Method: "GET", RawPath: path, RequestID: "rid", ContentLength: -1}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Headers = append(r.Headers, Header{Name: hdr[i], Value: hdr[i+1]})
	}
	return r
}

func tokenFor(t testing.TB, k *authtest.Key, sub, role string) string {
	return k.Sign(t, jwt.MapClaims{"sub": sub, "role": role, "exp": time.Now().Add(time.Hour).Unix()})
}

func TestAccessStagesInPipelineOrder(t *testing.T) {
	key := authtest.NewKey(t, t.TempDir(), "RS256", "k1")
	cfg := accessConfig(t, `jwt:
  keys: [{id: k1, algorithm: RS256, path: "`+key.PEMPath+`"}]
  token_sources: [{type: bearer}, {type: query, name: token}]
  claims: [{claim: role, operator: in, value: [reader, admin]}]
server:
  trusted_hops: 1
  ip_filter: {blocklist: ["203.0.113.0/24"]}
  rate_limit:
    per_user: {requests_per_second: 0.001, burst: 2}
`, `    auth: {enabled: true}
    ip_filter: {allowlist: ["198.51.100.0/24", "2001:db8::/32"]}
`, `, rate_limit: {requests_per_second: 0.001, burst: 5}`)
	p, _, _ := accessPipeline(t, cfg)
	ctx := context.Background()
	good := tokenFor(t, key, "alice", "reader")
	xff := func(client string) []string { return []string{"x-forwarded-for", client + ", 10.0.0.1"} }

	// Step 4: the global blocklist, then the bucket allowlist (trusted_hops 1 skips the LB entry).
	d := p.Decide(ctx, request("/open/a", xff("203.0.113.5")...))
	if d.Status != 403 || d.Reason != "ip_blocklisted" {
		t.Fatalf("blocked IP = %d %s", d.Status, d.Reason)
	}
	d = p.Decide(ctx, request("/private/a", append(xff("192.0.2.1"), "authorization", "Bearer "+good)...))
	if d.Status != 403 || d.Reason != "ip_not_in_allowlist" {
		t.Fatalf("IP outside allowlist = %d %s", d.Status, d.Reason)
	}
	if d := p.Decide(ctx, request("/open/a", xff("192.0.2.1")...)); !d.Allowed() || d.Access[0] != "ip:allowed" {
		t.Fatalf("open bucket = %d %s %v", d.Status, d.Reason, d.Access)
	}
	// Step 7: no token → 401 with WWW-Authenticate; bad claims → 403 (the IP passes first).
	d = p.Decide(ctx, request("/private/a", xff("198.51.100.9")...))
	if d.Status != 401 || header(d, "www-authenticate") != `Bearer realm="yatagarasu"` {
		t.Fatalf("no token = %d %v", d.Status, d.Headers)
	}
	d = p.Decide(ctx, request("/private/a", append(xff("198.51.100.9"), "authorization", "Bearer "+tokenFor(t, key, "eve", "guest"))...))
	var body struct{ Message string }
	_ = json.Unmarshal(d.Body, &body)
	if d.Status != 403 || d.Reason != "auth_claims_rejected" || !strings.Contains(body.Message, `"role"`) {
		t.Fatalf("bad role = %d %s %s", d.Status, d.Reason, d.Body)
	}
	// Allowed: subject and claims set, credentials stripped from what goes upstream.
	d = p.Decide(ctx, request("/private/a?v=1&token="+good+"&x=2", append(xff("2001:db8::5"), "authorization", "Bearer "+good)...))
	if !d.Allowed() {
		t.Fatalf("good token = %d %s %s", d.Status, d.Reason, d.Body)
	}
	if strings.Join(d.Upstream.Remove, ",") != "authorization" || d.Upstream.Path != "/private/a?v=1&x=2" {
		t.Fatalf("credentials not stripped: %+v", d.Upstream)
	}
	if strings.Join(d.Access, " ") != "ip:allowed ratelimit:allowed_local auth:ok user_ratelimit:allowed_local" {
		t.Fatalf("access notes = %v", d.Access)
	}
	// Per-user limit (burst 2, already used once): alice's next request passes, the third is 429.
	p.Decide(ctx, request("/private/a", append(xff("198.51.100.9"), "authorization", "Bearer "+good)...))
	d = p.Decide(ctx, request("/private/a", append(xff("198.51.100.9"), "authorization", "Bearer "+good)...))
	if d.Status != 429 || d.Reason != "rate_limited_user" || header(d, "retry-after") == "" || header(d, "ratelimit-limit") != "2" || header(d, "ratelimit-policy") == "" {
		t.Fatalf("per-user = %d %s %v", d.Status, d.Reason, d.Headers)
	}
	// The bucket limit (burst 5) has seen 5 requests that got past the IP filter (401/403 included).
	d = p.Decide(ctx, request("/private/a", append(xff("198.51.100.9"), "authorization", "Bearer "+tokenFor(t, key, "bob", "reader"))...))
	if d.Status != 429 || d.Reason != "rate_limited_bucket" {
		t.Fatalf("bucket limit = %d %s", d.Status, d.Reason)
	}
}

// TestAccessSurvivesReload: a reload with the same limits keeps the spent tokens; the verified
// token cache stays warm for an unchanged JWT config.
func TestAccessSurvivesReload(t *testing.T) {
	key := authtest.NewKey(t, t.TempDir(), "HS256", "")
	top := `jwt: {secret: "` + string(key.Secret) + `"}
server:
  rate_limit:
    global: {requests_per_second: 0.001, burst: 2}
`
	cfg := accessConfig(t, top, "    auth: {enabled: true}\n", "")
	p, a, store := accessPipeline(t, cfg)
	ctx := context.Background()
	tok := tokenFor(t, key, "alice", "x")
	for range 2 {
		if d := p.Decide(ctx, request("/private/a", "authorization", "Bearer "+tok)); !d.Allowed() {
			t.Fatalf("before reload = %d %s", d.Status, d.Reason)
		}
	}
	verifier := a.binding(store.Load()).auth.Bucket(1)
	snap, err := runtime.Build(accessConfig(t, top, "    auth: {enabled: true}\n", ""))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Bind(snap); err != nil {
		t.Fatal(err)
	}
	store.Set(snap)
	if d := p.Decide(ctx, request("/open/a")); d.Status != 429 {
		t.Fatalf("after reload the global bucket must still be empty, got %d", d.Status)
	}
	if a.binding(snap).auth.Bucket(1) == verifier {
		t.Fatal("a new snapshot gets its own verifier")
	}
}

func TestAdminAuthFollowsTheCurrentSnapshot(t *testing.T) {
	key := authtest.NewKey(t, t.TempDir(), "ES256", "")
	withAdmin := `jwt:
  ecdsa_public_key_path: "` + key.PEMPath + `"
  admin_claims: [{claim: role, operator: equals, value: admin}]
`
	_, a, store := accessPipeline(t, accessConfig(t, withAdmin, "", ""))
	h := admin.New(admin.Options{AdminAuth: a.AdminAuth(store)})
	h.HandleAdmin("GET /admin/ping", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("pong")) }))
	call := func(token string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "/admin/ping", nil)
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	if w := call(""); w.Code != 401 || w.Header().Get("WWW-Authenticate") == "" {
		t.Fatalf("no token = %d %v", w.Code, w.Header())
	}
	if w := call(tokenFor(t, key, "u", "reader")); w.Code != 403 {
		t.Fatalf("non-admin = %d", w.Code)
	}
	if w := call(tokenFor(t, key, "u", "admin")); w.Code != 200 || w.Body.String() != "pong" {
		t.Fatalf("admin = %d %s", w.Code, w.Body)
	}
	// Reload without admin_claims: the admin API is off at once.
	snap, _ := runtime.Build(accessConfig(t, "jwt: {ecdsa_public_key_path: \""+key.PEMPath+"\"}\n", "", ""))
	_ = a.Bind(snap)
	store.Set(snap)
	if w := call(tokenFor(t, key, "u", "admin")); w.Code != 403 || !strings.Contains(w.Body.String(), "disabled") {
		t.Fatalf("after reload = %d %s", w.Code, w.Body)
	}
}
