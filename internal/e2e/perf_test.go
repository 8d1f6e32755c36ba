package e2e

import (
	"context"
	"io"
	"net/http"
	"runtime"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/yatagarasu/yatagarasu/internal/benchutil"
)

// inFlightHeap starts n downloads of the 64 MiB object through the gateway, reads the first MiB
// of each and stops reading (the rest waits in socket buffers, as with slow clients), then reports
// the heap growth per download. Everything — harness, extproc, origin, client — is in this process,
// so the figure is an upper bound for what the gateway keeps per in-flight download.
func inFlightHeap(tb testing.TB, base string, n int) float64 {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	var started, release sync.WaitGroup
	started.Add(n)
	release.Add(1)
	errs := make(chan error, n)
	for range n {
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/products/big.bin", nil)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- err
				started.Done()
				return
			}
			defer res.Body.Close()
			_, err = io.CopyN(io.Discard, res.Body, 1<<20)
			started.Done()
			if err != nil {
				errs <- err
				return
			}
			release.Wait()
		}()
	}
	started.Wait()
	runtime.GC()
	var during runtime.MemStats
	runtime.ReadMemStats(&during)
	release.Done()
	cancel()
	close(errs)
	for err := range errs {
		if err != nil {
			tb.Fatalf("download: %v", err)
		}
	}
	return float64(int64(during.HeapInuse)-int64(before.HeapInuse)) / float64(n)
}

// TestInFlightDownloadsKeepHeapBounded: 16 stalled 64 MiB downloads must not hold their bodies
// (each hop keeps one 64 KiB copy buffer).
// The budget (256 KiB per download) is the target; it is a memory bound, not a time bound.
func TestInFlightDownloadsKeepHeapBounded(t *testing.T) {
	inFlightHeap(t, stacks[0].GatewayURL, 16) // warm-up: connection pools and first-use allocations
	perDownload := inFlightHeap(t, stacks[0].GatewayURL, 16)
	t.Logf("heap growth per in-flight 64 MiB download: %.0f KiB", perDownload/1024)
	if perDownload > 256<<10 {
		t.Fatalf("each in-flight download holds %.0f KiB of heap (budget 256 KiB)", perDownload/1024)
	}
}

// BenchmarkMissPath compares a 1 MiB GET through the gateway (harness → extproc → origin →
// versitygw) with a direct signed GET to versitygw, both at GOMAXPROCS×4 concurrent clients.
// docs/BENCHMARKS.md records the throughput ratio.
func BenchmarkMissPath(b *testing.B) {
	const key = "one-mib.bin"
	b.Run("path=direct", func(b *testing.B) {
		client := s3srv.Client()
		b.SetBytes(1 << 20)
		b.SetParallelism(4)
		defer benchutil.ReportCPU(b, s3srv.Pid())()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				out, err := client.GetObject(context.Background(), &awss3.GetObjectInput{Bucket: aws.String("products"), Key: aws.String(key)})
				if err != nil {
					b.Error(err)
					return
				}
				n, err := io.Copy(io.Discard, out.Body)
				out.Body.Close()
				if err != nil || n != 1<<20 {
					b.Errorf("read %d: %v", n, err)
					return
				}
			}
		})
	})
	b.Run("path=gateway", func(b *testing.B) {
		url := stacks[0].GatewayURL + "/products/" + key
		b.SetBytes(1 << 20)
		b.SetParallelism(4)
		defer benchutil.ReportCPU(b, s3srv.Pid())()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				res, err := http.Get(url)
				if err != nil {
					b.Error(err)
					return
				}
				n, err := io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if err != nil || n != 1<<20 || res.StatusCode != http.StatusOK {
					b.Errorf("status %d read %d: %v", res.StatusCode, n, err)
					return
				}
			}
		})
	})
}

// BenchmarkInFlightHeap reports heap bytes per stalled 64 MiB download as a custom metric.
func BenchmarkInFlightHeap(b *testing.B) {
	inFlightHeap(b, stacks[0].GatewayURL, 16) // warm-up
	var total float64
	for b.Loop() {
		total += inFlightHeap(b, stacks[0].GatewayURL, 16)
	}
	b.ReportMetric(total/float64(b.N), "heapB/download")
}
