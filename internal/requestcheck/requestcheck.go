// Package requestcheck holds the checks every request passes before any bucket logic: the
// read-only method rule, size limits, and path decoding that refuses traversal and bad encoding.
package requestcheck

import (
	"net/http"
	"net/url"
	"strings"
)

// Rejection is why a request is refused; Status is the HTTP status the client gets.
type Rejection struct {
	Status  int
	Reason  string // short, stable label for metrics and audit ("method_not_allowed", ...)
	Message string // human text for the JSON body
}

func (r *Rejection) Error() string { return r.Message }

// The rejections, allocated once: the happy path and the common refusals cost no allocation.
var (
	ErrMethod        = &Rejection{http.StatusMethodNotAllowed, "method_not_allowed", "this gateway is read-only: only GET, HEAD and OPTIONS are allowed"}
	ErrURITooLong    = &Rejection{http.StatusRequestURITooLong, "uri_too_long", "request URI is longer than the configured limit"}
	ErrHeadersTooBig = &Rejection{http.StatusRequestHeaderFieldsTooLarge, "headers_too_large", "request headers are larger than the configured limit"}
	ErrBodyTooBig    = &Rejection{http.StatusRequestEntityTooLarge, "body_too_large", "request body is larger than the configured limit"}
	ErrBadPath       = &Rejection{http.StatusBadRequest, "bad_path", "request path must be absolute"}
	ErrBadEncoding   = &Rejection{http.StatusBadRequest, "bad_encoding", "request path has malformed percent-encoding"}
	ErrTraversal     = &Rejection{http.StatusBadRequest, "path_traversal", "request path contains a traversal sequence"}
	ErrControlChar   = &Rejection{http.StatusBadRequest, "control_character", "request path contains a control character"}
)

// AllowedMethods is the Allow header value for every 405 and OPTIONS answer.
const AllowedMethods = "GET, HEAD, OPTIONS"

// Limits are the configured request bounds (server.security_limits).
type Limits struct {
	MaxURILength   int   // raw :path length, query included
	MaxHeaderBytes int   // sum of header name and value lengths
	MaxBodyBytes   int64 // by Content-Length
}

// Method refuses anything but GET, HEAD and OPTIONS.
func Method(m string) *Rejection {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return nil
	}
	return ErrMethod
}

// Size applies the URI, header and body limits; contentLength < 0 means unknown.
func Size(l Limits, rawPath string, headerBytes int, contentLength int64) *Rejection {
	switch {
	case l.MaxURILength > 0 && len(rawPath) > l.MaxURILength:
		return ErrURITooLong
	case l.MaxHeaderBytes > 0 && headerBytes > l.MaxHeaderBytes:
		return ErrHeadersTooBig
	case l.MaxBodyBytes > 0 && contentLength > l.MaxBodyBytes:
		return ErrBodyTooBig
	}
	return nil
}

// SplitQuery returns the path part of a raw request target.
func SplitQuery(rawPath string) string {
	if i := strings.IndexByte(rawPath, '?'); i >= 0 {
		return rawPath[:i]
	}
	return rawPath
}

// DecodePath percent-decodes a raw path once and refuses anything that could name a resource
// outside the path as written: "." or ".." segments (raw, encoded or double-encoded), backslash
// traversal, NUL and other control characters. The result is what routing and the S3 key use.
func DecodePath(rawPath string) (string, *Rejection) {
	if rawPath == "" || rawPath[0] != '/' {
		return "", ErrBadPath
	}
	decoded, err := url.PathUnescape(rawPath)
	if err != nil {
		return "", ErrBadEncoding
	}
	for i := 0; i < len(decoded); i++ {
		if c := decoded[i]; c < 0x20 || c == 0x7f {
			return "", ErrControlChar
		}
	}
	if hasDotSegment(decoded) || hasEncodedDots(decoded) {
		return "", ErrTraversal
	}
	return decoded, nil
}

// hasDotSegment reports a "." or ".." segment, with "/" or "\" as separators.
func hasDotSegment(p string) bool {
	start := 0
	for i := 0; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' && p[i] != '\\' {
			continue
		}
		if seg := p[start:i]; seg == "." || seg == ".." {
			return true
		}
		start = i + 1
	}
	return false
}

// hasEncodedDots catches double-encoding ("%252e%252e" decodes to "%2e%2e"): a segment that a
// second decoder further down could turn into "." or "..". Other escapes stay literal key bytes
// (a key may contain "%2F"), since nothing on our path decodes twice.
func hasEncodedDots(p string) bool {
	if strings.IndexByte(p, '%') < 0 {
		return false
	}
	again, err := url.PathUnescape(p)
	if err != nil {
		return false // not a valid second encoding, so no decoder turns it into dots
	}
	return hasDotSegment(again)
}
