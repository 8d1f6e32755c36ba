package e2e

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/yatagarasu/yatagarasu/internal/benchutil"
	"github.com/yatagarasu/yatagarasu/internal/devstack"
)

// BenchmarkObservabilityOverhead measures the hit path (a 1 KiB object the cache answers from
// extproc, or the origin when no cache hit happens) with the audit log (file sink) and tracing
// (OTLP/HTTP to a local collector; every request sampled, or 10% for tracing10) off and on, in one run, so benchstat
// -col /obs gives the throughput ratios. The whole gateway runs in this process, so allocs/op
// counts what each feature adds per request.
func BenchmarkObservabilityOverhead(b *testing.B) {
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer collector.Close()
	for _, mode := range []string{"off", "audit", "tracing", "tracing10", "both"} {
		b.Run("obs="+mode, func(b *testing.B) {
			dir := b.TempDir()
			extra := "cache:\n  enabled: true\n"
			if mode == "audit" || mode == "both" {
				extra += fmt.Sprintf("audit_log:\n  enabled: true\n  spool_dir: %q\n  file: {path: %q}\n", filepath.Join(dir, "spool"), filepath.Join(dir, "audit.log"))
			}
			switch mode {
			case "tracing", "both":
				extra += fmt.Sprintf("observability:\n  tracing: {enabled: true, exporter: otlp_http, otlp_endpoint: %q}\n", collector.URL+"/v1/traces")
			case "tracing10": // 10% of new traces sampled, the usual production setting
				extra += fmt.Sprintf("observability:\n  tracing: {enabled: true, exporter: otlp_http, otlp_endpoint: %q, sampling_ratio: 0.1}\n", collector.URL+"/v1/traces")
			}
			st, err := devstack.Start(b.Context(), devstack.Options{S3: s3srv, Buckets: []devstack.Bucket{{Name: "products"}}, Dir: dir,
				Logger: slog.New(slog.DiscardHandler), Extra: extra})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			url := st.GatewayURL + "/products/a.txt"
			get := func() (string, error) {
				res, err := http.Get(url)
				if err != nil {
					return "", err
				}
				_, err = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					return "", fmt.Errorf("status %d", res.StatusCode)
				}
				return res.Header.Get("X-Cache"), err
			}
			for range 3 { // fill the cache
				if _, err := get(); err != nil {
					b.Fatal(err)
				}
			}
			if xc, _ := get(); xc != "HIT" {
				b.Logf("X-Cache after warm-up: %q: measuring the origin path, not a cache hit", xc)
			}
			b.ReportAllocs()
			b.SetParallelism(4)
			b.ResetTimer()
			defer benchutil.ReportCPU(b, s3srv.Pid())()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := get(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
