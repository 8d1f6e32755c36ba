package extproc

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/yatagarasu/yatagarasu/internal/cache"
)

// CacheStage is the last pipeline step (ARCHITECTURE.md §2 step 9): a fresh hit up to
// cache.inline_max_bytes is answered here in the one gRPC round trip; anything else (miss,
// stale entry, larger hit) goes on to the origin, which streams or fills. It runs after every
// authorization stage, so a cached object never reaches a client the pipeline would deny.
type CacheStage struct {
	Cache *cache.Tiered // nil: no cache configured
	Now   func() time.Time
}

// Name implements Stage.
func (s *CacheStage) Name() string { return "cache" }

// conditionalHeaders are the request headers a hit's answer depends on.
var conditionalHeaders = []string{"range", "if-range", "if-match", "if-none-match", "if-modified-since", "if-unmodified-since"}

// Run implements Stage.
func (s *CacheStage) Run(ctx context.Context, x *Exchange) *Decision {
	method := x.Req.Method
	if s.Cache == nil || (method != http.MethodGet && method != http.MethodHead) || x.Snap.Config == nil {
		return nil
	}
	cfg := x.Snap.Config
	if !cfg.Cache.Enabled || !x.Bucket.Cache.Enabled {
		return nil
	}
	inline := cfg.Cache.InlineMaxBytes
	k := cache.Key{Bucket: x.Bucket.Name, Object: x.Key}
	hit, ok := s.Cache.Lookup(ctx, k, inline, false)
	if !ok {
		return nil
	}
	defer hit.Close()
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	if hit.Bytes == nil || hit.Meta.Size > inline || !hit.Meta.Fresh(now()) {
		return nil
	}
	s.Cache.RecordHit(k.Bucket, hit.Layer)
	var hdr http.Header
	for _, name := range conditionalHeaders {
		if v := x.Req.Header(name); v != "" {
			if hdr == nil {
				hdr = http.Header{}
			}
			hdr.Set(name, v)
		}
	}
	if hdr == nil {
		return plainHit(hit, x.Req.RequestID, now())
	}
	// A HEAD is answered like the GET: Envoy takes content-length from the body and sends no
	// body for HEAD, so the client sees the object's length.
	req := &http.Request{Method: http.MethodGet, Header: hdr, URL: &url.URL{Path: "/"}}
	rec := &recorder{h: http.Header{}}
	cache.WriteHit(rec, req, hit.Meta, hit.Body, cache.XCacheHit, x.Req.RequestID)
	d := &Decision{Status: rec.status, Reason: "cache_hit", Body: rec.body.Bytes()}
	for name, vs := range rec.h {
		name = strings.ToLower(name)
		if name == "content-length" || len(vs) == 0 {
			continue // Envoy sets it from the body
		}
		d.Headers = append(d.Headers, [2]string{name, vs[0]})
	}
	return d
}

// plainHit answers a hit without Range or conditional headers directly: the same 200 and
// headers http.ServeContent writes, without building an http.Request and a header map (the
// common case, on the hot path).
func plainHit(hit *cache.Hit, requestID string, now time.Time) *Decision {
	m := hit.Meta
	d := &Decision{Status: http.StatusOK, Reason: "cache_hit", Body: hit.Bytes, Headers: make([][2]string, 0, 10)}
	add := func(name, value string) {
		if value != "" {
			d.Headers = append(d.Headers, [2]string{name, value})
		}
	}
	add("content-type", m.ContentType)
	add("etag", m.ETag)
	add("last-modified", m.LastModified)
	add("cache-control", m.CacheControl)
	add("content-encoding", m.ContentEncoding)
	add("content-disposition", m.ContentDisposition)
	add("accept-ranges", "bytes")
	if age := now.Sub(m.StoredAt); !m.StoredAt.IsZero() && age > 0 {
		add("age", strconv.FormatInt(int64(age/time.Second), 10))
	}
	add("x-cache", cache.XCacheHit)
	add("x-request-id", requestID)
	return d
}

// recorder is the http.ResponseWriter a hit is written into before it becomes an
// ImmediateResponse.
type recorder struct {
	h      http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.h }

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(p)
}
