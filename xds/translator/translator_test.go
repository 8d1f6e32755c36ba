package translator_test

import (
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/yatagarasu/yatagarasu/internal/config"
	"github.com/yatagarasu/yatagarasu/xds/translator"
)

func baseConfig() *config.Config {
	return &config.Config{
		Server: config.Server{Address: "0.0.0.0", Port: 8080},
		Buckets: []config.Bucket{
			{Name: "a", PathPrefix: "/a"},
			{Name: "b", PathPrefix: "/b"},
		},
		Origin: config.Origin{Address: "127.0.0.1:9002"},
	}
}

func mustTranslate(t *testing.T, cfg *config.Config) *translator.Resources {
	t.Helper()
	res, err := translator.Translate(cfg)
	if err != nil {
		t.Fatalf("Translate: %v", err)
	}
	return res
}

func hcmOf(t *testing.T, res *translator.Resources) *hcmv3.HttpConnectionManager {
	t.Helper()
	hcm := &hcmv3.HttpConnectionManager{}
	if err := res.Listeners[0].FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	return hcm
}

func TestContractNamesAndOrder(t *testing.T) {
	res := mustTranslate(t, baseConfig())
	if len(res.Listeners) != 1 || res.Listeners[0].Name != translator.ListenerName {
		t.Fatalf("listeners = %v", res.Listeners)
	}
	if len(res.Clusters) != 2 || res.Clusters[0].Name != translator.ExtProcCluster || res.Clusters[1].Name != translator.OriginCluster {
		t.Fatalf("clusters = %v", res.Clusters)
	}
	vh := res.Routes[0].VirtualHosts[0]
	var names []string
	for _, r := range vh.Routes {
		names = append(names, r.Name)
	}
	if got, want := strings.Join(names, ","), "bucket:a,bucket:b,unprocessed"; got != want {
		t.Fatalf("route order = %s, want %s", got, want)
	}
	fb := vh.Routes[2].GetDirectResponse()
	if fb.GetStatus() != 503 || fb.GetBody().GetInlineString() != `{"error":"Service Unavailable","message":"the gateway has no route for this request yet (configuration update in progress); retry","status":503}` {
		t.Fatalf("fallback = %v", fb)
	}
	if h := vh.Routes[2].GetResponseHeadersToAdd(); len(h) != 2 || h[1].GetHeader().GetKey() != "retry-after" || h[1].GetHeader().GetValue() != "1" {
		t.Fatalf("fallback headers = %v", h)
	}
	hcm := hcmOf(t, res)
	ep := &extprocv3.ExternalProcessor{}
	if err := hcm.HttpFilters[0].GetTypedConfig().UnmarshalTo(ep); err != nil {
		t.Fatal(err)
	}
	// Zero values in a hand-built config take the documented defaults.
	if got := ep.GetMessageTimeout().AsDuration(); got != config.DefaultMessageTimeout {
		t.Errorf("message_timeout = %s, want default %s", got, config.DefaultMessageTimeout)
	}
	if got := vh.Routes[0].GetRoute().GetTimeout().AsDuration(); got != config.DefaultRequestTimeout {
		t.Errorf("route timeout = %s", got)
	}
	if got := hcm.GetMaxRequestHeadersKb().GetValue(); got != 64+32 {
		t.Errorf("max_request_headers_kb = %d, want 96", got)
	}
	if ep.GetGrpcService().GetEnvoyGrpc().GetClusterName() != translator.ExtProcCluster {
		t.Errorf("ext_proc cluster = %q", ep.GetGrpcService().GetEnvoyGrpc().GetClusterName())
	}
}

func TestMaxRequestHeadersKB(t *testing.T) {
	for _, tc := range []struct {
		bytes int
		want  uint32
	}{
		{1, 33}, {1024, 33}, {1025, 34}, {64 << 10, 96}, {8160 << 10, 8192}, {8161 << 10, 8192}, {1 << 30, 8192},
	} {
		cfg := baseConfig()
		cfg.Server.SecurityLimits.MaxHeaderSize = tc.bytes
		if got := hcmOf(t, mustTranslate(t, cfg)).GetMaxRequestHeadersKb().GetValue(); got != tc.want {
			t.Errorf("max_header_size %d → max_request_headers_kb %d, want %d", tc.bytes, got, tc.want)
		}
	}
}

func TestClusterDiscoveryType(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want clusterv3.Cluster_DiscoveryType
		dns  clusterv3.Cluster_DnsLookupFamily
	}{
		{"127.0.0.1:9001", clusterv3.Cluster_STATIC, clusterv3.Cluster_AUTO},
		{"[::1]:9001", clusterv3.Cluster_STATIC, clusterv3.Cluster_AUTO},
		{"extproc.svc:9001", clusterv3.Cluster_STRICT_DNS, clusterv3.Cluster_V4_PREFERRED},
	} {
		cfg := baseConfig()
		cfg.ExtProc.GRPCAddress = tc.addr
		c := mustTranslate(t, cfg).Clusters[0]
		if c.GetType() != tc.want || c.GetDnsLookupFamily() != tc.dns {
			t.Errorf("%s: type %v dns %v, want %v %v", tc.addr, c.GetType(), c.GetDnsLookupFamily(), tc.want, tc.dns)
		}
	}
}

func TestTranslateRejectsBadInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*config.Config)
		want string
	}{
		{"nil port", func(c *config.Config) { c.Server.Port = 0 }, "server.port 0"},
		{"empty address", func(c *config.Config) { c.Server.Address = "" }, "server.address is empty"},
		{"duplicate bucket", func(c *config.Config) { c.Buckets[1].Name = "a" }, `name "a" already used`},
		{"bad extproc address", func(c *config.Config) { c.ExtProc.GRPCAddress = "nohostport" }, `"nohostport"`},
		{"bad origin port", func(c *config.Config) { c.Origin.Address = "127.0.0.1:0" }, "port must be in 1..65535"},
		// Only Deep validation can catch this one: the ext_proc Any holds a timeout above Envoy's 1h.
		{"message timeout above 1h", func(c *config.Config) { c.ExtProc.MessageTimeout = config.Duration(2 * time.Hour) }, "MessageTimeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig()
			tc.edit(cfg)
			_, err := translator.Translate(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Translate() error = %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := translator.Translate(nil); err == nil {
		t.Fatal("Translate(nil) succeeded")
	}
}

func TestVersionIsContentHash(t *testing.T) {
	a, b := mustTranslate(t, baseConfig()), mustTranslate(t, baseConfig())
	if a.Version() != b.Version() || a.Version() == "" {
		t.Fatalf("same config, versions %q and %q", a.Version(), b.Version())
	}
	// Rebuilding the resources from their YAML (another construction path) keeps the version.
	y, err := a.YAML()
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := translator.ParseYAML(y)
	if err != nil {
		t.Fatal(err)
	}
	rebuilt := fromMessages(t, msgs)
	if rebuilt.Version() != a.Version() {
		t.Errorf("version after YAML round trip %q, want %q", rebuilt.Version(), a.Version())
	}
	cfg := baseConfig()
	cfg.Buckets = cfg.Buckets[:1]
	if c := mustTranslate(t, cfg); c.Version() == a.Version() {
		t.Errorf("different config kept version %q", a.Version())
	}
}

func fromMessages(t *testing.T, msgs []proto.Message) *translator.Resources {
	t.Helper()
	res := &translator.Resources{}
	for _, m := range msgs {
		switch v := m.(type) {
		case *listenerv3.Listener:
			res.Listeners = append(res.Listeners, v)
		case *routev3.RouteConfiguration:
			res.Routes = append(res.Routes, v)
		case *clusterv3.Cluster:
			res.Clusters = append(res.Clusters, v)
		default:
			t.Fatalf("unexpected %T", m)
		}
	}
	return res
}

func TestSnapshotHasAllTypes(t *testing.T) {
	res := mustTranslate(t, baseConfig())
	snap, err := res.Snapshot(res.Version())
	if err != nil {
		t.Fatal(err)
	}
	for typ, want := range map[string][]string{
		resourcev3.ListenerType: {translator.ListenerName},
		resourcev3.RouteType:    {translator.RouteConfigName},
		resourcev3.ClusterType:  {translator.ExtProcCluster, translator.OriginCluster},
	} {
		got := snap.GetResources(typ)
		if len(got) != len(want) || snap.GetVersion(typ) != res.Version() {
			t.Errorf("%s: %d resources at version %q", typ, len(got), snap.GetVersion(typ))
		}
		for _, name := range want {
			if _, ok := got[name]; !ok {
				t.Errorf("%s: missing %q", typ, name)
			}
		}
	}
	if !proto.Equal(snap.GetResources(resourcev3.ClusterType)[translator.OriginCluster], res.Clusters[1]) {
		t.Error("snapshot holds a different origin cluster")
	}
}
