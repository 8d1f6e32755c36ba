package envoyemu

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestContractConfigIsAccepted(t *testing.T) {
	res := contract{extProcAddr: "127.0.0.1:9001", originAddr: "127.0.0.1:9002"}.resources(t)
	if _, err := compile(res); err != nil {
		t.Fatalf("contract config rejected: %v", err)
	}
}

func TestUnsupportedConfigIsLoud(t *testing.T) {
	base := contract{extProcAddr: "127.0.0.1:9001", originAddr: "127.0.0.1:9002"}
	cases := []struct {
		name   string
		mutate func(t *testing.T, res *Resources)
		want   string
	}{
		{
			name: "listener field",
			mutate: func(_ *testing.T, res *Resources) {
				res.Listeners[0].PerConnectionBufferLimitBytes = wrapperspb.UInt32(32768)
			},
			want: "envoyemu: unsupported field envoy.config.listener.v3.Listener.per_connection_buffer_limit_bytes at Listener[\"yatagarasu_http\"].per_connection_buffer_limit_bytes: implement it in the harness or stop generating it",
		},
		{
			name: "field inside the ext_proc Any",
			mutate: func(t *testing.T, res *Resources) {
				ep := base.extProcFilter(t)
				ep.AllowModeOverride = true
				res.Listeners[0] = base.listener(t, ep)
			},
			want: "unsupported field envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor.allow_mode_override at Listener[\"yatagarasu_http\"].filter_chains[0].filters[0].typed_config<envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager>.http_filters[0].typed_config<envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor>.allow_mode_override",
		},
		{
			name: "body mode enum",
			mutate: func(t *testing.T, res *Resources) {
				ep := base.extProcFilter(t)
				ep.ProcessingMode.RequestBodyMode = extprocfilterv3.ProcessingMode_BUFFERED
				res.Listeners[0] = base.listener(t, ep)
			},
			want: "unsupported value of envoy.extensions.filters.http.ext_proc.v3.ProcessingMode.request_body_mode=BUFFERED",
		},
		{
			name: "response headers default SEND",
			mutate: func(t *testing.T, res *Resources) {
				ep := base.extProcFilter(t)
				ep.ProcessingMode = nil
				res.Listeners[0] = base.listener(t, ep)
			},
			want: "response_header_mode",
		},
		{
			name: "codec type",
			mutate: func(t *testing.T, res *Resources) {
				hcm := &hcmv3.HttpConnectionManager{}
				f := res.Listeners[0].FilterChains[0].Filters[0]
				if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
					t.Fatal(err)
				}
				hcm.CodecType = hcmv3.HttpConnectionManager_HTTP2
				f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, hcm)}
			},
			want: "codec_type=HTTP2",
		},
		{
			name: "unknown filter type",
			mutate: func(t *testing.T, res *Resources) {
				hcm := &hcmv3.HttpConnectionManager{}
				f := res.Listeners[0].FilterChains[0].Filters[0]
				if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
					t.Fatal(err)
				}
				unknown := &anypb.Any{TypeUrl: "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer"}
				hcm.HttpFilters = append([]*hcmv3.HttpFilter{{Name: "envoy.filters.http.buffer", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: unknown}}}, hcm.HttpFilters...)
				f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, hcm)}
			},
			want: "unsupported extension type type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
		},
		{
			name: "registered but unimplemented Any type",
			mutate: func(t *testing.T, res *Resources) {
				hcm := &hcmv3.HttpConnectionManager{}
				f := res.Listeners[0].FilterChains[0].Filters[0]
				if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
					t.Fatal(err)
				}
				hcm.HttpFilters[0].ConfigType = &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &extprocv3.ProcessingRequest{})}
				f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, hcm)}
			},
			want: "unsupported extension type envoy.service.ext_proc.v3.ProcessingRequest",
		},
		{
			name: "cluster field",
			mutate: func(_ *testing.T, res *Resources) {
				res.Clusters[1].LbPolicy = 1
			},
			want: "unsupported field envoy.config.cluster.v3.Cluster.lb_policy",
		},
		{
			name: "STATIC cluster with hostname",
			mutate: func(_ *testing.T, res *Resources) {
				res.Clusters[1].LoadAssignment.Endpoints[0].LbEndpoints[0].GetEndpoint().Address.GetSocketAddress().Address = "origin.internal"
			},
			want: "is not an IP address",
		},
		{
			name: "route header matcher option",
			mutate: func(_ *testing.T, res *Resources) {
				res.Routes[0].VirtualHosts[0].Routes[0].Match.Headers[0].InvertMatch = true
			},
			want: "unsupported field envoy.config.route.v3.HeaderMatcher.invert_match",
		},
		{
			name: "PGV validation inside Any",
			mutate: func(t *testing.T, res *Resources) {
				ep := base.extProcFilter(t)
				ep.GrpcService.GetEnvoyGrpc().ClusterName = ""
				res.Listeners[0] = base.listener(t, ep)
			},
			want: "fails Envoy's proto validation",
		},
		{
			name: "header value option append and append_action",
			mutate: func(_ *testing.T, res *Resources) {
				r := res.Routes[0].VirtualHosts[0].Routes[2]
				//lint:ignore SA1019 the legacy flag is what this case exercises
				r.ResponseHeadersToAdd[0].Append = wrapperspb.Bool(true)
				r.ResponseHeadersToAdd[0].AppendAction = corev3.HeaderValueOption_ADD_IF_ABSENT
			},
			want: "both append and append_action",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := base.resources(t)
			tc.mutate(t, &res)
			e, err := New(context.Background(), res, Options{ListenAddress: "127.0.0.1:0"})
			if err == nil {
				_ = e.Close()
				t.Fatal("New accepted unsupported config")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func TestUnsupportedErrorIsTyped(t *testing.T) {
	res := contract{extProcAddr: "127.0.0.1:9001", originAddr: "127.0.0.1:9002"}.resources(t)
	res.Listeners[0].StatPrefix = "x"
	_, err := compile(res)
	var ue *UnsupportedError
	if !errors.As(err, &ue) || ue.Field != "envoy.config.listener.v3.Listener.stat_prefix" {
		t.Fatalf("err = %v, want *UnsupportedError for stat_prefix", err)
	}
}
