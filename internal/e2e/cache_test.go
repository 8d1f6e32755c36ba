package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/yatagarasu/yatagarasu/internal/admin"
	"github.com/yatagarasu/yatagarasu/internal/devstack"
	"github.com/yatagarasu/yatagarasu/internal/httperr"
	"github.com/yatagarasu/yatagarasu/internal/testenv"
)

// s3Counter is a reverse proxy in front of versitygw that counts object GETs per path. It
// forwards the client's Host unchanged, since SigV4 signs it.
type s3Counter struct {
	URL   string
	mu    sync.Mutex
	gets  map[string]int // by /bucket/key
	conds map[string]int // GETs with If-None-Match (revalidations)
}

func newS3Counter(t *testing.T) *s3Counter {
	t.Helper()
	target, err := url.Parse(s3srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	c := &s3Counter{gets: map[string]int{}, conds: map[string]int{}}
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		r.Out.Host = r.In.Host
	}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && !r.URL.Query().Has("list-type") { // object GETs (not listings)
			c.mu.Lock()
			c.gets[r.URL.Path]++
			if r.Header.Get("If-None-Match") != "" {
				c.conds[r.URL.Path]++
			}
			c.mu.Unlock()
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c.URL = srv.URL
	return c
}

func (c *s3Counter) count(path string) (gets, conds int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gets[path], c.conds[path]
}

// cacheBucket creates a fresh S3 bucket with objects for one test.
func cacheBucket(t *testing.T, objs map[string][]byte) string {
	t.Helper()
	name := fmt.Sprintf("cache-%d", time.Now().UnixNano())
	if err := s3srv.CreateBucket(t.Context(), name); err != nil {
		t.Fatal(err)
	}
	for k, v := range objs {
		if err := s3srv.PutObject(t.Context(), name, k, v, "application/octet-stream"); err != nil {
			t.Fatal(err)
		}
	}
	return name
}

const cacheSection = `cache:
  enabled: true
  inline_max_bytes: 4096
  cache_layers: [%s]
  memory: {max_item_size_mb: 4, max_cache_size_mb: 64}
  disk: {enabled: true, cache_dir: %q, max_disk_cache_size_mb: 256}
  redis: {enabled: %v, redis_url: %q, redis_key_prefix: %q}
`

type cacheStackOpts struct {
	layers      string // e.g. "memory, disk"
	dir         string // disk cache dir (default: a temp dir)
	redis       string // redis address
	prefix      string
	bucketExtra string
}

func startCacheStack(t *testing.T, s3Bucket, endpoint string, o cacheStackOpts) *devstack.Stack {
	t.Helper()
	st := startCacheStackNoCleanup(t, s3Bucket, endpoint, o)
	t.Cleanup(st.Close)
	return st
}

// startCacheStackNoCleanup starts a stack the test closes itself (Stack.Close runs once).
func startCacheStackNoCleanup(t *testing.T, s3Bucket, endpoint string, o cacheStackOpts) *devstack.Stack {
	t.Helper()
	if o.dir == "" {
		o.dir = t.TempDir()
	}
	if o.prefix == "" {
		o.prefix = "yg-e2e:"
	}
	redisURL := "redis://127.0.0.1:1"
	if o.redis != "" {
		redisURL = "redis://" + o.redis
	}
	st, err := devstack.Start(t.Context(), devstack.Options{
		S3: s3srv, Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler),
		Buckets: []devstack.Bucket{{Name: "cached", S3Bucket: s3Bucket, Endpoint: endpoint, Extra: o.bucketExtra}},
		Extra:   fmt.Sprintf(cacheSection, o.layers, o.dir, o.redis != "", redisURL, o.prefix),
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// cacheAdmin serves the stack's cache admin endpoints behind an allow-all admin auth (the JWT
// admin auth has its own tests).
func cacheAdmin(t *testing.T, st *devstack.Stack) string {
	t.Helper()
	h := admin.New(admin.Options{AdminAuth: func(*http.Request) *httperr.Body { return nil }})
	st.ExtProc.CacheAdmin.Register(h)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func adminCall(t *testing.T, method, u string, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), method, u, strings.NewReader(body))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(res.Body).Decode(&out)
	return res.StatusCode, out
}

func expectGet(t *testing.T, st *devstack.Stack, path string, want []byte, xcache string, hdr ...string) *http.Response {
	t.Helper()
	res, body := do(t, http.MethodGet, st.GatewayURL, path, hdr...)
	if res.StatusCode != http.StatusOK || !bytes.Equal(body, want) {
		t.Fatalf("GET %s = %d, %d bytes (want %d); %s", path, res.StatusCode, len(body), len(want), body[:min(len(body), 200)])
	}
	if got := res.Header.Get("X-Cache"); got != xcache {
		t.Fatalf("GET %s: X-Cache = %q, want %q", path, got, xcache)
	}
	return res
}

func TestCacheHitsDoNotTouchS3(t *testing.T) {
	small, big := random(1000), random(3<<20)
	bucket := cacheBucket(t, map[string][]byte{"small.txt": small, "big.bin": big})
	s3c := newS3Counter(t)
	st := startCacheStack(t, bucket, s3c.URL, cacheStackOpts{layers: "memory, disk"})
	for _, o := range []struct {
		key  string
		body []byte
	}{{"small.txt", small}, {"big.bin", big}} {
		path := "/cached/" + o.key
		expectGet(t, st, path, o.body, "MISS")
		for range 3 {
			expectGet(t, st, path, o.body, "HIT")
		}
		if gets, _ := s3c.count("/" + bucket + "/" + o.key); gets != 1 {
			t.Fatalf("%s: %d S3 GETs, want 1", o.key, gets)
		}
		// HEAD from the cache carries the object's length and no body.
		res, body := do(t, http.MethodHead, st.GatewayURL, path)
		if res.StatusCode != 200 || len(body) != 0 || res.Header.Get("Content-Length") != strconv.Itoa(len(o.body)) || res.Header.Get("X-Cache") != "HIT" {
			t.Fatalf("HEAD %s = %d, %d bytes, length %q, %q", path, res.StatusCode, len(body), res.Header.Get("Content-Length"), res.Header.Get("X-Cache"))
		}
	}
	if gets, _ := s3c.count("/" + bucket + "/small.txt"); gets != 1 {
		t.Fatalf("HEAD went to S3")
	}
}

func TestCacheConditionalAndRangeFromCache(t *testing.T) {
	small, big := random(1000), random(1<<20)
	bucket := cacheBucket(t, map[string][]byte{"small.txt": small, "big.bin": big})
	s3c := newS3Counter(t)
	st := startCacheStack(t, bucket, s3c.URL, cacheStackOpts{layers: "memory"})
	for _, o := range []struct {
		key  string
		body []byte
	}{{"small.txt", small}, {"big.bin", big}} { // small: answered by extproc; big: by the origin
		path := "/cached/" + o.key
		etag := expectGet(t, st, path, o.body, "MISS").Header.Get("ETag")
		if etag == "" {
			t.Fatal("no ETag")
		}
		res, body := do(t, http.MethodGet, st.GatewayURL, path, "If-None-Match", etag)
		if res.StatusCode != 304 || len(body) != 0 || res.Header.Get("X-Cache") != "HIT" || res.Header.Get("ETag") != etag {
			t.Fatalf("%s If-None-Match = %d %q", o.key, res.StatusCode, res.Header.Get("X-Cache"))
		}
		res, body = do(t, http.MethodGet, st.GatewayURL, path, "Range", "bytes=100-199")
		if res.StatusCode != 206 || !bytes.Equal(body, o.body[100:200]) || res.Header.Get("Content-Range") != fmt.Sprintf("bytes 100-199/%d", len(o.body)) || res.Header.Get("X-Cache") != "HIT" {
			t.Fatalf("%s Range = %d %q %q", o.key, res.StatusCode, res.Header.Get("Content-Range"), res.Header.Get("X-Cache"))
		}
		res, body = do(t, http.MethodGet, st.GatewayURL, path, "Range", fmt.Sprintf("bytes=%d-", len(o.body)+10))
		jsonError(t, res, body, 416)
		if res.Header.Get("Content-Range") != fmt.Sprintf("bytes */%d", len(o.body)) || res.Header.Get("X-Cache") != "HIT" {
			t.Fatalf("%s 416 headers = %v", o.key, res.Header)
		}
		if gets, _ := s3c.count("/" + bucket + "/" + o.key); gets != 1 {
			t.Fatalf("%s: %d S3 GETs, want 1", o.key, gets)
		}
	}
}

func TestCacheCoalescesConcurrentMisses(t *testing.T) {
	body := random(2 << 20)
	bucket := cacheBucket(t, map[string][]byte{"hot.bin": body})
	s3c := newS3Counter(t)
	st := startCacheStack(t, bucket, s3c.URL, cacheStackOpts{layers: "memory"})
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, st.GatewayURL+"/cached/hot.bin", nil)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- err.Error()
				return
			}
			defer res.Body.Close()
			var buf bytes.Buffer
			if _, err := buf.ReadFrom(res.Body); err != nil || res.StatusCode != 200 || !bytes.Equal(buf.Bytes(), body) {
				errs <- fmt.Sprintf("status %d, %d bytes, %v", res.StatusCode, buf.Len(), err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	if gets, _ := s3c.count("/" + bucket + "/hot.bin"); gets != 1 {
		t.Fatalf("%d concurrent first GETs made %d S3 GETs, want 1", n, gets)
	}
}

func TestCachePurgeAndStats(t *testing.T) {
	a, b := random(500), random(600)
	bucket := cacheBucket(t, map[string][]byte{"a.txt": a, "dir/b.txt": b})
	s3c := newS3Counter(t)
	st := startCacheStack(t, bucket, s3c.URL, cacheStackOpts{layers: "memory, disk"})
	adm := cacheAdmin(t, st)
	expectGet(t, st, "/cached/a.txt", a, "MISS")
	expectGet(t, st, "/cached/dir/b.txt", b, "MISS")
	expectGet(t, st, "/cached/a.txt", a, "HIT")

	code, out := adminCall(t, "GET", adm+"/admin/cache/stats", "")
	data, _ := out["data"].(map[string]any)
	if code != 200 || data["hits"].(float64) != 1 || data["misses"].(float64) != 2 {
		t.Fatalf("stats = %d %v", code, out)
	}
	code, out = adminCall(t, "GET", adm+"/admin/cache/stats/cached", "")
	if code != 200 || out["bucket"] != "cached" {
		t.Fatalf("bucket stats = %d %v", code, out)
	}
	if code, _ := adminCall(t, "GET", adm+"/admin/cache/stats/nope", ""); code != 404 {
		t.Fatalf("stats of an unknown bucket = %d", code)
	}

	code, out = adminCall(t, "POST", adm+"/admin/cache/purge/cached/dir/b.txt", "")
	if code != 200 || out["deleted"] != true {
		t.Fatalf("purge key = %d %v", code, out)
	}
	expectGet(t, st, "/cached/dir/b.txt", b, "MISS")
	expectGet(t, st, "/cached/a.txt", a, "HIT")

	code, out = adminCall(t, "POST", adm+"/admin/cache/purge/cached", "")
	if code != 200 || out["entries_deleted"].(float64) != 2 {
		t.Fatalf("purge bucket = %d %v", code, out)
	}
	expectGet(t, st, "/cached/a.txt", a, "MISS")
	if code, _ := adminCall(t, "POST", adm+"/admin/cache/purge", ""); code != 200 {
		t.Fatalf("purge all = %d", code)
	}
	expectGet(t, st, "/cached/a.txt", a, "MISS")
	if gets, _ := s3c.count("/" + bucket + "/a.txt"); gets != 3 {
		t.Fatalf("a.txt S3 GETs = %d, want 3", gets)
	}
}

func TestCachePrewarm(t *testing.T) {
	objs := map[string][]byte{}
	for i := range 12 {
		objs[fmt.Sprintf("warm/%02d.bin", i)] = random(2000 + i)
	}
	objs["cold/x.bin"] = random(100)
	bucket := cacheBucket(t, objs)
	s3c := newS3Counter(t)
	st := startCacheStack(t, bucket, s3c.URL, cacheStackOpts{layers: "memory"})
	adm := cacheAdmin(t, st)
	code, out := adminCall(t, "POST", adm+"/admin/cache/prewarm", `{"bucket":"cached","path":"warm/"}`)
	if code != 201 {
		t.Fatalf("prewarm = %d %v", code, out)
	}
	id, _ := out["task_id"].(string)
	var status map[string]any
	eventually(t, "the prewarm task to finish", func() bool {
		_, status = adminCall(t, "GET", adm+"/admin/cache/prewarm/status/"+id, "")
		return status["state"] != "running"
	})
	if status["state"] != "completed" || status["files_cached"].(float64) != 12 {
		t.Fatalf("task = %v", status)
	}
	for k, v := range objs {
		if strings.HasPrefix(k, "warm/") {
			expectGet(t, st, "/cached/"+k, v, "HIT")
			if gets, _ := s3c.count("/" + bucket + "/" + k); gets != 1 {
				t.Fatalf("%s: %d S3 GETs, want the prewarm's one", k, gets)
			}
		}
	}
	expectGet(t, st, "/cached/cold/x.bin", objs["cold/x.bin"], "MISS")
	if code, _ := adminCall(t, "POST", adm+"/admin/cache/prewarm", `{"bucket":"nope"}`); code != 404 {
		t.Fatalf("prewarm of an unknown bucket = %d", code)
	}
	if code, _ := adminCall(t, "POST", adm+"/admin/cache/prewarm", `{"path":"x"}`); code != 400 {
		t.Fatalf("prewarm without a bucket = %d", code)
	}
	if code, _ := adminCall(t, "GET", adm+"/admin/cache/prewarm/status/nope", ""); code != 404 {
		t.Fatalf("status of an unknown task = %d", code)
	}
}

func TestCacheRestartKeepsDiskEntries(t *testing.T) {
	body := random(300_000)
	bucket := cacheBucket(t, map[string][]byte{"keep.bin": body})
	s3c := newS3Counter(t)
	dir := t.TempDir()
	st := startCacheStackNoCleanup(t, bucket, s3c.URL, cacheStackOpts{layers: "memory, disk", dir: dir})
	expectGet(t, st, "/cached/keep.bin", body, "MISS")
	st.Close() // flushes the background disk write and the index

	st2 := startCacheStack(t, bucket, s3c.URL, cacheStackOpts{layers: "memory, disk", dir: dir})
	expectGet(t, st2, "/cached/keep.bin", body, "HIT")
	if gets, _ := s3c.count("/" + bucket + "/keep.bin"); gets != 1 {
		t.Fatalf("S3 GETs = %d after a restart, want 1", gets)
	}
}

func TestCacheRevalidatesByETagAfterTTL(t *testing.T) {
	v1, v2 := random(800), random(900)
	bucket := cacheBucket(t, map[string][]byte{"doc.txt": v1})
	s3c := newS3Counter(t)
	st := startCacheStack(t, bucket, s3c.URL, cacheStackOpts{layers: "memory", bucketExtra: "cache: {ttl_seconds: 1}"})
	path := "/" + bucket + "/doc.txt"
	expectGet(t, st, "/cached/doc.txt", v1, "MISS")
	// After the TTL an unchanged object is revalidated (conditional GET, 304) and served from cache.
	eventually(t, "a revalidation", func() bool {
		expectGet(t, st, "/cached/doc.txt", v1, "HIT")
		_, conds := s3c.count(path)
		return conds > 0
	})
	// A changed object is picked up after the TTL.
	if err := s3srv.PutObject(t.Context(), bucket, "doc.txt", v2, "application/octet-stream"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new version", func() bool {
		res, body := do(t, http.MethodGet, st.GatewayURL, "/cached/doc.txt")
		if res.StatusCode != 200 {
			t.Fatalf("status %d", res.StatusCode)
		}
		if !bytes.Equal(body, v1) && !bytes.Equal(body, v2) {
			t.Fatal("body is neither version")
		}
		return bytes.Equal(body, v2)
	})
	before, _ := s3c.count(path)
	expectGet(t, st, "/cached/doc.txt", v2, "HIT")
	if after, _ := s3c.count(path); after != before {
		t.Fatal("the new version was not cached")
	}
}

func TestCacheHonoursNoStoreAndBypass(t *testing.T) {
	bucket := cacheBucket(t, nil)
	body := random(700)
	_, err := s3srv.Client().PutObject(t.Context(), &awss3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String("private.txt"), Body: bytes.NewReader(body), CacheControl: aws.String("no-store"),
	})
	if err != nil {
		t.Fatal(err)
	}
	s3c := newS3Counter(t)
	st := startCacheStack(t, bucket, s3c.URL, cacheStackOpts{layers: "memory"})
	expectGet(t, st, "/cached/private.txt", body, "MISS")
	expectGet(t, st, "/cached/private.txt", body, "MISS")
	if gets, _ := s3c.count("/" + bucket + "/private.txt"); gets != 2 {
		t.Fatalf("no-store object: %d S3 GETs, want 2", gets)
	}
	off := startCacheStack(t, bucket, s3c.URL, cacheStackOpts{layers: "memory", bucketExtra: "cache: {enabled: false}"})
	expectGet(t, off, "/cached/private.txt", body, "BYPASS")
}

func TestCacheRedisSharedBetweenReplicas(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	rd, err := testenv.StartRedis(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	body := random(2000)
	bucket := cacheBucket(t, map[string][]byte{"shared.txt": body})
	s3c := newS3Counter(t)
	a := startCacheStack(t, bucket, s3c.URL, cacheStackOpts{layers: "memory, redis", redis: rd.Addr()})
	b := startCacheStack(t, bucket, s3c.URL, cacheStackOpts{layers: "memory, redis", redis: rd.Addr()})
	expectGet(t, a, "/cached/shared.txt", body, "MISS")
	a.ExtProc.Cache.Flush(ctx) // the Redis write happens in the background
	expectGet(t, b, "/cached/shared.txt", body, "HIT")
	if gets, _ := s3c.count("/" + bucket + "/shared.txt"); gets != 1 {
		t.Fatalf("S3 GETs = %d, want 1 (the second replica reads Redis)", gets)
	}
	// Redis dies: replica b keeps serving from memory (promoted) and new misses still work.
	rd.Close()
	expectGet(t, b, "/cached/shared.txt", body, "HIT")
	other := random(100)
	if err := s3srv.PutObject(ctx, bucket, "other.txt", other, "text/plain"); err != nil {
		t.Fatal(err)
	}
	expectGet(t, b, "/cached/other.txt", other, "MISS")
	expectGet(t, b, "/cached/other.txt", other, "HIT")
}

// TestCacheSurvivesReload: a reload rebuilds the runtime snapshot but not the cache, and
// per-bucket settings apply at once.
func TestCacheSurvivesReload(t *testing.T) {
	body := random(1500)
	bucket := cacheBucket(t, map[string][]byte{"r.txt": body})
	s3c := newS3Counter(t)
	st := startCacheStack(t, bucket, s3c.URL, cacheStackOpts{layers: "memory"})
	expectGet(t, st, "/cached/r.txt", body, "MISS")
	off := []devstack.Bucket{{Name: "cached", S3Bucket: bucket, Endpoint: s3c.URL, Extra: "cache: {enabled: false}"}}
	if err := st.Rewrite(off); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the bucket's cache to turn off", func() bool {
		res, _ := do(t, http.MethodGet, st.GatewayURL, "/cached/r.txt")
		return res.Header.Get("X-Cache") == "BYPASS"
	})
	if err := st.Rewrite([]devstack.Bucket{{Name: "cached", S3Bucket: bucket, Endpoint: s3c.URL}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the cached entry to serve again", func() bool {
		res, _ := do(t, http.MethodGet, st.GatewayURL, "/cached/r.txt")
		return res.Header.Get("X-Cache") == "HIT"
	})
	expectGet(t, st, "/cached/r.txt", body, "HIT")
}
