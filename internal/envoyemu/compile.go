package envoyemu

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

const (
	// Envoy defaults the harness relies on.
	defaultMaxRequestHeadersKB = 60
	defaultMaxHeadersCount     = 100
	defaultMessageTimeout      = 200 * time.Millisecond
	defaultRouteTimeout        = 15 * time.Second
	defaultConnectTimeout      = 5 * time.Second
	httpProtocolOptionsKey     = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)

// dataPlane is the immutable, compiled form of one complete xDS configuration; requests read it
// through an atomic pointer and a push swaps it whole.
type dataPlane struct {
	version    string
	listenAddr string
	hcm        hcmConfig
	extProc    *extProcConfig // nil when the listener has no ext_proc filter
	routes     *routeTable
	clusters   map[string]*clusterConfig
	accessLog  *accessLogConfig // nil when the HCM has no access_log (accesslog.go)
}

type hcmConfig struct {
	routeConfigName   string
	maxHeadersKB      int
	maxHeadersCount   int
	useRemoteAddress  bool
	preserveRequestID bool
	generateRequestID bool
	// alwaysSetRequestID copies x-request-id into every response (always_set_request_id_in_response).
	alwaysSetRequestID bool
}

type extProcConfig struct {
	cluster          string
	messageTimeout   time.Duration
	failureModeAllow bool
	statusOnError    int
}

type routeTable struct {
	name   string
	vhosts []*virtualHost
}

type virtualHost struct {
	name    string
	domains []string
	routes  []*route
}

type route struct {
	name         string
	prefix       *string
	path         *string
	regex        *regexp.Regexp
	headers      []headerMatcher
	cluster      string
	timeout      time.Duration
	direct       *directResponse
	responseAdds []headerAdd
}

type headerMatcher struct {
	name    string
	exact   *string
	prefix  *string
	present *bool
}

type directResponse struct {
	status int
	body   []byte
}

type headerAdd struct {
	key    string
	value  string
	action corev3.HeaderValueOption_HeaderAppendAction
}

type clusterConfig struct {
	name           string
	host           string
	port           uint32
	static         bool
	family         clusterv3.Cluster_DnsLookupFamily
	connectTimeout time.Duration
	http2          bool
	keepalive      *keepaliveConfig
}

type keepaliveConfig struct {
	interval time.Duration
	timeout  time.Duration
}

// endpoint is host:port of the cluster's single endpoint.
func (c *clusterConfig) endpoint() string {
	return net.JoinHostPort(c.host, strconv.FormatUint(uint64(c.port), 10))
}

// poolKey identifies the upstream connection pool settings of a cluster.
func (c *clusterConfig) poolKey() string {
	ka := ""
	if c.keepalive != nil {
		ka = fmt.Sprintf("%s/%s", c.keepalive.interval, c.keepalive.timeout)
	}
	return fmt.Sprintf("%s|%s|%v|%d|%s|%v|%s", c.name, c.endpoint(), c.static, c.family, c.connectTimeout, c.http2, ka)
}

// routeConfigNames returns the RDS names the listeners reference (what the ADS client subscribes).
func routeConfigNames(listeners []*listenerv3.Listener) ([]string, error) {
	var names []string
	for _, l := range listeners {
		hcm, _, err := listenerHCM(l)
		if err != nil {
			return nil, err
		}
		names = append(names, hcm.GetRds().GetRouteConfigName())
	}
	return names, nil
}

// compile checks every resource and builds the data plane.
func compile(res Resources) (*dataPlane, error) {
	for _, l := range res.Listeners {
		if err := checkResource(l, fmt.Sprintf("Listener[%q]", l.GetName())); err != nil {
			return nil, err
		}
	}
	for _, r := range res.Routes {
		if err := checkResource(r, fmt.Sprintf("RouteConfiguration[%q]", r.GetName())); err != nil {
			return nil, err
		}
	}
	for _, c := range res.Clusters {
		if err := checkResource(c, fmt.Sprintf("Cluster[%q]", c.GetName())); err != nil {
			return nil, err
		}
	}
	if len(res.Listeners) != 1 {
		return nil, fmt.Errorf("envoyemu: %d listeners given; the harness emulates exactly one listener", len(res.Listeners))
	}
	dp := &dataPlane{clusters: map[string]*clusterConfig{}}
	for _, c := range res.Clusters {
		cc, err := compileCluster(c)
		if err != nil {
			return nil, err
		}
		if _, dup := dp.clusters[cc.name]; dup {
			return nil, fmt.Errorf("envoyemu: duplicate cluster %q", cc.name)
		}
		dp.clusters[cc.name] = cc
	}
	if err := compileListener(dp, res.Listeners[0]); err != nil {
		return nil, err
	}
	for _, rc := range res.Routes {
		if rc.GetName() != dp.hcm.routeConfigName {
			continue
		}
		rt, err := compileRouteConfig(rc)
		if err != nil {
			return nil, err
		}
		dp.routes = rt
	}
	if dp.routes == nil {
		return nil, fmt.Errorf("envoyemu: route configuration %q named by listener %q was not provided", dp.hcm.routeConfigName, res.Listeners[0].GetName())
	}
	if dp.extProc != nil {
		c, ok := dp.clusters[dp.extProc.cluster]
		if ok && !c.http2 {
			return nil, fmt.Errorf("envoyemu: ext_proc cluster %q has no HTTP/2 protocol options; Envoy's gRPC client needs HTTP/2", c.name)
		}
	}
	for _, vh := range dp.routes.vhosts {
		for _, r := range vh.routes {
			if c, ok := dp.clusters[r.cluster]; ok && c.http2 {
				return nil, &UnsupportedError{Field: "HTTP/2 upstream for the router", Path: fmt.Sprintf("route %q → cluster %q", r.name, c.name), What: "feature"}
			}
		}
	}
	return dp, nil
}

// listenerHCM returns the single HttpConnectionManager of a listener.
func listenerHCM(l *listenerv3.Listener) (*hcmv3.HttpConnectionManager, string, error) {
	if len(l.GetFilterChains()) != 1 || len(l.GetFilterChains()[0].GetFilters()) != 1 {
		return nil, "", fmt.Errorf("envoyemu: listener %q: the harness emulates exactly one filter chain with exactly one network filter", l.GetName())
	}
	f := l.GetFilterChains()[0].GetFilters()[0]
	hcm := &hcmv3.HttpConnectionManager{}
	if f.GetTypedConfig() == nil || !f.GetTypedConfig().MessageIs(hcm) {
		return nil, "", &UnsupportedError{Field: f.GetTypedConfig().GetTypeUrl(), Path: fmt.Sprintf("Listener[%q].filter_chains[0].filters[0]", l.GetName()), What: "extension type"}
	}
	if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
		return nil, "", fmt.Errorf("envoyemu: listener %q: decode HttpConnectionManager: %w", l.GetName(), err)
	}
	if hcm.GetRds().GetRouteConfigName() == "" {
		return nil, "", fmt.Errorf("envoyemu: listener %q: HttpConnectionManager must use rds with a route_config_name", l.GetName())
	}
	if hcm.GetRds().GetConfigSource().GetAds() == nil {
		return nil, "", &UnsupportedError{Field: "envoy.config.core.v3.ConfigSource", Path: fmt.Sprintf("Listener[%q] rds.config_source (only ads{} is emulated)", l.GetName()), What: "config source"}
	}
	return hcm, f.GetName(), nil
}

func compileListener(dp *dataPlane, l *listenerv3.Listener) error {
	sa := l.GetAddress().GetSocketAddress()
	if sa == nil {
		return fmt.Errorf("envoyemu: listener %q has no socket_address", l.GetName())
	}
	dp.listenAddr = net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10))
	hcm, _, err := listenerHCM(l)
	if err != nil {
		return err
	}
	dp.hcm = hcmConfig{
		routeConfigName:   hcm.GetRds().GetRouteConfigName(),
		maxHeadersKB:      defaultMaxRequestHeadersKB,
		maxHeadersCount:   defaultMaxHeadersCount,
		useRemoteAddress:  hcm.GetUseRemoteAddress().GetValue(),
		preserveRequestID: hcm.GetPreserveExternalRequestId(),
		generateRequestID: hcm.GetGenerateRequestId() == nil || hcm.GetGenerateRequestId().GetValue(),
	}
	if v := hcm.GetMaxRequestHeadersKb(); v != nil {
		dp.hcm.maxHeadersKB = int(v.GetValue())
	}
	if err := compileAccessLogs(dp, hcm, fmt.Sprintf("Listener[%q].hcm", l.GetName())); err != nil {
		return err
	}
	filters := hcm.GetHttpFilters()
	for i, f := range filters {
		path := fmt.Sprintf("Listener[%q].hcm.http_filters[%d]", l.GetName(), i)
		tc := f.GetTypedConfig()
		switch {
		case tc.MessageIs(&routerv3.Router{}):
			if i != len(filters)-1 {
				return fmt.Errorf("envoyemu: %s: router must be the last HTTP filter", path)
			}
		case tc.MessageIs(&extprocfilterv3.ExternalProcessor{}):
			if dp.extProc != nil {
				return &UnsupportedError{Field: "second ext_proc filter", Path: path, What: "feature"}
			}
			ep := &extprocfilterv3.ExternalProcessor{}
			if err := tc.UnmarshalTo(ep); err != nil {
				return fmt.Errorf("envoyemu: %s: decode ExternalProcessor: %w", path, err)
			}
			cfg, err := compileExtProc(ep, path)
			if err != nil {
				return err
			}
			dp.extProc = cfg
		default:
			return &UnsupportedError{Field: tc.GetTypeUrl(), Path: path, What: "extension type"}
		}
	}
	if len(filters) == 0 || !filters[len(filters)-1].GetTypedConfig().MessageIs(&routerv3.Router{}) {
		return fmt.Errorf("envoyemu: listener %q: the last HTTP filter must be envoy.filters.http.router", l.GetName())
	}
	return nil
}

func compileExtProc(ep *extprocfilterv3.ExternalProcessor, path string) (*extProcConfig, error) {
	cluster := ep.GetGrpcService().GetEnvoyGrpc().GetClusterName()
	if cluster == "" {
		return nil, &UnsupportedError{Field: "envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor.grpc_service", Path: path + " (only envoy_grpc is emulated)", What: "feature"}
	}
	pm := ep.GetProcessingMode()
	// Unset enum fields mean Envoy's defaults; response_header_mode defaults to SEND, which the
	// harness does not emulate, so it must be SKIP explicitly.
	if pm.GetResponseHeaderMode() != extprocfilterv3.ProcessingMode_SKIP {
		return nil, &UnsupportedError{Field: "envoy.extensions.filters.http.ext_proc.v3.ProcessingMode.response_header_mode=" + pm.GetResponseHeaderMode().String() + " (effective SEND)", Path: path + ".processing_mode", What: "value"}
	}
	cfg := &extProcConfig{
		cluster:          cluster,
		messageTimeout:   defaultMessageTimeout,
		failureModeAllow: ep.GetFailureModeAllow(),
		statusOnError:    500,
	}
	if ep.GetMessageTimeout() != nil {
		cfg.messageTimeout = ep.GetMessageTimeout().AsDuration()
	}
	if c := ep.GetStatusOnError().GetCode(); c != 0 {
		cfg.statusOnError = int(c)
	}
	return cfg, nil
}

func compileRouteConfig(rc *routev3.RouteConfiguration) (*routeTable, error) {
	rt := &routeTable{name: rc.GetName()}
	for _, vh := range rc.GetVirtualHosts() {
		v := &virtualHost{name: vh.GetName()}
		for _, d := range vh.GetDomains() {
			v.domains = append(v.domains, strings.ToLower(d))
		}
		for i, r := range vh.GetRoutes() {
			cr, err := compileRoute(r)
			if err != nil {
				return nil, fmt.Errorf("envoyemu: RouteConfiguration[%q].virtual_hosts[%q].routes[%d] (%q): %w", rc.GetName(), vh.GetName(), i, r.GetName(), err)
			}
			v.routes = append(v.routes, cr)
		}
		rt.vhosts = append(rt.vhosts, v)
	}
	return rt, nil
}

func compileRoute(r *routev3.Route) (*route, error) {
	out := &route{name: r.GetName()}
	m := r.GetMatch()
	switch ps := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		p := ps.Prefix
		out.prefix = &p
	case *routev3.RouteMatch_Path:
		p := ps.Path
		out.path = &p
	case *routev3.RouteMatch_SafeRegex:
		re, err := regexp.Compile("^(?:" + ps.SafeRegex.GetRegex() + ")$")
		if err != nil {
			return nil, fmt.Errorf("compile safe_regex %q: %w", ps.SafeRegex.GetRegex(), err)
		}
		out.regex = re
	default:
		return nil, errors.New("route match needs prefix, path or safe_regex")
	}
	for _, h := range m.GetHeaders() {
		hm := headerMatcher{name: strings.ToLower(h.GetName())}
		switch spec := h.GetHeaderMatchSpecifier().(type) {
		case *routev3.HeaderMatcher_StringMatch:
			switch p := spec.StringMatch.GetMatchPattern().(type) {
			case *matcherv3.StringMatcher_Exact:
				v := p.Exact
				hm.exact = &v
			case *matcherv3.StringMatcher_Prefix:
				v := p.Prefix
				hm.prefix = &v
			default:
				return nil, fmt.Errorf("header matcher %q: unsupported string_match pattern %T", h.GetName(), p)
			}
		case *routev3.HeaderMatcher_PresentMatch:
			v := spec.PresentMatch
			hm.present = &v
		default:
			return nil, fmt.Errorf("header matcher %q: needs string_match or present_match", h.GetName())
		}
		out.headers = append(out.headers, hm)
	}
	switch a := r.GetAction().(type) {
	case *routev3.Route_Route:
		if a.Route.GetCluster() == "" {
			return nil, errors.New("route action needs a cluster")
		}
		out.cluster = a.Route.GetCluster()
		out.timeout = defaultRouteTimeout
		if a.Route.GetTimeout() != nil {
			out.timeout = a.Route.GetTimeout().AsDuration()
		}
	case *routev3.Route_DirectResponse:
		d := &directResponse{status: int(a.DirectResponse.GetStatus())}
		switch b := a.DirectResponse.GetBody().GetSpecifier().(type) {
		case nil:
		case *corev3.DataSource_InlineString:
			d.body = []byte(b.InlineString)
		case *corev3.DataSource_InlineBytes:
			d.body = b.InlineBytes
		}
		out.direct = d
	default:
		return nil, errors.New("route needs route or direct_response")
	}
	for _, h := range r.GetResponseHeadersToAdd() {
		//lint:ignore SA1019 Envoy still honours the legacy append flag, so the harness must too.
		if h.GetAppend() != nil && h.GetAppendAction() != corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD {
			return nil, errors.New("response_headers_to_add: both append and append_action are set") // Envoy rejects this
		}
		action := h.GetAppendAction()
		//lint:ignore SA1019 Envoy still honours the legacy append flag, so the harness must too.
		if h.GetAppend() != nil && !h.GetAppend().GetValue() {
			action = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		}
		v := h.GetHeader().GetValue()
		if len(h.GetHeader().GetRawValue()) > 0 {
			v = string(h.GetHeader().GetRawValue())
		}
		out.responseAdds = append(out.responseAdds, headerAdd{key: strings.ToLower(h.GetHeader().GetKey()), value: v, action: action})
	}
	return out, nil
}

func compileCluster(c *clusterv3.Cluster) (*clusterConfig, error) {
	cc := &clusterConfig{
		name:           c.GetName(),
		static:         c.GetType() == clusterv3.Cluster_STATIC,
		family:         c.GetDnsLookupFamily(),
		connectTimeout: defaultConnectTimeout,
	}
	if c.GetConnectTimeout() != nil {
		cc.connectTimeout = c.GetConnectTimeout().AsDuration()
	}
	eps := c.GetLoadAssignment().GetEndpoints()
	if len(eps) == 0 || len(eps[0].GetLbEndpoints()) == 0 {
		return nil, fmt.Errorf("envoyemu: cluster %q: load_assignment has no endpoint", c.GetName())
	}
	if len(eps) > 1 || len(eps[0].GetLbEndpoints()) > 1 {
		return nil, &UnsupportedError{Field: "envoy.config.endpoint.v3.ClusterLoadAssignment.endpoints", Path: fmt.Sprintf("Cluster[%q] (more than one endpoint; load balancing is not emulated)", c.GetName()), What: "feature"}
	}
	sa := eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	if sa == nil {
		return nil, fmt.Errorf("envoyemu: cluster %q: endpoint has no socket_address", c.GetName())
	}
	cc.host, cc.port = sa.GetAddress(), sa.GetPortValue()
	if cc.static && net.ParseIP(cc.host) == nil {
		return nil, fmt.Errorf("envoyemu: cluster %q: STATIC cluster endpoint %q is not an IP address (Envoy rejects this)", c.GetName(), cc.host)
	}
	for k, v := range c.GetTypedExtensionProtocolOptions() {
		if k != httpProtocolOptionsKey {
			return nil, &UnsupportedError{Field: k, Path: fmt.Sprintf("Cluster[%q].typed_extension_protocol_options", c.GetName()), What: "extension type"}
		}
		po := &upstreamhttpv3.HttpProtocolOptions{}
		if err := v.UnmarshalTo(po); err != nil {
			return nil, fmt.Errorf("envoyemu: cluster %q: decode HttpProtocolOptions: %w", c.GetName(), err)
		}
		h2 := po.GetExplicitHttpConfig().GetHttp2ProtocolOptions()
		if h2 == nil {
			return nil, &UnsupportedError{Field: "envoy.extensions.upstreams.http.v3.HttpProtocolOptions.explicit_http_config", Path: fmt.Sprintf("Cluster[%q] (only http2_protocol_options is emulated)", c.GetName()), What: "feature"}
		}
		cc.http2 = true
		if ka := h2.GetConnectionKeepalive(); ka != nil {
			cc.keepalive = &keepaliveConfig{interval: ka.GetInterval().AsDuration(), timeout: ka.GetTimeout().AsDuration()}
		}
	}
	return cc, nil
}
