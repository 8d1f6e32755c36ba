package origin

import (
	"errors"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the origin's Prometheus series.
type metrics struct {
	requests *prometheus.CounterVec   // by bucket and status
	bytes    *prometheus.CounterVec   // body bytes sent, by bucket
	s3       *prometheus.HistogramVec // time to S3's response headers, by bucket and operation
}

func newMetrics(reg prometheus.Registerer, logger *slog.Logger) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "yatagarasu", Subsystem: "origin", Name: "requests_total",
			Help: "Requests answered by the origin, by gateway bucket and HTTP status.",
		}, []string{"bucket", "status"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "yatagarasu", Subsystem: "origin", Name: "response_bytes_total",
			Help: "Object body bytes the origin sent to Envoy, by gateway bucket.",
		}, []string{"bucket"}),
		s3: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "yatagarasu", Subsystem: "origin", Name: "s3_request_duration_seconds",
			Help:    "Time from sending an S3 request to its response headers, by gateway bucket and operation.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12), // 5ms … ~10s
		}, []string{"bucket", "operation"}),
	}
	if reg != nil {
		m.requests = register(reg, m.requests, logger)
		m.bytes = register(reg, m.bytes, logger)
		m.s3 = register(reg, m.s3, logger)
	}
	return m
}

// register adds c to reg, reusing an identical collector a previous Handler registered (a config
// reload builds a new Handler on the same registry).
func register[C prometheus.Collector](reg prometheus.Registerer, c C, logger *slog.Logger) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	logger.Error("register origin metric; it will not be exported", "err", err)
	return c
}
