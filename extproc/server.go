// Package extproc is the Envoy ext_proc service: it reads each request's headers, runs the
// decision pipeline, and answers with a local reply or with signed headers that route the request
// to the origin. The gRPC stream handling here is separate from the decision logic (Pipeline).
package extproc

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/yatagarasu/yatagarasu/internal/originauth"
)

// Server implements extprocv3.ExternalProcessorServer over a Pipeline.
type Server struct {
	extprocv3.UnimplementedExternalProcessorServer
	pipeline *Pipeline
	log      *slog.Logger
	metrics  *metrics
	obs      *Observability // nil: identity headers only (observe.go)
}

// NewServer returns the gRPC service; reg receives its metrics.
func NewServer(p *Pipeline, log *slog.Logger, reg prometheus.Registerer) *Server {
	return &Server{pipeline: p, log: log, metrics: newMetrics(reg)}
}

// Process handles one Envoy stream (one HTTP request). Envoy ends it by resetting, which a Go
// server sees as Canceled: that is the normal end, not an error.
func (s *Server) Process(stream extprocv3.ExternalProcessor_ProcessServer) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
				return nil
			}
			return err
		}
		resp, err := s.handle(stream.Context(), req)
		if err != nil {
			return err
		}
		if err := stream.Send(resp); err != nil {
			if status.Code(err) == codes.Canceled {
				return nil
			}
			return err
		}
	}
}

// handle answers each phase; with the headers-only processing mode we generate, only
// request_headers arrives, but every phase gets a well-formed answer so a misconfigured Envoy
// sees pass-through rather than a spurious-message 500.
func (s *Server) handle(ctx context.Context, req *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
	switch v := req.Request.(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return s.onRequestHeaders(ctx, v.RequestHeaders), nil
	case *extprocv3.ProcessingRequest_RequestBody:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{}}}, nil
	case *extprocv3.ProcessingRequest_RequestTrailers:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}}, nil
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}}}, nil
	case *extprocv3.ProcessingRequest_ResponseBody:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{}}}, nil
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}}, nil
	}
	return nil, status.Errorf(codes.InvalidArgument, "unknown ext_proc request %T", req.Request)
}

func (s *Server) onRequestHeaders(ctx context.Context, h *extprocv3.HttpHeaders) *extprocv3.ProcessingResponse {
	start := time.Now()
	r := requestFromHeaders(h.GetHeaders())
	ctx, ob := s.obs.begin(ctx, &r, start)
	d := s.pipeline.Decide(ctx, &r)
	took := time.Since(start)
	s.metrics.observe(&d, took)
	s.obs.end(ctx, ob, &r, &d, took)
	if !d.Allowed() {
		if d.Status >= http.StatusInternalServerError {
			s.log.Warn("request refused", "request_id", r.RequestID, "status", d.Status, "reason", d.Reason)
		}
		return immediate(&d)
	}
	return proceed(&d, r.InternalHeaders)
}

// requestFromHeaders reads the headers once; values arrive in raw_value (Envoy's default) or
// value (older Envoys).
func requestFromHeaders(hm *corev3.HeaderMap) Request {
	r := Request{ContentLength: -1, Headers: make([]Header, 0, len(hm.GetHeaders()))}
	var contentLength string
	for _, hv := range hm.GetHeaders() {
		k, v := hv.GetKey(), headerValue(hv)
		r.HeaderBytes += len(k) + len(v)
		r.Headers = append(r.Headers, Header{Name: k, Value: v})
		switch k {
		case ":method":
			r.Method = v
		case ":path":
			r.RawPath = v
		case "x-request-id":
			r.RequestID = v
		case "content-length":
			contentLength = v
		default:
			if originauth.IsInternal(k) {
				r.InternalHeaders = append(r.InternalHeaders, k)
			}
		}
	}
	r.ContentLength = parseContentLength(contentLength)
	if r.RequestID == "" {
		r.RequestID = uuid.NewString()
	}
	return r
}

func headerValue(hv *corev3.HeaderValue) string {
	if raw := hv.GetRawValue(); raw != nil {
		return string(raw)
	}
	return hv.GetValue()
}

// setHeaders builds the mutation entries in three allocations (values share one byte buffer)
// rather than three per header: this runs on every request.
func setHeaders(pairs [][2]string) []*corev3.HeaderValueOption {
	size := 0
	for _, p := range pairs {
		size += len(p[1])
	}
	buf := make([]byte, 0, size)
	opts := make([]corev3.HeaderValueOption, len(pairs))
	vals := make([]corev3.HeaderValue, len(pairs))
	out := make([]*corev3.HeaderValueOption, len(pairs))
	for i, p := range pairs {
		start := len(buf)
		buf = append(buf, p[1]...)
		vals[i].Key = p[0]
		vals[i].RawValue = buf[start:len(buf):len(buf)]
		opts[i].Header = &vals[i]
		opts[i].AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		out[i] = &opts[i]
	}
	return out
}

func immediate(d *Decision) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{
		ImmediateResponse: &extprocv3.ImmediateResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(d.Status)},
			Headers: &extprocv3.HeaderMutation{SetHeaders: setHeaders(d.Headers)},
			Body:    d.Body,
			Details: "yatagarasu_" + d.Reason,
		},
	}}
}

// proceed removes client-sent internal headers the signed set does not overwrite, sets the signed
// headers and asks Envoy to re-match the route on them.
func proceed(d *Decision, clientInternal []string) *extprocv3.ProcessingResponse {
	set := d.Headers
	if len(d.Upstream.Set) > 0 || d.Upstream.Path != "" {
		set = make([][2]string, 0, len(d.Headers)+len(d.Upstream.Set)+1)
		set = append(set, d.Headers...)
		for _, h := range d.Upstream.Set {
			if !originauth.IsInternal(h[0]) { // stages may not forge the signed headers
				set = append(set, h)
			}
		}
		if d.Upstream.Path != "" {
			set = append(set, [2]string{":path", d.Upstream.Path})
		}
	}
	var remove []string
	for _, name := range clientInternal {
		if !setsHeader(set, name) {
			remove = append(remove, name)
		}
	}
	for _, name := range d.Upstream.Remove {
		if !setsHeader(set, name) {
			remove = append(remove, name)
		}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
		RequestHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{
			Status:          extprocv3.CommonResponse_CONTINUE,
			HeaderMutation:  &extprocv3.HeaderMutation{SetHeaders: setHeaders(set), RemoveHeaders: remove},
			ClearRouteCache: true,
		}},
	}}
}

func setsHeader(pairs [][2]string, name string) bool {
	for _, p := range pairs {
		if p[0] == name {
			return true
		}
	}
	return false
}
