package extproc

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/yatagarasu/yatagarasu/internal/origin"
	"github.com/yatagarasu/yatagarasu/internal/s3"
)

// BackendStage is pipeline step 6: a bucket whose every S3 backend has an open circuit breaker
// (or failed its probe) is answered 503 with Retry-After here, without an origin call, and so is
// any request while the origin already serves server.max_concurrent_requests.
type BackendStage struct {
	// InFlight is the origin's in-flight counter (nil: no cap checked here).
	InFlight *origin.InFlight
}

// Name implements Stage.
func (*BackendStage) Name() string { return "backend" }

// Run implements Stage.
func (s *BackendStage) Run(_ context.Context, x *Exchange) *Decision {
	if s.InFlight != nil {
		if limit := x.Snap.Config.Server.MaxConcurrentRequests; limit > 0 && s.InFlight.Load() >= int64(limit) {
			d := Reject(x, http.StatusServiceUnavailable, "overloaded",
				"the gateway has reached its limit of concurrent requests; retry later")
			d.Headers = append(d.Headers, [2]string{"retry-after", seconds(origin.InFlightRetryAfter)})
			return d
		}
	}
	b, ok := x.Snap.S3[x.Bucket.Name]
	if !ok {
		return nil
	}
	if ra, down := b.Unavailable(); down {
		d := Reject(x, http.StatusServiceUnavailable, "circuit_open",
			"the bucket's S3 backend is failing (circuit breaker open); retry later")
		d.Headers = append(d.Headers, [2]string{"retry-after", seconds(ra)})
		return d
	}
	return nil
}

// seconds renders a Retry-After value: whole seconds, at least 1.
func seconds(d time.Duration) string {
	return strconv.Itoa(int(max(d.Round(time.Second), time.Second) / time.Second))
}

// startBackends starts the background S3 probe over the current snapshot's buckets; it stops
// with stopBackends (Shutdown).
func (s *Service) startBackends() {
	ctx, cancel := context.WithCancel(context.Background())
	s.stopProbe = cancel
	go s.backends.Probe(ctx, s3.DefaultProbeInterval, func() []*s3.Bucket {
		snap := s.Store.Load()
		if snap == nil {
			return nil
		}
		out := make([]*s3.Bucket, 0, len(snap.S3))
		for _, b := range snap.S3 {
			out = append(out, b)
		}
		return out
	})
}

func (s *Service) stopBackends() {
	if s.stopProbe != nil {
		s.stopProbe()
	}
}

// maxConcurrent reads server.max_concurrent_requests from the current snapshot (0: no cap).
func (s *Service) maxConcurrent() int {
	if snap := s.Store.Load(); snap != nil {
		return snap.Config.Server.MaxConcurrentRequests
	}
	return 0
}
