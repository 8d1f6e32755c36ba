package cache

import (
	"errors"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the cache's Prometheus series: hit/miss counters and latency histograms updated on
// the request path, and sizes, items and evictions read from the layers at scrape time.
type metrics struct {
	hits, misses *prometheus.CounterVec   // by layer and bucket
	get, set     *prometheus.HistogramVec // by layer
	reg          prometheus.Registerer
	own          []prometheus.Collector
}

var (
	sizeDesc = prometheus.NewDesc("yatagarasu_cache_size_bytes", "Bytes held by a cache layer, by layer and bucket.", []string{"layer", "bucket"}, nil)
	itemDesc = prometheus.NewDesc("yatagarasu_cache_items", "Entries held by a cache layer, by layer and bucket.", []string{"layer", "bucket"}, nil)
	evicDesc = prometheus.NewDesc("yatagarasu_cache_evictions_total", "Entries a cache layer evicted to stay within its size, by layer and bucket.", []string{"layer", "bucket"}, nil)
)

// statsCollector exports layer stats at scrape time.
type statsCollector struct{ t *Tiered }

func (c statsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- sizeDesc
	ch <- itemDesc
	ch <- evicDesc
}

func (c statsCollector) Collect(ch chan<- prometheus.Metric) {
	for _, l := range c.t.layers {
		s := l.Stats()
		for b, bs := range s.Buckets {
			ch <- prometheus.MustNewConstMetric(sizeDesc, prometheus.GaugeValue, float64(bs.Bytes), s.Layer, b)
			ch <- prometheus.MustNewConstMetric(itemDesc, prometheus.GaugeValue, float64(bs.Items), s.Layer, b)
			ch <- prometheus.MustNewConstMetric(evicDesc, prometheus.CounterValue, float64(bs.Evictions), s.Layer, b)
		}
	}
}

func newMetrics(t *Tiered, reg prometheus.Registerer, log *slog.Logger) *metrics {
	latency := []float64{1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1}
	m := &metrics{
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "yatagarasu", Subsystem: "cache", Name: "hits_total",
			Help: "Cache lookups answered by a layer, by layer and bucket.",
		}, []string{"layer", "bucket"}),
		misses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "yatagarasu", Subsystem: "cache", Name: "misses_total",
			Help: "Cache lookups a layer could not answer on the way to S3, by layer and bucket.",
		}, []string{"layer", "bucket"}),
		get: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "yatagarasu", Subsystem: "cache", Name: "get_duration_seconds",
			Help: "Time one layer takes to answer a lookup, by layer.", Buckets: latency,
		}, []string{"layer"}),
		set: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "yatagarasu", Subsystem: "cache", Name: "set_duration_seconds",
			Help: "Time one layer takes to store an entry, by layer.", Buckets: latency,
		}, []string{"layer"}),
	}
	if reg == nil {
		return m
	}
	m.reg = reg
	for _, c := range []prometheus.Collector{m.hits, m.misses, m.get, m.set, statsCollector{t}} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				log.Error("register cache metric; it will not be exported", "err", err)
			}
			continue
		}
		m.own = append(m.own, c)
	}
	return m
}

// unregister removes the series when the cache closes, so a new cache can register them.
func (m *metrics) unregister() {
	if m.reg == nil {
		return
	}
	for _, c := range m.own {
		m.reg.Unregister(c)
	}
}
