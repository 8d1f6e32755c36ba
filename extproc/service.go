package extproc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/yatagarasu/yatagarasu/internal/admin"
	"github.com/yatagarasu/yatagarasu/internal/cache"
	"github.com/yatagarasu/yatagarasu/internal/config"
	"github.com/yatagarasu/yatagarasu/internal/httperr"
	"github.com/yatagarasu/yatagarasu/internal/origin"
	"github.com/yatagarasu/yatagarasu/internal/runtime"
	"github.com/yatagarasu/yatagarasu/internal/s3"
	"github.com/yatagarasu/yatagarasu/internal/watch"
)

// Service is the extproc process: the ext_proc gRPC server, the origin and the admin server,
// sharing one runtime snapshot.
type Service struct {
	Store    *runtime.Store
	Registry *prometheus.Registry
	Admin    *admin.Handler // features register /admin/* endpoints here
	// Cache is the object cache (nil when disabled); it outlives config reloads (service_cache.go).
	Cache          *cache.Tiered
	CacheAdmin     *cache.Admin
	cacheResponder *cache.Responder

	log     *slog.Logger
	grpc    *grpc.Server
	health  *health.Server
	origin  *http.Server
	admin   *http.Server
	addrs   Addrs
	errc    chan error
	stopped chan struct{}

	policies *policyRuntime // wasm policy host, extproc/policy_runtime.go
	access   *Access        // IP lists, rate limits, JWT: state kept across reloads (stages_access.go)
	obs      *Observability // tracing, audit log, request metrics (observe.go, service_observe.go)
	// als serves Envoy's access logs, so Envoy's own replies get audit records (accesslog.go).
	als *AccessLogServer

	backends  *s3.Health       // breakers and probe state of every S3 backend, kept across reloads (stage_backend.go)
	inflight  *origin.InFlight // requests in flight at the origin, for server.max_concurrent_requests
	stopProbe context.CancelFunc
}

// Addrs are the addresses the service actually listens on (useful when the config asks for port 0).
type Addrs struct{ GRPC, Origin, Admin string }

// Start builds the snapshot from cfg and starts all three servers on cfg's addresses.
func Start(ctx context.Context, cfg *config.Config, log *slog.Logger) (_ *Service, err error) {
	// Everything started so far is released if a later step fails, newest first.
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	backends := s3.NewHealth(log)
	snap, err := runtime.Build(cfg, s3.WithHealth(backends))
	if err != nil {
		return nil, fmt.Errorf("build runtime snapshot: %w", err)
	}
	s := &Service{Store: &runtime.Store{}, Registry: prometheus.NewRegistry(), log: log, errc: make(chan error, 3), stopped: make(chan struct{})}
	s.backends, s.inflight = backends, &origin.InFlight{}
	s.Registry.MustRegister(backends) // yatagarasu_s3_retries_total, _breaker_state, _failovers_total, _backend_up
	s.access = NewAccess(log, s.Registry)
	undo = append(undo, func() { _ = s.access.Close() })
	if err := s.access.Bind(snap); err != nil {
		return nil, fmt.Errorf("access control: %w", err)
	}
	if s.policies, err = newPolicyRuntime(s.Store, log, s.Registry); err != nil {
		return nil, fmt.Errorf("policy host: %w", err)
	}
	undo = append(undo, func() { _ = s.policies.close(context.WithoutCancel(ctx)) })
	if err := s.policies.publish(ctx, cfg, snap); err != nil {
		return nil, fmt.Errorf("load policies: %w", err)
	}
	s.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if s.obs, err = NewObservability(ctx, cfg, log, s.Registry, s.trustedHops); err != nil {
		return nil, fmt.Errorf("observability: %w", err)
	}
	undo = append(undo, func() { _ = s.closeObservability(context.WithoutCancel(ctx)) })
	if err := s.startCache(ctx, cfg); err != nil {
		return nil, err
	}
	undo = append(undo, func() { _ = s.closeCache() })

	var lc net.ListenConfig
	lis := make([]net.Listener, 0, 3)
	for _, a := range []string{cfg.ExtProc.GRPCAddress, cfg.Origin.Address, cfg.Admin.Address} {
		l, err := lc.Listen(ctx, "tcp", a)
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", a, err)
		}
		undo = append(undo, func() { _ = l.Close() })
		lis = append(lis, l)
	}
	s.addrs = Addrs{GRPC: lis[0].Addr().String(), Origin: lis[1].Addr().String(), Admin: lis[2].Addr().String()}

	s.grpc = grpc.NewServer(
		// Envoy's own client has no receive limit; bodies never ride this stream, but a large
		// header map must not fail on grpc-go's 4 MiB default.
		grpc.MaxRecvMsgSize(math.MaxInt32),
		// Envoy pings every 30s; grpc-go's default 5 min enforcement would GOAWAY it.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 5 * time.Second}),
		grpc.ChainStreamInterceptor(streamInterceptor(s.Registry)), // observe.go: stream counts
	)
	extprocv3.RegisterExternalProcessorServer(s.grpc, NewServer(NewPipeline(s.Store, time.Now, s.access.IPFilter(), s.access.RateLimit(), &BackendStage{InFlight: s.inflight}, s.access.Auth(), s.access.UserRateLimit(), &PolicyStage{}, &CacheStage{Cache: s.Cache}), log, s.Registry).WithObservability(s.obs))
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	s.als = s.registerAccessLog()

	s.origin = &http.Server{
		Handler:           s.inflight.Wrap(s.observeOrigin(s.withCache(origin.New(snap.Signer, s.Store.S3Bucket, log, s.Registry, time.Now))), s.maxConcurrent),
		ReadHeaderTimeout: 10 * time.Second,
	}
	s.Admin = admin.New(admin.Options{Gatherer: s.Registry, Ready: s.ready, AdminAuth: s.access.AdminAuth(s.Store)})
	s.registerCacheAdmin(ctx)
	s.admin = &http.Server{Handler: s.Admin, ReadHeaderTimeout: 10 * time.Second}
	s.startBackends() // stage_backend.go: background S3 probes
	go func() { s.errc <- s.grpc.Serve(lis[0]) }()
	go func() { s.errc <- serveHTTP(s.origin, lis[1]) }()
	go func() { s.errc <- serveHTTP(s.admin, lis[2]) }()
	log.Info("extproc started", "grpc", s.addrs.GRPC, "origin", s.addrs.Origin, "admin", s.addrs.Admin, "buckets", len(cfg.Buckets))
	return s, nil
}

func serveHTTP(srv *http.Server, l net.Listener) error {
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Addrs returns the bound addresses.
func (s *Service) Addrs() Addrs { return s.addrs }

// Err delivers the first server failure.
func (s *Service) Err() <-chan error { return s.errc }

// ready is true once a snapshot is loaded and every bucket's S3 backend answers.
func (s *Service) ready(ctx context.Context) error {
	snap := s.Store.Load()
	if snap == nil {
		return errors.New("configuration not loaded")
	}
	for name, b := range snap.S3 {
		if err := b.Ping(ctx); err != nil {
			return fmt.Errorf("bucket %q: S3 not reachable: %w", name, err)
		}
	}
	return nil
}

// BeginDrain turns /ready and gRPC health false while everything keeps serving, so load balancers
// and probes can see it before Shutdown stops accepting work (see extproc's --drain-delay).
func (s *Service) BeginDrain() {
	s.Admin.Drain()
	s.health.Shutdown()
}

// Shutdown drains: /ready and gRPC health turn false at once, new ext_proc streams and origin
// connections are refused, and in-flight decisions and downloads finish until ctx ends, when the
// rest is cut. The admin server stays up until the end so probes see "draining", not a refusal.
func (s *Service) Shutdown(ctx context.Context) error {
	s.BeginDrain()
	s.stopBackends()
	grpcDone := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(grpcDone) }()
	err := s.origin.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, s.origin.Close())
	}
	s.als.Stop() // ends Envoy's log streams (GracefulStop waits for them) and writes what waits
	select {
	case <-grpcDone:
	case <-ctx.Done():
		s.grpc.Stop()
		err = errors.Join(err, ctx.Err())
	}
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	return errors.Join(err, s.closeObservability(ctx), s.admin.Shutdown(closeCtx), s.closeCache(), s.policies.close(closeCtx), s.access.Close())
}

// Reload builds a snapshot from cfg and swaps it in; requests already deciding finish on the
// old one. Addresses and the origin secret are bound at start, so a change to them is refused
// (with the reason) rather than half-applied.
func (s *Service) Reload(cfg *config.Config) error {
	old := s.Store.Load().Config
	switch {
	case cfg.ExtProc.GRPCAddress != old.ExtProc.GRPCAddress, cfg.Origin.Address != old.Origin.Address, cfg.Admin.Address != old.Admin.Address:
		return errors.New("reload refused: extproc, origin and admin addresses change only with a restart")
	case cfg.Origin.SharedSecret != old.Origin.SharedSecret:
		return errors.New("reload refused: origin.shared_secret changes only with a restart")
	}
	snap, err := runtime.Build(cfg, s3.WithHealth(s.backends))
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	s.warnCacheReload(old, cfg)
	if err := s.access.Bind(snap); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	if err := s.policies.publish(context.Background(), cfg, snap); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	s.log.Info("config reloaded", "buckets", len(cfg.Buckets))
	return nil
}

// Follow reloads the service whenever the config file at path changes (until ctx ends), the same
// way the xds control plane follows it, and on POST /admin/reload (admin auth). The returned
// watcher also serves SIGHUP via ReloadNow.
func (s *Service) Follow(ctx context.Context, path string) (*watch.Watcher, error) {
	w, err := watch.New(watch.Options{
		Path:     path,
		Debounce: s.Store.Load().Config.XDS.Debounce.D(),
		Logger:   s.log,
		Reload: func(context.Context) error {
			next, err := config.Load(path)
			if err != nil {
				return err
			}
			return s.Reload(next)
		},
	})
	if err != nil {
		return nil, err
	}
	go func() { _ = w.Run(ctx) }()
	s.Admin.HandleAdmin("POST /admin/reload", http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if err := w.ReloadNow(r.Context()); err != nil {
			httperr.Write(rw, httperr.New(http.StatusUnprocessableEntity, "reload refused, the previous config keeps serving: "+err.Error(), r.Header.Get("X-Request-Id")))
			return
		}
		rw.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(rw, "{\"status\":\"reloaded\",\"buckets\":%d}\n", len(s.Store.Load().Config.Buckets))
	}))
	return w, nil
}
