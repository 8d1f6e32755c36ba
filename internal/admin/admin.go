// Package admin serves the operator endpoints: /health (the process is alive), /ready (config is
// loaded and every S3 backend answers) and /metrics (Prometheus).
package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/singleflight"

	"github.com/yatagarasu/yatagarasu/internal/httperr"
)

// ReadyFunc reports why the service is not ready, or nil when it is.
type ReadyFunc func(ctx context.Context) error

// Options configure the handler.
type Options struct {
	Gatherer prometheus.Gatherer
	Ready    ReadyFunc
	// ReadyCacheTTL bounds how often probes reach the backends (default 2s): a busy orchestrator
	// probing /ready must not turn into S3 traffic per probe.
	ReadyCacheTTL time.Duration
	// ReadyTimeout bounds one readiness check (default 3s).
	ReadyTimeout time.Duration
	Now          func() time.Time
	// AdminAuth decides who may call /admin/*; it returns nil to allow, or the refusal (401/403).
	// When nil, every /admin/* endpoint is refused: the admin API is off until auth is configured.
	AdminAuth AdminAuthFunc
}

// AdminAuthFunc authorises one /admin/* request, returning nil or the JSON refusal to send.
type AdminAuthFunc func(r *http.Request) *httperr.Body

// Handler is the admin HTTP handler.
type Handler struct {
	mux  *http.ServeMux
	opts Options

	group    singleflight.Group
	draining atomic.Bool
	mu       sync.Mutex
	checked  time.Time
	lastErr  error
}

// New returns the admin handler.
func New(opts Options) *Handler {
	if opts.ReadyCacheTTL == 0 {
		opts.ReadyCacheTTL = 2 * time.Second
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 3 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	h := &Handler{mux: http.NewServeMux(), opts: opts}
	h.mux.HandleFunc("GET /health", h.health)
	h.mux.HandleFunc("GET /ready", h.ready)
	if opts.Gatherer != nil {
		h.mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{}))
	}
	return h
}

// HandleAdmin registers an operator endpoint under /admin/ (pattern as for http.ServeMux, e.g.
// "POST /admin/cache/purge"), behind AdminAuth; features add their admin API through this.
func (h *Handler) HandleAdmin(pattern string, handler http.Handler) {
	h.mux.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.opts.AdminAuth == nil {
			httperr.Write(w, httperr.New(http.StatusForbidden, "the admin API is disabled: configure admin authentication (jwt.admin_claims)", r.Header.Get("X-Request-Id")))
			return
		}
		if refusal := h.opts.AdminAuth(r); refusal != nil {
			if refusal.Status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="yatagarasu-admin"`)
			}
			httperr.Write(w, *refusal)
			return
		}
		handler.ServeHTTP(w, r)
	}))
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *Handler) health(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// Drain makes /ready answer 503 from now on, so load balancers stop sending work before shutdown.
func (h *Handler) Drain() { h.draining.Store(true) }

func (h *Handler) ready(w http.ResponseWriter, r *http.Request) {
	if h.draining.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "draining", "reason": "shutting down"})
		return
	}
	if err := h.check(r.Context()); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not_ready", "reason": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// check runs the readiness function at most once per TTL, sharing one run among concurrent probes.
func (h *Handler) check(ctx context.Context) error {
	if h.opts.Ready == nil {
		return nil
	}
	h.mu.Lock()
	if !h.checked.IsZero() && h.opts.Now().Sub(h.checked) < h.opts.ReadyCacheTTL {
		err := h.lastErr
		h.mu.Unlock()
		return err
	}
	h.mu.Unlock()
	_, err, _ := h.group.Do("ready", func() (any, error) {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.opts.ReadyTimeout)
		defer cancel()
		err := h.opts.Ready(cctx)
		h.mu.Lock()
		h.checked, h.lastErr = h.opts.Now(), err
		h.mu.Unlock()
		return nil, err
	})
	return err
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
