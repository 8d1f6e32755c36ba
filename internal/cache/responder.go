package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/yatagarasu/yatagarasu/internal/httperr"
	"github.com/yatagarasu/yatagarasu/internal/origin"
	"github.com/yatagarasu/yatagarasu/internal/originauth"
	"github.com/yatagarasu/yatagarasu/internal/s3"
)

// Fetcher is what the cache needs of an S3 bucket (s3.Bucket implements it).
type Fetcher interface {
	Get(ctx context.Context, key string, cond s3.Conditions) (*s3.Object, error)
}

// ResponderOptions configure a Responder.
type ResponderOptions struct {
	// Policy returns a bucket's settings from the current config snapshot.
	Policy func(bucket string) Policy
	// Coalesce reports whether concurrent misses share one S3 GET (server.coalescing.enabled).
	Coalesce func() bool
	Now      func() time.Time
	Logger   *slog.Logger
}

// Responder is the origin's cache hook: it serves hits (streaming large ones from the disk
// layer), revalidates stale entries by ETag, and on a miss makes one S3 GET per key however
// many requests wait for it, streaming the body to the first client while filling the cache.
type Responder struct {
	t     *Tiered
	o     ResponderOptions
	group singleflight.Group
}

// NewResponder returns the origin hook over t.
func NewResponder(t *Tiered, o ResponderOptions) *Responder {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Coalesce == nil {
		o.Coalesce = func() bool { return true }
	}
	return &Responder{t: t, o: o}
}

// copyChunk is how much of a body is read and written at a time.
const copyChunk = 32 << 10

// ServeCached answers a signed GET/HEAD from the cache or through it, and returns false when
// the origin should serve the request itself (caching off for the bucket, a Range or HEAD on a
// miss, an object the cache must not keep when another request fetched it).
func (p *Responder) ServeCached(w http.ResponseWriter, r *http.Request, b *s3.Bucket, c originauth.Claims) bool {
	return p.Serve(w, r, b, c)
}

// Serve is ServeCached over any Fetcher (tests and the workload benchmark use a fake S3).
func (p *Responder) Serve(w http.ResponseWriter, r *http.Request, b Fetcher, c originauth.Claims) bool {
	pol := p.o.Policy(c.Bucket)
	if !pol.Enabled {
		w.Header().Set("X-Cache", XCacheBypass)
		return false
	}
	ctx := r.Context()
	k := Key{Bucket: c.Bucket, Object: c.Key}
	hit, ok := p.t.Lookup(ctx, k, 0, true)
	if ok {
		defer hit.Close()
		if hit.Meta.Fresh(p.o.Now()) {
			WriteHit(w, r, hit.Meta, hit.Body, XCacheHit, c.RequestID)
			return true
		}
		if hit.Meta.ETag != "" || hit.Meta.LastModified != "" {
			return p.revalidate(w, r, b, c, pol, hit)
		}
	}
	if r.Method != http.MethodGet || r.Header.Get("Range") != "" {
		return false // S3 answers it; nothing to keep
	}
	return p.fill(w, r, b, c, pol)
}

// fillResult is what one S3 GET produced for every request that waited on it.
type fillResult struct {
	entry *Entry     // the complete, cached body
	obj   *s3.Object // not cacheable: only the leader may read it
	// streamed: the leader's client already has the body (or its headers).
	streamed bool
}

// errAbort marks a failure after the leader's response headers were sent.
var errAbort = errors.New("s3 body failed after the response started")

// errCut marks a body that failed before the leader's response started: the leader can still
// answer a clean 502.
var errCut = errors.New("s3 body failed before the response started")

// plain reports whether the leader can stream S3's 200 to its client as is.
func plain(r *http.Request) bool {
	for _, h := range []string{"Range", "If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range"} {
		if r.Header.Get(h) != "" {
			return false
		}
	}
	return r.Method == http.MethodGet
}

func (p *Responder) fill(w http.ResponseWriter, r *http.Request, b Fetcher, c originauth.Claims, pol Policy) bool {
	k := Key{Bucket: c.Bucket, Object: c.Key}
	leader := false
	fn := func() (any, error) {
		leader = true
		// A fill that ended between our lookup and now has stored the entry already.
		if e, ok := p.loadFresh(r.Context(), k, pol); ok {
			return &fillResult{entry: e}, nil
		}
		return p.fetch(context.WithoutCancel(r.Context()), w, r, b, k, c, pol)
	}
	var v any
	var err error
	if p.o.Coalesce() {
		v, err, _ = p.group.Do(k.String(), fn)
	} else {
		v, err = fn()
	}
	switch {
	case errors.Is(err, errAbort) && leader:
		panic(http.ErrAbortHandler) // headers are gone: the client must see a broken transfer
	case errors.Is(err, errCut) && leader:
		writeBodyCut(w, c.RequestID) // nothing was sent yet: a clean 502
		return true
	case errors.Is(err, errAbort), errors.Is(err, errCut):
		return false // the leader's download failed mid-way: fetch for ourselves
	case err != nil:
		writeS3Error(w, err, c.RequestID)
		return true
	}
	res := v.(*fillResult)
	switch {
	case res.streamed && leader:
		return true
	case res.obj != nil && leader && !plain(r):
		res.obj.Body.Close()
		return false // S3 evaluates this request's own conditions
	case res.obj != nil && leader:
		defer res.obj.Body.Close()
		relay(w, r, res.obj, c.RequestID, p.o.Logger)
		return true
	case res.obj != nil:
		return false // not cacheable: the origin fetches it for this request
	}
	e := res.entry
	WriteHit(w, r, &e.Meta, bytesReader(e.Body), XCacheMiss, c.RequestID)
	return true
}

// loadFresh returns k's entry with its whole body when a layer holds it fresh.
func (p *Responder) loadFresh(ctx context.Context, k Key, pol Policy) (*Entry, bool) {
	h, ok := p.t.Lookup(ctx, k, pol.MaxItemBytes, false)
	if !ok {
		return nil, false
	}
	defer h.Close()
	if h.Bytes == nil || !h.Meta.Fresh(p.o.Now()) {
		return nil, false
	}
	return &Entry{Meta: *h.Meta, Body: h.Bytes}, true
}

// fetch makes the one S3 GET of a fill. When the leader's request is plain it streams the body
// to that client while buffering it, and stores the entry before sending the last chunk, so a
// request the client sends after this one completes finds the entry.
func (p *Responder) fetch(ctx context.Context, w http.ResponseWriter, r *http.Request, b Fetcher, k Key, c originauth.Claims, pol Policy) (*fillResult, error) {
	obj, err := b.Get(ctx, k.Object, s3.Conditions{})
	if err != nil {
		return nil, err
	}
	now := p.o.Now()
	fresh, store := Freshness(obj.CacheControl, pol.TTL)
	if !store || obj.Status != http.StatusOK || obj.ContentLength < 0 || obj.ContentLength > pol.MaxItemBytes || obj.Body == nil {
		return &fillResult{obj: obj}, nil
	}
	defer obj.Body.Close()
	m := metaFrom(k, obj, now, fresh)
	stream := r != nil && plain(r)
	var out io.Writer
	started := false
	// send streams a chunk to the leader's client; the headers go out with the first chunk, so
	// a body that fails within its first chunk (all of a small object) is still a clean 502.
	send := func(chunk []byte) {
		if !stream {
			return
		}
		if !started {
			started = true
			relayHeaders(w.Header(), obj, c.RequestID, XCacheMiss)
			w.WriteHeader(http.StatusOK)
			out = w
		}
		if out != nil {
			writeQuiet(&out, chunk)
		}
	}
	fail := func(err error) error {
		if started {
			return errAbort
		}
		return errors.Join(errCut, err)
	}
	buf := make([]byte, obj.ContentLength)
	var off int64
	for off < obj.ContentLength {
		end := min(off+copyChunk, obj.ContentLength)
		n, err := io.ReadFull(obj.Body, buf[off:end])
		last := off+int64(n) == obj.ContentLength
		if err != nil && !(last && errors.Is(err, io.EOF)) {
			p.o.Logger.Warn("s3 body failed mid-stream; not cached", "bucket", k.Bucket, "key", k.Object,
				"read", off+int64(n), "response_started", started, "err", err)
			return nil, fail(fmt.Errorf("read s3 body of %s after %d bytes: %w", k, off+int64(n), err))
		}
		if last {
			if extra, _ := obj.Body.Read(make([]byte, 1)); extra > 0 {
				p.o.Logger.Warn("s3 body longer than its Content-Length; not cached", "bucket", k.Bucket, "key", k.Object)
				return nil, fail(errors.New("s3 body longer than its Content-Length"))
			}
			e := NewEntry(m, buf)
			p.t.Set(ctx, e)
			send(buf[off:end])
			return &fillResult{entry: e, streamed: stream}, nil
		}
		send(buf[off:end])
		off = end
	}
	// Empty object.
	e := NewEntry(m, buf)
	p.t.Set(ctx, e)
	send(nil)
	return &fillResult{entry: e, streamed: stream}, nil
}

// writeQuiet writes to *out and stops writing (but not filling) once the client is gone.
func writeQuiet(out *io.Writer, p []byte) {
	if _, err := (*out).Write(p); err != nil {
		*out = nil
	}
}

func metaFrom(k Key, obj *s3.Object, now time.Time, fresh time.Duration) Meta {
	return Meta{
		Key: k, ContentType: obj.ContentType, ContentEncoding: obj.ContentEncoding,
		ContentDisposition: obj.ContentDisposition, CacheControl: obj.CacheControl,
		ETag: obj.ETag, LastModified: obj.LastModified,
		StoredAt: now, FreshUntil: now.Add(fresh), KeepUntil: now.Add(Retention(fresh)),
	}
}

// revalidate asks S3 whether a stale entry is still current (If-None-Match with its ETag):
// 304 refreshes it, 200 replaces it, a 5xx or timeout serves it as STALE, 404 drops it.
func (p *Responder) revalidate(w http.ResponseWriter, r *http.Request, b Fetcher, c originauth.Claims, pol Policy, hit *Hit) bool {
	k := hit.Meta.Key
	leader := false
	v, err, _ := p.group.Do("rv\x00"+k.String(), func() (any, error) {
		leader = true
		ctx := context.WithoutCancel(r.Context())
		cond := s3.Conditions{IfNoneMatch: hit.Meta.ETag}
		if cond.IfNoneMatch == "" {
			cond.IfModifiedSince = hit.Meta.LastModified
		}
		obj, err := b.Get(ctx, k.Object, cond)
		if err != nil {
			return nil, err
		}
		if obj.Status == http.StatusNotModified {
			body := hit.Bytes
			if body == nil {
				if _, err := hit.Body.Seek(0, io.SeekStart); err != nil {
					return nil, err
				}
				if body, err = io.ReadAll(hit.Body); err != nil {
					return nil, err
				}
			}
			cc := hit.Meta.CacheControl
			if obj.CacheControl != "" {
				cc = obj.CacheControl
			}
			fresh, store := Freshness(cc, pol.TTL)
			now := p.o.Now()
			m := *hit.Meta
			m.CacheControl, m.FreshUntil, m.KeepUntil = cc, now.Add(fresh), now.Add(Retention(fresh))
			e := &Entry{Meta: m, Body: body}
			if !store {
				_, _ = p.t.Delete(ctx, k)
			} else {
				p.t.Set(ctx, e)
			}
			return &fillResult{entry: e}, nil
		}
		// Changed: the conditional GET brought the new object.
		fresh, store := Freshness(obj.CacheControl, pol.TTL)
		if !store || obj.Status != http.StatusOK || obj.ContentLength < 0 || obj.ContentLength > pol.MaxItemBytes {
			_, _ = p.t.Delete(ctx, k)
			return &fillResult{obj: obj}, nil
		}
		defer obj.Body.Close()
		body, err := io.ReadAll(io.LimitReader(obj.Body, obj.ContentLength+1))
		if err != nil || int64(len(body)) != obj.ContentLength {
			return nil, errors.Join(errCut, err)
		}
		e := NewEntry(metaFrom(k, obj, p.o.Now(), fresh), body)
		p.t.Set(ctx, e)
		return &fillResult{entry: e, streamed: false}, nil
	})
	if err != nil {
		if errors.Is(err, errCut) {
			return false // nothing was sent: the origin fetches for this request
		}
		e := s3.Classify(err)
		if e.Status == http.StatusNotFound {
			_, _ = p.t.Delete(context.WithoutCancel(r.Context()), k)
		}
		if e.Status >= http.StatusInternalServerError {
			p.o.Logger.Warn("revalidation failed; serving the stale entry", "bucket", k.Bucket, "key", k.Object, "status", e.Status, "err", err)
			if _, serr := hit.Body.Seek(0, io.SeekStart); serr == nil {
				WriteHit(w, r, hit.Meta, hit.Body, XCacheStale, c.RequestID)
				return true
			}
		}
		writeS3Error(w, err, c.RequestID)
		return true
	}
	res := v.(*fillResult)
	switch {
	case res.obj != nil && leader:
		defer res.obj.Body.Close()
		relay(w, r, res.obj, c.RequestID, p.o.Logger)
		return true
	case res.obj != nil:
		return false
	}
	xc := XCacheHit
	if res.entry.ETag != hit.Meta.ETag {
		xc = XCacheMiss
	}
	WriteHit(w, r, &res.entry.Meta, bytesReader(res.entry.Body), xc, c.RequestID)
	return true
}

// Warm fills the cache with bucket/key unless it is already fresh there (cache prewarming),
// sharing the S3 GET with any concurrent miss for the same key. It reports whether it stored
// the object; objects the policy or Cache-Control excludes are skipped.
func (p *Responder) Warm(ctx context.Context, b Fetcher, bucket, key string) (bool, error) {
	pol := p.o.Policy(bucket)
	if !pol.Enabled {
		return false, nil
	}
	k := Key{Bucket: bucket, Object: key}
	if _, ok := p.loadFresh(ctx, k, pol); ok {
		return false, nil
	}
	leader := false
	v, err, _ := p.group.Do(k.String(), func() (any, error) {
		leader = true
		return p.fetch(ctx, nil, nil, b, k, originauth.Claims{}, pol)
	})
	if err != nil {
		return false, err
	}
	res := v.(*fillResult)
	if leader && res.obj != nil && res.obj.Body != nil {
		res.obj.Body.Close() // not cacheable; a waiting request fetches its own
	}
	return res.entry != nil, nil
}

// writeBodyCut answers the 502 for an S3 body that failed before anything was sent.
func writeBodyCut(w http.ResponseWriter, requestID string) {
	if w.Header().Get("X-Cache") == "" {
		w.Header().Set("X-Cache", XCacheMiss)
	}
	origin.WriteBodyCut(w, requestID)
}

// writeS3Error answers with the status S3's failure maps to, in the gateway's JSON shape.
func writeS3Error(w http.ResponseWriter, err error, requestID string) {
	e := s3.Classify(err)
	if w.Header().Get("X-Cache") == "" {
		w.Header().Set("X-Cache", XCacheMiss)
	}
	httperr.Write(w, httperr.New(e.Status, e.Message, requestID))
}

// relayHeaders copies S3's response headers for a client.
func relayHeaders(h http.Header, obj *s3.Object, requestID, xcache string) {
	setIf(h, "Content-Type", obj.ContentType)
	setIf(h, "Etag", obj.ETag)
	setIf(h, "Last-Modified", obj.LastModified)
	setIf(h, "Cache-Control", obj.CacheControl)
	setIf(h, "Expires", obj.Expires)
	setIf(h, "Content-Range", obj.ContentRange)
	setIf(h, "Content-Encoding", obj.ContentEncoding)
	setIf(h, "Content-Disposition", obj.ContentDisposition)
	h.Set("Accept-Ranges", "bytes")
	if obj.ContentLength >= 0 && obj.Status != http.StatusNotModified {
		h.Set("Content-Length", strconv.FormatInt(obj.ContentLength, 10))
	}
	setIf(h, "X-Request-Id", requestID)
	h.Set("X-Cache", xcache)
}

// relay streams an object the cache does not keep, as the origin would.
func relay(w http.ResponseWriter, r *http.Request, obj *s3.Object, requestID string, log *slog.Logger) {
	body := r.Method != http.MethodHead && obj.Body != nil && obj.Status != http.StatusNotModified
	buf := make([]byte, copyChunk)
	var head []byte
	whole := true
	if body {
		// The first chunk (all of a small object) is read before the headers go out, so a
		// body that fails within it is still a clean 502.
		n, all, err := origin.ReadPrefix(obj.Body, buf, obj.ContentLength)
		if err != nil {
			if r.Context().Err() == nil {
				log.Warn("s3 body failed before the response started; answering 502", "request_id", requestID, "err", err)
				writeBodyCut(w, requestID)
			}
			return
		}
		head, whole = buf[:n], all
	}
	relayHeaders(w.Header(), obj, requestID, XCacheMiss)
	w.WriteHeader(obj.Status)
	if !body {
		return
	}
	if _, err := w.Write(head); err != nil || whole {
		return
	}
	if _, err := io.CopyBuffer(struct{ io.Writer }{w}, struct{ io.Reader }{obj.Body}, buf); err != nil && r.Context().Err() == nil {
		log.Warn("s3 body failed mid-stream", "request_id", requestID, "err", err)
		panic(http.ErrAbortHandler)
	}
}
