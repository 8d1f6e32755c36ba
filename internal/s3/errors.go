package s3

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// ErrTimeout marks an S3 call that did not answer within the bucket's configured timeout.
var ErrTimeout = errors.New("s3 did not answer within the timeout")

// Error is an S3 failure classified into the HTTP status the gateway answers with. Message is
// safe to show to clients (fixed text per class, never S3's own text or credentials); Code is S3's
// error code for logs and metrics; Err is the original error for logs.
type Error struct {
	Status  int
	Code    string
	Message string
	Err     error
	// RetryAfter is set on a 503 for an unavailable backend: when to try again.
	RetryAfter time.Duration
}

// Error implements error.
func (e *Error) Error() string {
	return fmt.Sprintf("s3: %d %s: %s: %v", e.Status, e.Code, e.Message, e.Err)
}

// Unwrap exposes the original error to errors.Is/As.
func (e *Error) Unwrap() error { return e.Err }

// Client-facing messages, one per class.
const (
	msgNotFound     = "object not found"
	msgRange        = "requested range not satisfiable"
	msgPrecondition = "precondition failed"
	msgCredentials  = "S3 rejected the gateway's credentials"
	msgTimeout      = "S3 did not answer in time"
	msgFailed       = "S3 request failed"
	msgUnavailable  = "S3 backend is unavailable (circuit breaker open)"
)

// Classify maps any error from Get, Head or Ping to the gateway's answer: missing object → 404,
// bad range → 416, failed precondition → 412, refused credentials → 502, timeout → 504, anything
// else → 502. It returns nil for a nil error.
func Classify(err error) *Error {
	if err == nil {
		return nil
	}
	var already *Error
	if errors.As(err, &already) {
		return already
	}
	code, status := "", 0
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		code = apiErr.ErrorCode()
	}
	var respErr *smithyhttp.ResponseError
	if errors.As(err, &respErr) && respErr.Response != nil {
		status = respErr.Response.StatusCode
	}
	mk := func(st int, msg string) *Error {
		if code == "" {
			code = http.StatusText(st)
		}
		return &Error{Status: st, Code: code, Message: msg, Err: err}
	}
	var unavailable *UnavailableError
	if errors.As(err, &unavailable) { // protect.go: every backend's breaker is open
		return &Error{Status: http.StatusServiceUnavailable, Code: "CircuitOpen", Message: msgUnavailable, Err: err, RetryAfter: unavailable.RetryAfter}
	}
	switch {
	case isTimeout(err):
		if code == "" {
			code = "Timeout"
		}
		return mk(http.StatusGatewayTimeout, msgTimeout)
	case code == "NoSuchKey" || code == "NotFound" || status == http.StatusNotFound:
		return mk(http.StatusNotFound, msgNotFound)
	case code == "InvalidRange" || status == http.StatusRequestedRangeNotSatisfiable:
		return mk(http.StatusRequestedRangeNotSatisfiable, msgRange)
	case code == "PreconditionFailed" || status == http.StatusPreconditionFailed:
		return mk(http.StatusPreconditionFailed, msgPrecondition)
	case code == "AccessDenied" || code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch" ||
		status == http.StatusForbidden:
		return mk(http.StatusBadGateway, msgCredentials)
	default:
		return mk(http.StatusBadGateway, msgFailed)
	}
}

func isTimeout(err error) bool {
	if errors.Is(err, ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// ContentRange returns the Content-Range S3 sent with a failure ("bytes */<size>" on a 416), so
// the gateway can relay it as RFC 9110 asks; empty when there is none.
func (e *Error) ContentRange() string {
	var re *smithyhttp.ResponseError
	if errors.As(e.Err, &re) && re.Response != nil {
		return re.Response.Header.Get("Content-Range")
	}
	return ""
}
