package s3

import (
	"errors"
	"net/http"

	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
)

// Retry reasons for yatagarasu_s3_retries_total.
const (
	retryConnect   = "connect"
	retryTimeout   = "timeout"
	retryStatus5xx = "status_5xx"
)

// healthMetrics are the backend-protection metrics of one Health. They exist whether or not
// anyone registers the Health, so the protection code never checks for nil.
type healthMetrics struct {
	retries   *prometheus.CounterVec
	breaker   *prometheus.GaugeVec
	failovers *prometheus.CounterVec
	up        *prometheus.GaugeVec
}

func newHealthMetrics() *healthMetrics {
	return &healthMetrics{
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "yatagarasu_s3_retries_total",
			Help: "S3 attempts retried after a backend fault, by the backend that failed and why (connect, timeout, status_5xx).",
		}, []string{"bucket", "backend", "reason"}),
		breaker: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "yatagarasu_s3_breaker_state",
			Help: "Circuit breaker state of each S3 backend: 0 closed, 1 half-open, 2 open.",
		}, []string{"bucket", "backend"}),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "yatagarasu_s3_failovers_total",
			Help: "Retries sent to a different S3 backend than the attempt that failed.",
		}, []string{"bucket", "from", "to"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "yatagarasu_s3_backend_up",
			Help: "Result of the last background probe (HeadBucket) of each S3 backend: 1 up, 0 down.",
		}, []string{"bucket", "backend"}),
	}
}

func (m *healthMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.retries, m.breaker, m.failovers, m.up}
}

// Describe implements prometheus.Collector, so the process registry serves the backend
// protection metrics with one MustRegister(health).
func (h *Health) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range h.metrics.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector (see Describe).
func (h *Health) Collect(ch chan<- prometheus.Metric) {
	for _, c := range h.metrics.collectors() {
		c.Collect(ch)
	}
}

// breakerValue maps a gobreaker state to the gauge value documented in docs/METRICS.md.
func breakerValue(s gobreaker.State) float64 {
	switch s {
	case gobreaker.StateHalfOpen:
		return 1
	case gobreaker.StateOpen:
		return 2
	default:
		return 0
	}
}

// setBreaker records st's breaker state, unless a newer state (a reload that changed the
// backend's endpoint or breaker settings) now owns the same bucket/backend labels.
func (st *backendState) setBreaker(s gobreaker.State) {
	if st.current.Load() {
		st.metrics.breaker.WithLabelValues(st.bucket, st.name).Set(breakerValue(s))
	}
}

// setUp records the last probe result of st (same ownership rule as setBreaker).
func (st *backendState) setUp(up bool) {
	if !st.current.Load() {
		return
	}
	v := 0.0
	if up {
		v = 1
	}
	st.metrics.up.WithLabelValues(st.bucket, st.name).Set(v)
}

// own makes st the state that writes the gauges of its labels, taking over from prev (the
// state that had them before, nil if none). The caller holds Health.mu.
func (st *backendState) own(prev *backendState) {
	if prev != nil && prev != st {
		prev.current.Store(false)
	}
	st.current.Store(true)
}

// retryReason names why a backend fault is retried, for yatagarasu_s3_retries_total.
func retryReason(err error) string {
	if isTimeout(err) {
		return retryTimeout
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode >= http.StatusInternalServerError {
		return retryStatus5xx
	}
	return retryConnect
}

// countRetry records a retry of the attempt that failed with err on from, now going to to, and
// a failover when to is another backend.
func (b *Bucket) countRetry(from, to *backend, err error) {
	m := b.health.metrics
	m.retries.WithLabelValues(b.name, from.name, retryReason(err)).Inc()
	if to != from {
		m.failovers.WithLabelValues(b.name, from.name, to.name).Inc()
	}
}
