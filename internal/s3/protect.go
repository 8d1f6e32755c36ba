package s3

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/sony/gobreaker/v2"

	"github.com/yatagarasu/yatagarasu/internal/config"
)

// ErrUnavailable marks a call refused because every backend of the bucket is open (circuit
// breaker) or failed its last probe; it classifies as 503 with a Retry-After.
var ErrUnavailable = errors.New("no healthy S3 backend (circuit breaker open)")

// UnavailableError carries when a refused bucket is worth trying again.
type UnavailableError struct {
	Bucket     string
	RetryAfter time.Duration
}

// Error implements error.
func (e *UnavailableError) Error() string {
	return fmt.Sprintf("bucket %q: %v; retry after %s", e.Bucket, ErrUnavailable, e.RetryAfter)
}

// Unwrap makes errors.Is(err, ErrUnavailable) true.
func (e *UnavailableError) Unwrap() error { return ErrUnavailable }

// Health is the long-lived state of every S3 backend of one process: its circuit breaker and its
// last probe result, keyed by gateway bucket, replica, endpoint and S3 bucket so that a config
// reload that keeps a backend keeps its state. The origin records outcomes into it, extproc reads
// it, and Probe refreshes it in the background.
type Health struct {
	log     *slog.Logger
	now     func() time.Time
	metrics *healthMetrics // metrics.go

	mu       sync.Mutex
	backends map[string]*backendState
	owners   map[string]*backendState // bucket|replica → the state that writes its gauges (metrics.go)
}

// NewHealth returns an empty registry; log may be nil.
func NewHealth(log *slog.Logger) *Health {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Health{log: log, now: time.Now, metrics: newHealthMetrics(), backends: map[string]*backendState{}, owners: map[string]*backendState{}}
}

// backendState is one backend's breaker and probe result.
type backendState struct {
	key      string
	settings config.CircuitBreaker
	log      *slog.Logger
	now      func() time.Time

	cb        atomic.Pointer[gobreaker.TwoStepCircuitBreaker[struct{}]]
	openedAt  atomic.Int64 // unix nanoseconds of the last transition to open
	probeDown atomic.Bool  // the last background probe failed

	bucket, name string         // metric labels: gateway bucket, replica name
	metrics      *healthMetrics // shared with Health
	current      atomic.Bool    // this state writes the gauges of its labels (metrics.go)
}

func (h *Health) state(gateway string, r config.Replica, cb config.CircuitBreaker) *backendState {
	cb = breakerDefaults(cb)
	key := gateway + "|" + r.Name + "|" + r.Endpoint + "|" + r.Bucket
	labels := gateway + "|" + r.Name
	h.mu.Lock()
	defer h.mu.Unlock()
	if st, ok := h.backends[key]; ok && st.settings == cb {
		st.own(h.owners[labels])
		h.owners[labels] = st
		st.setBreaker(st.cb.Load().State())
		return st
	}
	st := &backendState{key: key, settings: cb, log: h.log, now: h.now, bucket: gateway, name: r.Name, metrics: h.metrics}
	st.own(h.owners[labels])
	h.owners[labels] = st
	st.reset()
	h.backends[key] = st
	return st
}

func breakerDefaults(cb config.CircuitBreaker) config.CircuitBreaker {
	if cb.FailureThreshold <= 0 {
		cb.FailureThreshold = config.DefaultBreakerFailures
	}
	if cb.SuccessThreshold <= 0 {
		cb.SuccessThreshold = config.DefaultBreakerSuccesses
	}
	if cb.TimeoutSeconds <= 0 {
		cb.TimeoutSeconds = config.Seconds(config.DefaultBreakerTimeout)
	}
	if cb.HalfOpenMaxRequests <= 0 {
		cb.HalfOpenMaxRequests = config.DefaultBreakerHalfOpen
	}
	return cb
}

// reset installs a fresh, closed breaker (at start, and when a probe finds an open backend healthy
// again, so traffic returns to it without waiting out timeout_seconds).
func (st *backendState) reset() {
	failures := uint32(st.settings.FailureThreshold)
	defer st.setBreaker(gobreaker.StateClosed)
	st.cb.Store(gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name: st.key,
		// gobreaker closes a half-open breaker after MaxRequests consecutive successes, so the
		// trial budget must cover success_threshold.
		MaxRequests: uint32(max(st.settings.HalfOpenMaxRequests, st.settings.SuccessThreshold)),
		Timeout:     st.settings.TimeoutSeconds.D(),
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
		IsExcluded:  func(err error) bool { return errors.Is(err, errExcluded) },
		OnStateChange: func(name string, from, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				st.openedAt.Store(st.now().UnixNano())
			}
			st.setBreaker(to)
			st.log.Warn("s3 backend circuit breaker changed state", "backend", name, "from", from.String(), "to", to.String())
		},
	}))
}

// errExcluded is recorded for outcomes that say nothing about the backend (the client left).
var errExcluded = errors.New("outcome excluded")

// available reports whether requests may go to the backend now.
func (st *backendState) available() bool {
	return st.cb.Load().State() != gobreaker.StateOpen && !st.probeDown.Load()
}

// retryAfter estimates when an unavailable backend is worth trying again.
func (st *backendState) retryAfter(probeEvery time.Duration) time.Duration {
	if st.cb.Load().State() == gobreaker.StateOpen {
		opened := time.Unix(0, st.openedAt.Load())
		if d := opened.Add(st.settings.TimeoutSeconds.D()).Sub(st.now()); d > 0 {
			return d
		}
	}
	return probeEvery
}

// State is a backend's breaker state for readiness and tests: "closed", "half-open" or "open".
func (st *backendState) State() string { return st.cb.Load().State().String() }

// DefaultProbeInterval is how often Probe checks every backend when the caller gives no interval.
const DefaultProbeInterval = 2 * time.Second

// Unavailable reports whether every backend of the bucket is open or failed its probe, and if so
// how long until one is worth trying (at least one second), for extproc's 503 Retry-After.
func (b *Bucket) Unavailable() (retryAfter time.Duration, down bool) {
	best := time.Duration(-1)
	for _, be := range b.backends {
		if be.state.available() {
			return 0, false
		}
		if d := be.state.retryAfter(DefaultProbeInterval); best < 0 || d < best {
			best = d
		}
	}
	return max(best, time.Second), true
}

// BackendStates returns each backend's name and breaker state in priority order (readiness, tests).
func (b *Bucket) BackendStates() [][2]string {
	out := make([][2]string, len(b.backends))
	for i, be := range b.backends {
		st := be.state.State()
		if be.state.probeDown.Load() {
			st += ",probe-failed"
		}
		out[i] = [2]string{be.name, st}
	}
	return out
}

// protected runs one S3 call with retries, breakers and failover: every attempt goes to the
// first available backend not yet tried in this call (the same one again when all were tried),
// connection errors, timeouts and 5xx are retried with jittered exponential backoff while the
// total timeout lasts, and 4xx answers end the call at once. It returns before any body byte is
// read, so a retry can never repeat bytes the client already has.
func (b *Bucket) protected(ctx context.Context, op string, call func(ctx context.Context, be *backend, wait time.Duration) (*Object, error)) (*Object, error) {
	deadline := time.Now().Add(b.timeout)
	attempts := max(b.retry.MaxAttempts, 1)
	tried := make([]bool, len(b.backends))
	var lastErr error
	var failed *backend // the backend of the last failed attempt, for the failover count
	for attempt := 1; ; attempt++ {
		be, done := b.pick(tried)
		if failed != nil && be != nil {
			b.countRetry(failed, be, lastErr) // metrics.go
		}
		if be == nil {
			if lastErr != nil {
				return nil, lastErr
			}
			ra, _ := b.Unavailable()
			return nil, &UnavailableError{Bucket: b.name, RetryAfter: ra}
		}
		remaining := time.Until(deadline)
		wait := min(be.wait, remaining)
		if wait <= 0 {
			done(errExcluded)
			return nil, fmt.Errorf("s3 %s for %q: %w after %s", op, b.name, ErrTimeout, b.timeout)
		}
		obj, err := call(ctx, be, wait)
		switch {
		case err == nil:
			done(nil)
			return obj, nil
		case ctx.Err() != nil && !isTimeout(err):
			done(errExcluded) // the client went away: no verdict on the backend
			return nil, err
		case !backendFault(err):
			done(nil) // 4xx: the backend answered correctly
			return nil, err
		}
		done(err)
		lastErr = err
		if attempt >= attempts {
			return nil, err
		}
		pause := b.backoff(attempt)
		if pause >= time.Until(deadline) {
			return nil, err
		}
		if serr := b.sleep(ctx, pause); serr != nil {
			return nil, err
		}
		failed = be
	}
}

// pick returns the first available backend not yet tried (marking it), else the first available
// one, with the breaker's completion callback; nil when no backend admits a request.
func (b *Bucket) pick(tried []bool) (*backend, func(error)) {
	for pass := 0; pass < 2; pass++ {
		for i, be := range b.backends {
			if (pass == 0 && tried[i]) || !be.state.available() {
				continue
			}
			done, err := be.state.cb.Load().Allow()
			if err != nil { // open, or half-open with its trial budget in use
				continue
			}
			tried[i] = true
			return be, done
		}
	}
	return nil, nil
}

// backoff is full-jitter exponential backoff: a random wait in [0, min(max, initial·2^(n-1))].
func (b *Bucket) backoff(retry int) time.Duration {
	initial := time.Duration(b.retry.InitialBackoffMs) * time.Millisecond
	ceiling := time.Duration(b.retry.MaxBackoffMs) * time.Millisecond
	if initial <= 0 {
		return 0
	}
	d := initial
	for i := 1; i < retry && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, max(ceiling, initial))
	return time.Duration(b.jitter(int64(d) + 1))
}

// backendFault reports whether err says the backend is unhealthy (connection error, timeout, 5xx)
// rather than that the request was wrong (any 4xx, including 404, 412, 416 and 304).
func backendFault(err error) bool {
	if isTimeout(err) {
		return true
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode != 0 {
		return re.Response.StatusCode >= http.StatusInternalServerError
	}
	return true // no HTTP answer at all: connection refused, reset, DNS, ...
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Probe checks every backend of the buckets current returns with HeadBucket every interval until
// ctx ends: a failure (connection error, timeout, 5xx) takes the backend out of rotation, and a
// success puts it back, closing its breaker if it was open, so traffic returns to a recovered
// primary within one interval.
func (h *Health) Probe(ctx context.Context, interval time.Duration, current func() []*Bucket) {
	if interval <= 0 {
		interval = DefaultProbeInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, b := range current() {
			b.ProbeOnce(ctx, interval)
		}
	}
}

// ProbeOnce checks each backend of b once (Probe's step, exported for tests and readiness).
func (b *Bucket) ProbeOnce(ctx context.Context, timeout time.Duration) {
	var wg sync.WaitGroup
	for _, be := range b.backends {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := be.ping(ctx, min(timeout, be.wait))
			if ctx.Err() != nil {
				return
			}
			st := be.state
			switch {
			case err != nil && backendFault(err):
				st.setUp(false)
				if !st.probeDown.Swap(true) {
					st.log.Warn("s3 backend probe failed; taking it out of rotation", "backend", st.key, "err", err)
				}
			default:
				st.setUp(true)
				if st.probeDown.Swap(false) {
					st.log.Info("s3 backend probe succeeded; back in rotation", "backend", st.key)
				}
				if st.cb.Load().State() == gobreaker.StateOpen {
					st.reset()
					st.log.Info("s3 backend recovered; circuit breaker closed by probe", "backend", st.key)
				}
			}
		}()
	}
	wg.Wait()
}
