package telemetry

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/yatagarasu/yatagarasu/internal/config"
)

func TestCorrelationID(t *testing.T) {
	for _, ok := range []string{"a", "order-77", "trace:abc.def_1", strings.Repeat("x", 128)} {
		if !ValidCorrelationID(ok) || CorrelationID(ok, "rid") != ok {
			t.Errorf("%q rejected", ok)
		}
	}
	for _, bad := range []string{"", "with space", "new\nline", `quote"`, strings.Repeat("x", 129), "ü", "a,b"} {
		if ValidCorrelationID(bad) || CorrelationID(bad, "rid") != "rid" {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzCorrelationID(f *testing.F) {
	f.Add("order-1")
	f.Add("a\r\nb")
	f.Fuzz(func(t *testing.T, v string) {
		if !ValidCorrelationID(v) {
			return
		}
		if strings.ContainsAny(v, " \t\r\n\",;=\\{}") || len(v) > MaxCorrelationIDLength {
			t.Fatalf("%q accepted", v)
		}
	})
}

func TestClientIP(t *testing.T) {
	cases := []struct {
		xff  string
		hops int
		want string
	}{
		{"", 0, ""},
		{"203.0.113.9", 0, "203.0.113.9"},
		{"1.1.1.1, 203.0.113.9", 0, "203.0.113.9"},
		{"1.1.1.1, 203.0.113.9", 1, "1.1.1.1"},
		{"203.0.113.9", 1, ""},
		{"junk, 2001:db8::1", 0, "2001:db8::1"},
		{"junk", 0, ""},
	}
	for _, c := range cases {
		if got := ClientIP(c.xff, c.hops); got != c.want {
			t.Errorf("ClientIP(%q, %d) = %q, want %q", c.xff, c.hops, got, c.want)
		}
	}
}

func TestTimingsRoundTripThroughHeader(t *testing.T) {
	var tm Timings
	tm.Add("jwt", 1500*time.Microsecond)
	tm.Add("policy", 2*time.Millisecond)
	tm.Add("jwt", 500*time.Microsecond)
	got := ParseTimings(tm.Header()).Map()
	if got["jwt"] != 2 || got["policy"] != 2 || len(got) != 2 {
		t.Errorf("round trip = %v (header %q)", got, tm.Header())
	}
	if m := ParseTimings("a=1,b=x,=3,c=-1,d").Map(); len(m) != 1 || m["a"] != 0.001 {
		t.Errorf("malformed = %v", m)
	}
	var nilT *Timings
	nilT.Add("x", time.Second) // no panic
}

func FuzzParseTimings(f *testing.F) {
	f.Add("decide=120,jwt=30")
	f.Fuzz(func(t *testing.T, v string) {
		m := ParseTimings(v).Map()
		if len(m) > 32 {
			t.Fatalf("%d parts", len(m))
		}
		for _, d := range m {
			if d < 0 {
				t.Fatalf("negative %v", d)
			}
		}
	})
}

func TestDisabledTracingIsNoopAndStartChildDoesNotAllocate(t *testing.T) {
	tr, err := NewTracing(context.Background(), config.Tracing{Enabled: false})
	if err != nil || tr.Enabled() {
		t.Fatalf("disabled tracing: %v %v", tr.Enabled(), err)
	}
	ctx := context.Background()
	allocs := testing.AllocsPerRun(100, func() {
		_, s := StartChild(ctx, "x")
		s.End()
	})
	if allocs != 0 {
		t.Errorf("StartChild without a recording parent allocates %.0f", allocs)
	}
}

func TestSamplingRatioZeroRecordsNothingButKeepsParentDecision(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tr := NewTracingWith(config.Tracing{ServiceName: "s", SamplingRatio: 0, PropagateContext: true}, sdktrace.WithSyncer(exp))
	_, s := tr.Tracer().Start(context.Background(), "root")
	s.End()
	if len(exp.GetSpans()) != 0 {
		t.Fatal("ratio 0 sampled a new trace")
	}
	// A sampled parent from Envoy is honoured (parent-based).
	ctx := tr.Extract(context.Background(), func(k string) string {
		if k == "traceparent" {
			return "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		}
		return ""
	})
	_, s = tr.Tracer().Start(ctx, "child")
	s.End()
	if len(exp.GetSpans()) != 1 {
		t.Fatal("sampled parent not honoured")
	}
	if got := tr.Inject(ctx); len(got) == 0 || !strings.HasPrefix(got[0][1], "00-4bf92f3577b34da6a3ce929d0e0e4736-") {
		t.Errorf("Inject = %v", got)
	}
}

func TestNewLogger(t *testing.T) {
	var buf bytes.Buffer
	l := NewLogger(config.Logging{Level: "warn", Format: "json"}, &buf)
	l.Info("hidden")
	l.Warn("shown", "request_id", "r1")
	if strings.Contains(buf.String(), "hidden") || !strings.Contains(buf.String(), `"request_id":"r1"`) {
		t.Errorf("log = %s", buf.String())
	}
	buf.Reset()
	NewLogger(config.Logging{Level: "debug", Format: "text"}, &buf).Debug("d")
	if !strings.Contains(buf.String(), "level=DEBUG") {
		t.Errorf("text log = %s", buf.String())
	}
}
