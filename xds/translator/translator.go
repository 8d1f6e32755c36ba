// Package translator turns the product's YAML config into the Envoy resources the xDS server
// serves; it is a pure function so every input has one reviewable output (golden tests).
package translator

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	grpcalsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/grpc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/yatagarasu/yatagarasu/internal/config"
	"github.com/yatagarasu/yatagarasu/internal/httperr"
	"github.com/yatagarasu/yatagarasu/internal/originauth"
	"github.com/yatagarasu/yatagarasu/xds/validate"
)

// Resource names shared with the Envoy emulation harness and dashboards; changing one is a
// contract change.
const (
	ListenerName      = "yatagarasu_http"
	RouteConfigName   = "yatagarasu_routes"
	ExtProcCluster    = "yatagarasu_extproc"
	OriginCluster     = "yatagarasu_origin"
	VirtualHostName   = "yatagarasu"
	FallbackRouteName = "unprocessed"
	// AccessLogName is the log_name Envoy sends in its gRPC access-log stream (ALS served by
	// extproc on the ext_proc cluster, see accessLogs).
	AccessLogName = "yatagarasu_http"
	// BucketRoutePrefix prefixes a bucket's name to form its route name ("bucket:<name>").
	BucketRoutePrefix = "bucket:"
)

// Filter and extension names as Envoy knows them.
const (
	hcmFilterName         = "envoy.filters.network.http_connection_manager"
	extProcFilterName     = "envoy.filters.http.ext_proc"
	routerFilterName      = "envoy.filters.http.router"
	grpcAccessLoggerName  = "envoy.access_loggers.http_grpc"
	httpProtocolOptionKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)

// Fixed tuning values of the generated config.
const (
	statPrefix            = "yatagarasu"
	connectTimeout        = time.Second
	extProcGRPCTimeout    = 10 * time.Second
	keepaliveInterval     = 30 * time.Second
	keepaliveTimeout      = 5 * time.Second
	headerSlackKB         = 32   // headroom above our own header limit so extproc answers 431 first
	maxRequestHeadersKB   = 8192 // Envoy's upper bound for max_request_headers_kb
	unlimitedCircuitLimit = math.MaxInt32
	// fallbackMessage is the unprocessed route's answer: reached when extproc closed its stream
	// without a decision, or (during a reload) approved a bucket whose route Envoy has not
	// received yet. 503 + Retry-After, never another bucket's route: a retry a second later
	// finds the new route.
	fallbackMessage    = "the gateway has no route for this request yet (configuration update in progress); retry"
	fallbackStatus     = 503
	fallbackRetryAfter = "1"
)

// Resources is one complete, validated set of Envoy resources for a config.
type Resources struct {
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
}

// Translate builds the Envoy resources for cfg and checks them (deep PGV validation, our lint,
// snapshot consistency); an error means Envoy must not be given this config.
func Translate(cfg *config.Config) (*Resources, error) {
	if cfg == nil {
		return nil, errors.New("translate: nil config")
	}
	p, err := newParams(cfg)
	if err != nil {
		return nil, fmt.Errorf("translate %s: %w", sourceName(cfg), err)
	}
	listener, err := buildListener(p)
	if err != nil {
		return nil, fmt.Errorf("translate %s: listener: %w", sourceName(cfg), err)
	}
	extproc, err := buildCluster(ExtProcCluster, p.extProcAddr, true)
	if err != nil {
		return nil, fmt.Errorf("translate %s: cluster %q: %w", sourceName(cfg), ExtProcCluster, err)
	}
	origin, err := buildCluster(OriginCluster, p.originAddr, false)
	if err != nil {
		return nil, fmt.Errorf("translate %s: cluster %q: %w", sourceName(cfg), OriginCluster, err)
	}
	res := &Resources{
		Listeners: []*listenerv3.Listener{listener},
		Routes:    []*routev3.RouteConfiguration{buildRoutes(p)},
		Clusters:  []*clusterv3.Cluster{extproc, origin},
	}
	if err := res.Check(); err != nil {
		return nil, fmt.Errorf("translate %s: %w", sourceName(cfg), err)
	}
	return res, nil
}

// Check runs every validation Envoy would otherwise be the first to notice: PGV rules inside
// every Any, cross-resource lint, and the snapshot's consistency.
func (r *Resources) Check() error {
	all := r.all()
	for _, m := range all {
		if err := validate.Deep(m); err != nil {
			return fmt.Errorf("validate %s %q: %w", m.ProtoReflect().Descriptor().Name(), resourceName(m), err)
		}
	}
	if err := validate.Lint(all...); err != nil {
		return fmt.Errorf("lint: %w", err)
	}
	if _, err := r.Snapshot("check"); err != nil {
		return err
	}
	return nil
}

// Version is a content hash of all resources, stable across runs and processes, so an
// unchanged config yields the same version and Envoy is not pushed anything.
func (r *Resources) Version() string {
	h := sha256.New()
	opts := proto.MarshalOptions{Deterministic: true}
	for _, m := range r.all() {
		b, err := opts.Marshal(m)
		if err != nil {
			// Marshal of a valid generated message cannot fail; make any failure visible in the version.
			b = []byte("marshal-error:" + err.Error())
		}
		h.Write([]byte(m.ProtoReflect().Descriptor().FullName()))
		h.Write([]byte(strconv.Itoa(len(b))))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func (r *Resources) all() []proto.Message {
	out := make([]proto.Message, 0, len(r.Listeners)+len(r.Routes)+len(r.Clusters))
	for _, l := range r.Listeners {
		out = append(out, l)
	}
	for _, rc := range r.Routes {
		out = append(out, rc)
	}
	for _, c := range r.Clusters {
		out = append(out, c)
	}
	return out
}

// params are the config values the translation needs, with defaults applied.
type params struct {
	listenAddr     string
	listenPort     uint32
	maxHeaderBytes int
	requestTimeout time.Duration
	messageTimeout time.Duration
	extProcAddr    string
	originAddr     string
	buckets        []string
}

func newParams(cfg *config.Config) (params, error) {
	p := params{
		listenAddr:     cfg.Server.Address,
		maxHeaderBytes: cfg.Server.SecurityLimits.MaxHeaderSize,
		requestTimeout: cfg.Server.RequestTimeout.D(),
		messageTimeout: cfg.ExtProc.MessageTimeout.D(),
		extProcAddr:    cfg.ExtProc.GRPCAddress,
		originAddr:     cfg.Origin.Address,
	}
	// The loader fills defaults; repeat the documented ones here so a hand-built Config (tests,
	// other tools) cannot produce a zero timeout that Envoy would read as "fire immediately".
	if p.maxHeaderBytes == 0 {
		p.maxHeaderBytes = config.DefaultMaxHeaderSize
	}
	if p.requestTimeout == 0 {
		p.requestTimeout = config.DefaultRequestTimeout
	}
	if p.messageTimeout == 0 {
		p.messageTimeout = config.DefaultMessageTimeout
	}
	if p.extProcAddr == "" {
		p.extProcAddr = config.DefaultExtProcAddress
	}
	if p.originAddr == "" {
		p.originAddr = config.DefaultOriginAddress
	}
	if p.listenAddr == "" {
		return p, errors.New("server.address is empty")
	}
	if cfg.Server.Port <= 0 || cfg.Server.Port > 65535 {
		return p, fmt.Errorf("server.port %d is not in 1..65535", cfg.Server.Port)
	}
	p.listenPort = uint32(cfg.Server.Port)
	if p.maxHeaderBytes < 0 {
		return p, fmt.Errorf("server.security_limits.max_header_size %d is negative", p.maxHeaderBytes)
	}
	if p.requestTimeout < 0 {
		return p, fmt.Errorf("server.request_timeout %s is negative", p.requestTimeout)
	}
	if p.messageTimeout < 0 {
		return p, fmt.Errorf("extproc.message_timeout %s is negative", p.messageTimeout)
	}
	seen := make(map[string]int, len(cfg.Buckets))
	for i, b := range cfg.Buckets {
		if b.Name == "" {
			return p, fmt.Errorf("buckets[%d]: name is empty", i)
		}
		if j, dup := seen[b.Name]; dup {
			return p, fmt.Errorf("buckets[%d]: name %q already used by buckets[%d]", i, b.Name, j)
		}
		seen[b.Name] = i
		p.buckets = append(p.buckets, b.Name)
	}
	return p, nil
}

func sourceName(cfg *config.Config) string {
	if cfg.Source == "" {
		return "config"
	}
	return cfg.Source
}

func buildListener(p params) (*listenerv3.Listener, error) {
	extproc := &extprocv3.ExternalProcessor{
		GrpcService: &corev3.GrpcService{
			TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
				EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: ExtProcCluster},
			},
			Timeout: durationpb.New(extProcGRPCTimeout),
		},
		ProcessingMode: &extprocv3.ProcessingMode{
			RequestHeaderMode:   extprocv3.ProcessingMode_SEND,
			ResponseHeaderMode:  extprocv3.ProcessingMode_SKIP,
			RequestBodyMode:     extprocv3.ProcessingMode_NONE,
			ResponseBodyMode:    extprocv3.ProcessingMode_NONE,
			RequestTrailerMode:  extprocv3.ProcessingMode_SKIP,
			ResponseTrailerMode: extprocv3.ProcessingMode_SKIP,
		},
		MessageTimeout:   durationpb.New(p.messageTimeout),
		FailureModeAllow: false,
		StatusOnError:    &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable},
	}
	extprocAny, err := toAny(extproc)
	if err != nil {
		return nil, err
	}
	routerAny, err := toAny(&routerv3.Router{})
	if err != nil {
		return nil, err
	}
	logs, err := accessLogs()
	if err != nil {
		return nil, err
	}
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: statPrefix,
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			RouteConfigName: RouteConfigName,
			ConfigSource: &corev3.ConfigSource{
				ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
				ResourceApiVersion:    corev3.ApiVersion_V3,
			},
		}},
		UseRemoteAddress:          wrapperspb.Bool(true),
		PreserveExternalRequestId: true,
		// Envoy's own replies (431, ext_proc timeout, upstream failures) carry the id too.
		AlwaysSetRequestIdInResponse: true,
		AccessLog:                    logs,
		MaxRequestHeadersKb:          wrapperspb.UInt32(headersKB(p.maxHeaderBytes)),
		HttpFilters: []*hcmv3.HttpFilter{
			{Name: extProcFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: extprocAny}},
			{Name: routerFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: routerAny}},
		},
	}
	hcmAny, err := toAny(hcm)
	if err != nil {
		return nil, err
	}
	return &listenerv3.Listener{
		Name: ListenerName,
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address:       p.listenAddr,
			PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: p.listenPort},
		}}},
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{
				Name:       hcmFilterName,
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcmAny},
			}},
		}},
	}, nil
}

// accessLogs streams one entry per request to extproc's AccessLogService over the ext_proc
// cluster, so requests Envoy answers by itself get an audit record too (docs/AUDIT.md).
func accessLogs() ([]*accesslogv3.AccessLog, error) {
	als, err := toAny(&grpcalsv3.HttpGrpcAccessLogConfig{CommonConfig: &grpcalsv3.CommonGrpcAccessLogConfig{
		LogName: AccessLogName,
		GrpcService: &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
			EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: ExtProcCluster},
		}},
		TransportApiVersion: corev3.ApiVersion_V3,
	}})
	if err != nil {
		return nil, err
	}
	return []*accesslogv3.AccessLog{{Name: grpcAccessLoggerName, ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: als}}}, nil
}

// headersKB is Envoy's header limit: ours rounded up to KiB plus slack, so extproc (which
// enforces the exact limit with our JSON body) sees every request Envoy would not refuse.
func headersKB(maxHeaderBytes int) uint32 {
	kb := (maxHeaderBytes+1023)/1024 + headerSlackKB
	if kb > maxRequestHeadersKB {
		kb = maxRequestHeadersKB
	}
	return uint32(kb)
}

func buildRoutes(p params) *routev3.RouteConfiguration {
	routes := make([]*routev3.Route, 0, len(p.buckets)+1)
	for _, name := range p.buckets {
		routes = append(routes, &routev3.Route{
			Name: BucketRoutePrefix + name,
			Match: &routev3.RouteMatch{
				PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
				Headers: []*routev3.HeaderMatcher{{
					Name: originauth.HeaderBucket,
					HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
						MatchPattern: &matcherv3.StringMatcher_Exact{Exact: name},
					}},
				}},
			},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: OriginCluster},
				Timeout:          durationpb.New(p.requestTimeout),
			}},
		})
	}
	body := httperr.New(fallbackStatus, fallbackMessage, "").JSON()
	routes = append(routes, &routev3.Route{
		Name:  FallbackRouteName,
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
			Status: fallbackStatus,
			Body:   &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: string(body)}},
		}},
		ResponseHeadersToAdd: []*corev3.HeaderValueOption{{
			Header:       &corev3.HeaderValue{Key: "content-type", Value: httperr.ContentType},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		}, {
			Header:       &corev3.HeaderValue{Key: "retry-after", Value: fallbackRetryAfter},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		}},
	})
	return &routev3.RouteConfiguration{
		Name: RouteConfigName,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    VirtualHostName,
			Domains: []string{"*"},
			Routes:  routes,
		}},
	}
}

// buildCluster makes a one-endpoint cluster; http2 marks the gRPC ext_proc cluster, which also
// gets unlimited circuit breakers because every HTTP request holds one stream on it.
func buildCluster(name, addr string, http2 bool) (*clusterv3.Cluster, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", addr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return nil, fmt.Errorf("address %q: port must be in 1..65535", addr)
	}
	if host == "" {
		return nil, fmt.Errorf("address %q: host is empty", addr)
	}
	c := &clusterv3.Cluster{
		Name:           name,
		ConnectTimeout: durationpb.New(connectTimeout),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{{
					HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
						Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
							Address:       host,
							PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)},
						}}},
					}},
				}},
			}},
		},
	}
	if net.ParseIP(host) != nil {
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
	} else {
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS}
		c.DnsLookupFamily = clusterv3.Cluster_V4_PREFERRED
	}
	threshold := &clusterv3.CircuitBreakers_Thresholds{
		MaxConnections:     wrapperspb.UInt32(unlimitedCircuitLimit),
		MaxPendingRequests: wrapperspb.UInt32(unlimitedCircuitLimit),
		MaxRequests:        wrapperspb.UInt32(unlimitedCircuitLimit),
	}
	if http2 {
		threshold.MaxRetries = wrapperspb.UInt32(unlimitedCircuitLimit)
		opts, err := toAny(&upstreamhttpv3.HttpProtocolOptions{
			UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{
				ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
					ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
						Http2ProtocolOptions: &corev3.Http2ProtocolOptions{
							ConnectionKeepalive: &corev3.KeepaliveSettings{
								Interval: durationpb.New(keepaliveInterval),
								Timeout:  durationpb.New(keepaliveTimeout),
							},
						},
					},
				},
			},
		})
		if err != nil {
			return nil, err
		}
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpProtocolOptionKey: opts}
	}
	c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{threshold}}
	return c, nil
}

// toAny packs m deterministically so Version() is stable for equal content.
func toAny(m proto.Message) (*anypb.Any, error) {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		return nil, fmt.Errorf("pack %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return a, nil
}

// resourceName returns the name field of an xDS resource, for error messages.
func resourceName(m proto.Message) string {
	if n, ok := m.(interface{ GetName() string }); ok {
		return n.GetName()
	}
	return ""
}
