package extproc

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/yatagarasu/yatagarasu/internal/config"
	"github.com/yatagarasu/yatagarasu/internal/httperr"
	"github.com/yatagarasu/yatagarasu/internal/originauth"
	"github.com/yatagarasu/yatagarasu/internal/requestcheck"
	"github.com/yatagarasu/yatagarasu/internal/route"
	"github.com/yatagarasu/yatagarasu/internal/runtime"
)

const testSecret = "0123456789abcdef0123456789abcdef"

var testNow = time.Unix(1_800_000_000, 0)

// testPipeline builds a snapshot by hand (no S3 clients): the decision logic never touches S3.
func testPipeline(t testing.TB, prefixes ...string) *Pipeline {
	t.Helper()
	var buckets []config.Bucket
	var entries []route.Entry
	for i, p := range prefixes {
		name := strings.Trim(strings.ReplaceAll(p, "/", "-"), "-")
		if name == "" {
			name = "root"
		}
		buckets = append(buckets, config.Bucket{Name: name, PathPrefix: p})
		entries = append(entries, route.Entry{Prefix: p, Bucket: i})
	}
	rt, err := route.New(entries)
	if err != nil {
		t.Fatal(err)
	}
	store := &runtime.Store{}
	store.Set(&runtime.Snapshot{
		Routes:  rt,
		Buckets: buckets,
		Limits:  requestcheck.Limits{MaxURILength: 100, MaxHeaderBytes: 500, MaxBodyBytes: 10},
		Signer:  originauth.NewSigner(testSecret, 30*time.Second),
	})
	return NewPipeline(store, func() time.Time { return testNow })
}

func header(d Decision, name string) string {
	for _, h := range d.Headers {
		if h[0] == name {
			return h[1]
		}
	}
	return ""
}

func TestDecideRefusals(t *testing.T) {
	p := testPipeline(t, "/products", "/products/images")
	cases := []struct {
		name   string
		req    Request
		status int
		reason string
	}{
		{"put", Request{Method: "PUT", RawPath: "/products/a"}, 405, "method_not_allowed"},
		{"delete", Request{Method: "DELETE", RawPath: "/products/a"}, 405, "method_not_allowed"},
		{"uri", Request{Method: "GET", RawPath: "/products/" + strings.Repeat("a", 100)}, 414, "uri_too_long"},
		{"headers", Request{Method: "GET", RawPath: "/products/a", HeaderBytes: 501}, 431, "headers_too_large"},
		{"body", Request{Method: "GET", RawPath: "/products/a", ContentLength: 11}, 413, "body_too_large"},
		{"traversal", Request{Method: "GET", RawPath: "/products/../secret/x", ContentLength: -1}, 400, "path_traversal"},
		{"encoded traversal", Request{Method: "GET", RawPath: "/products/%2e%2e/secret/x", ContentLength: -1}, 400, "path_traversal"},
		{"bad encoding", Request{Method: "GET", RawPath: "/products/%zz", ContentLength: -1}, 400, "bad_encoding"},
		{"no route", Request{Method: "GET", RawPath: "/other/a.txt", ContentLength: -1}, 404, "no_route"},
		{"no boundary", Request{Method: "GET", RawPath: "/productsX/a.txt", ContentLength: -1}, 404, "no_route"},
		{"no key", Request{Method: "GET", RawPath: "/products/", ContentLength: -1}, 404, "no_key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.req.RequestID = "rid-1"
			d := p.Decide(t.Context(), &c.req)
			if d.Status != c.status || d.Reason != c.reason {
				t.Fatalf("got %d %s, want %d %s", d.Status, d.Reason, c.status, c.reason)
			}
			var body httperr.Body
			if err := json.Unmarshal(d.Body, &body); err != nil {
				t.Fatalf("body %q: %v", d.Body, err)
			}
			if body.Status != c.status || body.RequestID != "rid-1" || body.Error != http.StatusText(c.status) || body.Message == "" {
				t.Fatalf("body = %+v", body)
			}
			if header(d, "content-type") != "application/json" || header(d, "x-request-id") != "rid-1" {
				t.Fatalf("headers = %v", d.Headers)
			}
			if c.status == 405 && header(d, "allow") != "GET, HEAD, OPTIONS" {
				t.Fatalf("405 without Allow: %v", d.Headers)
			}
		})
	}
}

func TestDecideOptions(t *testing.T) {
	d := testPipeline(t, "/products").Decide(context.Background(), &Request{Method: "OPTIONS", RawPath: "/anything", RequestID: "r"})
	if d.Status != 200 || header(d, "allow") != "GET, HEAD, OPTIONS" || header(d, "access-control-max-age") != "86400" {
		t.Fatalf("options = %+v", d)
	}
	if header(d, "access-control-allow-origin") != "" {
		t.Fatal("OPTIONS must not grant an origin by default")
	}
}

func TestDecideAllowsAndSigns(t *testing.T) {
	p := testPipeline(t, "/products", "/products/images")
	cases := map[string][2]string{
		"/products/a.txt":                  {"products", "a.txt"},
		"/products/images/x/y.png?v=1":     {"products-images", "x/y.png"},
		"/products/with%20space+plus.txt":  {"products", "with space+plus.txt"},
		"/products/%E6%97%A5%E6%9C%AC.txt": {"products", "日本.txt"},
		"/products/a%2Fb":                  {"products", "a/b"},
		"/products/a%252Fb":                {"products", "a%2Fb"},
		"/products/deep//many///slashes":   {"products", "deep//many///slashes"},
	}
	for raw, want := range cases {
		d := p.Decide(context.Background(), &Request{Method: "GET", RawPath: raw, RequestID: "rid", ContentLength: -1})
		if !d.Allowed() || d.Bucket != want[0] || d.Key != want[1] {
			t.Errorf("%s → allowed=%v %q %q, want %q %q", raw, d.Allowed(), d.Bucket, d.Key, want[0], want[1])
			continue
		}
		get := func(name string) string { return header(d, name) }
		claims, err := originauth.NewSigner(testSecret, 30*time.Second).Verify("GET", get, testNow)
		if err != nil {
			t.Fatalf("%s: signed headers do not verify: %v", raw, err)
		}
		if claims.Bucket != want[0] || claims.Key != want[1] || claims.RequestID != "rid" {
			t.Errorf("%s: claims = %+v", raw, claims)
		}
		// The signature binds the method: the same headers do not authorise a different one.
		if _, err := originauth.NewSigner(testSecret, 30*time.Second).Verify("HEAD", get, testNow); err == nil {
			t.Errorf("%s: GET signature accepted for HEAD", raw)
		}
	}
}

func TestDecideBeforeConfigLoaded(t *testing.T) {
	d := NewPipeline(&runtime.Store{}, nil).Decide(context.Background(), &Request{Method: "GET", RawPath: "/a/b"})
	if d.Status != http.StatusServiceUnavailable {
		t.Fatalf("got %d", d.Status)
	}
}

func BenchmarkDecide(b *testing.B) {
	var prefixes []string
	for _, n := range []string{"products", "assets", "docs", "media", "logs", "a", "b", "c", "d", "e"} {
		prefixes = append(prefixes, "/"+n)
	}
	p := testPipeline(b, prefixes...)
	r := &Request{Method: "GET", RawPath: "/media/2026/11/video.mp4", RequestID: "rid", ContentLength: -1}
	b.ReportAllocs()
	for b.Loop() {
		if d := p.Decide(context.Background(), r); !d.Allowed() {
			b.Fatal(d.Reason)
		}
	}
}

// stageFunc adapts a function to Stage for tests.
type stageFunc func(ctx context.Context, x *Exchange) *Decision

func (stageFunc) Name() string                                     { return "test" }
func (f stageFunc) Run(ctx context.Context, x *Exchange) *Decision { return f(ctx, x) }

func TestStagesRunAfterRoutingAndCanRefuse(t *testing.T) {
	base := testPipeline(t, "/products")
	var seen *Exchange
	deny := stageFunc(func(_ context.Context, x *Exchange) *Decision {
		seen = x
		d := Reject(x, http.StatusForbidden, "test_deny", "denied by test stage")
		return d
	})
	never := stageFunc(func(context.Context, *Exchange) *Decision { t.Fatal("stage after a refusal ran"); return nil })
	p := NewPipeline(base.store, base.now, deny, never)
	d := p.Decide(t.Context(), &Request{Method: "GET", RawPath: "/products/k", RequestID: "r", ContentLength: -1})
	if d.Status != 403 || d.Reason != "test_deny" || d.Bucket != "products" || d.Key != "k" {
		t.Fatalf("decision = %+v", d)
	}
	if seen == nil || seen.Key != "k" || seen.Bucket.Name != "products" {
		t.Fatalf("exchange = %+v", seen)
	}
	// Refusals before routing never reach the stages.
	if d := p.Decide(t.Context(), &Request{Method: "PUT", RawPath: "/products/k"}); d.Status != 405 {
		t.Fatalf("PUT = %d", d.Status)
	}
}

func TestStageMutationsGoUpstreamButCannotForgeSignedHeaders(t *testing.T) {
	base := testPipeline(t, "/products")
	mut := stageFunc(func(_ context.Context, x *Exchange) *Decision {
		x.Subject = "alice"
		x.Upstream.Set = append(x.Upstream.Set, [2]string{"x-tier", "gold"}, [2]string{"x-yatagarasu-bucket", "secret"})
		x.Upstream.Remove = append(x.Upstream.Remove, "authorization")
		x.Upstream.Path = "/products/k"
		return nil
	})
	p := NewPipeline(base.store, base.now, mut)
	d := p.Decide(t.Context(), &Request{Method: "GET", RawPath: "/products/k?token=abc", RequestID: "r", ContentLength: -1})
	if !d.Allowed() {
		t.Fatalf("refused: %+v", d)
	}
	resp := proceed(&d, nil).GetRequestHeaders().GetResponse().GetHeaderMutation()
	set := map[string][]string{}
	for _, h := range resp.GetSetHeaders() {
		set[h.GetHeader().GetKey()] = append(set[h.GetHeader().GetKey()], string(h.GetHeader().GetRawValue()))
	}
	if len(set["x-yatagarasu-bucket"]) != 1 || set["x-yatagarasu-bucket"][0] != "products" {
		t.Fatalf("a stage forged the bucket header: %v", set["x-yatagarasu-bucket"])
	}
	if len(set["x-yatagarasu-auth"]) != 1 || !strings.Contains(set["x-yatagarasu-auth"][0], ";sub=alice;") ||
		len(set["x-tier"]) != 1 || set["x-tier"][0] != "gold" || len(set[":path"]) != 1 || set[":path"][0] != "/products/k" {
		t.Fatalf("set = %v", set)
	}
	if rm := resp.GetRemoveHeaders(); len(rm) != 1 || rm[0] != "authorization" {
		t.Fatalf("remove = %v", rm)
	}
}
