package envoyemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// recvResult is the outcome of waiting for the one message the harness expects.
type recvResult struct {
	resp *extprocv3.ProcessingResponse
	err  error
}

// runExtProc plays Envoy's ext_proc filter for the request-headers phase. It returns false when
// it has already answered the downstream request (local reply).
func (s *stream) runExtProc(cfg *extProcConfig) bool {
	ctx, cancel := context.WithCancel(s.r.Context())
	done := make(chan struct{})
	results := make(chan recvResult, 1)
	// Envoy ends the stream by resetting it, so the server sees codes.Canceled.
	defer func() {
		cancel()
		<-done
	}()

	req := &extprocv3.ProcessingRequest{
		Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
			Headers:     toProtoHeaders(s.headers),
			EndOfStream: !s.hasBody(),
		}},
		ProtocolConfig: &extprocv3.ProtocolConfiguration{
			RequestBodyMode:  extprocfilterv3.ProcessingMode_NONE,
			ResponseBodyMode: extprocfilterv3.ProcessingMode_NONE,
		},
	}

	timer := time.NewTimer(cfg.messageTimeout)
	defer timer.Stop()
	go func() {
		defer close(done)
		results <- s.exchange(ctx, cfg, req)
	}()

	var res recvResult
	select {
	case res = <-results:
	case <-timer.C:
		if cfg.failureModeAllow {
			return true
		}
		s.localReply(504, nil, "ext_proc_error_per-message_timeout_exceeded", nil)
		return false
	case <-s.r.Context().Done():
		return false // downstream went away
	}

	if res.err != nil {
		if errors.Is(res.err, io.EOF) {
			// Server closed the stream with OK before answering: continue unprocessed.
			s.e.log.Debug("envoyemu: ext_proc stream closed with OK before a response; continuing unprocessed")
			return true
		}
		st, _ := status.FromError(res.err)
		details := fmt.Sprintf("ext_proc_error_gRPC_error_%d{%s}", int(st.Code()), sanitizeDetails(st.Message()))
		return s.extProcFailure(cfg, details, true)
	}

	switch r := res.resp.GetResponse().(type) {
	case *extprocv3.ProcessingResponse_RequestHeaders:
		return s.applyHeadersResponse(cfg, r.RequestHeaders.GetResponse())
	case *extprocv3.ProcessingResponse_ImmediateResponse:
		s.immediateResponse(r.ImmediateResponse)
		return false
	case *extprocv3.ProcessingResponse_StreamedImmediateResponse:
		s.e.log.Error("envoyemu: ext_proc streamed_immediate_response is not implemented in the harness; implement it or stop sending it")
		s.localReply(500, nil, "envoyemu_streamed_immediate_response_not_implemented", nil)
		return false
	default:
		s.e.log.Warn("envoyemu: spurious ext_proc message for the request_headers phase", "response", fmt.Sprintf("%T", res.resp.GetResponse()))
		return s.extProcFailure(cfg, "ext_proc_error_spurious_message", true)
	}
}

// exchange opens the stream, sends the headers and waits for the first message that is not an
// (ignored) override_message_timeout.
func (s *stream) exchange(ctx context.Context, cfg *extProcConfig, req *extprocv3.ProcessingRequest) recvResult {
	c, ok := s.dp.clusters[cfg.cluster]
	if !ok {
		return recvResult{err: status.Errorf(codes.Unavailable, "cluster %s not found", cfg.cluster)}
	}
	conn, err := s.e.pool.grpcConn(c)
	if err != nil {
		return recvResult{err: status.Error(codes.Unavailable, err.Error())}
	}
	st, err := extprocv3.NewExternalProcessorClient(conn).Process(ctx)
	if err != nil {
		return recvResult{err: err}
	}
	if err := st.Send(req); err != nil && !errors.Is(err, io.EOF) {
		return recvResult{err: err}
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			return recvResult{err: err}
		}
		if resp.GetOverrideMessageTimeout() != nil {
			// max_message_timeout is not configurable in the harness, i.e. 0 = overrides
			// disabled: Envoy counts override_message_timeout_ignored and ignores the message.
			s.e.log.Debug("envoyemu: override_message_timeout ignored (max_message_timeout is 0)")
			continue
		}
		return recvResult{resp: resp}
	}
}

// extProcFailure applies the failure matrix: fail-open continues, otherwise status_on_error.
func (s *stream) extProcFailure(cfg *extProcConfig, details string, failOpenAllowed bool) bool {
	if cfg.failureModeAllow && failOpenAllowed {
		s.e.log.Info("envoyemu: ext_proc failure, failure_mode_allow continues", "details", details)
		return true
	}
	s.localReply(cfg.statusOnError, nil, details, nil)
	return false
}

func (s *stream) limits() mutationLimits {
	return mutationLimits{maxHeadersCount: s.dp.hcm.maxHeadersCount, maxHeadersKB: s.dp.hcm.maxHeadersKB}
}

// applyHeadersResponse handles CommonResponse for the request-headers phase.
func (s *stream) applyHeadersResponse(cfg *extProcConfig, cr *extprocv3.CommonResponse) bool {
	if cr == nil {
		return true
	}
	replacing := cr.GetStatus() == extprocv3.CommonResponse_CONTINUE_AND_REPLACE
	res, err := applyHeaderMutation(s.headers, cr.GetHeaderMutation(), s.limits(), replacing)
	if len(res.ignored) > 0 {
		s.e.log.Debug("envoyemu: ext_proc header mutations ignored by the default mutation rules", "headers", res.ignored)
	}
	if err != nil {
		s.e.log.Warn("envoyemu: ext_proc header mutation rejected", "err", err)
		return s.extProcFailure(cfg, "ext_proc_error_rejected_header_mutation", false)
	}
	if replacing {
		// CONTINUE_AND_REPLACE on request headers: the body is replaced by body_mutation (or
		// dropped), content-length is removed, and no further messages are sent.
		switch b := cr.GetBodyMutation().GetMutation().(type) {
		case *extprocv3.BodyMutation_Body:
			s.body = b.Body
		case *extprocv3.BodyMutation_StreamedResponse:
			s.e.log.Warn("envoyemu: streamed_response body mutation outside FULL_DUPLEX_STREAMED")
			return s.extProcFailure(cfg, "ext_proc_error_rejected_body_mutation", false)
		default:
			s.body = []byte{}
		}
		s.replace = true
		s.headers.remove("content-length")
	}
	if cr.GetClearRouteCache() {
		s.route = s.matchRoute()
	}
	return true
}

// immediateResponse sends ImmediateResponse as a local reply: status missing or < 200 → 200,
// header mutations through the mutation rules (failures logged, not fatal), body, details.
func (s *stream) immediateResponse(ir *extprocv3.ImmediateResponse) {
	code := int(ir.GetStatus().GetCode())
	if code < 200 {
		code = 200
	}
	details := ir.GetDetails()
	if details == "" {
		details = "ext_proc_immediate_response"
	}
	s.localReply(code, ir.GetBody(), sanitizeDetails(details), func(h *headerMap) {
		if _, err := applyHeaderMutation(h, ir.GetHeaders(), s.limits(), false); err != nil {
			s.e.log.Warn("envoyemu: immediate response header mutation failed", "err", err)
		}
	})
}

func toProtoHeaders(h *headerMap) *corev3.HeaderMap {
	out := &corev3.HeaderMap{Headers: make([]*corev3.HeaderValue, 0, len(h.entries))}
	for _, e := range h.entries {
		out.Headers = append(out.Headers, &corev3.HeaderValue{Key: e.key, RawValue: []byte(e.value)})
	}
	return out
}

// sanitizeDetails replaces whitespace like Envoy does for %RESPONSE_CODE_DETAILS%.
func sanitizeDetails(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return '_'
		}
		return r
	}, s)
}
