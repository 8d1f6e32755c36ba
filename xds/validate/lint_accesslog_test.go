package validate_test

import (
	"strings"
	"testing"

	grpcalsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/grpc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/yatagarasu/yatagarasu/xds/translator"
	"github.com/yatagarasu/yatagarasu/xds/validate"
)

// editAccessLog rewrites the gRPC access logger config inside the listener's HCM.
func editAccessLog(t *testing.T, res *translator.Resources, edit func(*grpcalsv3.HttpGrpcAccessLogConfig)) {
	t.Helper()
	f := res.Listeners[0].FilterChains[0].Filters[0]
	hcm := &hcmv3.HttpConnectionManager{}
	if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	if len(hcm.AccessLog) != 1 {
		t.Fatalf("access_log = %d entries, want 1", len(hcm.AccessLog))
	}
	cfg := &grpcalsv3.HttpGrpcAccessLogConfig{}
	if err := hcm.AccessLog[0].GetTypedConfig().UnmarshalTo(cfg); err != nil {
		t.Fatal(err)
	}
	edit(cfg)
	a, err := anypb.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hcm.AccessLog[0].GetTypedConfig().Value = a.Value
	h, err := anypb.New(hcm)
	if err != nil {
		t.Fatal(err)
	}
	f.GetTypedConfig().Value = h.Value
}

func TestLintAcceptsGeneratedAccessLogCluster(t *testing.T) {
	res := translate(t)
	if err := validate.Lint(all(res)...); err != nil {
		t.Fatalf("Lint: %v", err)
	}
}

func TestLintRejectsAccessLogToMissingOrHTTP1Cluster(t *testing.T) {
	cases := map[string]struct {
		cluster string
		want    string
	}{
		"missing": {"nope", `envoy_grpc cluster "nope" does not exist`},
		"http1":   {translator.OriginCluster, `access-log cluster "yatagarasu_origin" must be HTTP/2`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			res := translate(t)
			editAccessLog(t, res, func(c *grpcalsv3.HttpGrpcAccessLogConfig) {
				c.CommonConfig.GrpcService.GetEnvoyGrpc().ClusterName = tc.cluster
			})
			err := validate.Lint(all(res)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Lint error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
