package envoyemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// hasBody reports whether the downstream request carries a body (Envoy: headers end_stream=false).
func (s *stream) hasBody() bool {
	return s.r.ContentLength != 0 || len(s.r.TransferEncoding) > 0
}

// matchRoute picks the virtual host by :authority and the first matching route, as Envoy's
// router config does. It returns nil when nothing matches.
func (s *stream) matchRoute() *route {
	rt := s.dp.routes
	authority, _ := s.headers.get(":authority")
	vh := selectVirtualHost(rt.vhosts, strings.ToLower(authority))
	if vh == nil {
		return nil
	}
	path, _ := s.headers.get(":path")
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	for _, r := range vh.routes {
		if routeMatches(r, path, s.headers) {
			return r
		}
	}
	return nil
}

// selectVirtualHost follows Envoy's domain precedence: exact, then suffix wildcard ("*.x", longest
// first), then prefix wildcard ("x.*", longest first), then "*".
func selectVirtualHost(vhosts []*virtualHost, host string) *virtualHost {
	var best *virtualHost
	bestRank, bestLen := 0, -1
	consider := func(vh *virtualHost, rank, n int) {
		if rank > bestRank || (rank == bestRank && n > bestLen) {
			best, bestRank, bestLen = vh, rank, n
		}
	}
	for _, vh := range vhosts {
		for _, d := range vh.domains {
			switch {
			case d == host:
				consider(vh, 4, len(d))
			case d == "*":
				consider(vh, 1, 0)
			case strings.HasPrefix(d, "*") && strings.HasSuffix(host, d[1:]) && len(host) > len(d)-1:
				consider(vh, 3, len(d))
			case strings.HasSuffix(d, "*") && strings.HasPrefix(host, d[:len(d)-1]) && len(host) > len(d)-1:
				consider(vh, 2, len(d))
			}
		}
	}
	return best
}

func routeMatches(r *route, path string, h *headerMap) bool {
	switch {
	case r.prefix != nil:
		if !strings.HasPrefix(path, *r.prefix) {
			return false
		}
	case r.path != nil:
		if path != *r.path {
			return false
		}
	case r.regex != nil:
		if !r.regex.MatchString(path) {
			return false
		}
	}
	for _, m := range r.headers {
		v, ok := h.getJoined(m.name)
		switch {
		case m.present != nil:
			if ok != *m.present {
				return false
			}
		case m.exact != nil:
			if !ok || v != *m.exact {
				return false
			}
		case m.prefix != nil:
			if !ok || !strings.HasPrefix(v, *m.prefix) {
				return false
			}
		}
	}
	return true
}

// routeRequest runs the router filter: no route → 404, direct_response, or proxy to the cluster.
func (s *stream) routeRequest() {
	r := s.route
	if r == nil {
		s.localReply(http.StatusNotFound, nil, "route_not_found", nil)
		return
	}
	if r.direct != nil {
		s.localReply(r.direct.status, r.direct.body, "direct_response", func(h *headerMap) {
			applyHeaderAdds(h, r.responseAdds)
		})
		return
	}
	c, ok := s.dp.clusters[r.cluster]
	if !ok {
		s.localReply(http.StatusServiceUnavailable, nil, "cluster_not_found", nil)
		return
	}
	tr, err := s.e.pool.transport(c)
	if err != nil {
		s.localReply(http.StatusServiceUnavailable, nil, "cluster_not_found", nil)
		return
	}
	s.proxy(r, c, tr)
}

// proxy streams the request to the cluster over HTTP/1.1 and the response back, without
// buffering either body. route.timeout covers the upstream request until the response is
// complete: before response headers it yields 504, afterwards the downstream stream is reset.
func (s *stream) proxy(r *route, c *clusterConfig, tr *http.Transport) {
	ctx := s.r.Context()
	var cancel context.CancelFunc
	if r.timeout > 0 {
		ctx, cancel = context.WithTimeoutCause(ctx, r.timeout, errRouteTimeout)
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	defer cancel()

	method, _ := s.headers.get(":method")
	path, _ := s.headers.get(":path")
	authority, _ := s.headers.get(":authority")
	u := &url.URL{Scheme: "http", Host: c.endpoint()}
	if i := strings.IndexByte(path, '?'); i >= 0 {
		u.Opaque, u.RawQuery = path[:i], path[i+1:]
		u.ForceQuery = u.RawQuery == ""
	} else {
		u.Opaque = path
	}
	req := (&http.Request{
		Method:     method,
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     http.Header{},
		Host:       authority,
	}).WithContext(ctx)
	for _, e := range s.headers.entries {
		if strings.HasPrefix(e.key, ":") || e.key == "content-length" {
			continue
		}
		key := e.key // keep Envoy's lower-case names on the wire
		if key == "user-agent" {
			key = "User-Agent" // Go's writer only recognises the canonical key
		}
		req.Header[key] = append(req.Header[key], e.value)
	}
	if _, ok := req.Header["User-Agent"]; !ok {
		req.Header["User-Agent"] = []string{""} // stop Go from adding its own User-Agent
	}
	if r.timeout > 0 {
		req.Header["x-envoy-expected-rq-timeout-ms"] = []string{strconv.FormatInt(r.timeout.Milliseconds(), 10)}
	}
	switch {
	case s.replace:
		req.Body = io.NopCloser(strings.NewReader(string(s.body)))
		req.ContentLength = -1 // content-length removed: chunked, as Envoy's HTTP/1 codec does
		if len(s.body) == 0 {
			req.Body, req.ContentLength = http.NoBody, 0
		}
	case s.hasBody():
		req.Body = s.r.Body
		req.ContentLength = s.r.ContentLength
	default:
		req.Body = http.NoBody
	}

	upstreamStart := time.Now()
	s.access.upstreamCluster, s.access.upstreamTx = c.name, upstreamStart
	resp, err := tr.RoundTrip(req)
	if err != nil {
		if s.r.Context().Err() != nil {
			return // downstream disconnected
		}
		if errors.Is(context.Cause(ctx), errRouteTimeout) {
			s.localReply(http.StatusGatewayTimeout, []byte("upstream request timeout"), "upstream_response_timeout", nil)
			return
		}
		reason := "connection termination"
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			reason = "remote connection failure, transport failure reason: " + op.Err.Error()
		}
		s.localReply(http.StatusServiceUnavailable,
			[]byte("upstream connect error or disconnect/reset before headers. reset reason: "+reason),
			"upstream_reset_before_response_started{"+sanitizeDetails(reason)+"}", nil)
		return
	}
	defer resp.Body.Close()
	s.access.upstreamRx, s.access.details = time.Now(), "via_upstream"

	h := &headerMap{}
	for k, vs := range resp.Header {
		lk := strings.ToLower(k)
		switch lk {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
			continue
		}
		for _, v := range vs {
			h.add(lk, v)
		}
	}
	if resp.ContentLength >= 0 {
		h.set("content-length", strconv.FormatInt(resp.ContentLength, 10))
	}
	h.set("x-envoy-upstream-service-time", strconv.FormatInt(time.Since(upstreamStart).Milliseconds(), 10))
	applyHeaderAdds(h, r.responseAdds)
	s.writeHeaders(resp.StatusCode, h)

	err = copyStreaming(s.w, resp.Body)
	s.access.upstreamDone = time.Now()
	if err != nil {
		s.access.details = "upstream_reset_after_response_started{" + sanitizeDetails(err.Error()) + "}"
		// Upstream reset or route timeout after headers: Envoy resets the downstream stream.
		s.e.log.Info("envoyemu: upstream body failed after headers; resetting downstream", "err", err, "cause", context.Cause(ctx))
		panic(http.ErrAbortHandler)
	}
}

var errRouteTimeout = errors.New("envoyemu: route timeout")

// copyStreaming copies with a fixed 64 KiB buffer, flushing each chunk so bytes flow as they
// arrive (bounded memory regardless of object size).
func copyStreaming(w http.ResponseWriter, body io.Reader) error {
	rc := http.NewResponseController(w)
	buf := make([]byte, 64*1024)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return fmt.Errorf("write downstream: %w", werr)
			}
			if ferr := rc.Flush(); ferr != nil {
				return fmt.Errorf("flush downstream: %w", ferr)
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read upstream: %w", err)
		}
	}
}
