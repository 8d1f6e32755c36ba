package extproc

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// serve starts srv on a loopback port and returns a client for it.
func serve(t testing.TB, srv extprocv3.ExternalProcessorServer) extprocv3.ExternalProcessorClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(g, srv)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return extprocv3.NewExternalProcessorClient(conn)
}

// envoyHeaders builds a request_headers message the way Envoy sends it: lower-case names,
// values in raw_value, end_of_stream for a bodiless request.
func envoyHeaders(method, path string, extra ...string) *extprocv3.ProcessingRequest {
	hs := []*corev3.HeaderValue{
		{Key: ":method", RawValue: []byte(method)},
		{Key: ":path", RawValue: []byte(path)},
		{Key: ":authority", RawValue: []byte("gw.example")},
		{Key: ":scheme", RawValue: []byte("http")},
		{Key: "x-request-id", RawValue: []byte("rid-42")},
	}
	for i := 0; i+1 < len(extra); i += 2 {
		hs = append(hs, &corev3.HeaderValue{Key: extra[i], RawValue: []byte(extra[i+1])})
	}
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
		RequestHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{Headers: hs}, EndOfStream: true},
	}}
}

// roundTrip does one Envoy-shaped exchange and then resets the stream as Envoy does.
func roundTrip(ctx context.Context, c extprocv3.ExternalProcessorClient, req *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := c.Process(ctx)
	if err != nil {
		return nil, err
	}
	if err := st.Send(req); err != nil {
		return nil, err
	}
	return st.Recv()
}

func TestServerDeniesWithImmediateResponse(t *testing.T) {
	srv := NewServer(testPipeline(t, "/products"), slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	c := serve(t, srv)
	resp, err := roundTrip(t.Context(), c, envoyHeaders("DELETE", "/products/a.txt"))
	if err != nil {
		t.Fatal(err)
	}
	ir := resp.GetImmediateResponse()
	if ir == nil || ir.GetStatus().GetCode() != 405 {
		t.Fatalf("want ImmediateResponse 405, got %v", resp)
	}
	got := map[string]string{}
	for _, h := range ir.GetHeaders().GetSetHeaders() {
		if h.GetHeader().GetValue() != "" {
			t.Fatalf("header %s uses value, Envoy wants raw_value only", h.GetHeader().GetKey())
		}
		got[h.GetHeader().GetKey()] = string(h.GetHeader().GetRawValue())
	}
	if got["allow"] != "GET, HEAD, OPTIONS" || got["x-request-id"] != "rid-42" || got["content-type"] != "application/json" {
		t.Fatalf("headers = %v", got)
	}
	if n := testutil.ToFloat64(srv.metrics.decisions.WithLabelValues("", "deny", "405", "method_not_allowed")); n != 1 {
		t.Fatalf("deny counter = %v", n)
	}
}

func TestServerContinuesWithSignedHeadersAndStripsClientOnes(t *testing.T) {
	c := serve(t, NewServer(testPipeline(t, "/products"), slog.New(slog.DiscardHandler), nil))
	resp, err := roundTrip(t.Context(), c, envoyHeaders("GET", "/products/a.txt",
		"x-yatagarasu-bucket", "secret-bucket", "x-yatagarasu-key", "passwords", "X-Yatagarasu-Extra", "1"))
	if err != nil {
		t.Fatal(err)
	}
	common := resp.GetRequestHeaders().GetResponse()
	if common == nil || !common.GetClearRouteCache() || common.GetStatus() != extprocv3.CommonResponse_CONTINUE {
		t.Fatalf("want CONTINUE + clear_route_cache, got %v", resp)
	}
	set := map[string]string{}
	for _, h := range common.GetHeaderMutation().GetSetHeaders() {
		set[h.GetHeader().GetKey()] = string(h.GetHeader().GetRawValue())
		if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			t.Fatalf("%s is appended, not overwritten", h.GetHeader().GetKey())
		}
	}
	if set["x-yatagarasu-bucket"] != "products" || !strings.Contains(set["x-yatagarasu-auth"], ";key=a.txt;") || !strings.Contains(set["x-yatagarasu-auth"], ";sig=") {
		t.Fatalf("set headers = %v", set)
	}
	removed := common.GetHeaderMutation().GetRemoveHeaders()
	if len(removed) != 2 || removed[0] != "x-yatagarasu-key" || removed[1] != "X-Yatagarasu-Extra" {
		t.Fatalf("removed = %v (client headers the signed set does not overwrite must go)", removed)
	}
}

// TestServerTreatsResetAsNormalEnd checks the Envoy close path: the handler returns without error
// when the stream is cancelled after the answer, and on EOF without any message.
func TestServerTreatsResetAsNormalEnd(t *testing.T) {
	srv := NewServer(testPipeline(t, "/products"), slog.New(slog.DiscardHandler), nil)
	done := make(chan error, 2)
	wrapped := processFunc(func(st extprocv3.ExternalProcessor_ProcessServer) error {
		err := srv.Process(st)
		done <- err
		return err
	})
	c := serve(t, wrapped)
	if _, err := roundTrip(t.Context(), c, envoyHeaders("GET", "/products/a")); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Process after reset returned %v", err)
	}
	st, err := c.Process(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != io.EOF {
		t.Fatalf("recv after half-close = %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Process after EOF returned %v", err)
	}
}

type processFunc func(extprocv3.ExternalProcessor_ProcessServer) error

func (f processFunc) Process(st extprocv3.ExternalProcessor_ProcessServer) error { return f(st) }
