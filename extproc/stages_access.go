package extproc

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/yatagarasu/yatagarasu/internal/admin"
	"github.com/yatagarasu/yatagarasu/internal/auth"
	"github.com/yatagarasu/yatagarasu/internal/httperr"
	"github.com/yatagarasu/yatagarasu/internal/ipfilter"
	"github.com/yatagarasu/yatagarasu/internal/ratelimit"
	"github.com/yatagarasu/yatagarasu/internal/runtime"
)

// Access is the long-lived access-control state of one extproc process (pipeline steps 4, 5
// and 7): token buckets, verified-token caches and JWKS fetchers outlive config reloads and are
// attached to each snapshot by identity, so a reload neither resets limits nor refetches keys.
type Access struct {
	log    *slog.Logger
	auth   *auth.Registry
	limits *ratelimit.Manager
	checks *prometheus.CounterVec

	mu   sync.Mutex // serialises Bind
	cur  atomic.Pointer[accessBinding]
	prev atomic.Pointer[accessBinding] // the snapshot in-flight requests may still hold
}

// accessBinding is one snapshot with its verifiers attached.
type accessBinding struct {
	snap *runtime.Snapshot
	auth *auth.Bound
}

// NewAccess returns the access state; reg receives its metrics (nil: none).
func NewAccess(log *slog.Logger, reg prometheus.Registerer) *Access {
	a := &Access{
		log:    log,
		auth:   auth.NewRegistry(log, reg, auth.RegistryOptions{}),
		limits: ratelimit.NewManager(log, reg, nil),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "yatagarasu", Subsystem: "access", Name: "checks_total",
			Help: "Access-control outcomes by bucket, check (ip, ratelimit, auth, user_ratelimit) and result.",
		}, []string{"bucket", "check", "result"}),
	}
	if reg != nil {
		reg.MustRegister(a.checks)
	}
	return a
}

// Bind attaches the long-lived state to snap and makes it current; call it before the snapshot is
// published. Verifiers, caches and JWKS of the previous config that snap no longer uses are released.
func (a *Access) Bind(snap *runtime.Snapshot) error {
	_, err := a.bind(snap)
	return err
}

func (a *Access) bind(snap *runtime.Snapshot) (*accessBinding, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.limits.Configure(snap.Access.RateLimits.Settings); err != nil {
		return nil, fmt.Errorf("rate limits: %w", err)
	}
	b := &accessBinding{snap: snap, auth: a.auth.Bind(snap.Access.Auth)}
	old := a.cur.Swap(b)
	a.prev.Store(old)
	keep := []*auth.Bound{b.auth}
	if old != nil {
		keep = append(keep, old.auth)
	}
	a.auth.Retain(keep...)
	return b, nil
}

// binding returns snap's verifiers: the current or previous binding, or for a snapshot published
// without Bind (a copy another feature made of the current one) a binding made now and kept.
func (a *Access) binding(snap *runtime.Snapshot) *accessBinding {
	if b := a.cur.Load(); b != nil && b.snap == snap {
		return b
	}
	if b := a.prev.Load(); b != nil && b.snap == snap {
		return b
	}
	b, err := a.bind(snap)
	if err != nil {
		a.log.Error("access state not bound to a published snapshot", "error", err)
		return &accessBinding{snap: snap, auth: a.auth.Bind(snap.Access.Auth)}
	}
	return b
}

// Limits exposes the rate-limit manager (tests inspect its Redis backend).
func (a *Access) Limits() *ratelimit.Manager { return a.limits }

// Close stops JWKS refreshes and closes Redis connections.
func (a *Access) Close() error {
	a.auth.Close()
	return a.limits.Close()
}

func (a *Access) count(x *Exchange, check, result string) {
	a.checks.WithLabelValues(x.Bucket.Name, check, result).Inc()
	x.Access = append(x.Access, check+":"+result)
}

// IPFilter returns pipeline step 4: the allow/block lists (403).
func (a *Access) IPFilter() Stage { return ipStage{a} }

// RateLimit returns pipeline step 5: global, per-IP and per-bucket limits (429).
func (a *Access) RateLimit() Stage { return rateStage{a} }

// Auth returns pipeline step 7: the JWT check (401/403).
func (a *Access) Auth() Stage { return authStage{a} }

// UserRateLimit returns the per-user limit that follows the JWT check (429).
func (a *Access) UserRateLimit() Stage { return userRateStage{a} }

type ipStage struct{ a *Access }

func (ipStage) Name() string { return "ip_filter" }

func (s ipStage) Run(_ context.Context, x *Exchange) *Decision {
	set := x.Snap.Access.IPFilters
	if !set.Active(x.BucketIndex) {
		return nil
	}
	addr, ok := ipfilter.ClientIP(x.Req.Header("x-forwarded-for"), set.TrustedHops)
	v, scope := set.Check(x.BucketIndex, addr, ok)
	s.a.count(x, "ip", string(v))
	if v == ipfilter.Allowed {
		return nil
	}
	msg := "your IP address is not allowed to access this bucket"
	if scope == "global" {
		msg = "your IP address is not allowed to use this gateway"
	}
	if v == ipfilter.NoClientIP {
		msg = "the client IP address could not be determined"
	}
	return Reject(x, http.StatusForbidden, "ip_"+string(v), msg)
}

type rateStage struct{ a *Access }

func (rateStage) Name() string { return "rate_limit" }

func (s rateStage) Run(ctx context.Context, x *Exchange) *Decision {
	plan := x.Snap.Access.RateLimits
	if !plan.Active(x.BucketIndex) {
		return nil
	}
	ip := ""
	if plan.NeedsIP() {
		ip = "unknown" // every client without a readable address shares one bucket
		if addr, ok := ipfilter.ClientIP(x.Req.Header("x-forwarded-for"), x.Snap.Access.IPFilters.TrustedHops); ok {
			ip = addr.String()
		}
	}
	var buf [3]ratelimit.Key
	res := s.a.limits.Allow(ctx, plan.Keys(buf[:0], x.BucketIndex, x.Bucket.Name, ip))
	return s.a.rateOutcome(x, "ratelimit", res)
}

type userRateStage struct{ a *Access }

func (userRateStage) Name() string { return "user_rate_limit" }

func (s userRateStage) Run(ctx context.Context, x *Exchange) *Decision {
	plan := x.Snap.Access.RateLimits
	if plan == nil || !plan.PerUser.On() || x.Claims == nil {
		return nil // public buckets have no user to count
	}
	user := x.Subject
	if plan.UserClaim != "sub" {
		v, ok := auth.Lookup(x.Claims, plan.UserClaim)
		if !ok || v == nil {
			return nil
		}
		user = fmt.Sprint(v)
	}
	if user == "" {
		return nil
	}
	res := s.a.limits.Allow(ctx, []ratelimit.Key{{Scope: ratelimit.User, ID: user, Limit: plan.PerUser}})
	return s.a.rateOutcome(x, "user_ratelimit", res)
}

// rateOutcome counts a limiter result and turns a refusal into a 429 with Retry-After and the
// IETF RateLimit headers.
func (a *Access) rateOutcome(x *Exchange, check string, res ratelimit.Result) *Decision {
	if res.Allowed {
		a.count(x, check, "allowed_"+res.Backend)
		return nil
	}
	scope := string(res.Denied.Scope)
	a.count(x, check, "limited_"+scope)
	msg := map[ratelimit.Scope]string{
		ratelimit.Global: "the gateway-wide rate limit is exceeded",
		ratelimit.IP:     "the rate limit for your IP address is exceeded",
		ratelimit.Bucket: "the rate limit for this bucket is exceeded",
		ratelimit.User:   "the rate limit for your user is exceeded",
	}[res.Denied.Scope]
	d := Reject(x, http.StatusTooManyRequests, "rate_limited_"+scope, msg)
	secs := strconv.Itoa(max(1, int(math.Ceil(res.RetryAfter.Seconds()))))
	d.Headers = append(d.Headers,
		[2]string{"retry-after", secs},
		[2]string{"ratelimit-limit", strconv.Itoa(res.Denied.Limit.Burst)},
		[2]string{"ratelimit-remaining", "0"},
		[2]string{"ratelimit-reset", secs},
		[2]string{"ratelimit-policy", res.Denied.Limit.Policy()},
	)
	return d
}

type authStage struct{ a *Access }

func (authStage) Name() string { return "auth" }

func (s authStage) Run(ctx context.Context, x *Exchange) *Decision {
	v := s.a.binding(x.Snap).auth.Bucket(x.BucketIndex)
	if v == nil {
		s.a.count(x, "auth", "public")
		return nil
	}
	// Whatever happens next, credentials never travel upstream.
	names, path, changed := auth.Credentials(v.Sources(), x.Req, x.Req.RawPath)
	x.Upstream.Remove = append(x.Upstream.Remove, names...)
	if changed {
		x.Upstream.Path = path
	}
	token, _, found := auth.Extract(v.Sources(), x.Req, x.Req.RawPath)
	if !found {
		s.a.count(x, "auth", "missing_token")
		d := Reject(x, http.StatusUnauthorized, "auth_missing_token", "a bearer token is required for this bucket")
		d.Headers = append(d.Headers, [2]string{"www-authenticate", `Bearer realm="yatagarasu"`})
		return d
	}
	id, err := v.Verify(ctx, token)
	if err != nil {
		s.a.count(x, "auth", err.Reason)
		return Reject(x, http.StatusForbidden, err.Reason, err.Message)
	}
	s.a.count(x, "auth", "ok")
	x.Subject, x.Claims = id.Subject, id.Claims
	return nil
}

// AdminAuth authorises /admin/* against the current snapshot's jwt.admin_claims, so a reload that
// changes them applies to the next admin call.
func (a *Access) AdminAuth(store *runtime.Store) admin.AdminAuthFunc {
	return func(r *http.Request) *httperr.Body {
		reqID := r.Header.Get("X-Request-Id")
		snap := store.Load()
		if snap == nil {
			b := httperr.New(http.StatusServiceUnavailable, "gateway configuration is not loaded yet", reqID)
			return &b
		}
		v := a.binding(snap).auth.Admin
		if v == nil {
			b := httperr.New(http.StatusForbidden, "the admin API is disabled: configure jwt.admin_claims", reqID)
			return &b
		}
		token, _, found := auth.Extract(v.Sources(), httpHeaders{r.Header}, r.URL.RequestURI())
		if !found {
			b := httperr.New(http.StatusUnauthorized, "a bearer token with admin claims is required", reqID)
			return &b
		}
		if _, err := v.Verify(r.Context(), token); err != nil {
			b := httperr.New(http.StatusForbidden, err.Message, reqID)
			return &b
		}
		return nil
	}
}

// httpHeaders adapts net/http headers to auth.HeaderReader.
type httpHeaders struct{ h http.Header }

func (h httpHeaders) Header(name string) string { return h.h.Get(name) }
