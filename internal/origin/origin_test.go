package origin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/yatagarasu/yatagarasu/internal/config"
	"github.com/yatagarasu/yatagarasu/internal/httperr"
	"github.com/yatagarasu/yatagarasu/internal/originauth"
	"github.com/yatagarasu/yatagarasu/internal/s3"
	"github.com/yatagarasu/yatagarasu/internal/testenv"
)

const (
	s3Bucket = "origin-test"
	secret   = "0123456789abcdef0123456789abcdef-origin-test"
	bigSize  = 64 << 20
	bigKey   = "big/64mib.bin"
)

var (
	// env is the versitygw shared by the package's tests, started in TestMain.
	env *testenv.S3
	// bigSum is the sha256 of the 64 MiB object; the bytes themselves are not kept in memory.
	bigSum [32]byte
	// clock is the fixed time handlers check signatures against.
	clock = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	// objects are the small objects TestMain stores, key → body.
	objects = map[string][]byte{
		"small.txt":                         randomBytes(1, 1024),
		"other.txt":                         []byte("this is the other object"),
		"with space.txt":                    []byte("space"),
		"ユニコード/ファイル.txt":                    []byte("unicode"),
		"a+b.txt":                           []byte("plus"),
		"literal%2Fslash.txt":               []byte("percent-2F"),
		"many/slashes/in/this/key/file.txt": []byte("deep"),
		"odd chars !$&'()*,;=@~[]{}^`|.txt": []byte("sub-delims"),
	}
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var err error
	if env, err = testenv.StartS3(ctx, testenv.Options{}); err != nil {
		fmt.Fprintln(os.Stderr, "start versitygw:", err)
		return 1
	}
	defer env.Close()
	if err := setup(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

func setup(ctx context.Context) error {
	if err := env.CreateBucket(ctx, s3Bucket); err != nil {
		return err
	}
	for k, v := range objects {
		if err := env.PutObject(ctx, s3Bucket, k, v, "text/plain"); err != nil {
			return err
		}
	}
	big := make([]byte, bigSize)
	_, _ = rand.NewChaCha8([32]byte{7}).Read(big)
	bigSum = sha256.Sum256(big)
	return env.PutObject(ctx, s3Bucket, bigKey, big, "application/octet-stream")
}

func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{byte(seed)}).Read(b)
	return b
}

// fixture is one origin handler behind a real loopback HTTP server.
type fixture struct {
	srv     *httptest.Server
	signer  *originauth.Signer
	reg     *prometheus.Registry
	lookups atomic.Int64 // bucket lookups: none may happen for refused requests
	s3Calls atomic.Int64 // HTTP requests sent to S3
	bodies  *bodyTracker
	done    chan struct{} // receives after every ServeHTTP returns
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{
		signer: originauth.NewSigner(secret, 30*time.Second),
		reg:    prometheus.NewRegistry(),
		bodies: &bodyTracker{},
		done:   make(chan struct{}, 64),
	}
	counting := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		f.s3Calls.Add(1)
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err == nil {
			resp.Body = f.bodies.wrap(resp.Body)
		}
		return resp, err
	})}
	mk := func(name string, mutate func(*config.Bucket)) *s3.Bucket {
		cfg := env.BucketConfig(name, s3Bucket)
		if mutate != nil {
			mutate(&cfg)
		}
		b, err := s3.NewBucket(cfg, s3.WithHTTPClient(counting))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	buckets := map[string]*s3.Bucket{
		"media":    mk("media", nil),
		"badcreds": mk("badcreds", func(c *config.Bucket) { c.S3.SecretKey = "definitely-not-the-secret" }),
		"slow": mk("slow", func(c *config.Bucket) {
			c.S3.Endpoint = testenv.BlackHole(t)
			c.S3.Timeout = config.Seconds(100 * time.Millisecond)
		}),
	}
	h := New(f.signer, func(name string) (*s3.Bucket, bool) {
		f.lookups.Add(1)
		b, ok := buckets[name]
		return b, ok
	}, nil, f.reg, func() time.Time { return clock })
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { f.done <- struct{}{} }()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// request builds a request to path on the fixture, signed for bucket/key at time at (zero: no
// signature).
func (f *fixture) request(t *testing.T, method, path, bucket, key string, at time.Time) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !at.IsZero() {
		for _, kv := range f.signer.Headers(originauth.Claims{Method: method, Bucket: bucket, Key: key, RequestID: "req-" + t.Name(), Time: at}) {
			req.Header.Set(kv[0], kv[1])
		}
	}
	return req
}

// do sends req and returns the response with its whole body (for small answers).
func (f *fixture) do(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	<-f.done
	return resp, body
}

func (f *fixture) get(t *testing.T, key string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req := f.request(t, http.MethodGet, "/media/"+key, "media", key, clock)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return f.do(t, req)
}

func assertJSONError(t *testing.T, resp *http.Response, body []byte, status int, message string) httperr.Body {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != httperr.ContentType {
		t.Errorf("content type = %q, want %q", ct, httperr.ContentType)
	}
	var b httperr.Body
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatalf("error body %q is not JSON: %v", body, err)
	}
	if b.Status != status || b.Error != http.StatusText(status) {
		t.Errorf("error body = %+v, want status %d", b, status)
	}
	if message != "" && b.Message != message {
		t.Errorf("message = %q, want %q", b.Message, message)
	}
	return b
}

func TestRefusesUnsignedTamperedAndExpired(t *testing.T) {
	f := newFixture(t)
	const notSigned = "request is not signed by the gateway"

	resp, body := f.do(t, f.request(t, http.MethodGet, "/media/small.txt", "", "", time.Time{}))
	assertJSONError(t, resp, body, http.StatusForbidden, notSigned)

	tampered := f.request(t, http.MethodGet, "/media/small.txt", "media", "small.txt", clock)
	tampered.Header.Set(originauth.HeaderAuth, strings.Replace(tampered.Header.Get(originauth.HeaderAuth), "key=small.txt", "key=other.txt", 1))
	resp, body = f.do(t, tampered)
	assertJSONError(t, resp, body, http.StatusForbidden, notSigned)

	otherBucket := f.request(t, http.MethodGet, "/media/small.txt", "media", "small.txt", clock)
	otherBucket.Header.Set(originauth.HeaderBucket, "badcreds")
	resp, body = f.do(t, otherBucket)
	assertJSONError(t, resp, body, http.StatusForbidden, notSigned)

	// Signed for GET, replayed as HEAD.
	replayed := f.request(t, http.MethodGet, "/media/small.txt", "media", "small.txt", clock)
	replayed.Method = http.MethodHead
	resp, _ = f.do(t, replayed)
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("GET signature used for HEAD: status %d, want 403", resp.StatusCode)
	}

	expired := f.request(t, http.MethodGet, "/media/small.txt", "media", "small.txt", clock.Add(-time.Hour))
	expired.Header.Set("X-Request-Id", "envoy-id-1")
	resp, body = f.do(t, expired)
	b := assertJSONError(t, resp, body, http.StatusForbidden, "signature expired")
	if b.RequestID != "envoy-id-1" {
		t.Errorf("request_id = %q, want Envoy's id", b.RequestID)
	}

	if n := f.lookups.Load(); n != 0 {
		t.Errorf("%d bucket lookups for refused requests, want 0", n)
	}
	if n := f.s3Calls.Load(); n != 0 {
		t.Errorf("%d S3 calls for refused requests, want 0", n)
	}
}

func TestMethodAndBucket(t *testing.T) {
	f := newFixture(t)
	resp, body := f.do(t, f.request(t, http.MethodPost, "/media/small.txt", "media", "small.txt", clock))
	assertJSONError(t, resp, body, http.StatusMethodNotAllowed, "")
	if got := resp.Header.Get("Allow"); got != "GET, HEAD" {
		t.Errorf("Allow = %q", got)
	}
	resp, body = f.do(t, f.request(t, http.MethodGet, "/nope/small.txt", "nope", "small.txt", clock))
	b := assertJSONError(t, resp, body, http.StatusNotFound, "")
	if b.RequestID != "req-"+t.Name() {
		t.Errorf("request_id = %q", b.RequestID)
	}
	if n := f.s3Calls.Load(); n != 0 {
		t.Errorf("%d S3 calls, want 0", n)
	}
}

func TestGetSmallObjectAndKeys(t *testing.T) {
	f := newFixture(t)
	for key, want := range objects {
		t.Run(key, func(t *testing.T) {
			resp, body := f.get(t, key)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status = %d, body %s", resp.StatusCode, body)
			}
			if !bytes.Equal(body, want) {
				t.Fatalf("body = %q, want %q", body, want)
			}
			for name, wantV := range map[string]string{
				"Content-Type":   "text/plain",
				"Content-Length": fmt.Sprint(len(want)),
				"X-Cache":        "MISS",
				"X-Request-Id":   "req-" + t.Name(),
				"Accept-Ranges":  "bytes",
			} {
				if got := resp.Header.Get(name); got != wantV {
					t.Errorf("%s = %q, want %q", name, got, wantV)
				}
			}
			if resp.Header.Get("ETag") == "" || resp.Header.Get("Last-Modified") == "" {
				t.Errorf("ETag/Last-Modified missing: %v", resp.Header)
			}
		})
	}
}

func TestHead(t *testing.T) {
	f := newFixture(t)
	resp, body := f.do(t, f.request(t, http.MethodHead, "/media/small.txt", "media", "small.txt", clock))
	if resp.StatusCode != http.StatusOK || len(body) != 0 {
		t.Fatalf("HEAD status %d with %d body bytes", resp.StatusCode, len(body))
	}
	if resp.ContentLength != 1024 || resp.Header.Get("ETag") == "" {
		t.Errorf("HEAD content-length %d etag %q", resp.ContentLength, resp.Header.Get("ETag"))
	}
	resp, _ = f.do(t, f.request(t, http.MethodHead, "/media/none", "media", "none", clock))
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("HEAD of a missing key: %d, want 404", resp.StatusCode)
	}
}

// The object comes from the signed claims; the URL path the client sent is ignored.
func TestURLPathIgnored(t *testing.T) {
	f := newFixture(t)
	req := f.request(t, http.MethodGet, "/media/other.txt", "media", "small.txt", clock)
	resp, body := f.do(t, req)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, objects["small.txt"]) {
		t.Fatalf("got status %d body %q; want small.txt's bytes", resp.StatusCode, body)
	}
	req = f.request(t, http.MethodGet, "/badcreds/other.txt?x-id=GetObject&key=other.txt", "media", "small.txt", clock)
	resp, body = f.do(t, req)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, objects["small.txt"]) {
		t.Fatalf("query/path: got status %d body %q; want small.txt's bytes", resp.StatusCode, body)
	}
}

func TestRangeAndConditionals(t *testing.T) {
	f := newFixture(t)
	small := objects["small.txt"]
	resp, body := f.get(t, "small.txt", "Range", "bytes=100-199")
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, small[100:200]) {
		t.Fatalf("range: status %d, %d bytes", resp.StatusCode, len(body))
	}
	if cr := resp.Header.Get("Content-Range"); cr != "bytes 100-199/1024" {
		t.Errorf("Content-Range = %q", cr)
	}
	etag := resp.Header.Get("ETag")

	resp, body = f.get(t, "small.txt", "If-None-Match", etag)
	if resp.StatusCode != http.StatusNotModified || len(body) != 0 {
		t.Fatalf("If-None-Match: status %d, %d bytes", resp.StatusCode, len(body))
	}
	if resp.Header.Get("ETag") != etag || resp.Header.Get("X-Cache") != "MISS" {
		t.Errorf("304 headers: %v", resp.Header)
	}

	resp, body = f.get(t, "small.txt", "If-Match", `"not-the-etag"`)
	assertJSONError(t, resp, body, http.StatusPreconditionFailed, "")

	resp, body = f.get(t, "small.txt", "Range", "bytes=5000-")
	assertJSONError(t, resp, body, http.StatusRequestedRangeNotSatisfiable, "")
}

func TestS3Failures(t *testing.T) {
	f := newFixture(t)
	resp, body := f.get(t, "no/such/object.txt")
	b := assertJSONError(t, resp, body, http.StatusNotFound, "object not found")
	if b.RequestID != "req-"+t.Name() || resp.Header.Get("X-Request-Id") != b.RequestID {
		t.Errorf("404 request id: body %q header %q", b.RequestID, resp.Header.Get("X-Request-Id"))
	}

	req := f.request(t, http.MethodGet, "/badcreds/small.txt", "badcreds", "small.txt", clock)
	resp, body = f.do(t, req)
	assertJSONError(t, resp, body, http.StatusBadGateway, "S3 rejected the gateway's credentials")
	if bytes.Contains(body, []byte("definitely-not-the-secret")) || bytes.Contains(body, []byte(env.AccessKey)) {
		t.Errorf("502 body leaks credentials: %s", body)
	}

	req = f.request(t, http.MethodGet, "/slow/small.txt", "slow", "small.txt", clock)
	resp, body = f.do(t, req)
	assertJSONError(t, resp, body, http.StatusGatewayTimeout, "")
}

// A 64 MiB object arrives byte-identical while the handler's heap stays far below its size.
func TestLargeObjectStreamsInBoundedMemory(t *testing.T) {
	f := newFixture(t)
	req := f.request(t, http.MethodGet, "/media/"+bigKey, "media", bigKey, clock)

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse

	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ContentLength != bigSize {
		t.Fatalf("status %d content-length %d", resp.StatusCode, resp.ContentLength)
	}
	h := sha256.New()
	chunk := make([]byte, 256<<10)
	var peak uint64
	var read int64
	for {
		n, err := io.ReadFull(resp.Body, chunk)
		h.Write(chunk[:n])
		read += int64(n)
		if read%(4<<20) == 0 || err != nil {
			// Sample live heap mid-transfer: collect first so only memory still referenced counts.
			runtime.GC()
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			t.Fatalf("read body after %d bytes: %v", read, err)
		}
	}
	<-f.done
	if read != bigSize {
		t.Fatalf("read %d bytes, want %d", read, bigSize)
	}
	if [32]byte(h.Sum(nil)) != bigSum {
		t.Fatal("64 MiB body differs from the stored object")
	}
	growth := int64(peak) - int64(base)
	t.Logf("heap in use: base %d KiB, peak %d KiB, growth %d KiB", base>>10, peak>>10, growth>>10)
	if growth >= 8<<20 {
		t.Fatalf("heap grew by %d KiB while streaming 64 MiB; the body is being buffered", growth>>10)
	}
	if got := counterValue(t, f.reg, "yatagarasu_origin_response_bytes_total", map[string]string{"bucket": "media"}); got != bigSize {
		t.Errorf("bytes sent metric = %v, want %d", got, bigSize)
	}
}

// When the client goes away mid-body the handler stops and closes the S3 body.
func TestClientGoneMidBody(t *testing.T) {
	f := newFixture(t)
	req := f.request(t, http.MethodGet, "/media/"+bigKey, "media", bigKey, clock)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close() // not read to the end: the transport closes the connection
	<-f.done          // the handler returned instead of pushing 63 more MiB
	if open := f.bodies.open(); open != 0 {
		t.Errorf("%d S3 bodies left open", open)
	}
	sent := counterValue(t, f.reg, "yatagarasu_origin_response_bytes_total", map[string]string{"bucket": "media"})
	if sent >= bigSize {
		t.Errorf("sent %v bytes to a client that left after 1 MiB", sent)
	}
}

func TestMetrics(t *testing.T) {
	f := newFixture(t)
	f.get(t, "small.txt")
	f.get(t, "small.txt")
	f.get(t, "missing.txt")
	f.do(t, f.request(t, http.MethodGet, "/media/x", "", "", time.Time{}))

	for _, tc := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"bucket": "media", "status": "200"}, 2},
		{map[string]string{"bucket": "media", "status": "404"}, 1},
		{map[string]string{"bucket": noBucket, "status": "403"}, 1},
	} {
		if got := counterValue(t, f.reg, "yatagarasu_origin_requests_total", tc.labels); got != tc.want {
			t.Errorf("requests_total%v = %v, want %v", tc.labels, got, tc.want)
		}
	}
	if got := counterValue(t, f.reg, "yatagarasu_origin_response_bytes_total", map[string]string{"bucket": "media"}); got != 2048 {
		t.Errorf("bytes sent = %v, want 2048", got)
	}
	if got := histogramCount(t, f.reg, "yatagarasu_origin_s3_request_duration_seconds", map[string]string{"bucket": "media", "operation": "get"}); got != 3 {
		t.Errorf("s3 latency observations = %d, want 3", got)
	}
	// A second handler on the same registry (a config reload) reuses the collectors.
	New(f.signer, func(string) (*s3.Bucket, bool) { return nil, false }, nil, f.reg, time.Now)
	if got := counterValue(t, f.reg, "yatagarasu_origin_requests_total", map[string]string{"bucket": "media", "status": "200"}); got != 2 {
		t.Errorf("after re-registration requests_total = %v, want 2", got)
	}
}

func findMetric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			return m
		}
	}
	return nil
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	if m := findMetric(t, reg, name, labels); m != nil {
		return m.GetCounter().GetValue()
	}
	return 0
}

func histogramCount(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) uint64 {
	t.Helper()
	if m := findMetric(t, reg, name, labels); m != nil {
		return m.GetHistogram().GetSampleCount()
	}
	return 0
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// bodyTracker counts S3 response bodies not yet closed.
type bodyTracker struct{ n atomic.Int64 }

func (b *bodyTracker) wrap(rc io.ReadCloser) io.ReadCloser {
	b.n.Add(1)
	return &trackedBody{ReadCloser: rc, t: b}
}

func (b *bodyTracker) open() int64 { return b.n.Load() }

type trackedBody struct {
	io.ReadCloser
	t    *bodyTracker
	once sync.Once
}

func (tb *trackedBody) Close() error {
	tb.once.Do(func() { tb.t.n.Add(-1) })
	return tb.ReadCloser.Close()
}
