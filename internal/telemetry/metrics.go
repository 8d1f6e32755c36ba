package telemetry

import (
	"errors"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// RequestMetrics are the per-request series for every answer the gateway gives, whichever
// component gave it (extproc for local replies and cache hits, the origin for S3-served ones).
type RequestMetrics struct {
	total    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	s3Errors *prometheus.CounterVec
}

// NewRequestMetrics registers the series on reg (reusing them if already registered).
func NewRequestMetrics(reg prometheus.Registerer) *RequestMetrics {
	m := &RequestMetrics{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "yatagarasu", Name: "requests_total",
			Help: "Requests answered, by bucket (\"none\" before routing), method, HTTP status and cache status (hit, miss, bypass).",
		}, []string{"bucket", "method", "status", "cache_status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "yatagarasu", Name: "request_duration_seconds",
			Help:    "Time to answer a request as seen by the gateway's Go side (decision, or origin start to last byte), by bucket, method, status class and cache status.",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}, []string{"bucket", "method", "status_class", "cache_status"}),
		s3Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "yatagarasu", Subsystem: "origin", Name: "s3_errors_total",
			Help: "S3 requests that failed, by bucket, operation and S3 error code (e.g. NoSuchKey, AccessDenied, Timeout).",
		}, []string{"bucket", "operation", "code"}),
	}
	if reg != nil {
		m.total = reuse(reg, m.total)
		m.duration = reuse(reg, m.duration)
		m.s3Errors = reuse(reg, m.s3Errors)
	}
	return m
}

func reuse[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}

// Observe counts one answered request.
func (m *RequestMetrics) Observe(bucket, method string, status int, cacheStatus string, took time.Duration) {
	if m == nil {
		return
	}
	if bucket == "" {
		bucket = "none"
	}
	m.total.WithLabelValues(bucket, method, strconv.Itoa(status), cacheStatus).Inc()
	m.duration.WithLabelValues(bucket, method, statusClass(status), cacheStatus).Observe(took.Seconds())
}

// S3Error counts one failed S3 request.
func (m *RequestMetrics) S3Error(bucket, operation, code string) {
	if m == nil {
		return
	}
	if code == "" {
		code = "unknown"
	}
	m.s3Errors.WithLabelValues(bucket, operation, code).Inc()
}

func statusClass(s int) string {
	switch {
	case s >= 500:
		return "5xx"
	case s >= 400:
		return "4xx"
	case s >= 300:
		return "3xx"
	case s >= 200:
		return "2xx"
	}
	return "1xx"
}
