package s3

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/yatagarasu/yatagarasu/internal/config"
)

// fakeS3 answers GetObject/HeadObject/HeadBucket from a per-test handler and counts requests.
type fakeS3 struct {
	*httptest.Server
	n atomic.Int64
}

func newFake(t *testing.T, h func(n int64, w http.ResponseWriter, r *http.Request)) *fakeS3 {
	return newFakeTB(t, h)
}

func newFakeTB(t testing.TB, h func(n int64, w http.ResponseWriter, r *http.Request)) *fakeS3 {
	t.Helper()
	f := &fakeS3{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h(f.n.Add(1), w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

func okBody(w http.ResponseWriter, body string) {
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set("ETag", `"e"`)
	_, _ = io.WriteString(w, body)
}

func fail(status int) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, `<Error><Code>InternalError</Code><Message>boom</Message></Error>`)
	}
}

type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(_ context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.d = append(s.d, d)
	return nil
}

func (s *sleeps) all() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

// protectedBucket points a bucket at endpoints (replicas when more than one) with fast settings.
func protectedBucket(t testing.TB, sl *sleeps, attempts int, endpoints ...string) *Bucket {
	t.Helper()
	s3cfg := config.S3{
		Timeout: config.Seconds(2 * time.Second), FirstByteTimeout: config.Seconds(300 * time.Millisecond),
		Retry:          config.Retry{MaxAttempts: attempts, InitialBackoffMs: 100, MaxBackoffMs: 150},
		CircuitBreaker: config.CircuitBreaker{FailureThreshold: 3, SuccessThreshold: 1, TimeoutSeconds: config.Seconds(time.Hour), HalfOpenMaxRequests: 1},
	}
	if len(endpoints) == 1 {
		s3cfg.Bucket, s3cfg.Endpoint, s3cfg.AccessKey, s3cfg.SecretKey = "b", endpoints[0], "ak", "sk"
	} else {
		for i, e := range endpoints {
			s3cfg.Replicas = append(s3cfg.Replicas, config.Replica{Name: "r" + strconv.Itoa(i+1), Bucket: "b", Endpoint: e, AccessKey: "ak", SecretKey: "sk", Priority: i + 1})
		}
	}
	b, err := NewBucket(config.Bucket{Name: "g", S3: s3cfg},
		WithSleep(sl.sleep), WithJitter(func(n int64) int64 { return n - 1 }), WithHTTPClient(&http.Client{Transport: &http.Transport{}}))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRetryAbsorbs5xxWithBackoff(t *testing.T) {
	f := newFake(t, func(n int64, w http.ResponseWriter, _ *http.Request) {
		if n <= 2 {
			fail(http.StatusInternalServerError)(w)
			return
		}
		okBody(w, "hello")
	})
	var sl sleeps
	b := protectedBucket(t, &sl, 3, f.URL)
	obj, err := b.Get(context.Background(), "k", Conditions{})
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	body, _ := io.ReadAll(obj.Body)
	obj.Body.Close()
	if string(body) != "hello" || f.n.Load() != 3 {
		t.Fatalf("body %q after %d requests, want hello after 3", body, f.n.Load())
	}
	// Full jitter with the draw fixed at its top: 100ms, then min(200ms, max 150ms).
	if got := sl.all(); len(got) != 2 || got[0] != 100*time.Millisecond || got[1] != 150*time.Millisecond {
		t.Fatalf("backoffs = %v, want [100ms 150ms]", got)
	}
}

func TestRetryExhaustedIs502AndCountsFailures(t *testing.T) {
	f := newFake(t, func(_ int64, w http.ResponseWriter, _ *http.Request) { fail(http.StatusServiceUnavailable)(w) })
	var sl sleeps
	b := protectedBucket(t, &sl, 2, f.URL)
	_, err := b.Head(context.Background(), "k", Conditions{})
	if e := Classify(err); e == nil || e.Status != http.StatusBadGateway {
		t.Fatalf("Classify = %+v, want 502", e)
	}
	if f.n.Load() != 2 {
		t.Fatalf("%d requests, want 2", f.n.Load())
	}
	if _, down := b.Unavailable(); down {
		t.Fatal("breaker open after 2 failures, threshold is 3")
	}
	// One more failure trips the breaker: later calls are refused without reaching S3.
	_, _ = b.Head(context.Background(), "k", Conditions{})
	ra, down := b.Unavailable()
	if !down || ra < time.Minute {
		t.Fatalf("Unavailable = %s, %v; want open with a long Retry-After", ra, down)
	}
	before := f.n.Load()
	_, err = b.Get(context.Background(), "k", Conditions{})
	e := Classify(err)
	if e.Status != http.StatusServiceUnavailable || e.RetryAfter < time.Minute || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Classify = %+v, want 503 with Retry-After", e)
	}
	if f.n.Load() != before {
		t.Fatal("an open breaker still let a request reach S3")
	}
}

func TestClientErrorsAreNotRetriedNorFailures(t *testing.T) {
	f := newFake(t, func(_ int64, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `<Error><Code>NoSuchKey</Code></Error>`)
	})
	var sl sleeps
	b := protectedBucket(t, &sl, 3, f.URL)
	for range 5 {
		_, err := b.Get(context.Background(), "k", Conditions{})
		if e := Classify(err); e.Status != http.StatusNotFound {
			t.Fatalf("status %d, want 404", e.Status)
		}
	}
	if f.n.Load() != 5 || len(sl.all()) != 0 {
		t.Fatalf("%d requests and %d sleeps, want 5 and none", f.n.Load(), len(sl.all()))
	}
	if _, down := b.Unavailable(); down {
		t.Fatal("404s opened the breaker")
	}
}

func TestNoRetryAfterBytes(t *testing.T) {
	f := newFake(t, func(_ int64, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
	})
	var sl sleeps
	b := protectedBucket(t, &sl, 3, f.URL)
	obj, err := b.Get(context.Background(), "k", Conditions{})
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	_, rerr := io.ReadAll(obj.Body)
	obj.Body.Close()
	if rerr == nil {
		t.Fatal("a truncated body read without error")
	}
	if f.n.Load() != 1 {
		t.Fatalf("%d requests: the call was retried after bytes were returned", f.n.Load())
	}
}

func TestHangingBackendTimesOut(t *testing.T) {
	release := make(chan struct{})
	f := newFake(t, func(_ int64, w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	var sl sleeps
	b := protectedBucket(t, &sl, 2, f.URL)
	_, err := b.Get(context.Background(), "k", Conditions{})
	if e := Classify(err); e.Status != http.StatusGatewayTimeout {
		t.Fatalf("Classify = %+v, want 504", e)
	}
	if f.n.Load() != 2 {
		t.Fatalf("%d attempts, want 2", f.n.Load())
	}
}

func TestConnectionRefusedFailsOverToReplica(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close() // nothing listens there now
	replica := newFake(t, func(_ int64, w http.ResponseWriter, _ *http.Request) { okBody(w, "from replica") })
	var sl sleeps
	b := protectedBucket(t, &sl, 2, dead, replica.URL)
	for i := range 4 {
		obj, err := b.Get(context.Background(), "k", Conditions{})
		if err != nil {
			t.Fatalf("Get %d: %v", i, err)
		}
		body, _ := io.ReadAll(obj.Body)
		obj.Body.Close()
		if string(body) != "from replica" {
			t.Fatalf("body %q", body)
		}
	}
	states := b.BackendStates()
	if states[0][1] != "open" || states[1][1] != "closed" {
		t.Fatalf("states = %v, want primary open, replica closed", states)
	}
	// A successful probe would close the primary again; a failed one keeps it out.
	b.ProbeOnce(context.Background(), time.Second)
	if b.BackendStates()[0][1] != "open,probe-failed" {
		t.Fatalf("after probe: %v", b.BackendStates())
	}
}

func TestProbeReturnsTrafficToRecoveredPrimary(t *testing.T) {
	var broken atomic.Bool
	broken.Store(true)
	primary := newFake(t, func(_ int64, w http.ResponseWriter, _ *http.Request) {
		if broken.Load() {
			fail(http.StatusInternalServerError)(w)
			return
		}
		okBody(w, "primary")
	})
	replica := newFake(t, func(_ int64, w http.ResponseWriter, _ *http.Request) { okBody(w, "replica") })
	var sl sleeps
	b := protectedBucket(t, &sl, 2, primary.URL, replica.URL)
	get := func() string {
		obj, err := b.Get(context.Background(), "k", Conditions{})
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		defer obj.Body.Close()
		body, _ := io.ReadAll(obj.Body)
		return string(body)
	}
	for range 3 {
		if got := get(); got != "replica" {
			t.Fatalf("got %q while the primary fails", got)
		}
	}
	b.ProbeOnce(context.Background(), time.Second) // primary still 500: stays out
	if got := get(); got != "replica" {
		t.Fatalf("got %q", got)
	}
	broken.Store(false)
	b.ProbeOnce(context.Background(), time.Second)
	if got := get(); got != "primary" {
		t.Fatalf("got %q after the primary recovered, want primary", got)
	}
}

func TestHealthSurvivesRebuild(t *testing.T) {
	f := newFake(t, func(_ int64, w http.ResponseWriter, _ *http.Request) { fail(http.StatusInternalServerError)(w) })
	h := NewHealth(nil)
	cfg := config.Bucket{Name: "g", S3: config.S3{Bucket: "b", Endpoint: f.URL, AccessKey: "a", SecretKey: "s",
		CircuitBreaker: config.CircuitBreaker{FailureThreshold: 1}}}
	b1, err := NewBucket(cfg, WithHealth(h))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = b1.Head(context.Background(), "k", Conditions{})
	b2, err := NewBucket(cfg, WithHealth(h)) // a reload builds a new Bucket
	if err != nil {
		t.Fatal(err)
	}
	if _, down := b2.Unavailable(); !down {
		t.Fatal("the rebuilt bucket lost its open breaker")
	}
}
