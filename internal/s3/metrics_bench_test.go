package s3

import (
	"errors"
	"testing"
)

// BenchmarkCountRetryFailover measures what one retry that fails over adds on the failure path
// (two labelled counter increments); BenchmarkRetryReason, the classification alone, is its
// baseline.
func BenchmarkCountRetryFailover(b *testing.B) {
	bk := &Bucket{name: "g", health: NewHealth(nil)}
	from, to := &backend{name: "r1"}, &backend{name: "r2"}
	err := errors.New("connection refused")
	b.ReportAllocs()
	for b.Loop() {
		bk.countRetry(from, to, err)
	}
}

// BenchmarkRetryReason is the baseline for BenchmarkCountRetryFailover.
func BenchmarkRetryReason(b *testing.B) {
	err := errors.New("connection refused")
	b.ReportAllocs()
	for b.Loop() {
		_ = retryReason(err)
	}
}
