package extproc

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/yatagarasu/yatagarasu/internal/audit"
	"github.com/yatagarasu/yatagarasu/internal/config"
	"github.com/yatagarasu/yatagarasu/internal/origin"
	"github.com/yatagarasu/yatagarasu/internal/telemetry"
)

// Observability is what the ext_proc service and the origin share to make every request
// traceable and accounted for: tracing, the audit log, request metrics and the slow-request log.
// The zero value (every field nil or zero) observes nothing at no cost.
type Observability struct {
	Tracing  *telemetry.Tracing
	Audit    *audit.Logger // nil: audit log off
	Redactor *audit.Redactor
	Recorded *audit.RecentIDs // request ids audited lately; Envoy's access log skips them (accesslog.go)
	// RecordHeaders are request headers copied (redacted) into audit records.
	RecordHeaders []string
	Requests      *telemetry.RequestMetrics
	// Slow is the slow-request threshold (0: off), logged at SlowLevel with the breakdown.
	Slow          time.Duration
	SlowLevel     slog.Level
	SlowBreakdown bool
	TrustedHops   func() int // X-Forwarded-For hops to skip for the client IP
	// LogRequests writes one info line per answered request (observability.request_logging).
	LogRequests bool
	Log         *slog.Logger
}

// NewObservability builds tracing, the audit logger and the request metrics from cfg.
func NewObservability(ctx context.Context, cfg *config.Config, log *slog.Logger, reg prometheus.Registerer, trustedHops func() int) (*Observability, error) {
	tr, err := telemetry.NewTracing(ctx, cfg.Observability.Tracing)
	if err != nil {
		return nil, err
	}
	al, err := audit.FromConfig(cfg.AuditLog, log.With("component", "audit"), reg)
	if err != nil {
		return nil, errors.Join(err, tr.Shutdown(ctx))
	}
	o := &Observability{
		Tracing: tr, Audit: al, Recorded: audit.NewRecentIDs(audit.DefaultRecentIDs, audit.DefaultRecentIDTTL),
		Redactor:      audit.NewRedactor(cfg.AuditLog.RedactHeaders, cfg.AuditLog.RedactQueryParams),
		RecordHeaders: lower(cfg.AuditLog.RecordHeaders),
		Requests:      telemetry.NewRequestMetrics(reg),
		TrustedHops:   trustedHops,
		LogRequests:   cfg.Observability.RequestLogging.LogRequests,
		Log:           log,
	}
	if sq := cfg.Observability.SlowQuery; sq.Enabled {
		o.Slow = time.Duration(sq.ThresholdMS) * time.Millisecond
		o.SlowLevel = telemetry.ParseLevel(sq.LogLevel)
		o.SlowBreakdown = sq.IncludeBreakdown
	}
	return o, nil
}

func lower(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = strings.ToLower(n)
	}
	return out
}

// Close flushes the audit log and the trace exporter.
func (o *Observability) Close(ctx context.Context) error {
	if o == nil {
		return nil
	}
	var err error
	if o.Audit != nil {
		err = o.Audit.Close(ctx)
	}
	return errors.Join(err, o.Tracing.Shutdown(ctx))
}

// Origin returns the origin's view of the same observability.
func (o *Observability) Origin() *origin.Observer {
	if o == nil {
		return nil
	}
	ob := &origin.Observer{Tracing: o.Tracing, Requests: o.Requests, Slow: o.Slow, SlowLevel: o.SlowLevel, SlowBreakdown: o.SlowBreakdown,
		LogRequests: o.LogRequests, Log: o.Log}
	if o.Audit != nil {
		ob.Audit = o.logAudit
		ob.Redactor = o.Redactor
		ob.RecordHeaders = o.RecordHeaders
	}
	ob.TrustedHops = o.TrustedHops
	return ob
}

func (o *Observability) hops() int {
	if o.TrustedHops == nil {
		return 0
	}
	return o.TrustedHops()
}

// observed is one request's observability state between begin and end.
type observed struct {
	start       time.Time
	correlation string
	span        trace.Span
	timings     *telemetry.Timings
}

// begin continues the caller's trace, starts the decision span and picks the correlation id.
func (o *Observability) begin(ctx context.Context, r *Request, start time.Time) (context.Context, observed) {
	ob := observed{start: start, correlation: telemetry.CorrelationID(r.Header(telemetry.HeaderCorrelationID), r.RequestID)}
	if o == nil {
		return ctx, ob
	}
	if o.Tracing.Enabled() {
		ctx = o.Tracing.Extract(ctx, r.Header)
		ctx, ob.span = o.Tracing.Tracer().Start(ctx, "extproc.decide", trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(
				attribute.String("http.request.method", r.Method),
				attribute.String("yatagarasu.request_id", r.RequestID),
				attribute.String("yatagarasu.correlation_id", ob.correlation),
			))
	}
	if o.Slow > 0 {
		ob.timings = &telemetry.Timings{}
		ctx = telemetry.WithTimings(ctx, ob.timings)
	}
	return ctx, ob
}

// end adds the identity headers to the answer, closes the span, and for answers extproc gives
// itself writes the audit record, the request metrics and the slow log; allowed requests are
// accounted for by the origin when their response completes.
func (o *Observability) end(ctx context.Context, ob observed, r *Request, d *Decision, took time.Duration) {
	d.Headers = append(d.Headers, [2]string{telemetry.HeaderCorrelationID, ob.correlation})
	if o == nil {
		return
	}
	if ob.span != nil {
		ob.span.SetAttributes(attribute.String("yatagarasu.bucket", d.Bucket), attribute.String("yatagarasu.reason", d.Reason),
			attribute.Int("http.response.status_code", d.Status))
		if d.Status >= 500 {
			ob.span.SetStatus(codes.Error, d.Reason)
		}
	}
	if d.Allowed() {
		if ob.span != nil {
			d.Headers = append(d.Headers, o.Tracing.Inject(trace.ContextWithSpan(ctx, ob.span))...)
		}
		switch {
		case ob.timings != nil:
			ob.timings.Add("decide", took)
			d.Headers = append(d.Headers, [2]string{telemetry.HeaderTiming, ob.timings.Header()})
		case o.Audit != nil: // the origin's record starts when the decision did
			d.Headers = append(d.Headers, [2]string{telemetry.HeaderTiming, "decide=" + strconv.FormatInt(took.Microseconds(), 10)})
		}
		if ob.span != nil {
			ob.span.End()
		}
		return
	}
	if ob.span != nil {
		ob.span.End()
	}
	cacheStatus := audit.CacheBypass
	for _, h := range d.Headers {
		if h[0] == "x-cache" && strings.EqualFold(h[1], "HIT") {
			cacheStatus = audit.CacheHit
		}
	}
	o.Requests.Observe(d.Bucket, r.Method, d.Status, cacheStatus, took)
	if o.Audit != nil {
		o.logAudit(o.record(ob, r, d, cacheStatus, took))
	}
	if o.LogRequests {
		var traceID string
		if ob.span != nil {
			traceID = ob.span.SpanContext().TraceID().String()
		}
		o.Log.InfoContext(ctx, "request", "request_id", r.RequestID, "correlation_id", ob.correlation, "trace_id", traceID,
			"method", r.Method, "bucket", d.Bucket, "status", d.Status, "reason", d.Reason, "source", audit.SourceExtProc)
	}
	if o.Slow > 0 && took >= o.Slow {
		attrs := []any{"request_id", r.RequestID, "correlation_id", ob.correlation, "bucket", d.Bucket, "status", d.Status,
			"reason", d.Reason, "duration_ms", float64(took.Microseconds()) / 1000}
		if o.SlowBreakdown {
			ob.timings.Add("decide", took)
			attrs = append(attrs, "breakdown_ms", ob.timings.Map())
		}
		o.Log.Log(ctx, o.SlowLevel, "slow request", attrs...)
	}
}

func (o *Observability) record(ob observed, r *Request, d *Decision, cacheStatus string, took time.Duration) audit.Record {
	path, query, _ := strings.Cut(r.RawPath, "?")
	rec := audit.Record{
		Timestamp: ob.start, RequestID: r.RequestID, CorrelationID: ob.correlation,
		ClientIP: telemetry.ClientIP(r.Header("x-forwarded-for"), o.hops()),
		User:     audit.UserPtr(d.Subject), Bucket: d.Bucket, Key: d.Key, Method: r.Method, Path: path,
		Query: o.Redactor.Query(query), Status: d.Status, Bytes: int64(len(d.Body)),
		DurationMS: float64(took.Microseconds()) / 1000, CacheStatus: cacheStatus,
		UserAgent: r.Header("user-agent"), Referer: o.Redactor.Header("referer", r.Header("referer")),
		Reason: d.Reason, Source: audit.SourceExtProc, Checks: d.Access,
	}
	if ob.span != nil {
		rec.TraceID = ob.span.SpanContext().TraceID().String()
	}
	for _, name := range o.RecordHeaders {
		if v := r.Header(name); v != "" {
			if rec.Headers == nil {
				rec.Headers = map[string]string{}
			}
			rec.Headers[name] = o.Redactor.Header(name, v)
		}
	}
	return rec
}

// runStage runs one pipeline stage inside a span named after it (when the request is traced)
// and adds its time to the request's timing breakdown (when one is kept).
func runStage(ctx context.Context, st Stage, x *Exchange) *Decision {
	t := telemetry.TimingsFrom(ctx)
	if t == nil && !trace.SpanFromContext(ctx).IsRecording() {
		return st.Run(ctx, x)
	}
	start := time.Now()
	ctx, span := telemetry.StartChild(ctx, st.Name())
	d := st.Run(ctx, x)
	if d != nil {
		span.SetAttributes(attribute.Int("http.response.status_code", d.Status), attribute.String("yatagarasu.reason", d.Reason))
	}
	span.End()
	t.Add(st.Name(), time.Since(start))
	return d
}

// streamMetrics counts ext_proc streams (one per HTTP request Envoy processes).
type streamMetrics struct {
	active atomic.Int64
	total  *prometheus.CounterVec
}

// streamInterceptor returns a gRPC interceptor that keeps yatagarasu_extproc_streams_active and
// yatagarasu_extproc_streams_total{code}.
func streamInterceptor(reg prometheus.Registerer) grpc.StreamServerInterceptor {
	m := &streamMetrics{total: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "yatagarasu", Subsystem: "extproc", Name: "streams_total",
		Help: "ext_proc gRPC streams finished, by method and outcome (ok or the gRPC error code).",
	}, []string{"method", "outcome"})}
	if reg != nil {
		reg.MustRegister(m.total, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "yatagarasu", Subsystem: "extproc", Name: "streams_active",
			Help: "ext_proc gRPC streams open now (requests Envoy is waiting on, plus health watches).",
		}, func() float64 { return float64(m.active.Load()) }))
	}
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		m.active.Add(1)
		defer m.active.Add(-1)
		err := handler(srv, ss)
		outcome := "ok"
		if err != nil {
			outcome = grpcCode(err)
		}
		method := info.FullMethod
		if i := strings.LastIndexByte(method, '/'); i >= 0 {
			method = method[i+1:]
		}
		m.total.WithLabelValues(method, outcome).Inc()
		return err
	}
}

func grpcCode(err error) string { return status.Code(err).String() }

// WithObservability makes the server trace, audit and time requests through o.
func (s *Server) WithObservability(o *Observability) *Server {
	s.obs = o
	return s
}

// routeSpan starts the span of the pipeline's built-in steps (method, limits, routing).
func routeSpan(ctx context.Context) trace.Span {
	_, span := telemetry.StartChild(ctx, "route")
	return span
}
