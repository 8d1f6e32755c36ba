// Package server serves the translated Envoy resources over ADS (and plain LDS/RDS/CDS) from a
// go-control-plane snapshot cache, one snapshot shared by every Envoy whatever its node id.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/yatagarasu/yatagarasu/xds/translator"
)

// NodeKey is the single snapshot key: every Envoy gets the same config (Contour's constant
// hash), so no per-node bookkeeping is needed when Envoys come and go.
const NodeKey = "yatagarasu"

// Reload results counted in yatagarasu_xds_reloads_total.
const (
	ResultApplied   = "applied"   // a new snapshot version is being served
	ResultUnchanged = "unchanged" // the config produced the version already served; nothing pushed
	ResultError     = "error"     // the reload failed; the last good snapshot is still served
)

// gRPC settings: Envoy's xds_cluster pings every 30s, so enforcement must allow that (grpc-go's
// default MinTime of 5 min would GOAWAY Envoy with too_many_pings).
const (
	keepaliveMinTime     = 15 * time.Second
	keepaliveTime        = 30 * time.Second
	keepaliveTimeout     = 5 * time.Second
	maxConcurrentStreams = 1 << 20
	// shutdownGrace bounds GracefulStop; streams end on ctx cancel, so this is only a backstop.
	shutdownGrace = 5 * time.Second
)

// Server owns the snapshot cache and the xDS gRPC services.
type Server struct {
	logger  *slog.Logger
	cache   cachev3.SnapshotCache
	metrics metrics

	mu      sync.Mutex
	version string
	streams map[int64]*streamState
}

// streamState is what the server remembers about one open SotW/delta stream.
type streamState struct {
	node *corev3.Node // sent only on the first request (set_node_on_first_message_only)
	sent map[string]sentResponse
}

// sentResponse is the last response sent on a stream for one type URL.
type sentResponse struct{ nonce, version string }

type metrics struct {
	configInfo *prometheus.GaugeVec
	reloads    *prometheus.CounterVec
	nacks      *prometheus.CounterVec
	streams    prometheus.Gauge
}

// New returns a server with an empty cache; Envoys connecting before the first Update wait.
// Metrics are registered on registry (nil: not registered).
func New(logger *slog.Logger, registry prometheus.Registerer) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	f := promauto.With(registry)
	s := &Server{
		logger:  logger,
		streams: map[int64]*streamState{},
		metrics: metrics{
			configInfo: f.NewGaugeVec(prometheus.GaugeOpts{
				Name: "yatagarasu_xds_config_info",
				Help: "Version of the snapshot being served to Envoy (value is always 1).",
			}, []string{"version"}),
			reloads: f.NewCounterVec(prometheus.CounterOpts{
				Name: "yatagarasu_xds_reloads_total",
				Help: "Config reloads by result (applied, unchanged, error).",
			}, []string{"result"}),
			nacks: f.NewCounterVec(prometheus.CounterOpts{
				Name: "yatagarasu_xds_nacks_total",
				Help: "xDS responses Envoy rejected, by resource type URL.",
			}, []string{"type_url"}),
			streams: f.NewGauge(prometheus.GaugeOpts{
				Name: "yatagarasu_xds_streams",
				Help: "Open xDS streams.",
			}),
		},
	}
	for _, r := range []string{ResultApplied, ResultUnchanged, ResultError} {
		s.metrics.reloads.WithLabelValues(r)
	}
	s.cache = cachev3.NewSnapshotCache(true, constantHash{}, cacheLogger{logger})
	return s
}

// constantHash maps every node to NodeKey.
type constantHash struct{}

// ID returns NodeKey for every node.
func (constantHash) ID(*corev3.Node) string { return NodeKey }

// Version is the version of the snapshot being served ("" before the first Update).
func (s *Server) Version() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version
}

// Update serves res to every Envoy. The version is res's content hash, so an unchanged config
// is a no-op and pushes nothing.
func (s *Server) Update(ctx context.Context, res *translator.Resources) error {
	if res == nil {
		s.metrics.reloads.WithLabelValues(ResultError).Inc()
		return errors.New("update xds snapshot: nil resources")
	}
	version := res.Version()
	s.mu.Lock()
	defer s.mu.Unlock()
	if version == s.version {
		s.metrics.reloads.WithLabelValues(ResultUnchanged).Inc()
		s.logger.InfoContext(ctx, "xds config unchanged, nothing pushed", "version", version)
		return nil
	}
	snap, err := res.Snapshot(version)
	if err != nil {
		s.metrics.reloads.WithLabelValues(ResultError).Inc()
		return fmt.Errorf("update xds snapshot: %w", err)
	}
	if err := s.cache.SetSnapshot(ctx, NodeKey, snap); err != nil {
		s.metrics.reloads.WithLabelValues(ResultError).Inc()
		return fmt.Errorf("update xds snapshot %s: %w", version, err)
	}
	previous := s.version
	s.version = version
	s.metrics.configInfo.Reset()
	s.metrics.configInfo.WithLabelValues(version).Set(1)
	s.metrics.reloads.WithLabelValues(ResultApplied).Inc()
	s.logger.InfoContext(ctx, "xds snapshot updated", "version", version, "previous_version", previous,
		"listeners", len(res.Listeners), "routes", len(res.Routes), "clusters", len(res.Clusters))
	return nil
}

// ReloadFailed records a reload that failed before reaching Update (bad file, invalid config);
// Envoy keeps the last good snapshot.
func (s *Server) ReloadFailed(ctx context.Context, err error) {
	s.metrics.reloads.WithLabelValues(ResultError).Inc()
	s.logger.ErrorContext(ctx, "config reload failed; still serving the last good xds snapshot",
		"version", s.Version(), "error", err.Error())
}

// Serve serves ADS plus LDS/RDS/CDS on lis until ctx is cancelled, then stops gracefully.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	gs := grpc.NewServer(
		grpc.MaxConcurrentStreams(maxConcurrentStreams),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: keepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: keepaliveTime, Timeout: keepaliveTimeout}),
	)
	xs := serverv3.NewServer(ctx, s.cache, s.callbacks())
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, xs)
	listenerservice.RegisterListenerDiscoveryServiceServer(gs, xs)
	routeservice.RegisterRouteDiscoveryServiceServer(gs, xs)
	clusterservice.RegisterClusterDiscoveryServiceServer(gs, xs)

	s.logger.InfoContext(ctx, "xds server listening", "address", lis.Addr().String())
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve xds on %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(stopped)
	}()
	timer := time.NewTimer(shutdownGrace)
	defer timer.Stop()
	select {
	case <-stopped:
	case <-timer.C:
		gs.Stop()
		<-stopped
	}
	if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serve xds on %s: %w", lis.Addr(), err)
	}
	s.logger.Info("xds server stopped")
	return nil
}

func (s *Server) callbacks() serverv3.CallbackFuncs {
	return serverv3.CallbackFuncs{
		StreamOpenFunc:        func(ctx context.Context, id int64, typeURL string) error { return s.streamOpened(ctx, id, typeURL) },
		StreamClosedFunc:      s.streamClosed,
		DeltaStreamOpenFunc:   func(ctx context.Context, id int64, typeURL string) error { return s.streamOpened(ctx, id, typeURL) },
		DeltaStreamClosedFunc: s.streamClosed,
		StreamRequestFunc:     s.streamRequest,
		StreamResponseFunc: func(_ context.Context, id int64, _ *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.stream(id).sent[resp.GetTypeUrl()] = sentResponse{nonce: resp.GetNonce(), version: resp.GetVersionInfo()}
		},
		StreamDeltaRequestFunc: func(id int64, req *discoveryv3.DeltaDiscoveryRequest) error {
			node := s.rememberNode(id, req.GetNode())
			if req.GetErrorDetail() != nil {
				s.nack(node, req.GetTypeUrl(), "", req.GetResponseNonce(), req.GetErrorDetail().GetMessage())
			}
			return nil
		},
	}
}

// streamRequest logs and counts NACKs. A NACK carries the last version Envoy accepted, which
// go-control-plane's cache reads as "send the current snapshot now", so it would resend the
// rejected config at once and loop with Envoy NACKing each copy. Rewriting the request's version
// to the rejected one makes the cache wait for the next snapshot instead.
func (s *Server) streamRequest(id int64, req *discoveryv3.DiscoveryRequest) error {
	node := s.rememberNode(id, req.GetNode())
	if req.GetErrorDetail() == nil {
		return nil
	}
	s.nack(node, req.GetTypeUrl(), req.GetVersionInfo(), req.GetResponseNonce(), req.GetErrorDetail().GetMessage())
	s.mu.Lock()
	defer s.mu.Unlock()
	if last, ok := s.stream(id).sent[req.GetTypeUrl()]; ok && last.nonce == req.GetResponseNonce() {
		req.VersionInfo = last.version
	}
	return nil
}

// stream returns the state of stream id; s.mu must be held.
func (s *Server) stream(id int64) *streamState {
	st, ok := s.streams[id]
	if !ok {
		st = &streamState{sent: map[string]sentResponse{}}
		s.streams[id] = st
	}
	return st
}

func (s *Server) streamOpened(ctx context.Context, id int64, typeURL string) error {
	s.metrics.streams.Inc()
	s.logger.DebugContext(ctx, "xds stream opened", "stream_id", id, "type_url", typeURL)
	return nil
}

func (s *Server) streamClosed(id int64, node *corev3.Node) {
	s.metrics.streams.Dec()
	s.mu.Lock()
	delete(s.streams, id)
	s.mu.Unlock()
	s.logger.Debug("xds stream closed", "stream_id", id, "node_id", node.GetId())
}

func (s *Server) rememberNode(id int64, node *corev3.Node) *corev3.Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stream(id)
	if node != nil {
		st.node = node
	}
	return st.node
}

func (s *Server) nack(node *corev3.Node, typeURL, version, nonce, detail string) {
	s.metrics.nacks.WithLabelValues(typeURL).Inc()
	s.logger.Error("envoy rejected xds config (NACK); it keeps its last good config and a restarting envoy will fail to load this one",
		"node_id", node.GetId(), "node_cluster", node.GetCluster(), "type_url", typeURL,
		"accepted_version", version, "nonce", nonce, "error_detail", detail, "served_version", s.Version())
}

// cacheLogger adapts slog to go-control-plane's printf-style logger.
type cacheLogger struct{ l *slog.Logger }

// Debugf logs at debug level.
func (c cacheLogger) Debugf(format string, args ...any) { c.l.Debug(fmt.Sprintf(format, args...)) }

// Infof logs at debug level: the cache's info lines are per-request noise.
func (c cacheLogger) Infof(format string, args ...any) { c.l.Debug(fmt.Sprintf(format, args...)) }

// Warnf logs at warn level.
func (c cacheLogger) Warnf(format string, args ...any) { c.l.Warn(fmt.Sprintf(format, args...)) }

// Errorf logs at error level.
func (c cacheLogger) Errorf(format string, args ...any) { c.l.Error(fmt.Sprintf(format, args...)) }
