package audit

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SyslogOptions configure the RFC 5424 syslog sink.
type SyslogOptions struct {
	Address  string
	Protocol string // udp, tcp or tls
	Facility int    // RFC 5424 facility code (local0 = 16)
	AppName  string
	Hostname string // default os.Hostname()
	TLS      *tls.Config
	// DialTimeout bounds connecting and each write (default 5s).
	DialTimeout time.Duration
}

// SyslogSink sends each record as one RFC 5424 message: the JSON record is the MSG, and the
// request id, status, bucket and method are repeated as structured data. TCP and TLS use
// octet-counting framing (RFC 6587 / RFC 5425); UDP sends one datagram per record (RFC 5426).
type SyslogSink struct {
	opts SyslogOptions
	pid  string
	mu   sync.Mutex
	conn net.Conn
	buf  []byte
}

// SDID is the structured-data id of the audit element (32473 is the enterprise number RFC 5612
// reserves for documentation and examples; operators filter on the "audit@" name).
const SDID = "audit@32473"

// NewSyslogSink returns the sink; it connects on first use and reconnects after failures.
func NewSyslogSink(o SyslogOptions) (*SyslogSink, error) {
	switch o.Protocol {
	case "udp", "tcp":
	case "tls":
		if o.TLS == nil {
			o.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		}
	default:
		return nil, fmt.Errorf("audit syslog sink: unknown protocol %q", o.Protocol)
	}
	if o.Hostname == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "-"
		}
		o.Hostname = h
	}
	if o.AppName == "" {
		o.AppName = "yatagarasu"
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	return &SyslogSink{opts: o, pid: strconv.Itoa(os.Getpid())}, nil
}

// SyslogTLSConfig builds the client TLS config from a CA bundle file (empty: system roots).
func SyslogTLSConfig(caFile, serverName string, insecure bool) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName, InsecureSkipVerify: insecure} //nolint:gosec // opt-in, documented
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read syslog CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("syslog CA file %s holds no PEM certificate", caFile)
		}
		c.RootCAs = pool
	}
	return c, nil
}

// Name implements Sink.
func (s *SyslogSink) Name() string { return "syslog" }

// Write implements Sink: every line is sent, or the connection is dropped and an error returned.
func (s *SyslogSink) Write(ctx context.Context, lines [][]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.connect(ctx); err != nil {
		return err
	}
	deadline := time.Now().Add(s.opts.DialTimeout)
	_ = s.conn.SetWriteDeadline(deadline)
	stream := s.opts.Protocol != "udp"
	out := s.buf[:0]
	for _, line := range lines {
		msg := s.format(line)
		if !stream {
			if _, err := s.conn.Write(msg); err != nil {
				s.drop()
				return fmt.Errorf("audit syslog sink: send to %s: %w", s.opts.Address, err)
			}
			continue
		}
		out = strconv.AppendInt(out, int64(len(msg)), 10)
		out = append(out, ' ')
		out = append(out, msg...)
	}
	s.buf = out[:0]
	if stream && len(out) > 0 {
		if _, err := s.conn.Write(out); err != nil {
			s.drop()
			return fmt.Errorf("audit syslog sink: send to %s: %w", s.opts.Address, err)
		}
	}
	return nil
}

func (s *SyslogSink) connect(ctx context.Context) error {
	if s.conn != nil && s.opts.Protocol != "udp" && peerClosed(s.conn) {
		s.drop() // the server closed the connection: writes would vanish into the socket buffer
	}
	if s.conn != nil {
		return nil
	}
	d := net.Dialer{Timeout: s.opts.DialTimeout}
	var (
		c   net.Conn
		err error
	)
	switch s.opts.Protocol {
	case "tls":
		td := tls.Dialer{NetDialer: &d, Config: s.opts.TLS}
		c, err = td.DialContext(ctx, "tcp", s.opts.Address)
	default:
		c, err = d.DialContext(ctx, s.opts.Protocol, s.opts.Address)
	}
	if err != nil {
		return fmt.Errorf("audit syslog sink: connect to %s: %w", s.opts.Address, err)
	}
	s.conn = c
	return nil
}

func (s *SyslogSink) drop() {
	if s.conn != nil {
		_ = s.conn.Close()
		s.conn = nil
	}
}

// Flush implements Sink; messages are not buffered.
func (s *SyslogSink) Flush(context.Context) error { return nil }

// Close implements Sink.
func (s *SyslogSink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop()
	return nil
}

// syslogFields are what the structured data repeats from the record.
type syslogFields struct {
	Timestamp time.Time `json:"timestamp"`
	RequestID string    `json:"request_id"`
	Status    int       `json:"response_status"`
	Bucket    string    `json:"bucket"`
	Method    string    `json:"http_method"`
}

// format renders one JSON line as an RFC 5424 message (without framing).
func (s *SyslogSink) format(line []byte) []byte {
	line = []byte(strings.TrimRight(string(line), "\n"))
	var f syslogFields
	_ = json.Unmarshal(line, &f) // the line came from MarshalLine; zero values only if it did not
	sev := 6                     // informational
	switch {
	case f.Status >= 500:
		sev = 3 // error
	case f.Status >= 400:
		sev = 4 // warning
	}
	ts := "-"
	if !f.Timestamp.IsZero() {
		ts = f.Timestamp.UTC().Format("2006-01-02T15:04:05.000000Z07:00")
	}
	var b []byte
	b = append(b, '<')
	b = strconv.AppendInt(b, int64(s.opts.Facility*8+sev), 10)
	b = append(b, ">1 "...)
	b = append(b, ts...)
	b = append(b, ' ')
	b = append(b, headerField(s.opts.Hostname, 255)...)
	b = append(b, ' ')
	b = append(b, headerField(s.opts.AppName, 48)...)
	b = append(b, ' ')
	b = append(b, headerField(s.pid, 128)...)
	b = append(b, " audit ["...)
	b = append(b, SDID...)
	b = appendParam(b, "request_id", f.RequestID)
	b = appendParam(b, "status", strconv.Itoa(f.Status))
	b = appendParam(b, "bucket", f.Bucket)
	b = appendParam(b, "method", f.Method)
	b = append(b, "] "...)
	b = append(b, line...)
	return b
}

// headerField keeps an RFC 5424 header field to printable US-ASCII without spaces, or "-".
func headerField(v string, maxLen int) string {
	var sb strings.Builder
	for i := 0; i < len(v) && sb.Len() < maxLen; i++ {
		if c := v[i]; c > 32 && c < 127 {
			sb.WriteByte(c)
		}
	}
	if sb.Len() == 0 {
		return "-"
	}
	return sb.String()
}

// appendParam adds ` name="value"` with RFC 5424's escaping of '"', '\' and ']'.
func appendParam(b []byte, name, value string) []byte {
	b = append(b, ' ')
	b = append(b, name...)
	b = append(b, '=', '"')
	for i := 0; i < len(value); i++ {
		if c := value[i]; c == '"' || c == '\\' || c == ']' {
			b = append(b, '\\')
		}
		b = append(b, value[i])
	}
	return append(b, '"')
}
