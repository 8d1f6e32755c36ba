package envoyemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Names from the xDS contract (the harness must not import the translator).
const (
	listenerName    = "yatagarasu_http"
	routeConfigName = "yatagarasu_routes"
	extProcCluster  = "yatagarasu_extproc"
	originCluster   = "yatagarasu_origin"
	unprocessedBody = `{"error":"Forbidden","message":"request was not processed by the gateway","status":403}`
)

// errCloseOK makes the fake server end the stream with status OK without answering.
var errCloseOK = errors.New("close OK")

// fakeExtProc is a real gRPC ext_proc server on loopback whose behaviour each test scripts.
type fakeExtProc struct {
	extprocv3.UnimplementedExternalProcessorServer
	handle func(req *extprocv3.ProcessingRequest, stream extprocv3.ExternalProcessor_ProcessServer) error
	reqs   chan *extprocv3.ProcessingRequest
	ends   chan codes.Code // how each stream ended after the server answered
	addr   string
}

func (f *fakeExtProc) Process(stream extprocv3.ExternalProcessor_ProcessServer) error {
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	f.reqs <- req
	if err := f.handle(req, stream); err != nil {
		if errors.Is(err, errCloseOK) {
			return nil
		}
		return err
	}
	_, err = stream.Recv()
	if errors.Is(err, io.EOF) {
		f.ends <- codes.OK
	} else {
		f.ends <- status.Code(err)
	}
	return nil
}

func startExtProc(t *testing.T, handle func(*extprocv3.ProcessingRequest, extprocv3.ExternalProcessor_ProcessServer) error) *fakeExtProc {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeExtProc{handle: handle, reqs: make(chan *extprocv3.ProcessingRequest, 64), ends: make(chan codes.Code, 64), addr: lis.Addr().String()}
	srv := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(srv, f)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return f
}

// continueWith answers request headers with CONTINUE and the given mutation.
func continueWith(m *extprocv3.HeaderMutation, clearRouteCache bool) func(*extprocv3.ProcessingRequest, extprocv3.ExternalProcessor_ProcessServer) error {
	return func(_ *extprocv3.ProcessingRequest, s extprocv3.ExternalProcessor_ProcessServer) error {
		return s.Send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
			RequestHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{HeaderMutation: m, ClearRouteCache: clearRouteCache}},
		}})
	}
}

func setRaw(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, RawValue: []byte(v)}}
}

// upstreamSeen is what the origin received.
type upstreamSeen struct {
	Method     string              `json:"method"`
	RequestURI string              `json:"request_uri"`
	Host       string              `json:"host"`
	Header     map[string][]string `json:"header"`
}

// startUpstream is a plain HTTP origin that echoes what it received as JSON.
func startUpstream(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(upstreamSeen{Method: r.Method, RequestURI: r.RequestURI, Host: r.Host, Header: r.Header})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// contract describes the knobs tests vary; defaults follow the xDS contract.
type contract struct {
	extProcAddr    string
	originAddr     string
	buckets        []string
	messageTimeout time.Duration
	statusOnError  typev3.StatusCode // 0 = unset (Envoy default 500)
	routeTimeout   time.Duration
	maxHeadersKB   uint32
}

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func socketAddr(t *testing.T, hostport string) *corev3.Address {
	t.Helper()
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)}}}}
}

func (c contract) extProcFilter(t *testing.T) *extprocfilterv3.ExternalProcessor {
	c = c.withDefaults()
	ep := &extprocfilterv3.ExternalProcessor{
		GrpcService: &corev3.GrpcService{
			TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: extProcCluster}},
			Timeout:         durationpb.New(10 * time.Second),
		},
		ProcessingMode: &extprocfilterv3.ProcessingMode{
			RequestHeaderMode:   extprocfilterv3.ProcessingMode_SEND,
			ResponseHeaderMode:  extprocfilterv3.ProcessingMode_SKIP,
			RequestBodyMode:     extprocfilterv3.ProcessingMode_NONE,
			ResponseBodyMode:    extprocfilterv3.ProcessingMode_NONE,
			RequestTrailerMode:  extprocfilterv3.ProcessingMode_SKIP,
			ResponseTrailerMode: extprocfilterv3.ProcessingMode_SKIP,
		},
		MessageTimeout:   durationpb.New(c.messageTimeout),
		FailureModeAllow: false,
	}
	if c.statusOnError != 0 {
		ep.StatusOnError = &typev3.HttpStatus{Code: c.statusOnError}
	}
	return ep
}

func (c contract) listener(t *testing.T, ep proto.Message) *listenerv3.Listener {
	c = c.withDefaults()
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: "yatagarasu",
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			RouteConfigName: routeConfigName,
			ConfigSource: &corev3.ConfigSource{
				ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
				ResourceApiVersion:    corev3.ApiVersion_V3,
			},
		}},
		UseRemoteAddress:          wrapperspb.Bool(true),
		PreserveExternalRequestId: true,
		MaxRequestHeadersKb:       wrapperspb.UInt32(c.maxHeadersKB),
		HttpFilters: []*hcmv3.HttpFilter{
			{Name: "envoy.filters.http.ext_proc", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, ep)}},
			{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{})}},
		},
	}
	return &listenerv3.Listener{
		Name:    listenerName,
		Address: socketAddr(t, "127.0.0.1:0"),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name:       "envoy.filters.network.http_connection_manager",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, hcm)},
		}}}},
	}
}

func (c contract) routes(directBody string) *routev3.RouteConfiguration {
	var routes []*routev3.Route
	for _, b := range c.buckets {
		routes = append(routes, &routev3.Route{
			Name: "bucket:" + b,
			Match: &routev3.RouteMatch{
				PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
				Headers: []*routev3.HeaderMatcher{{
					Name: "x-yatagarasu-bucket",
					HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
						MatchPattern: &matcherv3.StringMatcher_Exact{Exact: b},
					}},
				}},
			},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: originCluster},
				Timeout:          durationpb.New(c.routeTimeout),
			}},
		})
	}
	routes = append(routes, &routev3.Route{
		Name:  "unprocessed",
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
			Status: 403,
			Body:   &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: directBody}},
		}},
		ResponseHeadersToAdd: []*corev3.HeaderValueOption{{
			Header:       &corev3.HeaderValue{Key: "content-type", Value: "application/json"},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		}},
	})
	return &routev3.RouteConfiguration{
		Name:         routeConfigName,
		VirtualHosts: []*routev3.VirtualHost{{Name: "yatagarasu", Domains: []string{"*"}, Routes: routes}},
	}
}

func cluster(t *testing.T, name, addr string, http2 bool) *clusterv3.Cluster {
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(time.Second),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddr(t, addr)}},
			}}}},
		},
		CircuitBreakers: &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			MaxConnections:     wrapperspb.UInt32(2147483647),
			MaxPendingRequests: wrapperspb.UInt32(2147483647),
			MaxRequests:        wrapperspb.UInt32(2147483647),
		}}},
	}
	if http2 {
		c.CircuitBreakers.Thresholds[0].MaxRetries = wrapperspb.UInt32(2147483647)
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(t, &upstreamhttpv3.HttpProtocolOptions{
				UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
					ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{
						ConnectionKeepalive: &corev3.KeepaliveSettings{Interval: durationpb.New(30 * time.Second), Timeout: durationpb.New(5 * time.Second)},
					}},
				}},
			}),
		}
	}
	return c
}

// withDefaults fills the knobs a test left at zero.
func (c contract) withDefaults() contract {
	if c.messageTimeout == 0 {
		c.messageTimeout = 5 * time.Second // generous: only the timeout test relies on it firing
	}
	if c.routeTimeout == 0 {
		c.routeTimeout = 30 * time.Second
	}
	if c.maxHeadersKB == 0 {
		c.maxHeadersKB = 96
	}
	if c.buckets == nil {
		c.buckets = []string{"photos", "docs"}
	}
	return c
}

// resources builds the contract's listener, route configuration and clusters.
func (c contract) resources(t *testing.T) Resources {
	t.Helper()
	c = c.withDefaults()
	return Resources{
		Listeners: []*listenerv3.Listener{c.listener(t, c.extProcFilter(t))},
		Routes:    []*routev3.RouteConfiguration{c.routes(unprocessedBody)},
		Clusters:  []*clusterv3.Cluster{cluster(t, extProcCluster, c.extProcAddr, true), cluster(t, originCluster, c.originAddr, false)},
	}
}

// syncBuffer collects log output from concurrent goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startEnvoy runs the harness on the given resources with a captured log.
func startEnvoy(t *testing.T, res Resources) (*Envoy, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	e, err := New(context.Background(), res, Options{ListenAddress: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return e, logs
}

// get sends a request with a fresh connection-less client and returns status, headers, body.
func get(t *testing.T, method, url string, hdr map[string]string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, body
}
