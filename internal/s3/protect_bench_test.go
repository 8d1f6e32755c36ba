package s3

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// BenchmarkHeadProtected measures HEAD through retries/breaker/failover selection against a
// local fake S3; BenchmarkHeadDirect is the same call on the backend without protection.
func BenchmarkHeadProtected(b *testing.B) {
	bk := benchBucket(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := bk.Head(ctx, "k", Conditions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHeadDirect is the baseline for BenchmarkHeadProtected.
func BenchmarkHeadDirect(b *testing.B) {
	bk := benchBucket(b)
	ctx := context.Background()
	be := bk.backends[0]
	b.ReportAllocs()
	for b.Loop() {
		if _, err := be.headOnce(ctx, "k", Conditions{}, time.Second); err != nil {
			b.Fatal(err)
		}
	}
}

func benchBucket(b *testing.B) *Bucket {
	f := newFakeTB(b, func(_ int64, w http.ResponseWriter, _ *http.Request) { okBody(w, "") })
	var sl sleeps
	return protectedBucket(b, &sl, 3, f.URL)
}
