package cache

import (
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/yatagarasu/yatagarasu/internal/httperr"
)

// X-Cache values.
const (
	XCacheHit    = "HIT"    // answered from the cache (fresh, or revalidated with S3 by ETag)
	XCacheMiss   = "MISS"   // fetched from S3
	XCacheBypass = "BYPASS" // caching is off for the bucket
	XCacheStale  = "STALE"  // a stale entry served because S3 failed while revalidating it
)

// WriteHit answers r from a cached entry with net/http's ServeContent, which implements
// Range (206/416), If-Range, If-None-Match/If-Modified-Since (304) and If-Match/
// If-Unmodified-Since (412) as RFC 9110 says; error statuses get the gateway's JSON body.
func WriteHit(w http.ResponseWriter, r *http.Request, m *Meta, body io.ReadSeeker, xcache, requestID string) {
	h := w.Header()
	if m.ContentType != "" {
		h.Set("Content-Type", m.ContentType)
	} else {
		h["Content-Type"] = nil // present but empty: ServeContent must not sniff
	}
	setIf(h, "Etag", m.ETag)
	setIf(h, "Cache-Control", m.CacheControl)
	setIf(h, "Content-Encoding", m.ContentEncoding)
	setIf(h, "Content-Disposition", m.ContentDisposition)
	setIf(h, "X-Request-Id", requestID)
	h.Set("X-Cache", xcache)
	if !m.StoredAt.IsZero() {
		if age := time.Since(m.StoredAt); age > 0 {
			h.Set("Age", strconv.FormatInt(int64(age/time.Second), 10))
		}
	}
	var modtime time.Time
	if t, err := http.ParseTime(m.LastModified); err == nil {
		modtime = t
	}
	http.ServeContent(&jsonErrors{ResponseWriter: w, requestID: requestID}, r, "", modtime, body)
}

func setIf(h http.Header, name, value string) {
	if value != "" {
		h.Set(name, value)
	}
}

// jsonErrors replaces the plain-text body ServeContent writes for 412/416 with the gateway's
// JSON error body, keeping headers such as Content-Range.
type jsonErrors struct {
	http.ResponseWriter
	requestID string
	failed    bool
}

func (j *jsonErrors) WriteHeader(code int) {
	if code < http.StatusBadRequest {
		j.ResponseWriter.WriteHeader(code)
		return
	}
	j.failed = true
	msg := "the request's preconditions failed"
	if code == http.StatusRequestedRangeNotSatisfiable {
		msg = "the requested range is not satisfiable"
	}
	body := httperr.New(code, msg, j.requestID).JSON()
	h := j.Header()
	h.Del("X-Content-Type-Options")
	h.Set("Content-Type", httperr.ContentType)
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	j.ResponseWriter.WriteHeader(code)
	_, _ = j.ResponseWriter.Write(body)
}

func (j *jsonErrors) Write(p []byte) (int, error) {
	if j.failed {
		return len(p), nil // ServeContent's text message is replaced
	}
	return j.ResponseWriter.Write(p)
}

// ReadFrom keeps net/http's sendfile path when the body is a file.
func (j *jsonErrors) ReadFrom(r io.Reader) (int64, error) {
	if j.failed {
		return io.Copy(io.Discard, r)
	}
	if rf, ok := j.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(j.ResponseWriter, r)
}
