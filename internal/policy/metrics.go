package policy

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the per-policy series: evaluations by outcome, failures by kind, latency, fuel,
// live instances and failed reloads.
type metrics struct {
	evaluations    *prometheus.CounterVec
	failures       *prometheus.CounterVec
	latency        *prometheus.HistogramVec
	fuel           *prometheus.HistogramVec
	instances      *prometheus.GaugeVec
	instantiate    *prometheus.HistogramVec
	loadFailures   *prometheus.CounterVec
	compileSeconds prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "yatagarasu", Subsystem: "policy", Name: name, Help: help}
	}
	m := &metrics{
		evaluations: prometheus.NewCounterVec(prometheus.CounterOpts(opts("evaluations_total",
			"Policy evaluations by outcome: allow, deny, or error (trap, budget, pool timeout; see failures_total).")), []string{"policy", "outcome"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts(opts("failures_total",
			"Failed policy evaluations by kind: trap, budget (fuel exhausted), abi, pool_timeout, instantiate, retired.")), []string{"policy", "kind"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "yatagarasu", Subsystem: "policy", Name: "evaluation_seconds",
			Help:    "Time to evaluate one policy for one request, pool wait included.",
			Buckets: []float64{1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 1e-3, 1e-2, 0.1}}, []string{"policy"}),
		fuel: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "yatagarasu", Subsystem: "policy", Name: "fuel_used",
			Help:    "Fuel (function calls + loop iterations) one evaluation used; compare with the policy's budget.",
			Buckets: prometheus.ExponentialBuckets(100, 4, 10)}, []string{"policy"}),
		instances: prometheus.NewGaugeVec(prometheus.GaugeOpts(opts("instances", "Live pooled instances per policy.")), []string{"policy"}),
		instantiate: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "yatagarasu", Subsystem: "policy", Name: "instantiate_seconds",
			Help: "Time to create one instance (Go guests: milliseconds).", Buckets: prometheus.ExponentialBuckets(1e-5, 4, 8)}, []string{"policy"}),
		loadFailures: prometheus.NewCounterVec(prometheus.CounterOpts(opts("load_failures_total",
			"Reloads of a policy whose new .wasm failed to load; the previous version stays in service.")), []string{"policy"}),
		compileSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "yatagarasu", Subsystem: "policy", Name: "compile_seconds",
			Help: "Time to instrument and compile one policy module.", Buckets: prometheus.ExponentialBuckets(1e-3, 4, 8)}),
	}
	if reg != nil {
		reg.MustRegister(m.evaluations, m.failures, m.latency, m.fuel, m.instances, m.instantiate, m.loadFailures, m.compileSeconds)
	}
	return m
}

// policyMetrics are one policy's series, curried once so the hot path does no label lookups.
type policyMetrics struct {
	allow, deny, errored prometheus.Counter
	failures             *prometheus.CounterVec
	latency, fuel        prometheus.Observer
	instances            prometheus.Gauge
	instantiateSeconds   prometheus.Observer
}

func (m *metrics) forPolicy(name string) *policyMetrics {
	return &policyMetrics{
		allow:              m.evaluations.WithLabelValues(name, "allow"),
		deny:               m.evaluations.WithLabelValues(name, "deny"),
		errored:            m.evaluations.WithLabelValues(name, "error"),
		failures:           m.failures.MustCurryWith(prometheus.Labels{"policy": name}),
		latency:            m.latency.WithLabelValues(name),
		fuel:               m.fuel.WithLabelValues(name),
		instances:          m.instances.WithLabelValues(name),
		instantiateSeconds: m.instantiate.WithLabelValues(name),
	}
}

func (pm *policyMetrics) observe(res *Result, err error) {
	pm.latency.Observe(res.Duration.Seconds())
	pm.fuel.Observe(float64(res.FuelUsed))
	switch {
	case err != nil:
		pm.errored.Inc()
		kind := "trap"
		var ee *EvalError
		if errors.As(err, &ee) {
			kind = errKindForLabel[ee.Kind]
		}
		pm.failures.WithLabelValues(kind).Inc()
	case res.Allow:
		pm.allow.Inc()
	default:
		pm.deny.Inc()
	}
}
