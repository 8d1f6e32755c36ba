package extproc

import (
	"context"
	"log/slog"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/yatagarasu/yatagarasu/internal/benchutil"
)

// nullServer answers every request_headers with a bare CONTINUE: the floor any ext_proc service
// pays for the gRPC round trip, against which our pipeline's cost is measured.
type nullServer struct {
	extprocv3.UnimplementedExternalProcessorServer
}

func (nullServer) Process(st extprocv3.ExternalProcessor_ProcessServer) error {
	for {
		if _, err := st.Recv(); err != nil {
			return nil
		}
		resp := &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
			RequestHeaders: &extprocv3.HeadersResponse{},
		}}
		if err := st.Send(resp); err != nil {
			return nil
		}
	}
}

// BenchmarkRoundTrip compares one Envoy-shaped stream per request (open, request_headers,
// answer, reset) at 64 concurrent streams: our extproc with 10 buckets vs the null server.
// Compare with benchstat; docs/BENCHMARKS.md records the ratio.
func BenchmarkRoundTrip(b *testing.B) {
	prefixes := []string{"/products", "/assets", "/docs", "/media", "/logs", "/a", "/b", "/c", "/d", "/e"}
	servers := map[string]extprocv3.ExternalProcessorServer{
		"impl=null":       nullServer{},
		"impl=yatagarasu": NewServer(testPipeline(b, prefixes...), slog.New(slog.DiscardHandler), nil),
	}
	for _, name := range []string{"impl=null", "impl=yatagarasu"} {
		b.Run(name, func(b *testing.B) {
			benchStreams(b, servers[name], envoyHeaders("GET", "/media/2026/11/video.mp4", "user-agent", "bench/1.0", "accept", "*/*"), continued)
		})
	}
}

// benchStreams drives srv with req at 64 concurrent Envoy-shaped streams (one stream per request,
// reset after the answer) and checks each answer; every round-trip benchmark shares it.
func benchStreams(b *testing.B, srv extprocv3.ExternalProcessorServer, req *extprocv3.ProcessingRequest, ok func(*extprocv3.ProcessingResponse) bool) {
	b.Helper()
	c := serve(b, srv)
	b.SetParallelism(32) // × GOMAXPROCS(2) = 64 concurrent streams
	b.ReportAllocs()
	defer benchutil.ReportCPU(b)()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			resp, err := roundTrip(ctx, c, req)
			if err != nil {
				b.Error(err)
				return
			}
			if !ok(resp) {
				b.Errorf("unexpected answer %v", resp)
				return
			}
		}
	})
}

// continued reports an answer that lets the request go on.
func continued(resp *extprocv3.ProcessingResponse) bool { return resp.GetRequestHeaders() != nil }
