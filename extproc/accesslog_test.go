package extproc

import (
	"context"
	"encoding/json"
	"net"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogdatav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/yatagarasu/yatagarasu/internal/audit"
)

// memorySink keeps every audit line it is given.
type memorySink struct {
	mu    sync.Mutex
	lines [][]byte
}

func (m *memorySink) Name() string { return "memory" }
func (m *memorySink) Write(_ context.Context, lines [][]byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, l := range lines {
		m.lines = append(m.lines, append([]byte(nil), l...))
	}
	return nil
}
func (m *memorySink) Flush(context.Context) error { return nil }
func (m *memorySink) Close(context.Context) error { return nil }

func (m *memorySink) records(t *testing.T) []audit.Record {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]audit.Record, 0, len(m.lines))
	for _, l := range m.lines {
		var r audit.Record
		if err := json.Unmarshal(l, &r); err != nil {
			t.Fatalf("record %q: %v", l, err)
		}
		out = append(out, r)
	}
	return out
}

func entry(id, details, cluster string, status uint32) *accesslogdatav3.HTTPAccessLogEntry {
	e := &accesslogdatav3.HTTPAccessLogEntry{
		CommonProperties: &accesslogdatav3.AccessLogCommon{
			StartTime:                  timestamppb.New(time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)),
			TimeToLastDownstreamTxByte: durationpb.New(1500 * time.Microsecond),
			UpstreamCluster:            cluster,
			DownstreamRemoteAddress: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: "198.51.100.7", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 5555}}}},
		},
		Response: &accesslogdatav3.HTTPResponseProperties{ResponseCode: wrapperspb.UInt32(status), ResponseCodeDetails: details, ResponseBodyBytes: 42},
	}
	if id != "" {
		e.Request = &accesslogdatav3.HTTPRequestProperties{
			RequestId: id, RequestMethod: corev3.RequestMethod_GET, Path: "/products/a.txt?token=secret",
			UserAgent: "ua/1", ForwardedFor: "203.0.113.9,10.0.0.1", Referer: "http://r.example/",
		}
	}
	return e
}

func TestAccessLogServerRecordsOnlyEnvoysOwnReplies(t *testing.T) {
	sink := &memorySink{}
	al, err := audit.New(audit.Options{SpoolDir: t.TempDir(), Sinks: []audit.Sink{sink}})
	if err != nil {
		t.Fatal(err)
	}
	obs := &Observability{Audit: al, Recorded: audit.NewRecentIDs(100, time.Hour), Redactor: audit.NewRedactor(nil, nil)}
	als := NewAccessLogServer(obs, 20*time.Millisecond)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	alsv3.RegisterAccessLogServiceServer(srv, als)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	// extproc answered "rid-extproc" itself; the origin served "rid-late" but records it late.
	obs.logAudit(audit.Record{RequestID: "rid-extproc", Status: 403, Source: audit.SourceExtProc})

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	st, err := alsv3.NewAccessLogServiceClient(conn).StreamAccessLogs(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	msg := &alsv3.StreamAccessLogsMessage{
		Identifier: &alsv3.StreamAccessLogsMessage_Identifier{LogName: "yatagarasu_http", Node: &corev3.Node{Id: "n"}},
		LogEntries: &alsv3.StreamAccessLogsMessage_HttpLogs{HttpLogs: &alsv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: []*accesslogdatav3.HTTPAccessLogEntry{
			entry("rid-extproc", "ext_proc_immediate_response", "", 403),
			entry("rid-origin", "via_upstream", originClusterName, 200),
			entry("rid-late", "upstream_response_timeout", originClusterName, 504),
			entry("rid-503", "upstream_reset_before_response_started{remote_connection_failure}", originClusterName, 503),
			entry("", "http1.headers_too_large", "", 431),
		}}},
	}
	if err := st.Send(msg); err != nil {
		t.Fatal(err)
	}
	obs.logAudit(audit.Record{RequestID: "rid-late", Status: 200, Source: audit.SourceOrigin}) // within the settle time
	if _, err := st.CloseAndRecv(); err != nil {
		t.Fatalf("stream ended with %v", err)
	}
	als.Stop()
	if err := al.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	bySource := map[string][]audit.Record{}
	for _, r := range sink.records(t) {
		bySource[r.Source] = append(bySource[r.Source], r)
	}
	env := bySource[audit.SourceEnvoy]
	if len(env) != 2 || len(bySource[audit.SourceExtProc]) != 1 || len(bySource[audit.SourceOrigin]) != 1 {
		t.Fatalf("records by source = %v", bySource)
	}
	r503 := env[0]
	if r503.RequestID != "rid-503" || r503.Status != 503 || r503.Method != "GET" || r503.Path != "/products/a.txt" ||
		r503.Query != "token=[REDACTED]" || r503.ClientIP != "10.0.0.1" || r503.Bytes != 42 || r503.DurationMS != 1.5 ||
		r503.UserAgent != "ua/1" || r503.CacheStatus != audit.CacheBypass || r503.User != nil ||
		r503.Reason != "upstream_reset_before_response_started{remote_connection_failure}" || !r503.Timestamp.Equal(time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)) {
		t.Errorf("503 record = %+v", r503)
	}
	r431 := env[1]
	if r431.Status != 431 || r431.RequestID == "" || r431.RequestID != r431.CorrelationID || r431.ClientIP != "198.51.100.7" || r431.Method != "" {
		t.Errorf("431 record = %+v", r431)
	}
}

func TestAccessLogServerStopEndsStreamsAndIgnoresAuditOff(t *testing.T) {
	als := NewAccessLogServer(&Observability{}, time.Hour)
	if als.wanted(entry("x", "direct_response", "", 503)) {
		t.Error("entry wanted with the audit log off")
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	alsv3.RegisterAccessLogServiceServer(srv, als)
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	st, err := alsv3.NewAccessLogServiceClient(conn).StreamAccessLogs(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&alsv3.StreamAccessLogsMessage{}); err != nil {
		t.Fatal(err)
	}
	als.Stop()
	srv.GracefulStop() // returns only because Stop ended the open stream
	if _, err := st.CloseAndRecv(); err != nil {
		t.Fatalf("stream ended by Stop with %v, want OK", err)
	}
	als.Stop() // idempotent
}
