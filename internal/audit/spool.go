package audit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// spool is an append-only file of JSON lines with a committed read offset: the durable queue in
// front of one sink (and the overflow of the in-memory queue). Lines are read back in the order
// they were appended; a line is dropped from the spool only after its sink confirmed it.
type spool struct {
	mu      sync.Mutex
	path    string
	offPath string
	f       *os.File
	bw      *bufio.Writer
	size    int64 // bytes appended, buffered ones included
	flushed int64 // bytes written to the file
	off     int64 // committed read offset
	saved   int64 // offset last written to offPath
	closed  bool
	notify  chan struct{}
}

// spoolBuffer is how much a spool buffers in memory before it writes to its file.
const spoolBuffer = 64 << 10

// openSpool opens (or creates) dir/name.spool and its offset file, dropping a torn last line
// left by a crash in the middle of a write.
func openSpool(dir, name string) (*spool, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create spool dir: %w", err)
	}
	s := &spool{
		path:    filepath.Join(dir, name+".spool"),
		offPath: filepath.Join(dir, name+".offset"),
		notify:  make(chan struct{}, 1),
	}
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open spool: %w", err)
	}
	size, err := completeLines(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open spool %s: %w", s.path, err)
	}
	if _, err := f.Seek(size, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("seek spool: %w", err)
	}
	s.f, s.bw = f, bufio.NewWriterSize(f, spoolBuffer)
	s.size, s.flushed = size, size
	if b, err := os.ReadFile(s.offPath); err == nil {
		if off, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && off >= 0 && off <= size {
			s.off, s.saved = off, off
		}
	}
	return s, nil
}

// completeLines truncates f after its last newline and returns the resulting size.
func completeLines(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := st.Size()
	if size == 0 {
		return 0, nil
	}
	const chunk = 64 << 10
	buf := make([]byte, chunk)
	for end := size; end > 0; {
		start := max(end-chunk, 0)
		n, err := f.ReadAt(buf[:end-start], start)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			keep := start + int64(i) + 1
			if keep != size {
				return keep, f.Truncate(keep)
			}
			return size, nil
		}
		end = start
	}
	return 0, f.Truncate(0)
}

// Append adds one line (ending in '\n'); it reaches the file on the next Flush or when the
// buffer fills.
func (s *spool) Append(line []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("spool closed")
	}
	n, err := s.bw.Write(line)
	s.size += int64(n)
	s.flushed = s.size - int64(s.bw.Buffered())
	return err
}

// Flush writes buffered lines to the file and wakes the reader.
func (s *spool) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	err := s.bw.Flush()
	s.flushed = s.size - int64(s.bw.Buffered())
	select {
	case s.notify <- struct{}{}:
	default:
	}
	if err != nil {
		return fmt.Errorf("flush spool %s: %w", s.path, err)
	}
	return nil
}

// Committed is the offset of the first line not yet delivered.
func (s *spool) Committed() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.off
}

// Readable is the offset up to which lines are in the file and can be read.
func (s *spool) Readable() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flushed
}

// Read returns up to maxLines complete lines starting at offset from (a reader's cursor, at or
// after the committed offset), and the offset after them.
func (s *spool) Read(from int64, maxLines, maxBytes int) (lines [][]byte, next int64, err error) {
	s.mu.Lock()
	off, end, f := max(from, s.off), s.flushed, s.f
	s.mu.Unlock()
	if off >= end || f == nil {
		return nil, off, nil
	}
	n := min(end-off, int64(maxBytes))
	for {
		buf := make([]byte, n)
		if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
			return nil, off, fmt.Errorf("read spool %s: %w", s.path, err)
		}
		next = off
		for len(buf) > 0 && len(lines) < maxLines {
			i := bytes.IndexByte(buf, '\n')
			if i < 0 {
				break
			}
			lines = append(lines, buf[:i+1])
			buf = buf[i+1:]
			next += int64(i) + 1
		}
		if len(lines) > 0 || n >= end-off {
			return lines, next, nil
		}
		n = min(n*2, end-off) // one line longer than maxBytes
	}
}

// Commit marks everything before next as delivered and returns the committed offset, which is
// 0 when the spool was fully delivered and therefore truncated.
func (s *spool) Commit(next int64) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if next > s.off {
		s.off = next
	}
	if s.closed || s.off != s.size || s.bw.Buffered() != 0 {
		return s.off, nil
	}
	if err := s.f.Truncate(0); err != nil {
		return s.off, fmt.Errorf("truncate spool %s: %w", s.path, err)
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return s.off, fmt.Errorf("seek spool %s: %w", s.path, err)
	}
	s.off, s.size, s.flushed = 0, 0, 0
	if s.saved != 0 {
		s.saved = 0
		if err := os.Remove(s.offPath); err != nil && !errors.Is(err, os.ErrNotExist) {
			return 0, fmt.Errorf("remove spool offset: %w", err)
		}
	}
	return 0, nil
}

// SaveOffset persists the committed offset, so a restart does not deliver those lines again.
func (s *spool) SaveOffset() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.saveOffsetLocked()
}

func (s *spool) saveOffsetLocked() error {
	if s.off == s.saved {
		return nil
	}
	tmp := s.offPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatInt(s.off, 10)), 0o640); err != nil {
		return fmt.Errorf("save spool offset: %w", err)
	}
	if err := os.Rename(tmp, s.offPath); err != nil {
		return fmt.Errorf("save spool offset: %w", err)
	}
	s.saved = s.off
	return nil
}

// Backlog is the number of bytes not yet delivered.
func (s *spool) Backlog() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size - s.off
}

// Close flushes, persists the offset and closes the file; undelivered lines stay for the next start.
func (s *spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	err := errors.Join(s.bw.Flush(), s.saveOffsetLocked(), s.f.Sync(), s.f.Close())
	if err != nil {
		return fmt.Errorf("close spool %s: %w", s.path, err)
	}
	return nil
}
