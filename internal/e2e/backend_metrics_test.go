package e2e

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/yatagarasu/yatagarasu/internal/devstack"
)

// TestBackendMetrics serves a bucket whose primary replica answers 500 to every GET but passes
// HeadBucket (so the probe keeps it in rotation and, with a high failure threshold, every
// request fails over deterministically): requests succeed through the secondary, and the admin
// /metrics reports the retries, the failovers, both breakers closed and both replicas up.
func TestBackendMetrics(t *testing.T) {
	target, _ := url.Parse(s3srv.Endpoint)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var gets atomic.Int64
	primary := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			gets.Add(1)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`<Error><Code>InternalError</Code></Error>`))
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer primary.Close()
	replica := func(name, endpoint string, prio int) string {
		return fmt.Sprintf("- {name: %s, bucket: products, region: %s, endpoint: %q, access_key: %q, secret_key: %q, priority: %d}\n",
			name, s3srv.Region, endpoint, s3srv.AccessKey, s3srv.SecretKey, prio)
	}
	st, err := devstack.Start(t.Context(), devstack.Options{
		S3: s3srv, Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler),
		Buckets: []devstack.Bucket{{Name: "mx", S3Bucket: "products", Timeout: 2,
			Replicas: replica("primary", primary.URL, 1) + replica("secondary", s3srv.Endpoint, 2),
			S3Extra:  "retry: {max_attempts: 2, initial_backoff_ms: 1, max_backoff_ms: 5}\ncircuit_breaker: {failure_threshold: 50}"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for i := range 4 {
		if res, body := do(t, http.MethodGet, st.GatewayURL, "/mx/a.txt"); res.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %d %s", i, res.StatusCode, body)
		}
	}
	want := []string{
		`yatagarasu_s3_failovers_total{bucket="mx",from="primary",to="secondary"} 4`,
		`yatagarasu_s3_retries_total{backend="primary",bucket="mx",reason="status_5xx"} 4`,
		`yatagarasu_s3_breaker_state{backend="primary",bucket="mx"} 0`,
		`yatagarasu_s3_breaker_state{backend="secondary",bucket="mx"} 0`,
		`yatagarasu_s3_backend_up{backend="primary",bucket="mx"} 1`,
		`yatagarasu_s3_backend_up{backend="secondary",bucket="mx"} 1`,
	}
	if gets.Load() != 4 {
		t.Fatalf("the primary saw %d GETs, want 4: it was not tried first", gets.Load())
	}
	var text string
	defer func() {
		if t.Failed() {
			t.Logf("metrics:\n%s", metricLines([]byte(text), "yatagarasu_s3_"))
		}
	}()
	eventually(t, "the probe to report both replicas", func() bool {
		text = metricsText(t, st)
		for _, w := range want {
			if !strings.Contains(text, w) {
				return false
			}
		}
		return true
	})
}
