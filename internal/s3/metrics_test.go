package s3

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/yatagarasu/yatagarasu/internal/config"
)

func deadEndpoint(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + l.Addr().String()
	l.Close() // nothing listens there now
	return addr
}

func gauge(v *prometheus.GaugeVec, labels ...string) float64 {
	return testutil.ToFloat64(v.WithLabelValues(labels...))
}

func counter(v *prometheus.CounterVec, labels ...string) float64 {
	return testutil.ToFloat64(v.WithLabelValues(labels...))
}

func TestMetricsRetriesOn5xx(t *testing.T) {
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
	obj.Body.Close()
	m := b.health.metrics
	if got := counter(m.retries, "g", "default", "status_5xx"); got != 2 {
		t.Fatalf("retries{status_5xx} = %v, want 2", got)
	}
	if got := testutil.CollectAndCount(m.failovers); got != 0 {
		t.Fatalf("%d failover series with one backend, want none", got)
	}
	// The exhausted last attempt is not a retry.
	f2 := newFake(t, func(_ int64, w http.ResponseWriter, _ *http.Request) { fail(http.StatusBadGateway)(w) })
	b2 := protectedBucket(t, &sl, 2, f2.URL)
	_, _ = b2.Head(context.Background(), "k", Conditions{})
	if got := counter(b2.health.metrics.retries, "g", "default", "status_5xx"); got != 1 {
		t.Fatalf("retries after 2 failed attempts = %v, want 1", got)
	}
}

func TestMetricsRetryReasonTimeout(t *testing.T) {
	release := make(chan struct{})
	f := newFake(t, func(_ int64, _ http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	var sl sleeps
	b := protectedBucket(t, &sl, 2, f.URL)
	_, _ = b.Get(context.Background(), "k", Conditions{})
	m := b.health.metrics
	if got := counter(m.retries, "g", "default", "timeout"); got != 1 {
		t.Fatalf("retries{timeout} = %v, want 1", got)
	}
	if got := counter(m.retries, "g", "default", "status_5xx"); got != 0 {
		t.Fatalf("retries{status_5xx} = %v, want 0", got)
	}
}

func TestMetricsBreakerStateGauge(t *testing.T) {
	var broken atomic.Bool
	broken.Store(true)
	f := newFake(t, func(_ int64, w http.ResponseWriter, _ *http.Request) {
		if broken.Load() {
			fail(http.StatusServiceUnavailable)(w)
			return
		}
		okBody(w, "")
	})
	var sl sleeps
	b := protectedBucket(t, &sl, 1, f.URL)
	m := b.health.metrics
	if got := gauge(m.breaker, "g", "default"); got != 0 {
		t.Fatalf("new breaker gauge = %v, want 0 (closed)", got)
	}
	for range 3 { // failure_threshold
		_, _ = b.Head(context.Background(), "k", Conditions{})
	}
	if got := gauge(m.breaker, "g", "default"); got != 2 {
		t.Fatalf("breaker gauge after 3 failures = %v, want 2 (open)", got)
	}
	broken.Store(false)
	b.ProbeOnce(context.Background(), time.Second) // recovery rebuilds the breaker
	if got := gauge(m.breaker, "g", "default"); got != 0 {
		t.Fatalf("breaker gauge after probe recovery = %v, want 0", got)
	}
}

func TestMetricsBreakerHalfOpen(t *testing.T) {
	f := newFake(t, func(_ int64, w http.ResponseWriter, _ *http.Request) { fail(http.StatusInternalServerError)(w) })
	h := NewHealth(nil)
	cfg := config.Bucket{Name: "g", S3: config.S3{Bucket: "b", Endpoint: f.URL, AccessKey: "a", SecretKey: "s",
		Retry:          config.Retry{MaxAttempts: 1},
		CircuitBreaker: config.CircuitBreaker{FailureThreshold: 1, TimeoutSeconds: config.Seconds(time.Millisecond)}}}
	b, err := NewBucket(cfg, WithHealth(h))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = b.Head(context.Background(), "k", Conditions{})
	if got := gauge(h.metrics.breaker, "g", "default"); got != 2 {
		t.Fatalf("gauge = %v, want 2 (open)", got)
	}
	// gobreaker moves to half-open lazily once its timeout passed, on the next state read.
	deadline := time.Now().Add(5 * time.Second)
	for b.BackendStates()[0][1] != "half-open" && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := gauge(h.metrics.breaker, "g", "default"); got != 1 {
		t.Fatalf("gauge = %v in state %v, want 1 (half-open)", got, b.BackendStates())
	}
}

func TestMetricsFailoverCounted(t *testing.T) {
	replica := newFake(t, func(_ int64, w http.ResponseWriter, _ *http.Request) { okBody(w, "from replica") })
	var sl sleeps
	b := protectedBucket(t, &sl, 2, deadEndpoint(t), replica.URL)
	for range 4 {
		obj, err := b.Get(context.Background(), "k", Conditions{})
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		_, _ = io.Copy(io.Discard, obj.Body)
		obj.Body.Close()
	}
	m := b.health.metrics
	// The first three calls fail over after a refused connect; then the primary's breaker is
	// open and the fourth call goes straight to the replica, which is not a failover.
	if got := counter(m.failovers, "g", "r1", "r2"); got != 3 {
		t.Fatalf("failovers{r1→r2} = %v, want 3", got)
	}
	if got := counter(m.retries, "g", "r1", "connect"); got != 3 {
		t.Fatalf("retries{r1,connect} = %v, want 3", got)
	}
	if got := gauge(m.breaker, "g", "r1"); got != 2 {
		t.Fatalf("primary breaker gauge = %v, want 2", got)
	}
	if got := gauge(m.breaker, "g", "r2"); got != 0 {
		t.Fatalf("replica breaker gauge = %v, want 0", got)
	}
}

func TestMetricsProbeBackendUp(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	f := newFake(t, func(_ int64, w http.ResponseWriter, _ *http.Request) {
		if down.Load() {
			fail(http.StatusInternalServerError)(w)
			return
		}
		okBody(w, "")
	})
	var sl sleeps
	b := protectedBucket(t, &sl, 1, deadEndpoint(t), f.URL)
	m := b.health.metrics
	b.ProbeOnce(context.Background(), time.Second)
	if a, c := gauge(m.up, "g", "r1"), gauge(m.up, "g", "r2"); a != 0 || c != 0 {
		t.Fatalf("up = %v, %v after failed probes, want 0, 0", a, c)
	}
	down.Store(false)
	b.ProbeOnce(context.Background(), time.Second)
	if a, c := gauge(m.up, "g", "r1"), gauge(m.up, "g", "r2"); a != 0 || c != 1 {
		t.Fatalf("up = %v, %v, want 0 (refused), 1 (recovered)", a, c)
	}
}

func TestMetricsRebuiltBreakerOwnsGauge(t *testing.T) {
	f := newFake(t, func(_ int64, w http.ResponseWriter, _ *http.Request) { fail(http.StatusInternalServerError)(w) })
	h := NewHealth(nil)
	cfg := config.Bucket{Name: "g", S3: config.S3{Bucket: "b", Endpoint: f.URL, AccessKey: "a", SecretKey: "s",
		Retry: config.Retry{MaxAttempts: 1}, CircuitBreaker: config.CircuitBreaker{FailureThreshold: 2}}}
	old, err := NewBucket(cfg, WithHealth(h))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = old.Head(context.Background(), "k", Conditions{})
	// A reload with other breaker settings builds a fresh, closed breaker for the same labels.
	cfg.S3.CircuitBreaker.FailureThreshold = 5
	if _, err := NewBucket(cfg, WithHealth(h)); err != nil {
		t.Fatal(err)
	}
	// An in-flight request on the old Bucket trips the old breaker: the gauge must keep showing
	// the new one.
	_, _ = old.Head(context.Background(), "k", Conditions{})
	if old.BackendStates()[0][1] != "open" {
		t.Fatalf("old breaker %v, want open", old.BackendStates())
	}
	if got := gauge(h.metrics.breaker, "g", "default"); got != 0 {
		t.Fatalf("gauge = %v, want 0 from the current (closed) breaker", got)
	}
	// The same settings again keep the new state and its gauge.
	if _, err := NewBucket(cfg, WithHealth(h)); err != nil {
		t.Fatal(err)
	}
	if got := gauge(h.metrics.breaker, "g", "default"); got != 0 {
		t.Fatalf("gauge after an unchanged reload = %v, want 0", got)
	}
}

func TestMetricsRegisterAndLint(t *testing.T) {
	f := newFake(t, func(_ int64, w http.ResponseWriter, _ *http.Request) { fail(http.StatusInternalServerError)(w) })
	h := NewHealth(nil)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(h)
	cfg := config.Bucket{Name: "g", S3: config.S3{Bucket: "b", Endpoint: f.URL, AccessKey: "a", SecretKey: "s",
		Retry: config.Retry{MaxAttempts: 2}, CircuitBreaker: config.CircuitBreaker{FailureThreshold: 2}}}
	var sl sleeps
	b, err := NewBucket(cfg, WithHealth(h), WithSleep(sl.sleep))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = b.Head(context.Background(), "k", Conditions{})
	b.ProbeOnce(context.Background(), time.Second)
	want := `
# HELP yatagarasu_s3_backend_up Result of the last background probe (HeadBucket) of each S3 backend: 1 up, 0 down.
# TYPE yatagarasu_s3_backend_up gauge
yatagarasu_s3_backend_up{backend="default",bucket="g"} 0
# HELP yatagarasu_s3_breaker_state Circuit breaker state of each S3 backend: 0 closed, 1 half-open, 2 open.
# TYPE yatagarasu_s3_breaker_state gauge
yatagarasu_s3_breaker_state{backend="default",bucket="g"} 2
# HELP yatagarasu_s3_retries_total S3 attempts retried after a backend fault, by the backend that failed and why (connect, timeout, status_5xx).
# TYPE yatagarasu_s3_retries_total counter
yatagarasu_s3_retries_total{backend="default",bucket="g",reason="status_5xx"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) != 0 {
		t.Fatalf("lint: %v %v", problems, err)
	}
}
