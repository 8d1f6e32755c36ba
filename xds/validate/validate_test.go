package validate_test

import (
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/yatagarasu/yatagarasu/internal/config"
	"github.com/yatagarasu/yatagarasu/xds/translator"
	"github.com/yatagarasu/yatagarasu/xds/validate"
)

func testConfig() *config.Config {
	return &config.Config{
		Server: config.Server{
			Address:        "127.0.0.1",
			Port:           8080,
			RequestTimeout: config.Seconds(30 * time.Second),
		},
		Buckets: []config.Bucket{{Name: "products", PathPrefix: "/products"}},
		ExtProc: config.ExtProc{GRPCAddress: "127.0.0.1:9001", MessageTimeout: config.Duration(250 * time.Millisecond)},
		Origin:  config.Origin{Address: "127.0.0.1:9002"},
	}
}

func translate(t *testing.T) *translator.Resources {
	t.Helper()
	res, err := translator.Translate(testConfig())
	if err != nil {
		t.Fatalf("Translate: %v", err)
	}
	return res
}

func all(res *translator.Resources) []proto.Message {
	var out []proto.Message
	for _, l := range res.Listeners {
		out = append(out, l)
	}
	for _, r := range res.Routes {
		out = append(out, r)
	}
	for _, c := range res.Clusters {
		out = append(out, c)
	}
	return out
}

// editExtProc rewrites the ext_proc filter config inside the listener's HCM Any.
func editExtProc(t *testing.T, l *listenerv3.Listener, edit func(*extprocv3.ExternalProcessor)) {
	t.Helper()
	f := l.GetFilterChains()[0].GetFilters()[0]
	hcm := &hcmv3.HttpConnectionManager{}
	if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	ep := &extprocv3.ExternalProcessor{}
	if err := hcm.GetHttpFilters()[0].GetTypedConfig().UnmarshalTo(ep); err != nil {
		t.Fatal(err)
	}
	edit(ep)
	epAny, err := anypb.New(ep)
	if err != nil {
		t.Fatal(err)
	}
	hcm.HttpFilters[0].ConfigType = &hcmv3.HttpFilter_TypedConfig{TypedConfig: epAny}
	hcmAny, err := anypb.New(hcm)
	if err != nil {
		t.Fatal(err)
	}
	f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: hcmAny}
}

func TestDeepFindsErrorInsideNestedAny(t *testing.T) {
	res := translate(t)
	l := res.Listeners[0]
	editExtProc(t, l, func(ep *extprocv3.ExternalProcessor) { ep.MessageTimeout = durationpb.New(2 * time.Hour) })

	if err := l.ValidateAll(); err != nil {
		t.Fatalf("plain ValidateAll should not see inside Any, got %v", err)
	}
	err := validate.Deep(l)
	if err == nil {
		t.Fatal("Deep accepted message_timeout 7200s inside the ext_proc Any")
	}
	msg := err.Error()
	for _, want := range []string{
		"Listener.filter_chains[0].filters[0].typed_config<envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager>",
		".http_filters[0].typed_config<envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor>",
		"MessageTimeout",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("Deep error %q does not contain %q", msg, want)
		}
	}
	if n := strings.Count(msg, "MessageTimeout"); n != 1 {
		t.Errorf("error reported %d times, want once: %q", n, msg)
	}
}

func TestDeepReportsTopLevelErrorsAndUnresolvableAny(t *testing.T) {
	c := &clusterv3.Cluster{Name: ""} // name has min_len 1
	if err := validate.Deep(c); err == nil || !strings.Contains(err.Error(), "Cluster: invalid Cluster.Name") {
		t.Fatalf("Deep(cluster without name) = %v", err)
	}
	l := &listenerv3.Listener{Name: "l", FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
		Name:       "x",
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: &anypb.Any{TypeUrl: "type.googleapis.com/no.such.Type"}},
	}}}}}
	err := validate.Deep(l)
	if err == nil || !strings.Contains(err.Error(), "typed_config<type.googleapis.com/no.such.Type>: unpack Any") {
		t.Fatalf("Deep(unknown Any) = %v", err)
	}
}

func TestRealTranslatorOutputPasses(t *testing.T) {
	res := translate(t)
	for _, m := range all(res) {
		if err := validate.Deep(m); err != nil {
			t.Errorf("Deep(%v): %v", m.ProtoReflect().Descriptor().Name(), err)
		}
	}
	if err := validate.Lint(all(res)...); err != nil {
		t.Errorf("Lint: %v", err)
	}
}

func TestLint(t *testing.T) {
	cases := []struct {
		name string
		edit func(t *testing.T, res *translator.Resources)
		want string
	}{
		{
			name: "route to missing cluster",
			edit: func(t *testing.T, res *translator.Resources) {
				res.Routes[0].VirtualHosts[0].Routes[0].GetRoute().ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: "nope"}
			},
			want: `cluster "nope" does not exist`,
		},
		{
			name: "missing ext_proc cluster",
			edit: func(t *testing.T, res *translator.Resources) {
				res.Clusters = res.Clusters[1:] // drop yatagarasu_extproc
			},
			want: `envoy_grpc cluster "yatagarasu_extproc" does not exist`,
		},
		{
			name: "missing RDS name",
			edit: func(t *testing.T, res *translator.Resources) { res.Routes[0].Name = "other" },
			want: `rds route_config_name "yatagarasu_routes" does not exist`,
		},
		{
			name: "duplicate cluster",
			edit: func(t *testing.T, res *translator.Resources) {
				res.Clusters = append(res.Clusters, proto.Clone(res.Clusters[1]).(*clusterv3.Cluster))
			},
			want: `cluster "yatagarasu_origin": name is not unique`,
		},
		{
			name: "duplicate route name",
			edit: func(t *testing.T, res *translator.Resources) {
				vh := res.Routes[0].VirtualHosts[0]
				vh.Routes = append([]*routev3.Route{proto.Clone(vh.Routes[0]).(*routev3.Route)}, vh.Routes...)
			},
			want: `"bucket:products": route name is not unique`,
		},
		{
			name: "ext_proc cluster not HTTP/2",
			edit: func(t *testing.T, res *translator.Resources) { res.Clusters[0].TypedExtensionProtocolOptions = nil },
			want: "must be HTTP/2",
		},
		{
			name: "ext_proc cluster default circuit breakers",
			edit: func(t *testing.T, res *translator.Resources) { res.Clusters[0].CircuitBreakers = nil },
			want: "needs circuit_breakers",
		},
		{
			name: "full duplex without trailers",
			edit: func(t *testing.T, res *translator.Resources) {
				editExtProc(t, res.Listeners[0], func(ep *extprocv3.ExternalProcessor) {
					ep.ProcessingMode.RequestBodyMode = extprocv3.ProcessingMode_FULL_DUPLEX_STREAMED
				})
			},
			want: "requires request_trailer_mode SEND",
		},
		{
			name: "router not last",
			edit: func(t *testing.T, res *translator.Resources) {
				f := res.Listeners[0].GetFilterChains()[0].GetFilters()[0]
				hcm := &hcmv3.HttpConnectionManager{}
				if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
					t.Fatal(err)
				}
				hcm.HttpFilters[0], hcm.HttpFilters[1] = hcm.HttpFilters[1], hcm.HttpFilters[0]
				a, err := anypb.New(hcm)
				if err != nil {
					t.Fatal(err)
				}
				f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
			},
			want: "the router must be the last http filter",
		},
		{
			name: "unsupported resource",
			edit: func(t *testing.T, res *translator.Resources) {},
			want: "unsupported resource type envoy.config.core.v3.Node",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := translate(t)
			tc.edit(t, res)
			msgs := all(res)
			if tc.name == "unsupported resource" {
				msgs = append(msgs, &corev3.Node{})
			}
			err := validate.Lint(msgs...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Lint() = %v, want error containing %q", err, tc.want)
			}
		})
	}
}

func TestRouteToMissingClusterPassesConsistentButNotTranslateCheck(t *testing.T) {
	res := translate(t)
	res.Routes[0].VirtualHosts[0].Routes[0].GetRoute().ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: "nope"}
	if _, err := res.Snapshot("v"); err != nil {
		t.Fatalf("Snapshot/Consistent should not notice route→cluster refs, got %v", err)
	}
	if err := res.Check(); err == nil || !strings.Contains(err.Error(), `cluster "nope" does not exist`) {
		t.Fatalf("Check() = %v", err)
	}
}
