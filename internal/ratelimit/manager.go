package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/yatagarasu/yatagarasu/internal/config"
)

// Manager is the long-lived limiter state of one extproc process: it outlives config reloads, so
// a reload neither refills anyone's bucket nor reconnects to an unchanged Redis.
type Manager struct {
	log   *slog.Logger
	now   func() time.Time
	local *Local

	mu      sync.Mutex // serialises Configure
	redisID string
	redis   atomic.Pointer[redisState]

	fallbacks prometheus.Counter
	errors    prometheus.Counter
	up        prometheus.Gauge
}

// redisState is the Redis backend in use and when it may be tried again after a failure.
type redisState struct {
	r         *Redis
	retry     time.Duration
	downUntil atomic.Int64 // unix nanoseconds; 0 while healthy
}

// NewManager returns a manager with a local limiter only; Configure adds Redis. reg receives the
// fallback metrics (nil: none); now is injected for tests (nil: time.Now).
func NewManager(log *slog.Logger, reg prometheus.Registerer, now func() time.Time) *Manager {
	if now == nil {
		now = time.Now
	}
	m := &Manager{
		log: log, now: now, local: NewLocal(config.DefaultRateLimitMaxKeys),
		fallbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "yatagarasu", Subsystem: "ratelimit", Name: "redis_fallback_decisions_total",
			Help: "Rate-limit decisions the local limiter made because Redis was unreachable.",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "yatagarasu", Subsystem: "ratelimit", Name: "redis_errors_total",
			Help: "Failed Redis rate-limit calls.",
		}),
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "yatagarasu", Subsystem: "ratelimit", Name: "redis_up",
			Help: "1 while the Redis rate-limit backend answers, 0 while the local limiter stands in.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.fallbacks, m.errors, m.up)
	}
	return m
}

// Configure applies a config version's settings: the local size, and the Redis backend (kept when
// its settings did not change, replaced when they did, closed when the backend is local).
func (m *Manager) Configure(s config.RateLimit) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.local.Resize(s.MaxKeys)
	id := ""
	if s.Set && s.Enabled && s.Backend == "redis" {
		id = fmt.Sprintf("%+v", s.Redis)
	}
	if id == m.redisID {
		return nil
	}
	var next *redisState
	if id != "" {
		r, err := NewRedis(s.Redis)
		if err != nil {
			return err
		}
		next = &redisState{r: r, retry: s.Redis.RetryInterval.D()}
		m.up.Set(1)
	}
	prev := m.redis.Swap(next)
	m.redisID = id
	if prev != nil {
		_ = prev.r.Close()
	}
	return nil
}

// Redis returns the Redis backend in use, nil for local limits.
func (m *Manager) Redis() *Redis {
	if st := m.redis.Load(); st != nil {
		return st.r
	}
	return nil
}

// Close releases the Redis connections.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if prev := m.redis.Swap(nil); prev != nil {
		m.redisID = ""
		return prev.r.Close()
	}
	return nil
}

// Allow charges keys on Redis when configured and healthy, else locally.
func (m *Manager) Allow(ctx context.Context, keys []Key) Result {
	if len(keys) == 0 {
		return Result{Allowed: true, Backend: "none"}
	}
	now := m.now()
	st := m.redis.Load()
	if st == nil {
		return m.local.Allow(now, keys)
	}
	if until := st.downUntil.Load(); until == 0 || now.UnixNano() >= until {
		res, err := st.r.Allow(ctx, keys)
		if err == nil {
			if until != 0 && st.downUntil.CompareAndSwap(until, 0) {
				m.up.Set(1)
				m.log.Info("rate-limit Redis answers again; shared limits resume")
			}
			return res
		}
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			// The request went away; that says nothing about Redis.
			return m.fallback(now, keys)
		}
		m.errors.Inc()
		if st.downUntil.Swap(now.Add(st.retry).UnixNano()) == 0 {
			m.up.Set(0)
			m.log.Warn("rate-limit Redis failed; the local limiter decides until it answers again", "error", err, "retry_in", st.retry)
		}
	}
	return m.fallback(now, keys)
}

func (m *Manager) fallback(now time.Time, keys []Key) Result {
	m.fallbacks.Inc()
	res := m.local.Allow(now, keys)
	res.Backend = "local_fallback"
	return res
}
