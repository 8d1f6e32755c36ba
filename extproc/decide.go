package extproc

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/yatagarasu/yatagarasu/internal/config"
	"github.com/yatagarasu/yatagarasu/internal/httperr"
	"github.com/yatagarasu/yatagarasu/internal/originauth"
	"github.com/yatagarasu/yatagarasu/internal/requestcheck"
	"github.com/yatagarasu/yatagarasu/internal/runtime"
)

// Request is what the pipeline reads from Envoy's request_headers message.
type Request struct {
	Method        string
	RawPath       string // :path as the client sent it, query included
	RequestID     string
	HeaderBytes   int   // sum of name and value lengths over all headers
	ContentLength int64 // -1 when absent
	// InternalHeaders are client-sent x-yatagarasu-* header names, removed before routing upstream.
	InternalHeaders []string
	// Headers are all request headers as Envoy sent them (lower-case names, pseudo-headers included).
	Headers []Header
}

// Header is one request header.
type Header struct{ Name, Value string }

// Header returns the first value of a header (name in lower case), or "".
func (r *Request) Header(name string) string {
	for _, h := range r.Headers {
		if h.Name == name {
			return h.Value
		}
	}
	return ""
}

// Decision is the pipeline's answer: a local reply (Status != 0) or a route to the origin.
type Decision struct {
	Status  int         // 0: continue to the origin
	Reason  string      // metric/audit label
	Headers [][2]string // local reply headers, or the signed internal headers on continue
	Body    []byte
	Bucket  string
	Key     string
	// Upstream holds the extra request mutations on continue.
	Upstream Upstream
	// Access lists the access checks' outcomes ("ip:allowed", "auth:ok", ...) for audit records.
	Access []string
	// Subject is the authenticated subject when a stage refused the request after auth (audit).
	Subject string
}

// Allowed reports whether the request continues upstream.
func (d *Decision) Allowed() bool { return d.Status == 0 }

// Upstream is what later stages change on a request that continues: headers to add (a policy's
// additions) or remove (credentials that must not reach the origin), and a rewritten :path.
type Upstream struct {
	Set    [][2]string
	Remove []string
	Path   string // empty: unchanged
}

// Exchange is one request's state as it moves through the stages after routing.
type Exchange struct {
	Req         *Request
	Snap        *runtime.Snapshot
	Bucket      *config.Bucket
	BucketIndex int
	Key         string
	Subject     string         // authenticated subject, set by the auth stage
	Claims      map[string]any // verified token claims, set by the auth stage
	Access      []string       // access-check outcomes, copied into the Decision (stages_access.go)
	Upstream    Upstream
}

// Stage is one step of the decision pipeline after routing (ARCHITECTURE.md §2 steps 4–9).
// Run returns nil to pass the request on, or the local reply that ends it.
type Stage interface {
	Name() string
	Run(ctx context.Context, x *Exchange) *Decision
}

// Pipeline runs the per-request decision steps against the current runtime snapshot.
type Pipeline struct {
	store  *runtime.Store
	now    func() time.Time
	stages []Stage
}

// NewPipeline returns a pipeline reading snapshots from store, running stages in order after
// routing; now is injected for tests.
func NewPipeline(store *runtime.Store, now func() time.Time, stages ...Stage) *Pipeline {
	if now == nil {
		now = time.Now
	}
	return &Pipeline{store: store, now: now, stages: stages}
}

// Decide applies ARCHITECTURE.md §2 steps 1–3 (method, limits, route), then the stages, and
// signs what passes.
func (p *Pipeline) Decide(ctx context.Context, r *Request) Decision {
	snap := p.store.Load()
	routing := routeSpan(ctx) // observe.go: steps 1–3 as one "route" span
	idx, key, refusal := locate(snap, r)
	routing.End()
	if refusal != nil {
		return *refusal
	}
	bucket := snap.Buckets[idx].Name
	x := Exchange{Req: r, Snap: snap, Bucket: &snap.Buckets[idx], BucketIndex: idx, Key: key}
	for _, st := range p.stages {
		if d := runStage(ctx, st, &x); d != nil { // observe.go: a span per stage
			d.Bucket, d.Key, d.Access = bucket, key, x.Access
			d.Subject = x.Subject
			return *d
		}
	}
	return Decision{
		Reason: "allowed",
		Bucket: bucket,
		Key:    key,
		Headers: snap.Signer.Headers(originauth.Claims{
			Method:    r.Method,
			Bucket:    bucket,
			Key:       key,
			Subject:   x.Subject,
			RequestID: r.RequestID,
			Time:      p.now(),
		}),
		Upstream: x.Upstream,
		Access:   x.Access,
	}
}

// locate runs steps 1–3: the method, the size limits, OPTIONS, path decoding and the bucket lookup.
// It returns the bucket index and object key, or the local reply that ends the request.
func locate(snap *runtime.Snapshot, r *Request) (idx int, key string, refusal *Decision) {
	refuse := func(d Decision) (int, string, *Decision) { return 0, "", &d }
	if snap == nil {
		return refuse(reject(http.StatusServiceUnavailable, "not_ready", "gateway configuration is not loaded yet", r.RequestID))
	}
	if rej := requestcheck.Method(r.Method); rej != nil {
		d := rejection(rej, r.RequestID)
		d.Headers = append(d.Headers, [2]string{"allow", requestcheck.AllowedMethods})
		return refuse(d)
	}
	if rej := requestcheck.Size(snap.Limits, r.RawPath, r.HeaderBytes, r.ContentLength); rej != nil {
		return refuse(rejection(rej, r.RequestID))
	}
	if r.Method == http.MethodOptions {
		return refuse(options(r.RequestID))
	}
	path, rej := requestcheck.DecodePath(requestcheck.SplitQuery(r.RawPath))
	if rej != nil {
		return refuse(rejection(rej, r.RequestID))
	}
	idx, key, ok := snap.Routes.Lookup(path)
	if !ok {
		return refuse(reject(http.StatusNotFound, "no_route", "no bucket is configured for this path", r.RequestID))
	}
	if key == "" {
		d := reject(http.StatusNotFound, "no_key", "the path names a bucket but no object key", r.RequestID)
		d.Bucket = snap.Buckets[idx].Name
		return refuse(d)
	}
	return idx, key, nil
}

// Reject builds the JSON local reply a stage returns to refuse a request; stages add headers
// (WWW-Authenticate, Retry-After, ...) to its Headers.
func Reject(x *Exchange, status int, reason, message string) *Decision {
	d := reject(status, reason, message, x.Req.RequestID)
	return &d
}

func rejection(rej *requestcheck.Rejection, requestID string) Decision {
	return reject(rej.Status, rej.Reason, rej.Message, requestID)
}

func reject(status int, reason, message, requestID string) Decision {
	return Decision{
		Status: status,
		Reason: reason,
		Body:   httperr.New(status, message, requestID).JSON(),
		Headers: [][2]string{
			{"content-type", httperr.ContentType},
			{"cache-control", "no-store"},
			{"x-request-id", requestID},
		},
	}
}

// options answers a preflight the way the original product does (no Allow-Origin: CORS policy
// is a later, per-bucket feature).
func options(requestID string) Decision {
	return Decision{
		Status: http.StatusOK,
		Reason: "options",
		Headers: [][2]string{
			{"allow", requestcheck.AllowedMethods},
			{"access-control-allow-methods", requestcheck.AllowedMethods},
			{"access-control-allow-headers", "Authorization, Content-Type, Range"},
			{"access-control-max-age", "86400"},
			{"content-length", "0"},
			{"x-request-id", requestID},
		},
	}
}

// parseContentLength returns -1 for a missing or malformed value.
func parseContentLength(v string) int64 {
	if v == "" {
		return -1
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}
