package envoyemu

import (
	"net"
	"strings"
	"testing"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogdatav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	grpcalsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/grpc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
)

const alsCluster = "test_als"

// fakeALS is a real gRPC AccessLogService that records every message it receives.
type fakeALS struct {
	alsv3.UnimplementedAccessLogServiceServer
	msgs chan *alsv3.StreamAccessLogsMessage
	addr string
}

func (f *fakeALS) StreamAccessLogs(st alsv3.AccessLogService_StreamAccessLogsServer) error {
	for {
		m, err := st.Recv()
		if err != nil {
			return nil
		}
		f.msgs <- m
	}
}

func startALS(t *testing.T) *fakeALS {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeALS{msgs: make(chan *alsv3.StreamAccessLogsMessage, 64), addr: lis.Addr().String()}
	srv := grpc.NewServer()
	alsv3.RegisterAccessLogServiceServer(srv, f)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return f
}

// withAccessLog adds the translator's access logger and always_set_request_id_in_response.
func withAccessLog(t *testing.T, res Resources, alsAddr string) Resources {
	t.Helper()
	f := res.Listeners[0].FilterChains[0].Filters[0]
	hcm := &hcmv3.HttpConnectionManager{}
	if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	hcm.AlwaysSetRequestIdInResponse = true
	hcm.AccessLog = []*accesslogv3.AccessLog{{
		Name: "envoy.access_loggers.http_grpc",
		ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: mustAny(t, &grpcalsv3.HttpGrpcAccessLogConfig{
			CommonConfig: &grpcalsv3.CommonGrpcAccessLogConfig{
				LogName:             "yatagarasu_http",
				GrpcService:         &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: alsCluster}}},
				TransportApiVersion: corev3.ApiVersion_V3,
			},
		})},
	}}
	f.GetTypedConfig().Value = mustAny(t, hcm).Value
	res.Clusters = append(res.Clusters, cluster(t, alsCluster, alsAddr, true))
	return res
}

// nextEntry waits for the next entry the fake ALS receives, with the message it came in.
func nextEntry(t *testing.T, f *fakeALS, pending *[]*accesslogdatav3.HTTPAccessLogEntry, first **alsv3.StreamAccessLogsMessage) *accesslogdatav3.HTTPAccessLogEntry {
	t.Helper()
	for len(*pending) == 0 {
		select {
		case m := <-f.msgs:
			if *first == nil {
				*first = m
			} else if m.GetIdentifier() != nil {
				t.Errorf("identifier sent again on a later message: %v", m.GetIdentifier())
			}
			*pending = append(*pending, m.GetHttpLogs().GetLogEntry()...)
		case <-time.After(10 * time.Second):
			t.Fatal("no access-log entry received")
		}
	}
	e := (*pending)[0]
	*pending = (*pending)[1:]
	return e
}

func TestAccessLogEntriesForProxiedAndLocalReplies(t *testing.T) {
	als := startALS(t)
	ep := startExtProc(t, func(req *extprocv3.ProcessingRequest, s extprocv3.ExternalProcessor_ProcessServer) error {
		if strings.HasPrefix(headerValues(req)[":path"], "/deny") {
			return s.Send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{
				ImmediateResponse: &extprocv3.ImmediateResponse{Status: &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden}, Body: []byte("no")},
			}})
		}
		return toPhotos()(req, s)
	})
	up := startUpstream(t)
	res := withAccessLog(t, contract{extProcAddr: ep.addr, originAddr: up.Listener.Addr().String(), maxHeadersKB: 1}.resources(t), als.addr)
	e, _ := startEnvoy(t, res)

	var pending []*accesslogdatav3.HTTPAccessLogEntry
	var first *alsv3.StreamAccessLogsMessage

	// Proxied: the upstream's answer, with the request's fields and timings.
	code, hdr, body := get(t, "GET", e.URL()+"/photos/a?x=1", map[string]string{
		"X-Request-Id": "rid-proxied", "User-Agent": "ua/1", "Referer": "http://r.example/p", "X-Forwarded-For": "203.0.113.9",
	})
	if code != 200 || hdr.Get("X-Request-Id") != "rid-proxied" {
		t.Fatalf("proxied: %d x-request-id=%q", code, hdr.Get("X-Request-Id"))
	}
	got := nextEntry(t, als, &pending, &first)
	if id := first.GetIdentifier(); id.GetLogName() != "yatagarasu_http" || id.GetNode().GetCluster() != "yatagarasu" {
		t.Errorf("identifier = %v", id)
	}
	rq, rs, cm := got.GetRequest(), got.GetResponse(), got.GetCommonProperties()
	if rq.GetRequestId() != "rid-proxied" || rq.GetRequestMethod() != corev3.RequestMethod_GET || rq.GetPath() != "/photos/a?x=1" ||
		rq.GetAuthority() == "" || rq.GetUserAgent() != "ua/1" || rq.GetReferer() != "http://r.example/p" ||
		!strings.HasPrefix(rq.GetForwardedFor(), "203.0.113.9,") || rq.GetScheme() != "http" {
		t.Errorf("request properties = %v", rq)
	}
	if rs.GetResponseCode().GetValue() != 200 || rs.GetResponseCodeDetails() != "via_upstream" || rs.GetResponseBodyBytes() != uint64(len(body)) {
		t.Errorf("response properties = %v (body %d bytes)", rs, len(body))
	}
	if cm.GetUpstreamCluster() != originCluster || cm.GetRouteName() != "bucket:photos" || cm.GetStartTime() == nil ||
		cm.GetTimeToLastDownstreamTxByte() == nil || cm.GetTimeToFirstUpstreamTxByte() == nil || cm.GetTimeToLastUpstreamRxByte() == nil ||
		cm.GetDownstreamRemoteAddress().GetSocketAddress().GetAddress() != "127.0.0.1" {
		t.Errorf("common properties = %v", cm)
	}

	// ImmediateResponse: the id set by always_set_request_id_in_response, details from ext_proc.
	code, hdr, _ = get(t, "GET", e.URL()+"/deny", map[string]string{"X-Request-Id": "rid-denied"})
	if code != 403 || hdr.Get("X-Request-Id") != "rid-denied" {
		t.Fatalf("denied: %d x-request-id=%q", code, hdr.Get("X-Request-Id"))
	}
	got = nextEntry(t, als, &pending, &first)
	if got.GetRequest().GetRequestId() != "rid-denied" || got.GetResponse().GetResponseCode().GetValue() != 403 ||
		got.GetResponse().GetResponseCodeDetails() != "ext_proc_immediate_response" || got.GetResponse().GetResponseBodyBytes() != 2 {
		t.Errorf("denied entry = %v", got)
	}

	// Codec refusal: 431 before the header map exists, so no request properties and no id.
	code, hdr, _ = get(t, "GET", e.URL()+"/photos/a", map[string]string{"X-Request-Id": "rid-431", "X-Big": strings.Repeat("a", 1100)})
	if code != 431 || hdr.Get("X-Request-Id") != "" {
		t.Fatalf("431: %d x-request-id=%q", code, hdr.Get("X-Request-Id"))
	}
	got = nextEntry(t, als, &pending, &first)
	if got.GetRequest() != nil || got.GetResponse().GetResponseCode().GetValue() != 431 || got.GetResponse().GetResponseCodeDetails() != "http1.headers_too_large" {
		t.Errorf("431 entry = %v", got)
	}
}

func TestAccessLogUpstreamConnectFailureCarriesRequestID(t *testing.T) {
	als := startALS(t)
	ep := startExtProc(t, toPhotos())
	e, _ := startEnvoy(t, withAccessLog(t, contract{extProcAddr: ep.addr, originAddr: "127.0.0.1:1"}.resources(t), als.addr))
	code, hdr, _ := get(t, "GET", e.URL()+"/photos/k", nil)
	rid := hdr.Get("X-Request-Id")
	if code != 503 || rid == "" {
		t.Fatalf("got %d x-request-id=%q, want 503 with a generated id", code, rid)
	}
	var pending []*accesslogdatav3.HTTPAccessLogEntry
	var first *alsv3.StreamAccessLogsMessage
	got := nextEntry(t, als, &pending, &first)
	if got.GetRequest().GetRequestId() != rid || got.GetResponse().GetResponseCode().GetValue() != 503 ||
		!strings.HasPrefix(got.GetResponse().GetResponseCodeDetails(), "upstream_reset_before_response_started{") ||
		got.GetCommonProperties().GetUpstreamCluster() != originCluster {
		t.Errorf("entry = %v", got)
	}
}

func TestAccessLogToHTTP1ClusterIsRejected(t *testing.T) {
	base := contract{extProcAddr: "127.0.0.1:9001", originAddr: "127.0.0.1:9002"}
	res := withAccessLog(t, base.resources(t), "127.0.0.1:9003")
	res.Clusters = res.Clusters[:2] // a missing cluster is accepted, as by Envoy
	if _, err := compile(res); err != nil {
		t.Fatalf("missing cluster: err = %v", err)
	}
	res = withAccessLog(t, base.resources(t), "127.0.0.1:9003")
	res.Clusters[2] = cluster(t, alsCluster, "127.0.0.1:9003", false)
	if _, err := compile(res); err == nil || !strings.Contains(err.Error(), "needs HTTP/2") {
		t.Fatalf("HTTP/1 cluster: err = %v", err)
	}
}

func TestAccessLogUnimplementedFieldsAreLoud(t *testing.T) {
	res := withAccessLog(t, contract{extProcAddr: "127.0.0.1:9001", originAddr: "127.0.0.1:9002"}.resources(t), "127.0.0.1:9003")
	f := res.Listeners[0].FilterChains[0].Filters[0]
	hcm := &hcmv3.HttpConnectionManager{}
	if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	cfg := &grpcalsv3.HttpGrpcAccessLogConfig{}
	if err := hcm.AccessLog[0].GetTypedConfig().UnmarshalTo(cfg); err != nil {
		t.Fatal(err)
	}
	cfg.AdditionalRequestHeadersToLog = []string{"x-a"}
	hcm.AccessLog[0].GetTypedConfig().Value = mustAny(t, cfg).Value
	f.GetTypedConfig().Value = mustAny(t, hcm).Value
	_, err := compile(res)
	if err == nil || !strings.Contains(err.Error(), "unsupported field envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig.additional_request_headers_to_log") {
		t.Fatalf("err = %v", err)
	}
}
