package envoyemu

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func decodeSeen(t *testing.T, body []byte) upstreamSeen {
	t.Helper()
	var s upstreamSeen
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatalf("upstream body %q: %v", body, err)
	}
	return s
}

func headerValues(req *extprocv3.ProcessingRequest) map[string]string {
	out := map[string]string{}
	for _, h := range req.GetRequestHeaders().GetHeaders().GetHeaders() {
		out[h.GetKey()] = string(h.GetRawValue())
	}
	return out
}

func TestHeadersOnlyGETIsSentLikeEnvoyAndRouted(t *testing.T) {
	ep := startExtProc(t, continueWith(&extprocv3.HeaderMutation{
		RemoveHeaders: []string{"x-yatagarasu-bucket"},
		SetHeaders:    []*corev3.HeaderValueOption{setRaw("x-yatagarasu-bucket", "photos"), setRaw("x-yatagarasu-key", "a/b")},
	}, true))
	up := startUpstream(t)
	e, _ := startEnvoy(t, contract{extProcAddr: ep.addr, originAddr: up.Listener.Addr().String()}.resources(t))

	code, hdr, body := get(t, "GET", e.URL()+"/photos/a%2Fb?x=1", map[string]string{
		"X-Request-Id":        "client-rid",
		"X-Yatagarasu-Bucket": "forged",
		"X-Forwarded-For":     "203.0.113.9",
		"X-Envoy-Retry-On":    "5xx",
	})
	if code != 200 {
		t.Fatalf("status = %d, body %s", code, body)
	}
	if hdr.Get("Server") != "envoy" || hdr.Get("X-Envoy-Upstream-Service-Time") == "" {
		t.Errorf("missing Envoy response headers: %v", hdr)
	}

	req := <-ep.reqs
	rh := req.GetRequestHeaders()
	if !rh.GetEndOfStream() {
		t.Error("headers-only GET must have end_of_stream=true")
	}
	if req.GetProtocolConfig() == nil {
		t.Error("first message must carry protocol_config")
	}
	for _, h := range rh.GetHeaders().GetHeaders() {
		if h.GetValue() != "" {
			t.Errorf("header %q sent in value, want raw_value only", h.GetKey())
		}
		if h.GetKey() != strings.ToLower(h.GetKey()) {
			t.Errorf("header key %q not lower-case", h.GetKey())
		}
	}
	got := headerValues(req)
	want := map[string]string{
		":method":                  "GET",
		":path":                    "/photos/a%2Fb?x=1",
		":scheme":                  "http",
		":authority":               strings.TrimPrefix(e.URL(), "http://"),
		"x-request-id":             "client-rid",
		"x-forwarded-proto":        "http",
		"x-forwarded-for":          "203.0.113.9," + e.nodeAddr,
		"x-envoy-external-address": "127.0.0.1",
		"x-yatagarasu-bucket":      "forged",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("ext_proc header %s = %q, want %q", k, got[k], v)
		}
	}
	if _, ok := got["x-envoy-retry-on"]; ok {
		t.Error("x-envoy-retry-on from an edge client must be stripped")
	}

	seen := decodeSeen(t, body)
	if seen.RequestURI != "/photos/a%2Fb?x=1" {
		t.Errorf("upstream request URI = %q, want raw path", seen.RequestURI)
	}
	if v := http.Header(seen.Header).Values("x-yatagarasu-bucket"); len(v) != 1 || v[0] != "photos" {
		t.Errorf("upstream x-yatagarasu-bucket = %v", v)
	}
	if v := http.Header(seen.Header).Values("x-envoy-expected-rq-timeout-ms"); len(v) != 1 || v[0] != "30000" {
		t.Errorf("upstream x-envoy-expected-rq-timeout-ms = %v", v)
	}
	if ua := http.Header(seen.Header).Values("User-Agent"); len(ua) != 1 || ua[0] != "Go-http-client/1.1" {
		t.Errorf("upstream user-agent = %v, want the client's own (one value, not the harness's)", ua)
	}
	if end := <-ep.ends; end != codes.Canceled {
		t.Errorf("server saw stream end %v, want Canceled (Envoy resets the stream)", end)
	}
}

func TestRequestIDGeneratedWhenAbsent(t *testing.T) {
	ep := startExtProc(t, continueWith(nil, false))
	up := startUpstream(t)
	e, _ := startEnvoy(t, contract{extProcAddr: ep.addr, originAddr: up.Listener.Addr().String()}.resources(t))
	get(t, "GET", e.URL()+"/x", nil)
	rid := headerValues(<-ep.reqs)["x-request-id"]
	if len(rid) != 36 || rid[14] != '4' {
		t.Errorf("x-request-id = %q, want a UUIDv4", rid)
	}
}

func TestExtProcFailureMatrix(t *testing.T) {
	spurious := func(_ *extprocv3.ProcessingRequest, s extprocv3.ExternalProcessor_ProcessServer) error {
		return s.Send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}}})
	}
	internal := func(*extprocv3.ProcessingRequest, extprocv3.ExternalProcessor_ProcessServer) error {
		return status.Error(codes.Internal, "boom")
	}
	sleepy := func(_ *extprocv3.ProcessingRequest, s extprocv3.ExternalProcessor_ProcessServer) error {
		<-s.Context().Done()
		return s.Context().Err()
	}
	closeOK := func(*extprocv3.ProcessingRequest, extprocv3.ExternalProcessor_ProcessServer) error { return errCloseOK }
	manyHeaders := func(_ *extprocv3.ProcessingRequest, s extprocv3.ExternalProcessor_ProcessServer) error {
		var set []*corev3.HeaderValueOption
		for i := 0; i < 101; i++ {
			set = append(set, setRaw(fmt.Sprintf("x-h-%d", i), "v"))
		}
		return continueWith(&extprocv3.HeaderMutation{SetHeaders: set}, true)(nil, s)
	}
	valueAndRaw := continueWith(&extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
		{Header: &corev3.HeaderValue{Key: "x-yatagarasu-bucket", Value: "photos", RawValue: []byte("photos")}},
	}}, true)
	badChars := continueWith(&extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setRaw("x-yatagarasu-bucket", "photos\r\nx: y")}}, true)

	cases := []struct {
		name          string
		handle        func(*extprocv3.ProcessingRequest, extprocv3.ExternalProcessor_ProcessServer) error
		statusOnError typev3.StatusCode
		timeout       time.Duration
		wantStatus    int
		wantDetails   string
		wantBody      string
	}{
		{name: "wrong phase", handle: spurious, wantStatus: 500, wantDetails: "ext_proc_error_spurious_message"},
		{name: "wrong phase with status_on_error", handle: spurious, statusOnError: typev3.StatusCode_ServiceUnavailable, wantStatus: 503},
		{name: "grpc internal", handle: internal, wantStatus: 500, wantDetails: "ext_proc_error_gRPC_error_13{boom}"},
		{name: "grpc internal with status_on_error", handle: internal, statusOnError: typev3.StatusCode_ServiceUnavailable, wantStatus: 503},
		{name: "message timeout", handle: sleepy, timeout: 20 * time.Millisecond, statusOnError: typev3.StatusCode_ServiceUnavailable, wantStatus: 504, wantDetails: "ext_proc_error_per-message_timeout_exceeded"},
		{name: "ok close before answer continues unprocessed", handle: closeOK, wantStatus: 403, wantBody: unprocessedBody},
		{name: "more than 100 set_headers", handle: manyHeaders, wantStatus: 500, wantDetails: "ext_proc_error_rejected_header_mutation"},
		{name: "value and raw_value", handle: valueAndRaw, wantStatus: 500},
		{name: "invalid header value", handle: badChars, wantStatus: 500},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ep := startExtProc(t, tc.handle)
			up := startUpstream(t)
			e, logs := startEnvoy(t, contract{extProcAddr: ep.addr, originAddr: up.Listener.Addr().String(), statusOnError: tc.statusOnError, messageTimeout: tc.timeout}.resources(t))
			code, hdr, body := get(t, "GET", e.URL()+"/photos/k", nil)
			if code != tc.wantStatus {
				t.Fatalf("status = %d, want %d (body %q)", code, tc.wantStatus, body)
			}
			if tc.wantBody != "" {
				if string(body) != tc.wantBody || hdr.Get("Content-Type") != "application/json" {
					t.Errorf("body = %q (%s), want %q application/json", body, hdr.Get("Content-Type"), tc.wantBody)
				}
			}
			if tc.wantDetails != "" && !strings.Contains(logs.String(), "details="+tc.wantDetails) {
				t.Errorf("log lacks details=%s:\n%s", tc.wantDetails, logs.String())
			}
		})
	}
}

func TestExtProcUnreachableGivesStatusOnError(t *testing.T) {
	up := startUpstream(t)
	// Port 1 on loopback refuses connections: the stream cannot start.
	res := contract{extProcAddr: "127.0.0.1:1", originAddr: up.Listener.Addr().String(), statusOnError: typev3.StatusCode_ServiceUnavailable}.resources(t)
	e, _ := startEnvoy(t, res)
	if code, _, _ := get(t, "GET", e.URL()+"/photos/k", nil); code != 503 {
		t.Fatalf("status = %d, want 503", code)
	}
}

func TestImmediateResponseDefaults(t *testing.T) {
	ep := startExtProc(t, func(_ *extprocv3.ProcessingRequest, s extprocv3.ExternalProcessor_ProcessServer) error {
		return s.Send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{
			Body: []byte("hello"),
			Headers: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
				setRaw("x-custom", "1"), setRaw("x-envoy-foo", "dropped"),
			}},
		}}})
	})
	up := startUpstream(t)
	e, _ := startEnvoy(t, contract{extProcAddr: ep.addr, originAddr: up.Listener.Addr().String()}.resources(t))
	code, hdr, body := get(t, "GET", e.URL()+"/photos/k", nil)
	if code != 200 || string(body) != "hello" {
		t.Fatalf("got %d %q, want 200 hello", code, body)
	}
	if ct := hdr.Get("Content-Type"); ct != "text/plain" {
		t.Errorf("content-type = %q, want text/plain", ct)
	}
	if hdr.Get("X-Custom") != "1" || hdr.Get("X-Envoy-Foo") != "" {
		t.Errorf("immediate response headers not filtered by mutation rules: %v", hdr)
	}

	// An explicit status < 200 also becomes 200; a set content-type is kept.
	ep2 := startExtProc(t, func(_ *extprocv3.ProcessingRequest, s extprocv3.ExternalProcessor_ProcessServer) error {
		return s.Send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode_Continue},
			Body:    []byte(`{}`),
			Headers: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setRaw("content-type", "application/json")}},
		}}})
	})
	e2, _ := startEnvoy(t, contract{extProcAddr: ep2.addr, originAddr: up.Listener.Addr().String()}.resources(t))
	code, hdr, _ = get(t, "GET", e2.URL()+"/photos/k", nil)
	if code != 200 || hdr.Get("Content-Type") != "application/json" {
		t.Errorf("got %d %q, want 200 application/json", code, hdr.Get("Content-Type"))
	}
}

func TestDefaultMutationRulesDropRoutingAndEnvoyHeaders(t *testing.T) {
	ep := startExtProc(t, continueWith(&extprocv3.HeaderMutation{
		RemoveHeaders: []string{":path", "host", "x-forwarded-proto"},
		SetHeaders: []*corev3.HeaderValueOption{
			setRaw("host", "evil.example"), setRaw(":authority", "evil.example"), setRaw(":method", "DELETE"),
			setRaw(":scheme", "https"), setRaw("x-envoy-foo", "1"), setRaw("x-yatagarasu-bucket", "photos"),
			setRaw(":path", "/rewritten?q=1"),
		},
	}, true))
	up := startUpstream(t)
	e, _ := startEnvoy(t, contract{extProcAddr: ep.addr, originAddr: up.Listener.Addr().String()}.resources(t))
	code, _, body := get(t, "GET", e.URL()+"/photos/k", nil)
	if code != 200 {
		t.Fatalf("status = %d body %s", code, body)
	}
	seen := decodeSeen(t, body)
	if seen.Method != "GET" || seen.Host != strings.TrimPrefix(e.URL(), "http://") {
		t.Errorf("routing headers changed: method %s host %s", seen.Method, seen.Host)
	}
	if http.Header(seen.Header).Get("x-envoy-foo") != "" {
		t.Error("x-envoy-foo must be dropped")
	}
	if http.Header(seen.Header).Get("x-forwarded-proto") != "" {
		t.Error("x-forwarded-proto removal is allowed and must apply")
	}
	if seen.RequestURI != "/rewritten?q=1" {
		t.Errorf(":path set must apply upstream, got %q", seen.RequestURI)
	}
}

func TestClearRouteCacheRematches(t *testing.T) {
	mut := &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setRaw("x-yatagarasu-bucket", "docs")}}
	for _, tc := range []struct {
		clear      bool
		wantStatus int
	}{{clear: true, wantStatus: 200}, {clear: false, wantStatus: 403}} {
		t.Run(fmt.Sprintf("clear_route_cache=%v", tc.clear), func(t *testing.T) {
			ep := startExtProc(t, continueWith(mut, tc.clear))
			up := startUpstream(t)
			e, _ := startEnvoy(t, contract{extProcAddr: ep.addr, originAddr: up.Listener.Addr().String()}.resources(t))
			code, _, body := get(t, "GET", e.URL()+"/docs/readme", nil)
			if code != tc.wantStatus {
				t.Fatalf("status = %d, want %d (body %s)", code, tc.wantStatus, body)
			}
			if tc.clear && http.Header(decodeSeen(t, body).Header).Get("x-yatagarasu-bucket") != "docs" {
				t.Error("upstream did not get the mutated header")
			}
		})
	}
}

func TestClientHeaderSelectsRouteWithoutClearRouteCache(t *testing.T) {
	// The initial route match happens on the client's headers, before ext_proc; without
	// clear_route_cache that choice sticks even when ext_proc removes the header.
	ep := startExtProc(t, continueWith(&extprocv3.HeaderMutation{RemoveHeaders: []string{"x-yatagarasu-bucket"}}, false))
	up := startUpstream(t)
	e, _ := startEnvoy(t, contract{extProcAddr: ep.addr, originAddr: up.Listener.Addr().String()}.resources(t))
	code, _, body := get(t, "GET", e.URL()+"/k", map[string]string{"X-Yatagarasu-Bucket": "photos"})
	if code != 200 {
		t.Fatalf("status = %d, want 200 via the originally matched route (body %s)", code, body)
	}
	if http.Header(decodeSeen(t, body).Header).Get("x-yatagarasu-bucket") != "" {
		t.Error("removed header reached the upstream")
	}
}
