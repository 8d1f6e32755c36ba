package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// withObservabilityDefaults sets what Load fills into audit_log, observability and logging when
// the file leaves them out.
func withObservabilityDefaults(c *Config) {
	c.AuditLog = AuditLog{
		Outputs: []string{AuditOutputFile}, LogLevel: "info", QueueSize: DefaultAuditQueueSize, SpoolDir: DefaultAuditSpoolDir,
		File:     AuditFile{MaxFileSizeMB: 50, MaxBackupFiles: 5, RotationPolicy: "size", BufferSize: 1 << 20},
		Syslog:   AuditSyslog{Protocol: "udp", Facility: "local0", AppName: "yatagarasu"},
		S3Export: AuditS3{Region: DefaultRegion, ExportIntervalSeconds: Seconds(time.Minute), MaxBatchRecords: DefaultAuditBatchRecords},
	}
	c.Observability = Observability{
		Tracing:   Tracing{Exporter: "otlp", ServiceName: "yatagarasu", SamplingRatio: 1, PropagateContext: true},
		SlowQuery: SlowQuery{ThresholdMS: 1000, IncludeBreakdown: true, LogLevel: "warn"},
	}
	c.Logging = Logging{Level: "info", Format: "json"}
}

func TestObservabilitySectionsFullExample(t *testing.T) {
	yaml := okBucket + `audit_log:
  enabled: true
  outputs: ["file", "syslog", "s3"]
  log_level: warn
  queue_size: 500
  spool_dir: /tmp/spool
  redact_headers: [x-api-key]
  redact_query_params: [sig]
  record_headers: [x-tenant]
  file:
    path: /tmp/audit.log
    max_file_size_mb: 10
    max_backup_files: 2
    rotation_policy: daily
    buffer_size: 0
  syslog:
    address: "127.0.0.1:6514"
    protocol: tls
    facility: local3
    tls: {ca_file: /etc/ca.pem, server_name: syslog.internal}
  s3_export:
    bucket: audit
    region: eu-west-1
    path_prefix: yatagarasu/
    export_interval_seconds: 5
    endpoint: http://127.0.0.1:9000
    access_key: ak
    secret_key: sk
observability:
  tracing:
    enabled: true
    exporter: otlp_http
    otlp_endpoint: "http://collector:4318"
    service_name: gw
    sampling_ratio: 0.25
    propagate_context: false
    resource_attributes: {deployment.environment: prod, replica: 3}
  request_logging:
    exclude_paths: ["/health"]
    status_codes: [500]
  slow_query:
    enabled: true
    threshold_ms: 250
    log_level: info
logging:
  level: debug
  format: text
`
	cfg := mustParse(t, "obs.yaml", []byte(yaml), map[string]string{OriginSecretEnvDefault: testSecret})
	a := cfg.AuditLog
	if !a.Enabled || len(a.Outputs) != 3 || a.LogLevel != "warn" || a.QueueSize != 500 || a.SpoolDir != "/tmp/spool" {
		t.Errorf("audit_log = %+v", a)
	}
	if a.File.RotationPolicy != "daily" || a.File.BufferSize != 0 || a.File.MaxBackupFiles != 2 {
		t.Errorf("file = %+v", a.File)
	}
	if a.Syslog.Protocol != "tls" || a.Syslog.TLS.ServerName != "syslog.internal" || a.Syslog.AppName != "yatagarasu" {
		t.Errorf("syslog = %+v", a.Syslog)
	}
	if a.S3Export.ExportIntervalSeconds.D() != 5*time.Second || a.S3Export.Endpoint != "http://127.0.0.1:9000" {
		t.Errorf("s3_export = %+v", a.S3Export)
	}
	tr := cfg.Observability.Tracing
	if !tr.Enabled || tr.Exporter != "otlp_http" || tr.SamplingRatio != 0.25 || tr.PropagateContext || tr.ResourceAttributes["replica"] != 3 {
		t.Errorf("tracing = %+v", tr)
	}
	if s := cfg.Observability.SlowQuery; !s.Enabled || s.ThresholdMS != 250 || !s.IncludeBreakdown {
		t.Errorf("slow_query = %+v", s)
	}
	if cfg.Logging != (Logging{Level: "debug", Format: "text"}) {
		t.Errorf("logging = %+v", cfg.Logging)
	}
}

func TestObservabilityErrors(t *testing.T) {
	cases := []struct {
		name, yaml, path, msg, fix string
	}{
		{"unknown output", "audit_log:\n  outputs: [fil] # <--\n", "audit_log.outputs[0]", `unknown output "fil"`, `did you mean "file"?`},
		{"file path missing", "audit_log: # <--\n  enabled: true\n", "audit_log.file.path", "file.path is required", "path:"},
		{"bad rotation", "audit_log:\n  enabled: true\n  file:\n    path: /x\n    rotation_policy: hourly # <--\n", "audit_log.file.rotation_policy", "unknown rotation policy", `"daily"`},
		{"syslog address", "audit_log:\n  enabled: true\n  outputs: [syslog]\n  syslog:\n    address: syslog # <--\n", "audit_log.syslog.address", "not host:port", "514"},
		{"syslog facility", "audit_log:\n  enabled: true\n  outputs: [syslog]\n  syslog:\n    address: h:514\n    facility: kern # <--\n", "audit_log.syslog.facility", "unknown facility", "local0"},
		{"syslog tls without tls", "audit_log:\n  enabled: true\n  outputs: [syslog]\n  syslog:\n    address: h:514\n    tls: # <--\n      insecure_skip_verify: true\n", "audit_log.syslog.tls", "protocol is not tls", "protocol"},
		{"s3 bucket missing", "audit_log:\n  enabled: true\n  outputs: [s3]\n  s3_export: # <--\n    region: x\n", "audit_log.s3_export.bucket", "bucket is required", "audit-logs"},
		{"s3 interval zero", "audit_log:\n  enabled: true\n  outputs: [s3]\n  s3_export:\n    bucket: b\n    export_interval_seconds: 0 # <--\n", "audit_log.s3_export.export_interval_seconds", "greater than 0", "60"},
		{"queue size", "audit_log:\n  queue_size: 0 # <--\n", "audit_log.queue_size", "outside 1..1000000", "10000"},
		{"audit level", "audit_log:\n  log_level: verbose # <--\n", "audit_log.log_level", "unknown level", "debug"},
		{"sampling ratio", "observability:\n  tracing:\n    sampling_ratio: 1.5 # <--\n", "observability.tracing.sampling_ratio", "outside 0..1", "0.1"},
		{"jaeger exporter", "observability:\n  tracing:\n    exporter: jaeger # <--\n", "observability.tracing.exporter", `unknown exporter "jaeger"`, "OTLP"},
		{"endpoint required", "observability:\n  tracing: # <--\n    enabled: true\n", "observability.tracing.otlp_endpoint", "required", "otel-collector"},
		{"endpoint scheme", "observability:\n  tracing:\n    enabled: true\n    otlp_endpoint: collector:4317 # <--\n", "observability.tracing.otlp_endpoint", "not an http(s) URL", "http://"},
		{"slow threshold", "observability:\n  slow_query:\n    threshold_ms: -1 # <--\n", "observability.slow_query.threshold_ms", "greater than 0", "1000"},
		{"logging format", "logging:\n  format: xml # <--\n", "logging.format", `unknown format "xml"`, "json"},
		{"logging unknown key", "logging:\n  levle: info # <--\n", "logging.levle", `unknown key "levle"`, `did you mean "level"?`},
		{"status code", "observability:\n  request_logging:\n    status_codes: [42] # <--\n", "observability.request_logging.status_codes[0]", "not an HTTP status", "500"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			yaml := okBucket + tc.yaml
			_, err := Parse("obs.yaml", []byte(yaml), envOf(map[string]string{OriginSecretEnvDefault: testSecret}))
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("err = %v, want Errors", err)
			}
			for _, e := range errs {
				if e.Path != tc.path {
					continue
				}
				if !strings.Contains(e.Msg, tc.msg) || !strings.Contains(e.Fix, tc.fix) {
					t.Errorf("got %q / fix %q, want msg ~ %q, fix ~ %q", e.Msg, e.Fix, tc.msg, tc.fix)
				}
				if want := markedLine(t, yaml); e.Line != want {
					t.Errorf("line = %d, want %d (%v)", e.Line, want, e)
				}
				return
			}
			t.Fatalf("no error at %s in %v", tc.path, err)
		})
	}
}

func TestSyslogFacility(t *testing.T) {
	if n, ok := SyslogFacility("local0"); !ok || n != 16 {
		t.Errorf("local0 = %d %v", n, ok)
	}
	if n, ok := SyslogFacility("local7"); !ok || n != 23 {
		t.Errorf("local7 = %d %v", n, ok)
	}
	for _, bad := range []string{"local8", "kern", "", "local"} {
		if _, ok := SyslogFacility(bad); ok {
			t.Errorf("%q accepted", bad)
		}
	}
}
