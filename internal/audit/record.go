// Package audit writes one durable record per request ("who read what, when, and how fast") to
// the configured sinks — a rotated JSON-lines file, RFC 5424 syslog, S3 batches — through a
// bounded queue and per-sink spool files, so that a slow or unreachable sink never blocks a
// request and never loses a record.
package audit

import (
	"encoding/json"
	"log/slog"
	"time"
)

// Record is one audit entry with every field of seed 32.2, plus the ids that join it with logs
// and traces and the decision that produced it.
type Record struct {
	Timestamp     time.Time         `json:"timestamp"` // when the request started, RFC 3339 (UTC)
	RequestID     string            `json:"request_id"`
	CorrelationID string            `json:"correlation_id"`
	TraceID       string            `json:"trace_id,omitempty"`
	ClientIP      string            `json:"client_ip"`
	User          *string           `json:"user"` // null for anonymous requests
	Bucket        string            `json:"bucket"`
	Key           string            `json:"object_key"`
	Method        string            `json:"http_method"`
	Path          string            `json:"request_path"` // without the query string
	Query         string            `json:"query,omitempty"`
	Status        int               `json:"response_status"`
	Bytes         int64             `json:"response_size_bytes"`
	DurationMS    float64           `json:"duration_ms"`
	CacheStatus   string            `json:"cache_status"` // hit, miss or bypass
	UserAgent     string            `json:"user_agent"`
	Referer       string            `json:"referer"`
	Reason        string            `json:"decision_reason"`
	Source        string            `json:"source"`                  // extproc (answered locally), origin (served from S3) or envoy
	Checks        []string          `json:"access_checks,omitempty"` // access-check outcomes ("ip:allowed", ...)
	Headers       map[string]string `json:"headers,omitempty"`
}

// Sources of a record.
const (
	SourceExtProc = "extproc"
	SourceOrigin  = "origin"
	SourceEnvoy   = "envoy"
)

// Cache statuses.
const (
	CacheHit    = "hit"
	CacheMiss   = "miss"
	CacheBypass = "bypass"
)

// UserPtr returns nil for an anonymous subject, so the record says "user": null.
func UserPtr(subject string) *string {
	if subject == "" {
		return nil
	}
	return &subject
}

// Level is the record's severity: error for 5xx, warn for 4xx, info otherwise.
func (r *Record) Level() slog.Level {
	switch {
	case r.Status >= 500:
		return slog.LevelError
	case r.Status >= 400:
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

// MarshalLine encodes the record as one JSON line (with the trailing newline).
func (r *Record) MarshalLine() ([]byte, error) {
	c := *r
	c.Timestamp = c.Timestamp.UTC()
	b, err := json.Marshal(&c)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
