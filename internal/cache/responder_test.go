package cache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/yatagarasu/yatagarasu/internal/httperr"
	"github.com/yatagarasu/yatagarasu/internal/originauth"
	"github.com/yatagarasu/yatagarasu/internal/s3"
)

// mapLayer is a synchronous in-memory Layer for tests.
type mapLayer struct {
	name string
	mu   sync.Mutex
	m    map[Key]*Entry
	max  int64
	gets atomic.Int64
}

func newMapLayer(name string) *mapLayer {
	return &mapLayer{name: name, m: map[Key]*Entry{}, max: 1 << 30}
}

func (l *mapLayer) Name() string { return l.name }
func (l *mapLayer) Get(_ context.Context, k Key) (*Entry, error) {
	l.gets.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.m[k]; ok {
		return e, nil
	}
	return nil, ErrNotFound
}
func (l *mapLayer) Set(_ context.Context, e *Entry) error {
	if e.Size > l.max {
		return ErrTooLarge
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.m[e.Key] = e
	return nil
}
func (l *mapLayer) Delete(_ context.Context, k Key) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.m[k]
	delete(l.m, k)
	return ok, nil
}
func (l *mapLayer) PurgeBucket(_ context.Context, b string) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for k := range l.m {
		if k.Bucket == b {
			delete(l.m, k)
			n++
		}
	}
	return n, nil
}
func (l *mapLayer) Purge(context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	clear(l.m)
	return nil
}
func (l *mapLayer) Stats() LayerStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return LayerStats{Layer: l.name, Items: int64(len(l.m))}
}
func (l *mapLayer) Close() error { return nil }
func (l *mapLayer) has(k Key) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.m[k]
	return ok
}

// fakeS3 serves one object per key, counts GETs, and can hold every GET until released.
type fakeS3 struct {
	mu      sync.Mutex
	objects map[string]fakeObject
	gets    atomic.Int64
	conds   atomic.Int64 // GETs with If-None-Match
	hold    chan struct{}
	err     error
	// failAfter cuts the body after this many bytes (0: never).
	failAfter int
}

type fakeObject struct {
	body []byte
	etag string
	cc   string
}

func (f *fakeS3) put(key string, body []byte, etag, cc string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.objects == nil {
		f.objects = map[string]fakeObject{}
	}
	f.objects[key] = fakeObject{body, etag, cc}
}

func (f *fakeS3) Get(ctx context.Context, key string, cond s3.Conditions) (*s3.Object, error) {
	f.gets.Add(1)
	if cond.IfNoneMatch != "" {
		f.conds.Add(1)
	}
	if f.hold != nil {
		<-f.hold
	}
	f.mu.Lock()
	o, ok := f.objects[key]
	err := f.err
	failAfter := f.failAfter
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, &s3.Error{Status: http.StatusNotFound, Code: "NoSuchKey", Message: "not found"}
	}
	if cond.IfNoneMatch != "" && cond.IfNoneMatch == o.etag {
		return &s3.Object{Status: http.StatusNotModified, ETag: o.etag, ContentLength: -1}, nil
	}
	var body io.Reader = bytes.NewReader(o.body)
	if failAfter > 0 {
		body = io.MultiReader(bytes.NewReader(o.body[:failAfter]), errReader{})
	}
	return &s3.Object{
		Status: http.StatusOK, ContentLength: int64(len(o.body)), ContentType: "application/octet-stream",
		ETag: o.etag, LastModified: "Mon, 02 Jan 2006 15:04:05 GMT", CacheControl: o.cc, Body: io.NopCloser(body),
	}, nil
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type rig struct {
	t      *testing.T
	layers []*mapLayer
	tiered *Tiered
	resp   *Responder
	s3     *fakeS3
	clock  *clock
	pol    Policy
}

func newRig(t *testing.T, layers ...string) *rig {
	r := &rig{t: t, s3: &fakeS3{}, clock: &clock{t: time.Unix(1_800_000_000, 0)},
		pol: Policy{Enabled: true, TTL: time.Minute, MaxItemBytes: 1 << 20}}
	var ls []Layer
	for _, name := range layers {
		l := newMapLayer(name)
		r.layers = append(r.layers, l)
		ls = append(ls, l)
	}
	r.tiered = NewTiered(ls, Options{Now: r.clock.now})
	t.Cleanup(func() { r.tiered.Close() })
	r.resp = NewResponder(r.tiered, ResponderOptions{Policy: func(string) Policy { return r.pol }, Now: r.clock.now})
	return r
}

// get runs one origin request through the responder; served=false means the origin's own path.
func (r *rig) get(method, key string, hdr ...string) (*httptest.ResponseRecorder, bool) {
	req := httptest.NewRequest(method, "/"+key, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	served := r.resp.Serve(w, req, r.s3, originauth.Claims{Bucket: "b", Key: key, RequestID: "rid"})
	return w, served
}

func TestMissThenHitAndByteEquality(t *testing.T) {
	r := newRig(t, "memory")
	body := bytes.Repeat([]byte("0123456789"), 10_000)
	r.s3.put("k", body, `"e1"`, "")
	w, served := r.get(http.MethodGet, "k")
	if !served || w.Code != 200 || w.Header().Get("X-Cache") != XCacheMiss || !bytes.Equal(w.Body.Bytes(), body) {
		t.Fatalf("first GET: served=%v %d %q, %d bytes", served, w.Code, w.Header().Get("X-Cache"), w.Body.Len())
	}
	if w.Header().Get("Content-Length") != strconv.Itoa(len(body)) || w.Header().Get("Etag") != `"e1"` {
		t.Fatalf("miss headers = %v", w.Header())
	}
	w, _ = r.get(http.MethodGet, "k")
	if w.Header().Get("X-Cache") != XCacheHit || !bytes.Equal(w.Body.Bytes(), body) {
		t.Fatalf("second GET: %d %q", w.Code, w.Header().Get("X-Cache"))
	}
	if n := r.s3.gets.Load(); n != 1 {
		t.Fatalf("S3 GETs = %d, want 1", n)
	}
	st := r.tiered.Stats()
	if st.Hits != 1 || st.Misses != 1 || st.Buckets["b"].Hits != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestConcurrentMissesShareOneGet(t *testing.T) {
	r := newRig(t, "memory")
	body := bytes.Repeat([]byte("x"), 200_000)
	r.s3.put("k", body, `"e"`, "")
	r.s3.hold = make(chan struct{})
	const n = 100
	var wg sync.WaitGroup
	results := make([]*httptest.ResponseRecorder, n)
	var entered atomic.Int64
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			entered.Add(1)
			results[i], _ = r.get(http.MethodGet, "k")
		}()
	}
	for r.s3.gets.Load() == 0 || entered.Load() < n {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // let the others reach the singleflight (liveness, not timing)
	close(r.s3.hold)
	wg.Wait()
	for i, w := range results {
		if w.Code != 200 || !bytes.Equal(w.Body.Bytes(), body) {
			t.Fatalf("request %d: %d, %d bytes", i, w.Code, w.Body.Len())
		}
	}
	if got := r.s3.gets.Load(); got != 1 {
		t.Fatalf("S3 GETs = %d, want 1", got)
	}
}

func TestNotCached(t *testing.T) {
	cases := map[string]func(r *rig){
		"no-store":  func(r *rig) { r.s3.put("k", []byte("abc"), `"e"`, "no-store") },
		"private":   func(r *rig) { r.s3.put("k", []byte("abc"), `"e"`, "private, max-age=60") },
		"oversized": func(r *rig) { r.pol.MaxItemBytes = 2; r.s3.put("k", []byte("abc"), `"e"`, "") },
	}
	for name, setup := range cases {
		t.Run(name, func(t *testing.T) {
			r := newRig(t, "memory")
			setup(r)
			w, served := r.get(http.MethodGet, "k")
			if !served || w.Code != 200 || w.Body.String() != "abc" || w.Header().Get("X-Cache") != XCacheMiss {
				t.Fatalf("served=%v %d %q", served, w.Code, w.Body.String())
			}
			if r.layers[0].has(Key{Bucket: "b", Object: "k"}) {
				t.Fatal("entry was cached")
			}
		})
	}
}

func TestFailedBodyIsNotCachedAndAborts(t *testing.T) {
	r := newRig(t, "memory")
	r.s3.put("k", bytes.Repeat([]byte("y"), 100_000), `"e"`, "")
	r.s3.failAfter = 50_000
	func() {
		defer func() {
			if p := recover(); p != http.ErrAbortHandler {
				t.Fatalf("panic = %v, want http.ErrAbortHandler", p)
			}
		}()
		r.get(http.MethodGet, "k")
	}()
	if r.layers[0].has(Key{Bucket: "b", Object: "k"}) {
		t.Fatal("a partial body was cached")
	}
}

func TestS3ErrorsAreRelayedAsJSON(t *testing.T) {
	r := newRig(t, "memory")
	w, served := r.get(http.MethodGet, "absent")
	var b httperr.Body
	if !served || w.Code != 404 || json.Unmarshal(w.Body.Bytes(), &b) != nil || b.Status != 404 || b.RequestID != "rid" {
		t.Fatalf("404: served=%v %d %s", served, w.Code, w.Body)
	}
}

func TestBypassAndPassThrough(t *testing.T) {
	r := newRig(t, "memory")
	r.s3.put("k", []byte("abc"), `"e"`, "")
	r.pol.Enabled = false
	if w, served := r.get(http.MethodGet, "k"); served || w.Header().Get("X-Cache") != XCacheBypass {
		t.Fatalf("disabled bucket: served=%v X-Cache=%q", served, w.Header().Get("X-Cache"))
	}
	r.pol.Enabled = true
	if _, served := r.get(http.MethodGet, "k", "Range", "bytes=0-1"); served {
		t.Fatal("a Range miss must go to S3 as is")
	}
	if _, served := r.get(http.MethodHead, "k"); served {
		t.Fatal("a HEAD miss must go to S3 as is")
	}
}

func TestHitsAnswerConditionalsAndRanges(t *testing.T) {
	r := newRig(t, "memory")
	r.s3.put("k", []byte("0123456789"), `"e1"`, "")
	r.get(http.MethodGet, "k")
	cases := []struct {
		name   string
		method string
		hdr    []string
		status int
		body   string
		check  func(h http.Header) bool
	}{
		{"etag match", "GET", []string{"If-None-Match", `"e1"`}, 304, "", nil},
		{"weak etag list", "GET", []string{"If-None-Match", `W/"x", W/"e1"`}, 304, "", nil},
		{"etag mismatch", "GET", []string{"If-None-Match", `"other"`}, 200, "0123456789", nil},
		{"not modified since", "GET", []string{"If-Modified-Since", "Mon, 02 Jan 2006 15:04:05 GMT"}, 304, "", nil},
		{"modified since", "GET", []string{"If-Modified-Since", "Sun, 01 Jan 2006 00:00:00 GMT"}, 200, "0123456789", nil},
		{"range", "GET", []string{"Range", "bytes=2-4"}, 206, "234", func(h http.Header) bool { return h.Get("Content-Range") == "bytes 2-4/10" }},
		{"suffix range", "GET", []string{"Range", "bytes=-3"}, 206, "789", nil},
		{"unsatisfiable", "GET", []string{"Range", "bytes=20-30"}, 416, "", func(h http.Header) bool {
			return h.Get("Content-Range") == "bytes */10" && h.Get("Content-Type") == "application/json"
		}},
		{"if-match fails", "GET", []string{"If-Match", `"zzz"`}, 412, "", nil},
		{"head", "HEAD", nil, 200, "", func(h http.Header) bool { return h.Get("Content-Length") == "10" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w, served := r.get(c.method, "k", c.hdr...)
			if !served || w.Code != c.status || w.Header().Get("X-Cache") != XCacheHit {
				t.Fatalf("served=%v status %d X-Cache %q, want %d HIT; body %s", served, w.Code, w.Header().Get("X-Cache"), c.status, w.Body)
			}
			if c.status < 400 && w.Body.String() != c.body {
				t.Fatalf("body = %q, want %q", w.Body.String(), c.body)
			}
			if c.status >= 400 {
				var b httperr.Body
				if err := json.Unmarshal(w.Body.Bytes(), &b); err != nil || b.Status != c.status {
					t.Fatalf("error body %q: %v", w.Body, err)
				}
			}
			if c.check != nil && !c.check(w.Header()) {
				t.Fatalf("headers = %v", w.Header())
			}
		})
	}
	if n := r.s3.gets.Load(); n != 1 {
		t.Fatalf("S3 GETs = %d, want 1", n)
	}
}

func TestStaleEntryRevalidation(t *testing.T) {
	r := newRig(t, "memory")
	r.s3.put("k", []byte("v1"), `"e1"`, "max-age=10")
	r.get(http.MethodGet, "k")
	r.clock.add(11 * time.Second)

	// Unchanged: S3 answers 304, the entry is refreshed and served.
	w, _ := r.get(http.MethodGet, "k")
	if w.Code != 200 || w.Body.String() != "v1" || w.Header().Get("X-Cache") != XCacheHit || r.s3.conds.Load() != 1 {
		t.Fatalf("revalidated: %d %q %q conds=%d", w.Code, w.Body, w.Header().Get("X-Cache"), r.s3.conds.Load())
	}
	if w, _ = r.get(http.MethodGet, "k"); r.s3.gets.Load() != 2 || w.Header().Get("X-Cache") != XCacheHit {
		t.Fatalf("refreshed entry must be fresh again: gets=%d", r.s3.gets.Load())
	}

	// Changed: the conditional GET returns the new object, which replaces the entry.
	r.clock.add(11 * time.Second)
	r.s3.put("k", []byte("v2!"), `"e2"`, "max-age=10")
	if w, _ = r.get(http.MethodGet, "k"); w.Body.String() != "v2!" || w.Header().Get("Etag") != `"e2"` {
		t.Fatalf("changed object: %q %v", w.Body, w.Header())
	}
	if w, _ = r.get(http.MethodGet, "k"); w.Body.String() != "v2!" || w.Header().Get("X-Cache") != XCacheHit {
		t.Fatalf("new entry not cached: %q %q", w.Body, w.Header().Get("X-Cache"))
	}

	// S3 down while stale: the stale entry is served and marked STALE.
	r.clock.add(11 * time.Second)
	r.s3.err = &s3.Error{Status: http.StatusGatewayTimeout, Code: "Timeout", Message: "slow"}
	if w, _ = r.get(http.MethodGet, "k"); w.Code != 200 || w.Body.String() != "v2!" || w.Header().Get("X-Cache") != XCacheStale {
		t.Fatalf("stale on error: %d %q %q", w.Code, w.Body, w.Header().Get("X-Cache"))
	}

	// Deleted in S3: 404 and the entry is dropped.
	r.s3.err = nil
	r.s3.mu.Lock()
	delete(r.s3.objects, "k")
	r.s3.mu.Unlock()
	if w, _ = r.get(http.MethodGet, "k"); w.Code != 404 {
		t.Fatalf("deleted object: %d", w.Code)
	}
	if r.layers[0].has(Key{Bucket: "b", Object: "k"}) {
		t.Fatal("entry of a deleted object kept")
	}
}

func TestTieredPromotesLowerHits(t *testing.T) {
	r := newRig(t, "memory", "disk")
	e := NewEntry(Meta{Key: Key{Bucket: "b", Object: "k"}, KeepUntil: r.clock.now().Add(time.Hour), FreshUntil: r.clock.now().Add(time.Hour)}, []byte("x"))
	if err := r.layers[1].Set(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	h, ok := r.tiered.Lookup(context.Background(), e.Key, 1<<20, true)
	if !ok || h.Layer != "disk" {
		t.Fatalf("lookup = %+v, %v", h, ok)
	}
	h.Close()
	r.tiered.Flush(context.Background())
	if !r.layers[0].has(e.Key) {
		t.Fatal("disk hit was not promoted to memory")
	}
	// A new entry goes to the first layer at once and below in the background.
	e2 := NewEntry(Meta{Key: Key{Bucket: "b", Object: "k2"}, KeepUntil: r.clock.now().Add(time.Hour)}, []byte("y"))
	r.tiered.Set(context.Background(), e2)
	if !r.layers[0].has(e2.Key) {
		t.Fatal("Set did not reach the first layer synchronously")
	}
	r.tiered.Flush(context.Background())
	if !r.layers[1].has(e2.Key) {
		t.Fatal("Set did not reach the second layer")
	}
	// Too large for the first layer: stored in the next.
	r.layers[0].max = 0
	e3 := NewEntry(Meta{Key: Key{Bucket: "b", Object: "k3"}, KeepUntil: r.clock.now().Add(time.Hour)}, []byte("zz"))
	r.tiered.Set(context.Background(), e3)
	r.tiered.Flush(context.Background())
	if r.layers[0].has(e3.Key) || !r.layers[1].has(e3.Key) {
		t.Fatal("oversized entry placement wrong")
	}
	if n, _ := r.tiered.PurgeBucket(context.Background(), "b"); n != 3 {
		t.Fatalf("purged %d, want 3", n)
	}
}

func TestWarm(t *testing.T) {
	r := newRig(t, "memory")
	r.s3.put("a", []byte("A"), `"a"`, "")
	r.s3.put("n", []byte("N"), `"n"`, "no-store")
	if ok, err := r.resp.Warm(context.Background(), r.s3, "b", "a"); !ok || err != nil {
		t.Fatalf("warm a = %v, %v", ok, err)
	}
	if ok, _ := r.resp.Warm(context.Background(), r.s3, "b", "a"); ok {
		t.Fatal("warming a fresh entry again must skip it")
	}
	if ok, err := r.resp.Warm(context.Background(), r.s3, "b", "n"); ok || err != nil {
		t.Fatalf("warm no-store = %v, %v", ok, err)
	}
	if _, err := r.resp.Warm(context.Background(), r.s3, "b", "missing"); err == nil {
		t.Fatal("warming a missing object must fail")
	}
	if n := r.s3.gets.Load(); n != 3 {
		t.Fatalf("S3 GETs = %d, want 3", n)
	}
}

func TestFailedSmallBodyIs502AndNotCached(t *testing.T) {
	for _, hdr := range [][]string{nil, {"If-None-Match", `"other"`}} {
		r := newRig(t, "memory")
		r.s3.put("k", bytes.Repeat([]byte("y"), 4<<10), `"e"`, "")
		r.s3.failAfter = 2 << 10
		w, served := r.get(http.MethodGet, "k", hdr...)
		if !served || w.Code != http.StatusBadGateway {
			t.Fatalf("%v: served=%v status=%d, want a 502 answered by the cache", hdr, served, w.Code)
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json" || w.Header().Get("X-Request-Id") != "rid" {
			t.Fatalf("%v: Content-Type %q X-Request-Id %q", hdr, ct, w.Header().Get("X-Request-Id"))
		}
		if w.Header().Get("Etag") != "" || w.Header().Get("Content-Length") == "4096" {
			t.Fatalf("%v: the 502 carries the object's headers: %v", hdr, w.Header())
		}
		if r.layers[0].has(Key{Bucket: "b", Object: "k"}) {
			t.Fatalf("%v: a partial body was cached", hdr)
		}
	}
}
