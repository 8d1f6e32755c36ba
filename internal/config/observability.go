package config

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// AuditLog is the top-level `audit_log:` section (the original product's keys, seed 32.1) plus
// what a durable pipeline needs: the queue bound, the spool directory and redaction lists.
type AuditLog struct {
	Enabled  bool     `yaml:"enabled"`   // default false
	Outputs  []string `yaml:"outputs"`   // file, syslog, s3; default ["file"]
	LogLevel string   `yaml:"log_level"` // debug|info|warn|error (default info): lowest record level written
	// QueueSize bounds the in-memory queue between requests and sinks (default 10000); past it
	// records spill to the spool instead of blocking requests.
	QueueSize int `yaml:"queue_size"`
	// SpoolDir holds records a sink could not take yet (default /var/lib/yatagarasu/audit-spool).
	SpoolDir string `yaml:"spool_dir"`
	// RedactHeaders and RedactQueryParams are names (case-insensitive) whose values are replaced
	// by "[REDACTED]" wherever a record carries them; the defaults below are always included.
	RedactHeaders     []string `yaml:"redact_headers"`
	RedactQueryParams []string `yaml:"redact_query_params"`
	// RecordHeaders are extra request headers copied into each record (redacted as above).
	RecordHeaders []string    `yaml:"record_headers"`
	File          AuditFile   `yaml:"file"`
	Syslog        AuditSyslog `yaml:"syslog"`
	S3Export      AuditS3     `yaml:"s3_export"`
}

// AuditFile is the JSON-lines file sink with size and daily rotation.
type AuditFile struct {
	Path           string `yaml:"path"`             // required for the file output
	MaxFileSizeMB  int    `yaml:"max_file_size_mb"` // default 50
	MaxBackupFiles int    `yaml:"max_backup_files"` // default 5
	RotationPolicy string `yaml:"rotation_policy"`  // size (default) or daily (daily, and size as a bound)
	BufferSize     int    `yaml:"buffer_size"`      // default 1 MiB; bytes buffered before a write, 0 = unbuffered
}

// AuditSyslog is the RFC 5424 syslog sink.
type AuditSyslog struct {
	Address  string `yaml:"address"`  // host:port, required for the syslog output
	Protocol string `yaml:"protocol"` // udp (default), tcp or tls
	Facility string `yaml:"facility"` // local0 (default) .. local7
	AppName  string `yaml:"app_name"` // default "yatagarasu"
	// TLS applies when protocol is tls.
	TLS AuditSyslogTLS `yaml:"tls"`
}

// AuditSyslogTLS configures the syslog-over-TLS client (RFC 5425).
type AuditSyslogTLS struct {
	CAFile             string `yaml:"ca_file"`     // PEM bundle; default the system roots
	ServerName         string `yaml:"server_name"` // default the address's host
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// AuditS3 is the S3 batch export sink; credentials and endpoint are explicit like the buckets'.
type AuditS3 struct {
	Bucket                string  `yaml:"bucket"`                  // required for the s3 output
	Region                string  `yaml:"region"`                  // default us-east-1
	PathPrefix            string  `yaml:"path_prefix"`             // prepended to the batch object name
	ExportIntervalSeconds Seconds `yaml:"export_interval_seconds"` // default 60
	Endpoint              string  `yaml:"endpoint"`                // custom endpoint (path-style); empty = AWS
	AccessKey             string  `yaml:"access_key"`
	SecretKey             string  `yaml:"secret_key"`
	MaxBatchRecords       int     `yaml:"max_batch_records"` // default 100000: a batch is cut early at this size
}

// Observability is the top-level `observability:` section: tracing (wired), request logging and
// the slow-request log.
type Observability struct {
	Tracing        Tracing        `yaml:"tracing"`
	RequestLogging RequestLogging `yaml:"request_logging"`
	SlowQuery      SlowQuery      `yaml:"slow_query"`
}

// Tracing configures OpenTelemetry spans and their OTLP export.
type Tracing struct {
	Enabled        bool    `yaml:"enabled"`
	Exporter       string  `yaml:"exporter"`      // otlp (gRPC, default), otlp_http, none
	OTLPEndpoint   string  `yaml:"otlp_endpoint"` // e.g. http://otel-collector:4317
	JaegerEndpoint string  `yaml:"jaeger_endpoint"`
	ZipkinEndpoint string  `yaml:"zipkin_endpoint"`
	ServiceName    string  `yaml:"service_name"`   // default "yatagarasu"
	SamplingRatio  float64 `yaml:"sampling_ratio"` // 0..1, default 1.0 (parent-based)
	// PropagateContext continues the client's/Envoy's W3C traceparent (default true).
	PropagateContext bool `yaml:"propagate_context"`
	// ResourceAttributes are added to every span's resource (e.g. deployment.environment).
	// Values must be scalars; they are used as strings.
	ResourceAttributes map[string]any `yaml:"resource_attributes"`
}

// RequestLogging is the per-request log line (slog), off by default.
type RequestLogging struct {
	LogRequests     bool     `yaml:"log_requests"`
	LogResponses    bool     `yaml:"log_responses"`
	IncludePaths    []string `yaml:"include_paths"`
	ExcludePaths    []string `yaml:"exclude_paths"`
	StatusCodes     []int    `yaml:"status_codes"`
	RedactHeaders   []string `yaml:"redact_headers"`
	LogRequestBody  bool     `yaml:"log_request_body"`  // accepted, unused: bodies never reach the gateway's Go code
	LogResponseBody bool     `yaml:"log_response_body"` // accepted, unused
	MaxBodySize     int      `yaml:"max_body_size"`     // accepted, unused
}

// SlowQuery logs requests slower than a threshold with their timing breakdown.
type SlowQuery struct {
	Enabled          bool   `yaml:"enabled"`
	ThresholdMS      int    `yaml:"threshold_ms"`      // default 1000
	IncludeBreakdown bool   `yaml:"include_breakdown"` // default true
	LogLevel         string `yaml:"log_level"`         // default warn
}

// Logging is the top-level `logging:` section (in the original's examples, now honoured).
type Logging struct {
	Level  string `yaml:"level"`  // debug|info|warn|error, default info
	Format string `yaml:"format"` // json (default) or text
}

// Audit output names and other fixed values of these sections.
const (
	AuditOutputFile   = "file"
	AuditOutputSyslog = "syslog"
	AuditOutputS3     = "s3"

	DefaultAuditQueueSize     = 10000
	DefaultAuditSpoolDir      = "/var/lib/yatagarasu/audit-spool"
	DefaultAuditFileSizeMB    = 50
	DefaultAuditBackups       = 5
	DefaultAuditBufferSize    = 1 << 20
	DefaultAuditExportEvery   = 60 * time.Second
	DefaultAuditBatchRecords  = 100000
	DefaultServiceName        = "yatagarasu"
	DefaultSlowThresholdMS    = 1000
	DefaultAuditSyslogApp     = "yatagarasu"
	DefaultAuditSyslogFacilty = "local0"
)

var (
	logLevels     = []string{"debug", "info", "warn", "error"}
	auditOutputs  = []string{AuditOutputFile, AuditOutputSyslog, AuditOutputS3}
	traceExporter = []string{"otlp", "otlp_http", "none"}
)

// observabilityDefaults fills the audit_log, observability and logging keys the file leaves out.
func (d *decoder) observabilityDefaults(c *Config) {
	p := d.pos
	a := &c.AuditLog
	if !p.present("audit_log.outputs") {
		a.Outputs = []string{AuditOutputFile}
	}
	if !p.present("audit_log.log_level") {
		a.LogLevel = "info"
	}
	if !p.present("audit_log.queue_size") {
		a.QueueSize = DefaultAuditQueueSize
	}
	if !p.present("audit_log.spool_dir") {
		a.SpoolDir = DefaultAuditSpoolDir
	}
	if !p.present("audit_log.file.max_file_size_mb") {
		a.File.MaxFileSizeMB = DefaultAuditFileSizeMB
	}
	if !p.present("audit_log.file.max_backup_files") {
		a.File.MaxBackupFiles = DefaultAuditBackups
	}
	if !p.present("audit_log.file.rotation_policy") {
		a.File.RotationPolicy = "size"
	}
	if !p.present("audit_log.file.buffer_size") {
		a.File.BufferSize = DefaultAuditBufferSize
	}
	if !p.present("audit_log.syslog.protocol") {
		a.Syslog.Protocol = "udp"
	}
	if !p.present("audit_log.syslog.facility") {
		a.Syslog.Facility = DefaultAuditSyslogFacilty
	}
	if !p.present("audit_log.syslog.app_name") {
		a.Syslog.AppName = DefaultAuditSyslogApp
	}
	if !p.present("audit_log.s3_export.region") {
		a.S3Export.Region = DefaultRegion
	}
	if !p.present("audit_log.s3_export.export_interval_seconds") {
		a.S3Export.ExportIntervalSeconds = Seconds(DefaultAuditExportEvery)
	}
	if !p.present("audit_log.s3_export.max_batch_records") {
		a.S3Export.MaxBatchRecords = DefaultAuditBatchRecords
	}

	t := &c.Observability.Tracing
	if !p.present("observability.tracing.exporter") {
		t.Exporter = "otlp"
	}
	if !p.present("observability.tracing.service_name") {
		t.ServiceName = DefaultServiceName
	}
	if !p.present("observability.tracing.sampling_ratio") {
		t.SamplingRatio = 1
	}
	if !p.present("observability.tracing.propagate_context") {
		t.PropagateContext = true
	}
	s := &c.Observability.SlowQuery
	if !p.present("observability.slow_query.threshold_ms") {
		s.ThresholdMS = DefaultSlowThresholdMS
	}
	if !p.present("observability.slow_query.include_breakdown") {
		s.IncludeBreakdown = true
	}
	if !p.present("observability.slow_query.log_level") {
		s.LogLevel = "warn"
	}
	if !p.present("logging.level") {
		c.Logging.Level = "info"
	}
	if !p.present("logging.format") {
		c.Logging.Format = "json"
	}
}

// observability validates audit_log, observability and logging.
func (c *checker) observability() {
	c.auditLog()
	t := c.cfg.Observability.Tracing
	if !slices.Contains(traceExporter, t.Exporter) {
		fix := `use "otlp" (gRPC), "otlp_http" or "none"`
		if t.Exporter == "jaeger" || t.Exporter == "zipkin" {
			fix = `Jaeger and Zipkin accept OTLP: use exporter: "otlp" with otlp_endpoint pointing at their OTLP port`
		}
		c.add("observability.tracing.exporter", fmt.Sprintf("unknown exporter %q", t.Exporter), fix)
	}
	if t.SamplingRatio < 0 || t.SamplingRatio > 1 {
		c.add("observability.tracing.sampling_ratio", fmt.Sprintf("%g is outside 0..1", t.SamplingRatio), "use e.g. sampling_ratio: 0.1 (10% of new traces)")
	}
	if t.Enabled && t.ServiceName == "" {
		c.add("observability.tracing.service_name", "service_name is empty", `use e.g. service_name: "yatagarasu"`)
	}
	if t.Enabled && t.Exporter != "none" {
		switch u, err := url.Parse(t.OTLPEndpoint); {
		case t.OTLPEndpoint == "":
			c.add("observability.tracing.otlp_endpoint", "otlp_endpoint is required when tracing is enabled", `set e.g. otlp_endpoint: "http://otel-collector:4317", or exporter: "none"`)
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			c.add("observability.tracing.otlp_endpoint", fmt.Sprintf("%q is not an http(s) URL with a host", t.OTLPEndpoint), `use e.g. otlp_endpoint: "http://otel-collector:4317" (https for TLS)`)
		}
	}
	for k, v := range t.ResourceAttributes {
		switch v.(type) {
		case string, int, float64, bool:
		default:
			c.add("observability.tracing.resource_attributes."+k, fmt.Sprintf("value of %q must be a single value, got %T", k, v), `write e.g. deployment.environment: "prod"`)
		}
	}
	for _, k := range []string{"jaeger_endpoint", "zipkin_endpoint"} {
		if c.cfg.Written("observability.tracing." + k) {
			v := t.JaegerEndpoint
			if k == "zipkin_endpoint" {
				v = t.ZipkinEndpoint
			}
			if v != "" {
				c.add("observability.tracing."+k, k+" is not supported", "send OTLP instead: set otlp_endpoint to the collector's OTLP port")
			}
		}
	}
	s := c.cfg.Observability.SlowQuery
	if s.ThresholdMS <= 0 {
		c.add("observability.slow_query.threshold_ms", fmt.Sprintf("must be greater than 0, got %d", s.ThresholdMS), "use e.g. threshold_ms: 1000")
	}
	c.level("observability.slow_query.log_level", s.LogLevel)
	for i, code := range c.cfg.Observability.RequestLogging.StatusCodes {
		if code < 100 || code > 599 {
			c.add("observability.request_logging.status_codes["+strconv.Itoa(i)+"]", fmt.Sprintf("%d is not an HTTP status", code), "use codes in 100..599, e.g. [500, 503]")
		}
	}
	c.level("logging.level", c.cfg.Logging.Level)
	if f := c.cfg.Logging.Format; f != "json" && f != "text" {
		c.add("logging.format", fmt.Sprintf("unknown format %q", f), `use "json" (default) or "text"`)
	}
}

func (c *checker) level(path, v string) {
	if !slices.Contains(logLevels, v) {
		c.add(path, fmt.Sprintf("unknown level %q", v), `use one of "debug", "info", "warn", "error"`)
	}
}

func (c *checker) auditLog() {
	a := c.cfg.AuditLog
	c.level("audit_log.log_level", a.LogLevel)
	seen := map[string]bool{}
	for i, o := range a.Outputs {
		path := "audit_log.outputs[" + strconv.Itoa(i) + "]"
		if !slices.Contains(auditOutputs, o) {
			c.add(path, fmt.Sprintf("unknown output %q", o), suggestValue(o, auditOutputs))
			continue
		}
		if seen[o] {
			c.add(path, fmt.Sprintf("output %q is listed twice", o), "list each output once")
		}
		seen[o] = true
	}
	if a.Enabled && len(a.Outputs) == 0 {
		c.add("audit_log.outputs", "no outputs are listed while the audit log is enabled", `list at least one, e.g. outputs: ["file"]`)
	}
	if a.QueueSize <= 0 || a.QueueSize > 1_000_000 {
		c.add("audit_log.queue_size", fmt.Sprintf("%d is outside 1..1000000", a.QueueSize), "use e.g. queue_size: 10000")
	}
	if a.Enabled && strings.TrimSpace(a.SpoolDir) == "" {
		c.add("audit_log.spool_dir", "spool_dir is empty", `set e.g. spool_dir: "/var/lib/yatagarasu/audit-spool" (records wait there while a sink is down)`)
	}
	for _, list := range []struct {
		key   string
		names []string
	}{{"redact_headers", a.RedactHeaders}, {"redact_query_params", a.RedactQueryParams}, {"record_headers", a.RecordHeaders}} {
		for i, n := range list.names {
			if strings.TrimSpace(n) == "" || strings.ContainsAny(n, " \t\r\n:") {
				c.add("audit_log."+list.key+"["+strconv.Itoa(i)+"]", fmt.Sprintf("%q is not a header or parameter name", n), `write a bare name such as "x-api-key"`)
			}
		}
	}
	if !a.Enabled {
		return
	}
	if seen[AuditOutputFile] {
		f := a.File
		if strings.TrimSpace(f.Path) == "" {
			c.add("audit_log.file.path", "file.path is required for the file output", `set e.g. path: "/var/log/yatagarasu/audit.log"`)
		}
		c.positive("audit_log.file.max_file_size_mb", int64(f.MaxFileSizeMB), "50")
		if f.MaxBackupFiles < 0 {
			c.add("audit_log.file.max_backup_files", fmt.Sprintf("must not be negative, got %d", f.MaxBackupFiles), "use e.g. max_backup_files: 5 (0 keeps every backup)")
		}
		if f.RotationPolicy != "size" && f.RotationPolicy != "daily" {
			c.add("audit_log.file.rotation_policy", fmt.Sprintf("unknown rotation policy %q", f.RotationPolicy), `use "size" or "daily"`)
		}
		if f.BufferSize < 0 || f.BufferSize > 64<<20 {
			c.add("audit_log.file.buffer_size", fmt.Sprintf("%d is outside 0..67108864", f.BufferSize), "use e.g. buffer_size: 1048576 (0 writes every record at once)")
		}
	}
	if seen[AuditOutputSyslog] {
		c.auditSyslog()
	}
	if seen[AuditOutputS3] {
		c.auditS3()
	}
}

func (c *checker) auditSyslog() {
	s := c.cfg.AuditLog.Syslog
	if _, port, err := net.SplitHostPort(s.Address); err != nil || port == "" {
		c.add("audit_log.syslog.address", fmt.Sprintf("%q is not host:port", s.Address), `use e.g. address: "syslog.internal:514"`)
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		c.add("audit_log.syslog.address", fmt.Sprintf("port %q is not in 1..65535", port), `use e.g. address: "syslog.internal:514"`)
	}
	if s.Protocol != "udp" && s.Protocol != "tcp" && s.Protocol != "tls" {
		c.add("audit_log.syslog.protocol", fmt.Sprintf("unknown protocol %q", s.Protocol), `use "udp", "tcp" or "tls"`)
	}
	if _, ok := SyslogFacility(s.Facility); !ok {
		c.add("audit_log.syslog.facility", fmt.Sprintf("unknown facility %q", s.Facility), `use one of "local0" .. "local7"`)
	}
	if s.AppName == "" || len(s.AppName) > 48 || strings.ContainsAny(s.AppName, " \t\r\n") {
		c.add("audit_log.syslog.app_name", fmt.Sprintf("%q is not a valid RFC 5424 APP-NAME (1..48 printable characters, no spaces)", s.AppName), `use e.g. app_name: "yatagarasu"`)
	}
	if s.Protocol != "tls" && (s.TLS != AuditSyslogTLS{}) {
		c.add("audit_log.syslog.tls", "tls settings are set but protocol is not tls", `set protocol: "tls", or remove the tls settings`)
	}
}

func (c *checker) auditS3() {
	s := c.cfg.AuditLog.S3Export
	if s.Bucket == "" {
		c.add("audit_log.s3_export.bucket", "bucket is required for the s3 output", `set e.g. bucket: "audit-logs"`)
	}
	if s.Endpoint != "" {
		if msg := checkEndpoint(s.Endpoint); msg != "" {
			c.add("audit_log.s3_export.endpoint", msg, "use e.g. http://127.0.0.1:9000, or remove endpoint for AWS S3")
		}
	}
	if (s.AccessKey == "") != (s.SecretKey == "") {
		c.add("audit_log.s3_export.access_key", "access_key and secret_key must be set together", "set both, normally from ${AWS_ACCESS_KEY_ID} and ${AWS_SECRET_ACCESS_KEY}")
	}
	if s.ExportIntervalSeconds <= 0 {
		c.add("audit_log.s3_export.export_interval_seconds", fmt.Sprintf("must be greater than 0, got %s", s.ExportIntervalSeconds.D()), "use e.g. export_interval_seconds: 60")
	}
	c.positive("audit_log.s3_export.max_batch_records", int64(s.MaxBatchRecords), "100000")
	if strings.HasPrefix(s.PathPrefix, "/") {
		c.add("audit_log.s3_export.path_prefix", fmt.Sprintf("%q starts with /", s.PathPrefix), `write the prefix without a leading slash, e.g. "yatagarasu/"`)
	}
}

// SyslogFacility maps a facility name (local0..local7) to its RFC 5424 code.
func SyslogFacility(name string) (int, bool) {
	if len(name) == 6 && strings.HasPrefix(name, "local") && name[5] >= '0' && name[5] <= '7' {
		return 16 + int(name[5]-'0'), true
	}
	return 0, false
}

// suggestValue proposes the closest allowed value, or lists them.
func suggestValue(v string, valid []string) string {
	best, bestDist := "", -1
	for _, x := range valid {
		if d := editDistance(strings.ToLower(v), x); bestDist < 0 || d < bestDist {
			best, bestDist = x, d
		}
	}
	if bestDist >= 0 && bestDist <= closeEnough(v) {
		return fmt.Sprintf("did you mean %q?", best)
	}
	return "use one of " + strings.Join(valid, ", ")
}
