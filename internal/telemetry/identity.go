package telemetry

import (
	"net/netip"
	"strings"
)

// Request identity headers.
const (
	HeaderRequestID     = "x-request-id"
	HeaderCorrelationID = "x-correlation-id"
)

// MaxCorrelationIDLength bounds a client-sent X-Correlation-ID.
const MaxCorrelationIDLength = 128

// ValidCorrelationID reports whether a client-sent X-Correlation-ID may be carried into logs,
// traces, audit records and the response: 1..128 characters of letters, digits and "-_.:",
// so it can never inject log lines, header separators or JSON structure.
func ValidCorrelationID(v string) bool {
	if len(v) == 0 || len(v) > MaxCorrelationIDLength {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

// CorrelationID is the id a request is known by: the client's X-Correlation-ID when valid,
// otherwise the request id (Envoy's x-request-id, a UUIDv4 it generated or kept).
func CorrelationID(clientValue, requestID string) string {
	if ValidCorrelationID(clientValue) {
		return clientValue
	}
	return requestID
}

// ClientIP picks the real client address from X-Forwarded-For the way Envoy does with
// xff_num_trusted_hops: the entry trustedHops places from the right (Envoy itself appended the
// rightmost one). It returns "" when the header has too few entries or the entry is not an IP.
func ClientIP(xff string, trustedHops int) string {
	if xff == "" {
		return ""
	}
	parts := strings.Split(xff, ",")
	i := len(parts) - 1 - max(trustedHops, 0)
	if i < 0 {
		return ""
	}
	ip, err := netip.ParseAddr(strings.TrimSpace(parts[i]))
	if err != nil {
		return ""
	}
	return ip.String()
}
