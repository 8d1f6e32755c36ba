// Package policy is the Go SDK for Yatagarasu access policies: write a func(Request) Decision,
// register it with Handle in init, and build with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o my.wasm ./my-policy
//
// The gateway calls it once per request with the request's method, URI, headers, bucket, object
// key and validated JWT claims (wasm-policies/ABI.md). Outside wasm (go test on your machine) the
// same code runs natively against a Mock request, so policies are unit-tested with plain Go tests.
//
// Rules for policy code: an instance serves many requests one after another, so keep no
// per-user state in globals; do not start goroutines or block; every loop iteration and call
// costs fuel from the policy's budget.
package policy

import (
	"encoding/json"
	"strings"
	"time"
)

// backend is where a Request's facts come from: host functions in wasm, a Mock natively.
type backend interface {
	method() string
	uri() string
	headerValues(name string) []string
	setHeader(name, value string)
	removeHeader(name string)
	bucket() string
	key() string
	subject() string
	clientIP() string
	claim(path string) (string, bool)
	claimValues(path string) ([]string, bool)
	nowUnixMilli() int64
	config() []byte
	log(msg string)
}

// Request is the request being decided. Its methods ask the gateway for one fact each.
type Request struct{ b backend }

// Method is the HTTP method (GET, HEAD).
func (r Request) Method() string { return r.b.method() }

// URI is the request target as the client sent it: path and query.
func (r Request) URI() string { return r.b.uri() }

// Path is the URI without its query.
func (r Request) Path() string {
	u := r.b.uri()
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i]
	}
	return u
}

// Header returns the first value of a request header (any case) and whether it was present.
func (r Request) Header(name string) (string, bool) {
	v := r.b.headerValues(strings.ToLower(name))
	if len(v) == 0 {
		return "", false
	}
	return v[0], true
}

// HeaderValues returns every value of a request header.
func (r Request) HeaderValues(name string) []string { return r.b.headerValues(strings.ToLower(name)) }

// SetHeader sets a request header on the request that goes to the origin when the policy allows it.
func (r Request) SetHeader(name, value string) { r.b.setHeader(strings.ToLower(name), value) }

// RemoveHeader removes a request header before the request goes to the origin.
func (r Request) RemoveHeader(name string) { r.b.removeHeader(strings.ToLower(name)) }

// Bucket is the name of the configured bucket the request was routed to.
func (r Request) Bucket() string { return r.b.bucket() }

// Key is the object key within the bucket (no leading slash).
func (r Request) Key() string { return r.b.key() }

// Subject is the authenticated subject (JWT sub), or "" for anonymous requests.
func (r Request) Subject() string { return r.b.subject() }

// ClientIP is the client's address as the gateway determined it.
func (r Request) ClientIP() string { return r.b.clientIP() }

// Claim returns a validated JWT claim by dotted path ("realm_access.roles"): strings as they
// are, other values as JSON. ok is false when the claim is absent.
func (r Request) Claim(path string) (value string, ok bool) { return r.b.claim(path) }

// ClaimValues returns an array claim's elements (or a scalar claim as one value).
func (r Request) ClaimValues(path string) []string {
	v, _ := r.b.claimValues(path)
	return v
}

// HasClaimValue reports whether the claim at path is, or contains, want.
func (r Request) HasClaimValue(path, want string) bool {
	for _, v := range r.ClaimValues(path) {
		if v == want {
			return true
		}
	}
	return false
}

// Now is the request's time, fixed for the whole evaluation (policies have no wall clock).
func (r Request) Now() time.Time { return time.UnixMilli(r.b.nowUnixMilli()).UTC() }

// Config returns the policy's `config:` from the gateway's YAML, as JSON.
func (r Request) Config() []byte { return r.b.config() }

// DecodeConfig unmarshals the policy's config into v (call it once and keep the result:
// the config of a loaded policy never changes).
func (r Request) DecodeConfig(v any) error {
	c := r.b.config()
	if len(c) == 0 {
		return nil
	}
	return json.Unmarshal(c, v)
}

// Log writes a line to the gateway's log, tagged with the policy name.
func (r Request) Log(msg string) { r.b.log(msg) }

// Decision is what a policy returns: allow, or deny with a status, message and headers.
type Decision struct {
	deny    bool
	status  int
	message string
	headers [][2]string
}

// Allow lets the request continue to the next policy and then the origin.
func Allow() Decision { return Decision{} }

// Deny stops the request with status and a message. The gateway answers with its JSON error
// body ({"error","message","status","request_id"}) unless the policy sets a Content-Type.
func Deny(status int, message string) Decision {
	if status < 200 || status > 599 {
		status = 403
	}
	return Decision{deny: true, status: status, message: message}
}

// WithHeader adds a response header to a deny (e.g. Retry-After).
func (d Decision) WithHeader(name, value string) Decision {
	d.headers = append(d.headers, [2]string{strings.ToLower(name), value})
	return d
}

// Denied reports whether d stops the request.
func (d Decision) Denied() bool { return d.deny }

// Status is a deny's HTTP status (0 for allow).
func (d Decision) Status() int { return d.status }

// Message is a deny's message.
func (d Decision) Message() string { return d.message }

// Handler decides one request.
type Handler func(Request) Decision

// handler is the policy registered by Handle; wasm exports need a package-level entry point.
var handler Handler

// Handle registers the policy. Call it from init (a reactor module has no main).
func Handle(h Handler) { handler = h }
