package origin

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/yatagarasu/yatagarasu/internal/audit"
	"github.com/yatagarasu/yatagarasu/internal/originauth"
	"github.com/yatagarasu/yatagarasu/internal/s3"
	"github.com/yatagarasu/yatagarasu/internal/telemetry"
)

// Observer makes the origin account for every request it serves: a server span continuing
// extproc's trace with a child span for the S3 call, the request metrics, one audit record
// written when the response is complete, and the slow-request log.
type Observer struct {
	Tracing       *telemetry.Tracing
	Audit         func(audit.Record) // nil: audit off
	Redactor      *audit.Redactor
	RecordHeaders []string
	Requests      *telemetry.RequestMetrics
	Slow          time.Duration
	SlowLevel     slog.Level
	SlowBreakdown bool
	TrustedHops   func() int
	LogRequests   bool // one info line per request
	Log           *slog.Logger
}

// SetObserver installs o (nil: observe nothing); call before serving.
func (h *Handler) SetObserver(o *Observer) { h.obs = o }

// outcomeWriter records what the origin answered.
type outcomeWriter struct {
	http.ResponseWriter
	status      int
	bytes       int64
	claims      *originauth.Claims
	correlation string
	s3          time.Duration
}

func (w *outcomeWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
		if w.correlation != "" {
			w.Header().Set("X-Correlation-Id", w.correlation)
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *outcomeWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the real writer (flushes, deadlines).
func (w *outcomeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush passes flushes through to the connection.
func (w *outcomeWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// observe wraps one request; the returned func must run when the handler has returned.
func (h *Handler) observe(w http.ResponseWriter, r *http.Request) (http.ResponseWriter, *http.Request, func()) {
	o := h.obs
	if o == nil {
		return w, r, func() {}
	}
	start := h.now()
	ow := &outcomeWriter{ResponseWriter: w, correlation: correlationFrom(r)}
	ctx := r.Context()
	var span trace.Span
	if o.Tracing.Enabled() {
		ctx = o.Tracing.Extract(ctx, r.Header.Get)
		ctx, span = o.Tracing.Tracer().Start(ctx, "origin", trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", r.Method)))
		r = r.WithContext(ctx)
	}
	return ow, r, func() {
		took := h.now().Sub(start)
		status := ow.status
		if status == 0 {
			status = http.StatusOK
		}
		rid, bucket, key, subject := envoyRequestID(r), "", "", ""
		if c := ow.claims; c != nil {
			rid, bucket, key, subject = c.RequestID, c.Bucket, c.Key, c.Subject
		}
		cacheStatus := audit.CacheMiss
		switch strings.ToUpper(ow.Header().Get("X-Cache")) {
		case "HIT":
			cacheStatus = audit.CacheHit
		case "BYPASS":
			cacheStatus = audit.CacheBypass
		}
		if span != nil {
			span.SetAttributes(attribute.String("yatagarasu.request_id", rid), attribute.String("yatagarasu.bucket", bucket),
				attribute.Int("http.response.status_code", status), attribute.Int64("yatagarasu.response_bytes", ow.bytes))
			if status >= 500 {
				span.SetStatus(codes.Error, http.StatusText(status))
			}
			span.End()
		}
		o.Requests.Observe(bucket, r.Method, status, cacheStatus, took)
		timings := telemetry.ParseTimings(r.Header.Get(telemetry.HeaderTiming))
		total := took
		if m := timings.Map(); m["decide"] > 0 {
			total += time.Duration(m["decide"] * float64(time.Millisecond))
		}
		if o.Audit != nil {
			// The record starts when extproc began deciding: its time is in the timing header.
			o.Audit(h.record(o, r, ow, span, rid, bucket, key, subject, status, cacheStatus, start.Add(took-total), total))
		}
		if o.LogRequests {
			var traceID string
			if span != nil {
				traceID = span.SpanContext().TraceID().String()
			}
			o.Log.InfoContext(context.WithoutCancel(r.Context()), "request", "request_id", rid, "correlation_id", ow.correlation,
				"trace_id", traceID, "method", r.Method, "bucket", bucket, "status", status, "bytes", ow.bytes, "source", audit.SourceOrigin)
		}
		if o.Slow > 0 && total >= o.Slow {
			attrs := []any{"request_id", rid, "correlation_id", ow.correlation, "bucket", bucket, "key", key, "status", status,
				"bytes", ow.bytes, "duration_ms", float64(total.Microseconds()) / 1000}
			if o.SlowBreakdown {
				timings.Add("s3", ow.s3)
				timings.Add("origin", took)
				attrs = append(attrs, "breakdown_ms", timings.Map())
			}
			o.Log.Log(context.WithoutCancel(r.Context()), o.SlowLevel, "slow request", attrs...)
		}
	}
}

func (h *Handler) record(o *Observer, r *http.Request, ow *outcomeWriter, span trace.Span, rid, bucket, key, subject string,
	status int, cacheStatus string, ts time.Time, total time.Duration) audit.Record {
	hops := 0
	if o.TrustedHops != nil {
		hops = o.TrustedHops()
	}
	reason := "allowed"
	switch {
	case ow.claims == nil:
		reason = "origin_unsigned"
	case status >= 400:
		reason = "s3_" + strings.ToLower(strings.ReplaceAll(http.StatusText(status), " ", "_"))
	}
	rec := audit.Record{
		Timestamp: ts, RequestID: rid, CorrelationID: ow.correlation,
		ClientIP: telemetry.ClientIP(r.Header.Get("X-Forwarded-For"), hops),
		User:     audit.UserPtr(subject), Bucket: bucket, Key: key, Method: r.Method, Path: r.URL.Path,
		Query: o.Redactor.Query(r.URL.RawQuery), Status: status, Bytes: ow.bytes,
		DurationMS: float64(total.Microseconds()) / 1000, CacheStatus: cacheStatus,
		UserAgent: r.Header.Get("User-Agent"), Referer: o.Redactor.Header("referer", r.Header.Get("Referer")),
		Reason: reason, Source: audit.SourceOrigin,
	}
	if span != nil {
		rec.TraceID = span.SpanContext().TraceID().String()
	}
	for _, name := range o.RecordHeaders {
		if v := r.Header.Get(name); v != "" {
			if rec.Headers == nil {
				rec.Headers = map[string]string{}
			}
			rec.Headers[name] = o.Redactor.Header(name, v)
		}
	}
	return rec
}

// correlationFrom reads the X-Correlation-ID extproc set (it overwrites any client value, so it
// is already validated); a direct request gets none.
func correlationFrom(r *http.Request) string {
	if v := r.Header.Get("X-Correlation-Id"); telemetry.ValidCorrelationID(v) {
		return v
	}
	return ""
}

// noteClaims remembers the verified claims for the request's audit record.
func noteClaims(w http.ResponseWriter, c *originauth.Claims) {
	if ow, ok := w.(*outcomeWriter); ok {
		ow.claims = c
	}
}

// s3Span times the S3 call (for the slow log), counts its failures and traces it as a client span.
func (h *Handler) s3Span(ctx context.Context, w http.ResponseWriter, op, bucket string) (context.Context, func(error)) {
	ow, _ := w.(*outcomeWriter)
	if ow == nil || h.obs == nil {
		return ctx, func(error) {}
	}
	requests := h.obs.Requests
	start := time.Now()
	ctx, span := telemetry.StartChild(ctx, "s3."+op, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("yatagarasu.bucket", bucket)))
	return ctx, func(err error) {
		ow.s3 += time.Since(start)
		if err != nil {
			requests.S3Error(bucket, op, s3.Classify(err).Code)
			span.RecordError(err)
			span.SetStatus(codes.Error, "s3 request failed")
		}
		span.End()
	}
}

// ReadFrom keeps the connection's sendfile path for handlers that use it, counting the bytes.
func (w *outcomeWriter) ReadFrom(src io.Reader) (int64, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	var (
		n   int64
		err error
	)
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(struct{ io.Writer }{w.ResponseWriter}, src)
	}
	w.bytes += n
	return n, err
}
