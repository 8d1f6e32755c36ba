// Package origin is the internal HTTP server Envoy routes allowed requests to: it trusts only
// requests extproc signed, reads the bucket and key from the signed claims, and streams the object
// from S3 with the client's Range and conditional headers applied.
package origin

import (
	"cmp"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/yatagarasu/yatagarasu/internal/httperr"
	"github.com/yatagarasu/yatagarasu/internal/originauth"
	"github.com/yatagarasu/yatagarasu/internal/s3"
)

// bufferSize is the copy buffer per in-flight body: memory per request stays at this size however
// large the object is.
const bufferSize = 64 << 10

// noBucket labels metrics for requests that never resolved to a configured bucket.
const noBucket = "none"

// Handler serves signed GET/HEAD requests from S3.
type Handler struct {
	signer  *originauth.Signer
	buckets func(name string) (*s3.Bucket, bool)
	log     *slog.Logger
	now     func() time.Time
	metrics *metrics
	bufs    sync.Pool   // *[]byte of bufferSize
	cache   ObjectCache // nil: no object cache (cache.go)
	obs     *Observer   // nil: not observed (observe.go)
}

// New returns the origin handler. buckets resolves a gateway bucket name from the verified claims
// (it reads the current runtime snapshot, so reloads apply); metrics may be nil; now is the clock
// signatures are checked against.
func New(signer *originauth.Signer, buckets func(name string) (*s3.Bucket, bool), logger *slog.Logger, metrics prometheus.Registerer, now func() time.Time) *Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	h := &Handler{
		signer:  signer,
		buckets: buckets,
		log:     logger,
		now:     now,
		metrics: newMetrics(metrics, logger),
	}
	h.bufs.New = func() any {
		b := make([]byte, bufferSize)
		return &b
	}
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w, r, done := h.observe(w, r) // observe.go: span, metrics, audit record when the response is complete
	defer done()
	claims, err := h.signer.Verify(r.Method, r.Header.Get, h.now())
	if err != nil {
		msg := "request is not signed by the gateway"
		if errors.Is(err, originauth.ErrExpired) {
			msg = "signature expired"
		}
		h.log.WarnContext(r.Context(), "origin refused an unsigned request",
			"err", err, "method", r.Method, "remote", r.RemoteAddr)
		h.fail(w, noBucket, httperr.New(http.StatusForbidden, msg, envoyRequestID(r)))
		return
	}
	rid := claims.RequestID
	noteClaims(w, &claims)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		h.fail(w, noBucket, httperr.New(http.StatusMethodNotAllowed, "only GET and HEAD are served", rid))
		return
	}
	bucket, ok := h.buckets(claims.Bucket)
	if !ok {
		h.log.WarnContext(r.Context(), "signed request for a bucket that is not configured",
			"bucket", claims.Bucket, "request_id", rid)
		h.fail(w, noBucket, httperr.New(http.StatusNotFound, "bucket not found", rid))
		return
	}
	if h.cache != nil && h.cache.ServeCached(w, r, bucket, claims) {
		return
	}
	h.serveObject(w, r, bucket, claims)
}

func (h *Handler) serveObject(w http.ResponseWriter, r *http.Request, bucket *s3.Bucket, c originauth.Claims) {
	ctx := r.Context()
	label := bucket.Name()
	cond := s3.Conditions{
		Range:             r.Header.Get("Range"),
		IfNoneMatch:       r.Header.Get("If-None-Match"),
		IfModifiedSince:   r.Header.Get("If-Modified-Since"),
		IfMatch:           r.Header.Get("If-Match"),
		IfUnmodifiedSince: r.Header.Get("If-Unmodified-Since"),
	}
	op, fetch := "get", bucket.Get
	if r.Method == http.MethodHead {
		op, fetch = "head", bucket.Head
	}
	start := h.now()
	sctx, s3done := h.s3Span(ctx, w, op, label)
	obj, err := fetch(sctx, c.Key, cond)
	s3done(err)
	h.metrics.s3.WithLabelValues(label, op).Observe(h.now().Sub(start).Seconds())
	if err != nil {
		e := s3.Classify(err)
		level := slog.LevelWarn
		if e.Status < 500 {
			level = slog.LevelDebug
		}
		h.log.Log(ctx, level, "s3 request failed", "bucket", label, "key", c.Key, "request_id", c.RequestID,
			"status", e.Status, "code", e.Code, "err", err)
		if e.RetryAfter > 0 { // every backend's breaker is open (internal/s3/protect.go)
			w.Header().Set("Retry-After", strconv.Itoa(int(max(e.RetryAfter.Round(time.Second), time.Second)/time.Second)))
		}
		if cr := e.ContentRange(); cr != "" && e.Status == http.StatusRequestedRangeNotSatisfiable {
			w.Header().Set("Content-Range", cr)
		}
		h.fail(w, label, httperr.New(e.Status, e.Message, c.RequestID))
		return
	}
	if obj.Body != nil {
		defer obj.Body.Close()
	}
	// Read the first buffer (all of a small object) before any header goes out: a body that
	// fails now is still a clean 502, not a dropped connection Envoy reports as a reset.
	var head, buf []byte
	whole := true
	if r.Method == http.MethodGet && obj.Status != http.StatusNotModified && obj.Body != nil {
		bp := h.bufs.Get().(*[]byte)
		defer h.bufs.Put(bp)
		buf = *bp
		var n int
		n, whole, err = ReadPrefix(obj.Body, *bp, obj.ContentLength)
		if err != nil {
			if ctx.Err() != nil {
				h.log.DebugContext(ctx, "client left before the body started", "bucket", label, "key", c.Key,
					"request_id", c.RequestID, "err", err)
				return
			}
			h.log.WarnContext(ctx, "s3 body failed before the response started; answering 502", "bucket", label,
				"key", c.Key, "request_id", c.RequestID, "err", err)
			h.fail(w, label, httperr.New(http.StatusBadGateway, MsgBodyCut, c.RequestID))
			return
		}
		head = (*bp)[:n]
	}

	hdr := w.Header()
	setIf(hdr, "Content-Type", obj.ContentType)
	setIf(hdr, "ETag", obj.ETag)
	setIf(hdr, "Last-Modified", obj.LastModified)
	setIf(hdr, "Cache-Control", obj.CacheControl)
	setIf(hdr, "Expires", obj.Expires)
	if obj.Status != http.StatusNotModified {
		setIf(hdr, "Content-Range", obj.ContentRange)
		setIf(hdr, "Accept-Ranges", obj.AcceptRanges)
		setIf(hdr, "Content-Encoding", obj.ContentEncoding)
		setIf(hdr, "Content-Disposition", obj.ContentDisposition)
		if obj.ContentLength >= 0 {
			hdr.Set("Content-Length", strconv.FormatInt(obj.ContentLength, 10))
		}
	}
	setIf(hdr, "X-Request-Id", c.RequestID)
	hdr.Set("X-Cache", cmp.Or(hdr.Get("X-Cache"), "MISS")) // the cache hook may have said BYPASS
	w.WriteHeader(obj.Status)
	h.metrics.requests.WithLabelValues(label, strconv.Itoa(obj.Status)).Inc()

	if r.Method == http.MethodHead || obj.Status == http.StatusNotModified || obj.Body == nil {
		return
	}
	hn, writeErr := w.Write(head)
	n := int64(hn)
	var readErr error
	if writeErr == nil && !whole {
		var rest int64
		rest, readErr, writeErr = copyBody(ctx, w, obj.Body, buf)
		n += rest
	}
	h.metrics.bytes.WithLabelValues(label).Add(float64(n))
	switch {
	case writeErr != nil:
		// The client (Envoy) went away: the deferred Close stops the S3 download.
		h.log.DebugContext(ctx, "client stopped reading the body", "bucket", label, "key", c.Key,
			"request_id", c.RequestID, "sent", n, "err", writeErr)
	case readErr != nil:
		h.log.WarnContext(ctx, "s3 body failed mid-stream", "bucket", label, "key", c.Key,
			"request_id", c.RequestID, "sent", n, "err", readErr)
		// Headers are gone already; abort the response so the client sees a broken transfer
		// rather than a short body that looks complete.
		panic(http.ErrAbortHandler)
	}
}

// copyBody streams body to w through buf (pooled) and reports which side failed; a read that
// failed because the request context ended counts as the client's side.
func copyBody(ctx context.Context, w io.Writer, body io.Reader, buf []byte) (n int64, readErr, writeErr error) {
	ew := &errWriter{w: w}
	// The wrappers hide ReadFrom/WriteTo so CopyBuffer really uses our bounded buffer.
	n, err := io.CopyBuffer(ew, struct{ io.Reader }{body}, buf)
	if ew.err != nil {
		return n, nil, ew.err
	}
	if err != nil && ctx.Err() != nil {
		return n, nil, err // the request context ended: the client is gone
	}
	return n, err, nil
}

// errWriter remembers the first write error so copyBody can tell a gone client from a failing S3.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil && e.err == nil {
		e.err = err
	}
	return n, err
}

func (h *Handler) fail(w http.ResponseWriter, bucketLabel string, b httperr.Body) {
	w.Header().Set("X-Cache", cmp.Or(w.Header().Get("X-Cache"), "MISS"))
	httperr.Write(w, b)
	h.metrics.requests.WithLabelValues(bucketLabel, strconv.Itoa(b.Status)).Inc()
}

func setIf(h http.Header, name, value string) {
	if value != "" {
		h.Set(name, value)
	}
}

// envoyRequestID returns Envoy's x-request-id for correlating a refused request, if it is a
// plausible id (the request is unauthenticated, so nothing else of it is echoed).
func envoyRequestID(r *http.Request) string {
	id := r.Header.Get("X-Request-Id")
	if len(id) == 0 || len(id) > 128 {
		return ""
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return ""
		}
	}
	return id
}
