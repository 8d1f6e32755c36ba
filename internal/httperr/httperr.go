// Package httperr builds the JSON error body every Yatagarasu answer uses, so clients see one
// shape whether extproc, the origin or Envoy's fallback route refused them.
package httperr

import (
	"encoding/json"
	"net/http"
)

// Body is the JSON error document: {"error","message","status","request_id"}.
type Body struct {
	Error     string `json:"error"`
	Message   string `json:"message"`
	Status    int    `json:"status"`
	RequestID string `json:"request_id,omitempty"`
}

// ContentType is the media type of every error body.
const ContentType = "application/json"

// New returns the body for status with a human message.
func New(status int, message, requestID string) Body {
	return Body{Error: http.StatusText(status), Message: message, Status: status, RequestID: requestID}
}

// JSON encodes b; it cannot fail for this type.
func (b Body) JSON() []byte {
	out, _ := json.Marshal(b)
	return out
}

// Write sends b as the response with its status code.
func Write(w http.ResponseWriter, b Body) {
	h := w.Header()
	h.Set("Content-Type", ContentType)
	h.Set("Cache-Control", "no-store")
	if b.RequestID != "" {
		h.Set("X-Request-Id", b.RequestID)
	}
	w.WriteHeader(b.Status)
	_, _ = w.Write(b.JSON())
}
