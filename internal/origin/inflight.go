package origin

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/yatagarasu/yatagarasu/internal/httperr"
)

// InFlightRetryAfter is the Retry-After sent with a 503 for too many requests in flight (the
// original product's value).
const InFlightRetryAfter = 5 * time.Second

// InFlight counts requests the origin is serving, so server.max_concurrent_requests can refuse
// work beyond the cap (503) both here and, earlier and cheaper, in extproc.
type InFlight struct{ n atomic.Int64 }

// Load returns the number of requests in flight now.
func (l *InFlight) Load() int64 { return l.n.Load() }

// Wrap refuses a request with 503 JSON and Retry-After when limit() requests are already in
// flight, and otherwise counts it while next serves it. limit is read per request, so reloads apply.
func (l *InFlight) Wrap(next http.Handler, limit func() int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := l.n.Add(1)
		defer l.n.Add(-1)
		if max := limit(); max > 0 && n > int64(max) {
			w.Header().Set("Retry-After", strconv.Itoa(int(InFlightRetryAfter/time.Second)))
			httperr.Write(w, httperr.New(http.StatusServiceUnavailable,
				"the gateway has reached its limit of concurrent requests; retry later", envoyRequestID(r)))
			return
		}
		next.ServeHTTP(w, r)
	})
}
