// Package telemetry holds what every request path shares for observability: the OpenTelemetry
// tracer provider built from config, W3C trace-context propagation, request identity
// (x-request-id and X-Correlation-ID), the request metrics, the slog logger and the slow-request
// timing breakdown.
package telemetry

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/yatagarasu/yatagarasu/internal/config"
)

// ScopeName is the instrumentation scope of every span the gateway creates.
const ScopeName = "github.com/yatagarasu/yatagarasu"

// Tracing is the tracer provider and propagator the request paths use; the zero value (and a
// disabled config) traces nothing at no cost.
type Tracing struct {
	Provider   trace.TracerProvider
	Propagator propagation.TextMapPropagator // W3C traceparent/tracestate; nil when not propagating
	shutdown   func(context.Context) error
}

// Tracer returns the gateway's tracer (a no-op one when tracing is off).
func (t *Tracing) Tracer() trace.Tracer {
	if t == nil || t.Provider == nil {
		return noop.NewTracerProvider().Tracer(ScopeName)
	}
	return t.Provider.Tracer(ScopeName)
}

// Enabled reports whether spans are recorded at all.
func (t *Tracing) Enabled() bool {
	if t == nil || t.Provider == nil {
		return false
	}
	_, isNoop := t.Provider.(noop.TracerProvider)
	return !isNoop
}

// Shutdown flushes and stops the exporter.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil || t.shutdown == nil {
		return nil
	}
	return t.shutdown(ctx)
}

// NewTracing builds tracing from the observability.tracing section: OTLP over gRPC or HTTP,
// parent-based ratio sampling, and the service name and resource attributes on every span.
func NewTracing(ctx context.Context, c config.Tracing) (*Tracing, error) {
	if !c.Enabled || c.Exporter == "none" {
		return &Tracing{Provider: noop.NewTracerProvider()}, nil
	}
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch c.Exporter {
	case "otlp_http":
		exp, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(c.OTLPEndpoint))
	default:
		exp, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(c.OTLPEndpoint))
	}
	if err != nil {
		return nil, fmt.Errorf("tracing exporter %s for %s: %w", c.Exporter, c.OTLPEndpoint, err)
	}
	return NewTracingWith(c, sdktrace.WithBatcher(exp)), nil
}

// NewTracingWith builds tracing with the given span processor options (tests pass an
// in-memory exporter through sdktrace.WithSyncer).
func NewTracingWith(c config.Tracing, opts ...sdktrace.TracerProviderOption) *Tracing {
	attrs := []attribute.KeyValue{attribute.String("service.name", c.ServiceName)}
	for k, v := range c.ResourceAttributes {
		attrs = append(attrs, attribute.String(k, fmt.Sprint(v)))
	}
	opts = append(opts,
		sdktrace.WithResource(resource.NewSchemaless(attrs...)),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(c.SamplingRatio))),
	)
	tp := sdktrace.NewTracerProvider(opts...)
	t := &Tracing{Provider: tp, shutdown: tp.Shutdown}
	if c.PropagateContext {
		t.Propagator = propagation.TraceContext{}
	}
	return t
}

// Extract continues the caller's trace from W3C headers read through get, when propagating.
func (t *Tracing) Extract(ctx context.Context, get func(string) string) context.Context {
	if t == nil || t.Propagator == nil {
		return ctx
	}
	return t.Propagator.Extract(ctx, getter(get))
}

// Inject returns the traceparent (and tracestate) for the span in ctx, to hand to the next hop.
func (t *Tracing) Inject(ctx context.Context) [][2]string {
	sc := trace.SpanContextFromContext(ctx)
	if t == nil || !sc.IsValid() {
		return nil
	}
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	out := make([][2]string, 0, len(c))
	for _, k := range []string{"traceparent", "tracestate"} {
		if v, ok := c[k]; ok {
			out = append(out, [2]string{k, v})
		}
	}
	return out
}

type getter func(string) string

func (g getter) Get(key string) string { return g(key) }
func (g getter) Keys() []string        { return nil }
func (g getter) Set(string, string)    {}

// StartChild starts a span under the span in ctx only when that span records: with tracing off
// (or an unsampled trace) it returns ctx and a no-op span without allocating.
func StartChild(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return ctx, parent
	}
	return parent.TracerProvider().Tracer(ScopeName).Start(ctx, name, opts...)
}
