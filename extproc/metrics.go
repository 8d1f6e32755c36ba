package extproc

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	decisions *prometheus.CounterVec
	latency   prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "yatagarasu", Subsystem: "extproc", Name: "decisions_total",
			Help: "Request decisions by bucket, outcome (allow/deny), HTTP status (0 = continue) and reason.",
		}, []string{"bucket", "outcome", "status", "reason"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "yatagarasu", Subsystem: "extproc", Name: "decision_seconds",
			Help:    "Time spent deciding one request, excluding gRPC transport.",
			Buckets: []float64{1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2},
		}),
	}
	if reg != nil {
		reg.MustRegister(m.decisions, m.latency)
	}
	return m
}

func (m *metrics) observe(d *Decision, took time.Duration) {
	outcome := "allow"
	if !d.Allowed() {
		outcome = "deny"
	}
	m.decisions.WithLabelValues(d.Bucket, outcome, strconv.Itoa(d.Status), d.Reason).Inc()
	m.latency.Observe(took.Seconds())
}
