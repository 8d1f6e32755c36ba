package origin

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// FuzzReadPrefix checks ReadPrefix's contract on any body, announced length and cut point: no
// error means the bytes read are a true prefix, and "whole" only when they are the full body of
// the announced length; a cut or short body is always an error.
func FuzzReadPrefix(f *testing.F) {
	f.Add([]byte("hello world"), int64(11), 5, 4, uint8(16))
	f.Add([]byte("hello"), int64(-1), -1, 1, uint8(3))
	f.Add([]byte{}, int64(0), -1, 1, uint8(8))
	f.Add([]byte("abc"), int64(10), -1, 2, uint8(8))
	f.Fuzz(func(t *testing.T, data []byte, length int64, cut, chunk int, bufSize uint8) {
		// A body longer than its Content-Length cannot reach ReadPrefix: net/http's client
		// stops at the announced length.
		if length < -1 || (length >= 0 && length < int64(len(data))) || length > int64(len(data))+5 || chunk <= 0 {
			t.Skip()
		}
		var body io.Reader = bytes.NewReader(data)
		cutting := cut >= 0 && cut < len(data)
		if cutting {
			body = io.MultiReader(bytes.NewReader(data[:cut]), iotest.ErrReader(errors.New("reset")))
		}
		body = &chunked{r: body, n: chunk}
		buf := make([]byte, int(bufSize))
		n, whole, err := ReadPrefix(body, buf, length)
		if n > len(buf) || !bytes.Equal(buf[:n], data[:min(n, len(data))]) {
			t.Fatalf("read %d bytes %q that are not a prefix of %q", n, buf[:n], data)
		}
		if err != nil {
			return
		}
		if cutting && n > cut {
			t.Fatalf("read past the cut: %d > %d", n, cut)
		}
		if whole {
			if cutting || n != len(data) || (length >= 0 && int64(n) != length) {
				t.Fatalf("whole with %d bytes of %d (announced %d, cut %v)", n, len(data), length, cutting)
			}
		}
	})
}

// chunked returns at most n bytes per Read, like a network body.
type chunked struct {
	r io.Reader
	n int
}

func (c *chunked) Read(p []byte) (int, error) { return c.r.Read(p[:min(len(p), c.n)]) }

func TestReadPrefixShortBodyIsAnError(t *testing.T) {
	if _, _, err := ReadPrefix(bytes.NewReader([]byte("abc")), make([]byte, 16), 10); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v, want unexpected EOF for 3 of 10 bytes", err)
	}
	n, whole, err := ReadPrefix(bytes.NewReader([]byte("abcdef")), make([]byte, 4), 6)
	if err != nil || whole || n != 4 {
		t.Fatalf("n=%d whole=%v err=%v, want 4 bytes of a longer body", n, whole, err)
	}
	n, whole, err = ReadPrefix(bytes.NewReader([]byte("abc")), make([]byte, 4), -1)
	if err != nil || !whole || n != 3 {
		t.Fatalf("n=%d whole=%v err=%v, want the whole unknown-length body", n, whole, err)
	}
}
