package validate

import (
	"errors"
	"fmt"
	"net"
	"strconv"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/proto"
)

// MinExtProcCircuitLimit is the smallest circuit-breaker limit Lint accepts on an ext_proc
// cluster: Envoy's default of 1024 caps concurrent HTTP requests, as each holds one stream.
const MinExtProcCircuitLimit = 1 << 20

const httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// Lint checks the Envoy rules PGV cannot express over a full set of resources (listeners,
// route configurations, clusters; other message types are rejected): every referenced route
// configuration and cluster exists, names are unique, the router filter is last, and each
// ext_proc filter is well formed and talks to an HTTP/2 cluster with raised circuit breakers.
func Lint(resources ...proto.Message) error {
	var (
		errs      []error
		listeners []*listenerv3.Listener
		routes    = map[string]*routev3.RouteConfiguration{}
		clusters  = map[string]*clusterv3.Cluster{}
	)
	listenerNames := map[string]bool{}
	listenerAddrs := map[string]string{}
	for _, r := range resources {
		switch v := r.(type) {
		case *listenerv3.Listener:
			if listenerNames[v.GetName()] {
				errs = append(errs, fmt.Errorf("listener %q: name is not unique", v.GetName()))
			}
			listenerNames[v.GetName()] = true
			if sa := v.GetAddress().GetSocketAddress(); sa != nil {
				key := net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10))
				if other, dup := listenerAddrs[key]; dup {
					errs = append(errs, fmt.Errorf("listener %q: address %s already used by listener %q", v.GetName(), key, other))
				}
				listenerAddrs[key] = v.GetName()
			}
			listeners = append(listeners, v)
		case *routev3.RouteConfiguration:
			if _, dup := routes[v.GetName()]; dup {
				errs = append(errs, fmt.Errorf("route configuration %q: name is not unique", v.GetName()))
			}
			routes[v.GetName()] = v
		case *clusterv3.Cluster:
			if _, dup := clusters[v.GetName()]; dup {
				errs = append(errs, fmt.Errorf("cluster %q: name is not unique", v.GetName()))
			}
			clusters[v.GetName()] = v
		case nil:
			errs = append(errs, errors.New("nil resource"))
		default:
			errs = append(errs, fmt.Errorf("unsupported resource type %s", r.ProtoReflect().Descriptor().FullName()))
		}
	}
	for _, l := range listeners {
		errs = append(errs, lintListener(l, routes, clusters)...)
	}
	for _, rc := range routes {
		errs = append(errs, lintRouteConfig(fmt.Sprintf("route configuration %q", rc.GetName()), rc, clusters)...)
	}
	return errors.Join(errs...)
}

func lintListener(l *listenerv3.Listener, routes map[string]*routev3.RouteConfiguration, clusters map[string]*clusterv3.Cluster) []error {
	var errs []error
	for ci, fc := range l.GetFilterChains() {
		for fi, f := range fc.GetFilters() {
			where := fmt.Sprintf("listener %q filter_chains[%d].filters[%d]", l.GetName(), ci, fi)
			tc := f.GetTypedConfig()
			if tc == nil || !tc.MessageIs(&hcmv3.HttpConnectionManager{}) {
				continue
			}
			hcm := &hcmv3.HttpConnectionManager{}
			if err := tc.UnmarshalTo(hcm); err != nil {
				errs = append(errs, fmt.Errorf("%s: unpack HttpConnectionManager: %w", where, err))
				continue
			}
			errs = append(errs, lintHCM(where, hcm, routes, clusters)...)
		}
	}
	return errs
}

func lintHCM(where string, hcm *hcmv3.HttpConnectionManager, routes map[string]*routev3.RouteConfiguration, clusters map[string]*clusterv3.Cluster) []error {
	var errs []error
	switch rs := hcm.GetRouteSpecifier().(type) {
	case *hcmv3.HttpConnectionManager_Rds:
		if _, ok := routes[rs.Rds.GetRouteConfigName()]; !ok {
			errs = append(errs, fmt.Errorf("%s: rds route_config_name %q does not exist", where, rs.Rds.GetRouteConfigName()))
		}
	case *hcmv3.HttpConnectionManager_RouteConfig:
		errs = append(errs, lintRouteConfig(where+" route_config", rs.RouteConfig, clusters)...)
	}
	errs = append(errs, lintAccessLogs(where, hcm, clusters)...)
	filters := hcm.GetHttpFilters()
	if len(filters) == 0 {
		return append(errs, fmt.Errorf("%s: http_filters is empty (the router filter is required)", where))
	}
	names := map[string]bool{}
	for i, hf := range filters {
		fw := fmt.Sprintf("%s http_filters[%d] %q", where, i, hf.GetName())
		if names[hf.GetName()] {
			errs = append(errs, fmt.Errorf("%s: filter name is not unique", fw))
		}
		names[hf.GetName()] = true
		tc := hf.GetTypedConfig()
		isRouter := tc != nil && tc.MessageIs(&routerv3.Router{})
		if last := i == len(filters)-1; isRouter != last {
			if last {
				errs = append(errs, fmt.Errorf("%s: the last http filter must be the router", fw))
			} else {
				errs = append(errs, fmt.Errorf("%s: the router must be the last http filter", fw))
			}
		}
		if tc != nil && tc.MessageIs(&extprocv3.ExternalProcessor{}) {
			ep := &extprocv3.ExternalProcessor{}
			if err := tc.UnmarshalTo(ep); err != nil {
				errs = append(errs, fmt.Errorf("%s: unpack ExternalProcessor: %w", fw, err))
				continue
			}
			errs = append(errs, lintExtProc(fw, ep, clusters)...)
		}
	}
	return errs
}

// lintExtProc applies Envoy's config-time checks (ext_proc config.cc) and our own policy.
func lintExtProc(where string, ep *extprocv3.ExternalProcessor, clusters map[string]*clusterv3.Cluster) []error {
	var errs []error
	hasGRPC, hasHTTP := ep.GetGrpcService() != nil, ep.GetHttpService() != nil
	if hasGRPC == hasHTTP {
		errs = append(errs, fmt.Errorf("%s: exactly one of grpc_service or http_service must be set", where))
	}
	pm := ep.GetProcessingMode()
	if hasHTTP {
		if pm.GetRequestBodyMode() != extprocv3.ProcessingMode_NONE || pm.GetResponseBodyMode() != extprocv3.ProcessingMode_NONE {
			errs = append(errs, fmt.Errorf("%s: http_service requires body modes NONE", where))
		}
		if pm.GetRequestTrailerMode() == extprocv3.ProcessingMode_SEND || pm.GetResponseTrailerMode() == extprocv3.ProcessingMode_SEND {
			errs = append(errs, fmt.Errorf("%s: http_service does not allow trailer mode SEND", where))
		}
	}
	if pm.GetRequestBodyMode() == extprocv3.ProcessingMode_FULL_DUPLEX_STREAMED && pm.GetRequestTrailerMode() != extprocv3.ProcessingMode_SEND {
		errs = append(errs, fmt.Errorf("%s: request_body_mode FULL_DUPLEX_STREAMED requires request_trailer_mode SEND", where))
	}
	if pm.GetResponseBodyMode() == extprocv3.ProcessingMode_FULL_DUPLEX_STREAMED && pm.GetResponseTrailerMode() != extprocv3.ProcessingMode_SEND {
		errs = append(errs, fmt.Errorf("%s: response_body_mode FULL_DUPLEX_STREAMED requires response_trailer_mode SEND", where))
	}
	if ep.GetDisableClearRouteCache() && ep.GetRouteCacheAction() != extprocv3.ExternalProcessor_DEFAULT {
		errs = append(errs, fmt.Errorf("%s: disable_clear_route_cache and route_cache_action are mutually exclusive", where))
	}
	eg := ep.GetGrpcService().GetEnvoyGrpc()
	if eg == nil {
		return errs
	}
	c, ok := clusters[eg.GetClusterName()]
	if !ok {
		return append(errs, fmt.Errorf("%s: grpc_service envoy_grpc cluster %q does not exist", where, eg.GetClusterName()))
	}
	return append(errs, lintGRPCCluster(where, c)...)
}

// lintGRPCCluster requires HTTP/2 (gRPC) and circuit breakers raised above Envoy's defaults.
func lintGRPCCluster(where string, c *clusterv3.Cluster) []error {
	var errs []error
	cw := fmt.Sprintf("%s: ext_proc cluster %q", where, c.GetName())
	//lint:ignore SA1019 the deprecated field still selects HTTP/2 in Envoy, so it counts here.
	http2 := c.GetHttp2ProtocolOptions() != nil
	if a, ok := c.GetTypedExtensionProtocolOptions()[httpProtocolOptionsKey]; ok {
		opts := &upstreamhttpv3.HttpProtocolOptions{}
		if err := a.UnmarshalTo(opts); err != nil {
			errs = append(errs, fmt.Errorf("%s: unpack HttpProtocolOptions: %w", cw, err))
		} else if opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil {
			http2 = true
		}
	}
	if !http2 {
		errs = append(errs, fmt.Errorf("%s: must be HTTP/2 (explicit_http_config.http2_protocol_options)", cw))
	}
	var def *clusterv3.CircuitBreakers_Thresholds
	for _, t := range c.GetCircuitBreakers().GetThresholds() {
		if t.GetPriority() == 0 { // DEFAULT priority
			def = t
		}
	}
	if def == nil {
		return append(errs, fmt.Errorf("%s: needs circuit_breakers for the DEFAULT priority (Envoy's default caps requests at 1024)", cw))
	}
	limits := []struct {
		name string
		set  bool
		val  uint32
	}{
		{"max_connections", def.GetMaxConnections() != nil, def.GetMaxConnections().GetValue()},
		{"max_pending_requests", def.GetMaxPendingRequests() != nil, def.GetMaxPendingRequests().GetValue()},
		{"max_requests", def.GetMaxRequests() != nil, def.GetMaxRequests().GetValue()},
	}
	for _, l := range limits {
		if !l.set || l.val < MinExtProcCircuitLimit {
			errs = append(errs, fmt.Errorf("%s: circuit breaker %s must be at least %d", cw, l.name, MinExtProcCircuitLimit))
		}
	}
	return errs
}

func lintRouteConfig(where string, rc *routev3.RouteConfiguration, clusters map[string]*clusterv3.Cluster) []error {
	var errs []error
	vhosts := map[string]bool{}
	for vi, vh := range rc.GetVirtualHosts() {
		vw := fmt.Sprintf("%s virtual_hosts[%d] %q", where, vi, vh.GetName())
		if vhosts[vh.GetName()] {
			errs = append(errs, fmt.Errorf("%s: virtual host name is not unique", vw))
		}
		vhosts[vh.GetName()] = true
		routeNames := map[string]bool{}
		for ri, r := range vh.GetRoutes() {
			rw := fmt.Sprintf("%s routes[%d] %q", vw, ri, r.GetName())
			if r.GetName() != "" {
				if routeNames[r.GetName()] {
					errs = append(errs, fmt.Errorf("%s: route name is not unique", rw))
				}
				routeNames[r.GetName()] = true
			}
			ra := r.GetRoute()
			if ra == nil {
				continue
			}
			if name := ra.GetCluster(); name != "" {
				if _, ok := clusters[name]; !ok {
					errs = append(errs, fmt.Errorf("%s: cluster %q does not exist", rw, name))
				}
			}
			for _, wc := range ra.GetWeightedClusters().GetClusters() {
				if _, ok := clusters[wc.GetName()]; !ok {
					errs = append(errs, fmt.Errorf("%s: weighted cluster %q does not exist", rw, wc.GetName()))
				}
			}
		}
	}
	return errs
}
