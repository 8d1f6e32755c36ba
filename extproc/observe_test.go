package extproc

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/yatagarasu/yatagarasu/internal/audit"
	"github.com/yatagarasu/yatagarasu/internal/config"
	"github.com/yatagarasu/yatagarasu/internal/telemetry"
)

// namedStage is a stage with a chosen name that passes or refuses.
type namedStage struct {
	name   string
	refuse bool
}

func (s namedStage) Name() string { return s.name }
func (s namedStage) Run(_ context.Context, x *Exchange) *Decision {
	if s.refuse {
		x.Subject = "alice"
		return Reject(x, http.StatusForbidden, "policy_denied", "no")
	}
	return nil
}

func tracedObservability(t *testing.T, exp *tracetest.InMemoryExporter, al *audit.Logger) *Observability {
	t.Helper()
	tr := telemetry.NewTracingWith(config.Tracing{ServiceName: "yg-test", SamplingRatio: 1, PropagateContext: true}, sdktrace.WithSyncer(exp))
	return &Observability{Tracing: tr, Audit: al, Redactor: audit.NewRedactor(nil, nil), RecordHeaders: []string{"authorization"},
		Requests: telemetry.NewRequestMetrics(prometheus.NewRegistry()), Log: slog.New(slog.DiscardHandler)}
}

func TestSpanTreeContinuesEnvoyTraceAndCoversStages(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	base := testPipeline(t, "/products")
	p := NewPipeline(base.store, base.now, namedStage{name: "ip_filter"}, namedStage{name: "jwt"}, namedStage{name: "policy"})
	srv := NewServer(p, slog.New(slog.DiscardHandler), prometheus.NewRegistry()).WithObservability(tracedObservability(t, exp, nil))
	c := serve(t, srv)
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	resp, err := roundTrip(t.Context(), c, envoyHeaders("GET", "/products/a.txt", "traceparent", parent, "x-correlation-id", "order-77"))
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]string{}
	for _, h := range resp.GetRequestHeaders().GetResponse().GetHeaderMutation().GetSetHeaders() {
		set[h.Header.Key] = string(h.Header.RawValue)
	}
	if set["x-correlation-id"] != "order-77" {
		t.Errorf("upstream x-correlation-id = %q", set["x-correlation-id"])
	}
	spans := exp.GetSpans()
	byName := map[string]tracetest.SpanStub{}
	for _, s := range spans {
		byName[s.Name] = s
	}
	root, ok := byName["extproc.decide"]
	if !ok {
		t.Fatalf("spans = %v", names(spans))
	}
	if root.SpanContext.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || root.Parent.SpanID().String() != "00f067aa0ba902b7" {
		t.Errorf("decide span does not continue Envoy's trace: trace %s parent %s", root.SpanContext.TraceID(), root.Parent.SpanID())
	}
	for _, n := range []string{"route", "ip_filter", "jwt", "policy"} {
		s, ok := byName[n]
		if !ok {
			t.Errorf("no %q span in %v", n, names(spans))
			continue
		}
		if s.Parent.SpanID() != root.SpanContext.SpanID() {
			t.Errorf("%s is not a child of extproc.decide", n)
		}
	}
	// The origin continues from the decide span.
	tp := set["traceparent"]
	if !strings.Contains(tp, root.SpanContext.TraceID().String()) || !strings.Contains(tp, root.SpanContext.SpanID().String()) {
		t.Errorf("upstream traceparent = %q, want the decide span", tp)
	}
	if res := root.Resource.Attributes(); !strings.Contains(attrString(res), "yg-test") {
		t.Errorf("resource = %v", res)
	}
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}

func attrString[T any](v T) string { b, _ := json.Marshal(v); return string(b) }

func TestDenialWritesOneAuditRecordWithIdentity(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	dir := t.TempDir()
	fs, err := audit.NewFileSink(audit.FileOptions{Path: filepath.Join(dir, "audit.log"), MaxSizeMB: 1})
	if err != nil {
		t.Fatal(err)
	}
	al, err := audit.New(audit.Options{SpoolDir: filepath.Join(dir, "spool"), Sinks: []audit.Sink{fs}})
	if err != nil {
		t.Fatal(err)
	}
	base := testPipeline(t, "/products")
	p := NewPipeline(base.store, base.now, namedStage{name: "policy", refuse: true})
	obs := tracedObservability(t, exp, al)
	reg := prometheus.NewRegistry()
	obs.Requests = telemetry.NewRequestMetrics(reg)
	srv := NewServer(p, slog.New(slog.DiscardHandler), prometheus.NewRegistry()).WithObservability(obs)
	c := serve(t, srv)
	jwt := "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln"
	resp, err := roundTrip(t.Context(), c, envoyHeaders("GET", "/products/a.txt?token=s3cret&x=1", "authorization", "Bearer "+jwt,
		"x-correlation-id", "bad id with spaces", "x-forwarded-for", "198.51.100.9", "user-agent", "ua/1", "referer", "https://r.example/"))
	if err != nil {
		t.Fatal(err)
	}
	ir := resp.GetImmediateResponse()
	got := map[string]string{}
	for _, h := range ir.GetHeaders().GetSetHeaders() {
		got[h.Header.Key] = string(h.Header.RawValue)
	}
	if got["x-correlation-id"] != "rid-42" || got["x-request-id"] != "rid-42" {
		t.Errorf("invalid correlation id must fall back to the request id: %v", got)
	}
	if err := al.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 1 {
		t.Fatalf("audit lines = %d: %s", len(lines), data)
	}
	var r audit.Record
	if err := json.Unmarshal([]byte(lines[0]), &r); err != nil {
		t.Fatal(err)
	}
	spans := exp.GetSpans()
	if r.RequestID != "rid-42" || r.CorrelationID != "rid-42" || r.Status != 403 || r.Reason != "policy_denied" ||
		r.Bucket != "products" || r.Key != "a.txt" || r.Path != "/products/a.txt" || r.ClientIP != "198.51.100.9" ||
		r.User == nil || *r.User != "alice" || r.CacheStatus != "bypass" || r.Source != "extproc" || r.UserAgent != "ua/1" ||
		r.Bytes != int64(len(ir.Body)) || r.TraceID != spans[len(spans)-1].SpanContext.TraceID().String() {
		t.Errorf("record = %+v", r)
	}
	if strings.Contains(lines[0], "s3cret") || strings.Contains(lines[0], jwt) || r.Headers["authorization"] != "Bearer [REDACTED]" {
		t.Errorf("secrets in the record: %s", lines[0])
	}
	if n, err := testutil.GatherAndCount(reg, "yatagarasu_requests_total"); err != nil || n != 1 {
		t.Errorf("requests_total series = %d (%v)", n, err)
	}
}

func TestRunStageWithoutTracingDoesNotAllocate(t *testing.T) {
	// Measured on runStage itself: Decide as a whole also signs, whose pooled HMAC state the race
	// detector's sync.Pool drops at random, which would make a whole-pipeline count noisy.
	x := &Exchange{Req: &Request{Method: "GET", RawPath: "/products/k", RequestID: "rid"}}
	var st Stage = namedStage{name: "a"} // converted once: the pipeline holds stages as interfaces
	ctx := context.Background()
	if allocs := testing.AllocsPerRun(100, func() { _ = runStage(ctx, st, x) }); allocs != 0 {
		t.Errorf("an untraced stage costs %.0f allocations per request", allocs)
	}
}
