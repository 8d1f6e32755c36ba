package cache_test

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/yatagarasu/yatagarasu/internal/cache"
	"github.com/yatagarasu/yatagarasu/internal/cache/memory"
	"github.com/yatagarasu/yatagarasu/internal/originauth"
	"github.com/yatagarasu/yatagarasu/internal/s3"
)

// countingS3 serves every key with a fixed body and counts GETs.
type countingS3 struct {
	body []byte
	gets atomic.Int64
}

func (c *countingS3) Get(_ context.Context, key string, _ s3.Conditions) (*s3.Object, error) {
	c.gets.Add(1)
	return &s3.Object{Status: http.StatusOK, ContentLength: int64(len(c.body)), ContentType: "application/octet-stream",
		ETag: `"` + key + `"`, Body: io.NopCloser(bytes.NewReader(c.body))}, nil
}

// Workload parameters: 10,000 objects of 4 KiB and Zipf-distributed requests; the memory layer
// holds a given share of the objects (the default 1 GiB layer would hold all 40 MiB of them).
const (
	workloadObjects  = 10_000
	workloadObjSize  = 4 << 10
	workloadRequests = 100_000
)

// BenchmarkZipfWorkload replays Zipf-distributed GETs (the hottest 20 % of keys draw about 80 %
// of requests) through the origin's cache path and reports the hit rate and how many fewer S3
// GETs reach S3 than requests were made (s3_reduction). `make bench` records both.
func BenchmarkZipfWorkload(b *testing.B) {
	for _, share := range []int{20, 50, 100} {
		b.Run("cache="+strconv.Itoa(share)+"%", func(b *testing.B) {
			for b.Loop() {
				hit, reduction, top20 := runZipf(b, 42, share)
				b.ReportMetric(hit*100, "hit_%")
				b.ReportMetric(reduction*100, "s3_reduction_%")
				b.ReportMetric(top20*100, "top20_share_%")
			}
		})
	}
}

// TestZipfWorkloadMeetsTheTarget holds the target, a hit rate of at least 80 %, with a
// memory layer that holds half of the objects.
func TestZipfWorkloadMeetsTheTarget(t *testing.T) {
	if testing.Short() {
		t.Skip("workload replay")
	}
	hit, reduction, top20 := runZipf(t, 7, 50)
	t.Logf("hit rate %.1f %%, S3 request reduction %.1f %%, top-20 %% keys draw %.1f %% of requests", hit*100, reduction*100, top20*100)
	if top20 < 0.75 || top20 > 0.85 {
		t.Fatalf("the workload is not 80/20: the top 20 %% of keys draw %.1f %%", top20*100)
	}
	if hit < 0.80 {
		t.Fatalf("hit rate %.1f %% is below 80 %%", hit*100)
	}
}

func runZipf(tb testing.TB, seed uint64, sharePct int) (hitRate, reduction, top20 float64) {
	mem, err := memory.New(memory.Options{MaxBytes: int64(workloadObjects*sharePct/100) * (workloadObjSize + 512), MaxItemBytes: 1 << 20})
	if err != nil {
		tb.Fatal(err)
	}
	tc := cache.NewTiered([]cache.Layer{mem}, cache.Options{})
	defer tc.Close()
	resp := cache.NewResponder(tc, cache.ResponderOptions{Policy: func(string) cache.Policy {
		return cache.Policy{Enabled: true, TTL: time.Hour, MaxItemBytes: 1 << 20}
	}})
	src := &countingS3{body: bytes.Repeat([]byte("z"), workloadObjSize)}
	// P(k) ∝ (4+k)^-1.01 over 10,000 keys puts about 80 % of the draws on the hottest 2,000.
	z := rand.NewZipf(rand.New(rand.NewPCG(seed, seed)), 1.01, 4, workloadObjects-1)
	hot := 0
	for range workloadRequests {
		k := z.Uint64()
		if k < workloadObjects/5 {
			hot++
		}
		key := "obj/" + strconv.FormatUint(k, 10)
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodGet, "/b/"+key, nil)
		if !resp.Serve(w, r, src, originauth.Claims{Bucket: "b", Key: key}) || w.Code != 200 || w.Body.Len() != workloadObjSize {
			tb.Fatalf("request for %s: %d, %d bytes", key, w.Code, w.Body.Len())
		}
	}
	st := tc.Stats()
	return float64(st.Hits) / float64(workloadRequests), 1 - float64(src.gets.Load())/float64(workloadRequests), float64(hot) / float64(workloadRequests)
}
