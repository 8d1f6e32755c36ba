package audit

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/yatagarasu/yatagarasu/internal/config"
)

// FromConfig builds the Logger the audit_log section describes, or returns nil when it is
// disabled. reg receives the audit metrics.
func FromConfig(c config.AuditLog, log *slog.Logger, reg prometheus.Registerer) (*Logger, error) {
	if !c.Enabled {
		return nil, nil
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := NewMetrics(reg)
	var sinks []Sink
	if slices.Contains(c.Outputs, config.AuditOutputFile) {
		f, err := NewFileSink(FileOptions{
			Path: c.File.Path, MaxSizeMB: c.File.MaxFileSizeMB, MaxBackups: c.File.MaxBackupFiles,
			Daily: c.File.RotationPolicy == "daily", BufferSize: c.File.BufferSize,
		})
		if err != nil {
			return nil, err
		}
		sinks = append(sinks, f)
	}
	if slices.Contains(c.Outputs, config.AuditOutputSyslog) {
		fac, _ := config.SyslogFacility(c.Syslog.Facility)
		o := SyslogOptions{Address: c.Syslog.Address, Protocol: c.Syslog.Protocol, Facility: fac, AppName: c.Syslog.AppName}
		if c.Syslog.Protocol == "tls" {
			t := c.Syslog.TLS
			tc, err := SyslogTLSConfig(t.CAFile, t.ServerName, t.InsecureSkipVerify)
			if err != nil {
				return nil, fmt.Errorf("audit syslog: %w", err)
			}
			o.TLS = tc
		}
		s, err := NewSyslogSink(o)
		if err != nil {
			return nil, err
		}
		sinks = append(sinks, s)
	}
	if slices.Contains(c.Outputs, config.AuditOutputS3) {
		e := c.S3Export
		s, err := NewS3Sink(S3Options{
			Client: NewS3Client(e.Region, e.Endpoint, e.AccessKey, e.SecretKey),
			Bucket: e.Bucket, PathPrefix: e.PathPrefix, Interval: e.ExportIntervalSeconds.D(),
			MaxRecords: e.MaxBatchRecords, Dir: filepath.Join(c.SpoolDir, "s3-batches"), Log: log, Metrics: m,
		})
		if err != nil {
			return nil, err
		}
		sinks = append(sinks, s)
	}
	var level slog.Level
	err := level.UnmarshalText([]byte(strings.ToUpper(c.LogLevel)))
	if err != nil {
		err = fmt.Errorf("audit log_level %q: %w", c.LogLevel, err)
	}
	var l *Logger
	if err == nil {
		l, err = New(Options{QueueSize: c.QueueSize, SpoolDir: c.SpoolDir, MinLevel: level, Sinks: sinks, Log: log, Metrics: m})
	}
	if err != nil {
		for _, s := range sinks {
			_ = s.Close(context.Background()) // stops the S3 export loop; nothing was written yet
		}
		return nil, err
	}
	return l, nil
}
