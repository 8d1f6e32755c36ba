package audit

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the audit pipeline's Prometheus series; a nil *Metrics records nothing.
type Metrics struct {
	reg      prometheus.Registerer
	records  *prometheus.CounterVec
	failures *prometheus.CounterVec
	spills   prometheus.Counter
	drops    prometheus.Counter
}

// NewMetrics creates the series; they are registered on reg when a Logger starts.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	return &Metrics{
		reg: reg,
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "yatagarasu", Subsystem: "audit", Name: "records_written_total",
			Help: "Audit records a sink accepted, by sink.",
		}, []string{"sink"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "yatagarasu", Subsystem: "audit", Name: "sink_errors_total",
			Help: "Failed sink writes or flushes (the records stay spooled and are retried), by sink.",
		}, []string{"sink"}),
		spills: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "yatagarasu", Subsystem: "audit", Name: "queue_spilled_total",
			Help: "Records written to the overflow spool because the in-memory queue was full.",
		}),
		drops: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "yatagarasu", Subsystem: "audit", Name: "records_dropped_total",
			Help: "Records lost: not encodable, spool write failed, or logged after shutdown. Alert on any increase.",
		}),
	}
}

func (m *Metrics) register(l *Logger) {
	if m == nil || m.reg == nil {
		return
	}
	cs := []prometheus.Collector{m.records, m.failures, m.spills, m.drops,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "yatagarasu", Subsystem: "audit", Name: "queue_depth",
			Help: "Records in the in-memory audit queue.",
		}, func() float64 { return float64(l.QueueDepth()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "yatagarasu", Subsystem: "audit", Name: "overflow_spool_bytes",
			Help: "Bytes in the overflow spool (records that found the queue full), not yet handed to the sinks.",
		}, func() float64 { return float64(l.overflow.Backlog()) }),
	}
	for _, ln := range l.lanes {
		sp := ln.sp
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "yatagarasu", Subsystem: "audit", Name: "spool_bytes",
			Help:        "Bytes of records waiting in a sink's spool (grows while the sink is down).",
			ConstLabels: prometheus.Labels{"sink": ln.sink.Name()},
		}, func() float64 { return float64(sp.Backlog()) }))
	}
	for _, c := range cs {
		_ = m.reg.Register(c) // a second Logger on the same registry keeps the first's series
	}
}

func (m *Metrics) written(sink string, n int) {
	if m != nil {
		m.records.WithLabelValues(sink).Add(float64(n))
	}
}

func (m *Metrics) failed(sink string) {
	if m != nil {
		m.failures.WithLabelValues(sink).Inc()
	}
}

func (m *Metrics) spilled() {
	if m != nil {
		m.spills.Inc()
	}
}

func (m *Metrics) dropped() {
	if m != nil {
		m.drops.Inc()
	}
}
