package auth

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Registry owns what must outlive a config reload: the verified-token caches (by Spec ID, so an
// unchanged bucket keeps its cache) and the JWKS fetchers (by URL and interval, so a reload does
// not refetch or forget the last good key set).
type Registry struct {
	log  *slog.Logger
	opts RegistryOptions

	mu     sync.Mutex
	caches map[string]*tokenCache
	jwks   map[string]*jwksSet

	refreshErrors prometheus.Counter
}

// RegistryOptions tune a Registry; zero values take the defaults.
type RegistryOptions struct {
	Now func() time.Time
	// HTTPClient fetches JWKS documents (default: 5s timeout).
	HTTPClient *http.Client
	// UnknownKIDEvery is the least time between two refetches caused by unknown kids (default 10s):
	// a flood of tokens with random kids must not turn into a flood of JWKS requests.
	UnknownKIDEvery time.Duration
}

type jwksSet struct {
	kf     keyfunc.Keyfunc
	cancel context.CancelFunc
}

// NewRegistry returns an empty registry; reg receives its metrics (nil: none).
func NewRegistry(log *slog.Logger, reg prometheus.Registerer, opts RegistryOptions) *Registry {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 5 * time.Second}
	}
	if opts.UnknownKIDEvery == 0 {
		opts.UnknownKIDEvery = 10 * time.Second
	}
	r := &Registry{log: log, opts: opts, caches: map[string]*tokenCache{}, jwks: map[string]*jwksSet{},
		refreshErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "yatagarasu", Subsystem: "auth", Name: "jwks_refresh_errors_total",
			Help: "Failed JWKS fetches; the last good key set stays in use.",
		})}
	if reg != nil {
		reg.MustRegister(r.refreshErrors)
	}
	return r
}

// Bound is a Plan with its long-lived parts attached: what the stages use per request.
type Bound struct {
	Buckets []*Verifier // by bucket index; nil = public
	Admin   *Verifier   // nil = admin API off
	specs   map[string]bool
	jwks    map[string]bool
}

// Bucket returns the verifier of bucket i, nil for a public bucket.
func (b *Bound) Bucket(i int) *Verifier {
	if i < 0 || i >= len(b.Buckets) {
		return nil
	}
	return b.Buckets[i]
}

// Bind attaches caches and JWKS fetchers to a plan, reusing those of earlier plans with the same
// identity. A new JWKS is fetched once here (an unreachable endpoint is logged, not fatal: its
// tokens are refused until a refresh succeeds).
func (r *Registry) Bind(p *Plan) *Bound {
	if p == nil {
		p = &Plan{}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	b := &Bound{Buckets: make([]*Verifier, len(p.Buckets)), specs: map[string]bool{}, jwks: map[string]bool{}}
	made := map[*Spec]*Verifier{}
	bind := func(s *Spec) *Verifier {
		if s == nil {
			return nil
		}
		if v, ok := made[s]; ok {
			return v
		}
		cache, ok := r.caches[s.ID]
		if !ok {
			cache = newTokenCache(s.CacheSize)
			r.caches[s.ID] = cache
		}
		b.specs[s.ID] = true
		var kf keyfunc.Keyfunc
		if s.JWKSURL != "" {
			id := s.JWKSURL + "|" + s.JWKSEvery.String()
			set, ok := r.jwks[id]
			if !ok {
				set = r.startJWKS(s.JWKSURL, s.JWKSEvery)
				r.jwks[id] = set
			}
			b.jwks[id] = true
			kf = set.kf
		}
		v := newVerifier(s, cache, kf, r.opts.Now)
		made[s] = v
		return v
	}
	for i, s := range p.Buckets {
		b.Buckets[i] = bind(s)
	}
	b.Admin = bind(p.Admin)
	return b
}

// startJWKS fetches the key set and starts its refresh; a failed fetch keeps the last good set.
func (r *Registry) startJWKS(url string, every time.Duration) *jwksSet {
	ctx, cancel := context.WithCancel(context.Background())
	noErr := true
	kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{url}, keyfunc.Override{
		Client:                    r.opts.HTTPClient,
		HTTPTimeout:               r.opts.HTTPClient.Timeout,
		NoErrorReturnFirstHTTPReq: &noErr,
		RefreshInterval:           every,
		// An unknown kid may refetch at most once per UnknownKIDEvery. The wait for that limiter and
		// the refetch are bounded by the request's context (jwksFetchTimeout): when the next refetch
		// is further away than that, the kid is refused at once. (RateLimitWaitMax would also bound
		// the HTTP fetch itself, so it is left unset.)
		RefreshUnknownKID: rate.NewLimiter(rate.Every(r.opts.UnknownKIDEvery), 1),
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(_ context.Context, err error) {
				r.refreshErrors.Inc()
				r.log.Warn("JWKS fetch failed; keeping the last good key set", "url", u, "error", err)
			}
		},
	})
	if err != nil {
		// Only a malformed URL gets here (config.Load rejects those); refuse its tokens.
		r.log.Error("JWKS client not created", "url", url, "error", err)
		return &jwksSet{kf: nil, cancel: cancel}
	}
	return &jwksSet{kf: kf, cancel: cancel}
}

// Retain drops caches and stops JWKS fetchers that none of keep uses (call it after a reload,
// keeping the current binding and the one in-flight requests may still hold).
func (r *Registry) Retain(keep ...*Bound) {
	r.mu.Lock()
	defer r.mu.Unlock()
	specs, jwks := map[string]bool{}, map[string]bool{}
	for _, b := range keep {
		if b == nil {
			continue
		}
		for id := range b.specs {
			specs[id] = true
		}
		for id := range b.jwks {
			jwks[id] = true
		}
	}
	for id := range r.caches {
		if !specs[id] {
			delete(r.caches, id)
		}
	}
	for id, set := range r.jwks {
		if !jwks[id] {
			set.cancel()
			delete(r.jwks, id)
		}
	}
}

// Close stops every JWKS fetcher.
func (r *Registry) Close() { r.Retain() }
