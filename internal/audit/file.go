package audit

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"gopkg.in/natefinch/lumberjack.v2"
)

// FileOptions configure the JSON-lines file sink.
type FileOptions struct {
	Path       string
	MaxSizeMB  int  // rotate when the file would exceed this size
	MaxBackups int  // rotated files kept (0 keeps all)
	Daily      bool // also rotate at the first write of each UTC day
	BufferSize int  // bytes buffered before a write; 0 writes each batch directly
	Now        func() time.Time
}

// FileSink appends records to a file, one JSON object per line, rotating by size (and daily)
// with lumberjack and keeping a bounded number of backups.
type FileSink struct {
	mu   sync.Mutex
	lj   *lumberjack.Logger
	w    io.Writer
	bw   *bufio.Writer
	day  string
	opts FileOptions
}

// NewFileSink creates the directory and returns the sink; the file opens on the first write.
func NewFileSink(o FileOptions) (*FileSink, error) {
	if o.Path == "" {
		return nil, fmt.Errorf("audit file sink: path is empty")
	}
	if err := os.MkdirAll(filepath.Dir(o.Path), 0o750); err != nil {
		return nil, fmt.Errorf("audit file sink: create directory: %w", err)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	lj := &lumberjack.Logger{Filename: o.Path, MaxSize: o.MaxSizeMB, MaxBackups: o.MaxBackups}
	s := &FileSink{lj: lj, w: lj, opts: o}
	if o.BufferSize > 0 {
		s.bw = bufio.NewWriterSize(lj, o.BufferSize)
		s.w = s.bw
	}
	if o.Daily {
		s.day = s.today()
	}
	return s, nil
}

// Name implements Sink.
func (s *FileSink) Name() string { return "file" }

func (s *FileSink) today() string { return s.opts.Now().UTC().Format(time.DateOnly) }

// Write implements Sink.
func (s *FileSink) Write(_ context.Context, lines [][]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.Daily {
		if d := s.today(); d != s.day {
			if err := s.flushLocked(); err != nil {
				return err
			}
			if err := s.lj.Rotate(); err != nil {
				return fmt.Errorf("audit file sink: daily rotation: %w", err)
			}
			s.day = d
		}
	}
	for _, l := range lines {
		if _, err := s.w.Write(l); err != nil {
			s.reset()
			return fmt.Errorf("audit file sink: write %s: %w", s.opts.Path, err)
		}
	}
	return nil
}

// Flush implements Sink.
func (s *FileSink) Flush(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flushLocked()
}

func (s *FileSink) flushLocked() error {
	if s.bw == nil {
		return nil
	}
	if err := s.bw.Flush(); err != nil {
		s.reset()
		return fmt.Errorf("audit file sink: write %s: %w", s.opts.Path, err)
	}
	return nil
}

// Close implements Sink.
func (s *FileSink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.flushLocked()
	if cerr := s.lj.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("audit file sink: close: %w", cerr)
	}
	return err
}

// reset drops a failed buffer (bufio keeps its first error forever); the lines it held are
// still in the spool and are sent again.
func (s *FileSink) reset() {
	if s.bw != nil {
		s.bw.Reset(s.lj)
	}
}
