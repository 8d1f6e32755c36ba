package extproc

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/yatagarasu/yatagarasu/internal/auth/authtest"
	"github.com/yatagarasu/yatagarasu/internal/cache"
	"github.com/yatagarasu/yatagarasu/internal/cache/memory"
	"github.com/yatagarasu/yatagarasu/internal/config"
	"github.com/yatagarasu/yatagarasu/internal/httperr"
	"github.com/yatagarasu/yatagarasu/internal/runtime"
)

// cacheConfig is a config with an enabled memory cache, buckets "products" (cached) and
// "nocache" (cache disabled); extra goes at the top level.
func cacheConfig(t testing.TB, extra string) *config.Config {
	t.Helper()
	yaml := `origin:
  shared_secret: "0123456789abcdef0123456789abcdef"
cache:
  enabled: true
  inline_max_bytes: 4096
buckets:
  - name: products
    path_prefix: /products
    s3: {bucket: p, access_key: a, secret_key: s, endpoint: "http://127.0.0.1:1"}
  - name: nocache
    path_prefix: /nocache
    s3: {bucket: p, access_key: a, secret_key: s, endpoint: "http://127.0.0.1:1"}
    cache: {enabled: false}
` + extra
	cfg, err := config.Parse("cache.yaml", []byte(yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func newMemoryTiered(t testing.TB) *cache.Tiered {
	t.Helper()
	mem, err := memory.New(memory.Options{MaxBytes: 64 << 20, MaxItemBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	c := cache.NewTiered([]cache.Layer{mem}, cache.Options{})
	t.Cleanup(func() { c.Close() })
	return c
}

func putEntry(c *cache.Tiered, bucket, key string, body []byte, fresh time.Duration) {
	now := time.Now()
	c.Set(context.Background(), cache.NewEntry(cache.Meta{
		Key: cache.Key{Bucket: bucket, Object: key}, ContentType: "text/plain", ETag: `"v1"`,
		LastModified: "Mon, 02 Jan 2006 15:04:05 GMT", StoredAt: now,
		FreshUntil: now.Add(fresh), KeepUntil: now.Add(time.Hour),
	}, body))
}

func cachePipeline(t testing.TB, c *cache.Tiered) *Pipeline {
	t.Helper()
	snap, err := runtime.Build(cacheConfig(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	store := &runtime.Store{}
	store.Set(snap)
	return NewPipeline(store, time.Now, &CacheStage{Cache: c})
}

func TestCacheStageAnswersSmallFreshHits(t *testing.T) {
	c := newMemoryTiered(t)
	p := cachePipeline(t, c)
	body := []byte("0123456789")
	putEntry(c, "products", "a.txt", body, time.Hour)
	putEntry(c, "products", "big.bin", bytes.Repeat([]byte("b"), 5000), time.Hour)
	putEntry(c, "products", "stale.txt", body, -time.Second)
	putEntry(c, "nocache", "a.txt", body, time.Hour)
	ctx := context.Background()
	cases := []struct {
		name, method, path string
		hdr                []string
		status             int
		body               string
		headers            map[string]string
	}{
		{"hit", "GET", "/products/a.txt", nil, 200, "0123456789", map[string]string{
			"x-cache": "HIT", "etag": `"v1"`, "content-type": "text/plain", "accept-ranges": "bytes",
			"last-modified": "Mon, 02 Jan 2006 15:04:05 GMT", "x-request-id": "rid"}},
		{"head is answered like GET (Envoy drops the body, keeps its length)", "HEAD", "/products/a.txt", nil, 200, "0123456789", nil},
		{"if-none-match", "GET", "/products/a.txt", []string{"if-none-match", `"v1"`}, 304, "", map[string]string{"etag": `"v1"`}},
		{"if-modified-since", "GET", "/products/a.txt", []string{"if-modified-since", "Tue, 03 Jan 2006 00:00:00 GMT"}, 304, "", nil},
		{"range", "GET", "/products/a.txt", []string{"range", "bytes=3-5"}, 206, "345", map[string]string{"content-range": "bytes 3-5/10"}},
		{"unsatisfiable range", "GET", "/products/a.txt", []string{"range", "bytes=50-"}, 416, "", map[string]string{"content-range": "bytes */10", "content-type": "application/json"}},
		{"miss continues", "GET", "/products/absent", nil, 0, "", nil},
		{"larger than inline_max_bytes continues", "GET", "/products/big.bin", nil, 0, "", nil},
		{"stale continues (the origin revalidates)", "GET", "/products/stale.txt", nil, 0, "", nil},
		{"bucket with caching off continues", "GET", "/nocache/a.txt", nil, 0, "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := p.Decide(ctx, request(tc.path, tc.hdr...))
			d.Body = bytes.Clone(d.Body)
			if tc.method == "HEAD" {
				r := request(tc.path, tc.hdr...)
				r.Method = "HEAD"
				d = p.Decide(ctx, r)
			}
			if d.Status != tc.status {
				t.Fatalf("status = %d, want %d (%s)", d.Status, tc.status, d.Body)
			}
			if tc.status == 0 {
				return
			}
			if tc.status < 400 && string(d.Body) != tc.body {
				t.Fatalf("body = %q, want %q", d.Body, tc.body)
			}
			if tc.status >= 400 {
				var b httperr.Body
				if err := json.Unmarshal(d.Body, &b); err != nil || b.Status != tc.status {
					t.Fatalf("error body %q", d.Body)
				}
			}
			for k, v := range tc.headers {
				if got := header(d, k); got != v {
					t.Errorf("%s = %q, want %q (all: %v)", k, got, v, d.Headers)
				}
			}
			if header(d, "content-length") != "" {
				t.Error("content-length must come from Envoy (the body), not from a header mutation")
			}
		})
	}
	if st := c.Stats(); st.Hits != 7 || st.Misses != 0 {
		t.Fatalf("stats = hits %d misses %d; extproc counts only the hits it answers", st.Hits, st.Misses)
	}
}

// BenchmarkCacheHit compares a 1 KiB hit answered by extproc, with the IP filter, global and
// per-user rate limits and JWT (RS256) in front of it, against the null server, on one
// Envoy-shaped stream per request at 64 concurrent streams.
func BenchmarkCacheHit(b *testing.B) {
	key := authtest.NewKey(b, b.TempDir(), "RS256", "k1")
	cfg := cacheConfig(b, `jwt:
  keys: [{id: k1, algorithm: RS256, path: "`+key.PEMPath+`"}]
  token_sources: [{type: bearer}]
server:
  rate_limit:
    global: {requests_per_second: 100000000, burst: 100000000}
    per_user: {requests_per_second: 100000000, burst: 100000000}
`)
	cfg.Buckets[0].Auth.Enabled = true
	snap, err := runtime.Build(cfg)
	if err != nil {
		b.Fatal(err)
	}
	a := NewAccess(slog.New(slog.DiscardHandler), nil)
	b.Cleanup(func() { _ = a.Close() })
	if err := a.Bind(snap); err != nil {
		b.Fatal(err)
	}
	store := &runtime.Store{}
	store.Set(snap)
	c := newMemoryTiered(b)
	body := bytes.Repeat([]byte("k"), 1024)
	putEntry(c, "products", "obj.txt", body, time.Hour)
	p := NewPipeline(store, time.Now, a.IPFilter(), a.RateLimit(), a.Auth(), a.UserRateLimit(), &CacheStage{Cache: c})
	token := tokenFor(b, key, "alice", "reader")
	req := envoyHeaders("GET", "/products/obj.txt", "authorization", "Bearer "+token, "user-agent", "bench/1.0", "accept", "*/*")

	// The hit really is a hit through every stage.
	if d := p.Decide(context.Background(), request("/products/obj.txt", "authorization", "Bearer "+token)); d.Status != 200 || !bytes.Equal(d.Body, body) {
		b.Fatalf("not a hit: %d %s %s", d.Status, d.Reason, d.Body)
	}
	if d := p.Decide(context.Background(), request("/products/obj.txt")); d.Status != 401 {
		b.Fatalf("a cached object must not reach an unauthenticated client: %d", d.Status)
	}
	servers := map[string]extprocv3.ExternalProcessorServer{
		"impl=null":           nullServer{},
		"impl=yatagarasu-hit": NewServer(p, slog.New(slog.DiscardHandler), nil),
	}
	for _, name := range []string{"impl=null", "impl=yatagarasu-hit"} {
		b.Run(name, func(b *testing.B) {
			benchStreams(b, servers[name], req, func(resp *extprocv3.ProcessingResponse) bool {
				return name == "impl=null" || resp.GetImmediateResponse().GetStatus().GetCode() == 200
			})
		})

	}
}

// BenchmarkCacheStage measures the cache stage alone on a 1 KiB hit (lookup, conditional
// handling, headers), without gRPC and other stages.
func BenchmarkCacheStage(b *testing.B) {
	c := newMemoryTiered(b)
	p := cachePipeline(b, c)
	putEntry(c, "products", "obj.txt", bytes.Repeat([]byte("k"), 1024), time.Hour)
	r := request("/products/obj.txt")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if d := p.Decide(ctx, r); d.Status != 200 {
			b.Fatal(d.Status)
		}
	}
}
