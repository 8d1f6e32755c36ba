package telemetry

import (
	"io"
	"log/slog"
	"strings"

	"github.com/yatagarasu/yatagarasu/internal/config"
)

// NewLogger returns the process logger the logging section asks for: JSON (default) or text,
// at the configured level.
func NewLogger(c config.Logging, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: ParseLevel(c.Level)}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// ParseLevel maps debug|info|warn|error to a slog level (info for anything else).
func ParseLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(s))); err != nil {
		return slog.LevelInfo
	}
	return l
}
