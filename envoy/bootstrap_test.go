// Package envoy_test proves envoy/bootstrap.yaml is a Bootstrap real Envoy would accept and that
// it points at our xDS server the way the server expects.
package envoy_test

import (
	"net"
	"os"
	"strconv"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/yatagarasu/yatagarasu/internal/config"
	"github.com/yatagarasu/yatagarasu/xds/server"
	"github.com/yatagarasu/yatagarasu/xds/validate"
)

func loadBootstrap(t *testing.T) *bootstrapv3.Bootstrap {
	t.Helper()
	data, err := os.ReadFile("bootstrap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatalf("bootstrap.yaml is not YAML: %v", err)
	}
	b := &bootstrapv3.Bootstrap{}
	// Strict: unknown fields and unregistered Any types are errors.
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(j, b); err != nil {
		t.Fatalf("bootstrap.yaml does not parse as envoy.config.bootstrap.v3.Bootstrap: %v", err)
	}
	return b
}

func TestBootstrapIsValid(t *testing.T) {
	if err := validate.Deep(loadBootstrap(t)); err != nil {
		t.Fatalf("Deep: %v", err)
	}
}

func TestBootstrapPointsAtOurXDSServer(t *testing.T) {
	b := loadBootstrap(t)
	if b.GetNode().GetCluster() != server.NodeKey {
		t.Errorf("node.cluster = %q, want %q", b.GetNode().GetCluster(), server.NodeKey)
	}
	ads := b.GetDynamicResources().GetAdsConfig()
	if ads.GetApiType() != corev3.ApiConfigSource_GRPC || ads.GetTransportApiVersion() != corev3.ApiVersion_V3 || !ads.GetSetNodeOnFirstMessageOnly() {
		t.Errorf("ads_config = %v", ads)
	}
	for name, cs := range map[string]*corev3.ConfigSource{
		"cds_config": b.GetDynamicResources().GetCdsConfig(),
		"lds_config": b.GetDynamicResources().GetLdsConfig(),
	} {
		if cs.GetAds() == nil || cs.GetResourceApiVersion() != corev3.ApiVersion_V3 {
			t.Errorf("%s is not ADS v3: %v", name, cs)
		}
	}
	if len(ads.GetGrpcServices()) != 1 {
		t.Fatalf("ads_config has %d grpc_services", len(ads.GetGrpcServices()))
	}
	clusterName := ads.GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName()
	var found bool
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() != clusterName {
			continue
		}
		found = true
		sa := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
		addr := net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10))
		if addr != config.DefaultXDSAddress {
			t.Errorf("xDS cluster endpoint %s, want the default xds.address %s", addr, config.DefaultXDSAddress)
		}
		opts := &upstreamhttpv3.HttpProtocolOptions{}
		if err := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].UnmarshalTo(opts); err != nil {
			t.Fatalf("xDS cluster protocol options: %v", err)
		}
		ka := opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions().GetConnectionKeepalive()
		if ka == nil || ka.GetInterval().AsDuration() < 15e9 {
			t.Errorf("xDS cluster must be HTTP/2 with keepalive no more often than the server's 15s MinTime, got %v", ka)
		}
	}
	if !found {
		t.Fatalf("ads_config cluster %q is not a static cluster", clusterName)
	}
	if sa := b.GetAdmin().GetAddress().GetSocketAddress(); sa.GetAddress() != "127.0.0.1" || sa.GetPortValue() != 9901 {
		t.Errorf("admin address = %v", sa)
	}
}
