package e2e

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/yatagarasu/yatagarasu/internal/devstack"
	"github.com/yatagarasu/yatagarasu/internal/testenv"
)

// backendS3 starts a versitygw of its own holding bucket "ha" with hello.txt, for fault tests
// that kill it.
func backendS3(t *testing.T, body []byte) *testenv.S3 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	s, err := testenv.StartS3(ctx, testenv.Options{AccessKey: s3srv.AccessKey, SecretKey: s3srv.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := s.CreateBucket(ctx, "ha-data"); err != nil {
		t.Fatal(err)
	}
	if err := s.PutObject(ctx, "ha-data", "hello.txt", body, "text/plain"); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestBackendRetriesAbsorbHalfFailing puts a proxy that answers 500 to every other request in
// front of versitygw: with retries on, every client request succeeds with the right bytes.
func TestBackendRetriesAbsorbHalfFailing(t *testing.T) {
	target, _ := url.Parse(s3srv.Endpoint)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var n, failed atomic.Int64
	faulty := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%2 == 1 {
			failed.Add(1)
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`<Error><Code>InternalError</Code></Error>`))
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer faulty.Close()
	st, err := devstack.Start(t.Context(), devstack.Options{
		S3: s3srv, Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler),
		Buckets: []devstack.Bucket{{Name: "flaky", S3Bucket: "products", Endpoint: faulty.URL,
			S3Extra: "retry: {max_attempts: 3, initial_backoff_ms: 1, max_backoff_ms: 5}\ncircuit_breaker: {failure_threshold: 50}"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for i := range 20 {
		res, body := do(t, http.MethodGet, st.GatewayURL, "/flaky/a.txt")
		if res.StatusCode != http.StatusOK || !bytes.Equal(body, objects["a.txt"]) {
			t.Fatalf("request %d: %d %s", i, res.StatusCode, body)
		}
	}
	if failed.Load() < 10 {
		t.Fatalf("only %d injected failures: the fault proxy was not in the path", failed.Load())
	}
}

// TestBackendBreakerOpensAndRecovers kills the only backend: failures trip the breaker, extproc
// then answers 503 with Retry-After without calling the origin, and once the backend is back the
// probe closes the breaker and requests succeed again.
func TestBackendBreakerOpensAndRecovers(t *testing.T) {
	body := []byte("hello from the only backend")
	s := backendS3(t, body)
	st, err := devstack.Start(t.Context(), devstack.Options{
		S3: s, Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler),
		Buckets: []devstack.Bucket{{Name: "ha", S3Bucket: "ha-data", Timeout: 2,
			S3Extra: "retry: {max_attempts: 1}\ncircuit_breaker: {failure_threshold: 2, timeout_seconds: 600}"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if res, got := do(t, http.MethodGet, st.GatewayURL, "/ha/hello.txt"); res.StatusCode != http.StatusOK || !bytes.Equal(got, body) {
		t.Fatalf("before the outage: %d %s", res.StatusCode, got)
	}
	s.Kill()
	for i := range 2 {
		if res, got := do(t, http.MethodGet, st.GatewayURL, "/ha/hello.txt"); res.StatusCode != http.StatusBadGateway {
			t.Fatalf("failure %d: %d %s, want 502", i, res.StatusCode, got)
		}
	}
	res, got := do(t, http.MethodGet, st.GatewayURL, "/ha/hello.txt")
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" ||
		!bytes.Contains(got, []byte("circuit breaker open")) || !bytes.Contains(got, []byte(`"status":503`)) {
		t.Fatalf("with the breaker open: %d Retry-After=%q %s", res.StatusCode, res.Header.Get("Retry-After"), got)
	}
	if !bytes.Contains(got, []byte("the bucket's S3 backend is failing")) {
		t.Fatalf("the 503 did not come from extproc's breaker stage: %s", got)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	// The breaker's own timeout is 10 minutes: only the probe can bring the backend back this soon.
	eventually(t, "the probe to close the breaker", func() bool {
		res, got := do(t, http.MethodGet, st.GatewayURL, "/ha/hello.txt")
		return res.StatusCode == http.StatusOK && bytes.Equal(got, body)
	})
}

// TestBackendReplicaFailoverAndReturn serves a bucket from two versitygw replicas with the same
// content: killing the primary moves traffic to the secondary with no failed request once the
// first failure is absorbed, and restarting it moves traffic back.
func TestBackendReplicaFailoverAndReturn(t *testing.T) {
	primary, secondary := backendS3(t, []byte("same bytes")), backendS3(t, []byte("same bytes"))
	replica := func(name string, s *testenv.S3, prio int) string {
		return fmt.Sprintf("- {name: %s, bucket: ha-data, region: %s, endpoint: %q, access_key: %q, secret_key: %q, priority: %d}\n",
			name, s.Region, s.Endpoint, s.AccessKey, s.SecretKey, prio)
	}
	st, err := devstack.Start(t.Context(), devstack.Options{
		S3: primary, Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler),
		Buckets: []devstack.Bucket{{Name: "ha", S3Bucket: "ha-data", Timeout: 2,
			Replicas: replica("primary", primary, 1) + replica("secondary", secondary, 2),
			S3Extra:  "retry: {max_attempts: 2, initial_backoff_ms: 1, max_backoff_ms: 5}\ncircuit_breaker: {failure_threshold: 2, timeout_seconds: 600}"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	states := func() [][2]string {
		b, _ := st.ExtProc.Store.S3Bucket("ha")
		return b.BackendStates()
	}
	get := func() int {
		res, got := do(t, http.MethodGet, st.GatewayURL, "/ha/hello.txt")
		if res.StatusCode == http.StatusOK && !bytes.Equal(got, []byte("same bytes")) {
			t.Fatalf("wrong body %q", got)
		}
		return res.StatusCode
	}
	if code := get(); code != http.StatusOK {
		t.Fatalf("before the outage: %d", code)
	}
	primary.Kill()
	killed := time.Now()
	for i := range 10 {
		if code := get(); code != http.StatusOK {
			t.Fatalf("request %d after the primary died: %d (retries must fail over)", i, code)
		}
	}
	eventually(t, "the primary to leave rotation", func() bool { return states()[0][1] != "closed" })
	t.Logf("primary out of rotation %s after it died; states %v", time.Since(killed).Round(time.Millisecond), states())
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := primary.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "traffic to return to the primary", func() bool {
		return get() == http.StatusOK && states()[0][1] == "closed"
	})
	secondary.Kill() // from now on only the primary can answer
	for i := range 3 {
		if code := get(); code != http.StatusOK {
			t.Fatalf("request %d served by the recovered primary: %d", i, code)
		}
	}
}
