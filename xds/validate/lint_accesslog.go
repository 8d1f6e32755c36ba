package validate

import (
	"fmt"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	grpcalsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/grpc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// lintAccessLogs checks the HCM's gRPC access loggers: Envoy accepts a missing cluster at config
// time and only fails when it first logs, so a typo would silently lose every access-log entry.
func lintAccessLogs(where string, hcm *hcmv3.HttpConnectionManager, clusters map[string]*clusterv3.Cluster) []error {
	var errs []error
	for i, al := range hcm.GetAccessLog() {
		tc := al.GetTypedConfig()
		if tc == nil || !tc.MessageIs(&grpcalsv3.HttpGrpcAccessLogConfig{}) {
			continue
		}
		aw := fmt.Sprintf("%s access_log[%d] %q", where, i, al.GetName())
		cfg := &grpcalsv3.HttpGrpcAccessLogConfig{}
		if err := tc.UnmarshalTo(cfg); err != nil {
			errs = append(errs, fmt.Errorf("%s: unpack HttpGrpcAccessLogConfig: %w", aw, err))
			continue
		}
		eg := cfg.GetCommonConfig().GetGrpcService().GetEnvoyGrpc()
		if eg == nil {
			continue
		}
		c, ok := clusters[eg.GetClusterName()]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: grpc_service envoy_grpc cluster %q does not exist", aw, eg.GetClusterName()))
			continue
		}
		if !isHTTP2(c) {
			errs = append(errs, fmt.Errorf("%s: access-log cluster %q must be HTTP/2 (gRPC)", aw, c.GetName()))
		}
	}
	return errs
}

// isHTTP2 reports whether a cluster speaks HTTP/2 upstream, as a gRPC service needs.
func isHTTP2(c *clusterv3.Cluster) bool {
	//lint:ignore SA1019 the deprecated field still selects HTTP/2 in Envoy, so it counts here.
	if c.GetHttp2ProtocolOptions() != nil {
		return true
	}
	a, ok := c.GetTypedExtensionProtocolOptions()[httpProtocolOptionsKey]
	if !ok {
		return false
	}
	opts := &upstreamhttpv3.HttpProtocolOptions{}
	return a.UnmarshalTo(opts) == nil && opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil
}
