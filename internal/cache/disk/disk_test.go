package disk

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/yatagarasu/yatagarasu/internal/cache"
)

var ctx = context.Background()

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func entry(bucket, key string, body []byte) *cache.Entry {
	keep := time.Now().Add(time.Hour)
	return cache.NewEntry(cache.Meta{Key: cache.Key{Bucket: bucket, Object: key}, ContentType: "application/x-test",
		ETag: `"e"`, FreshUntil: keep, KeepUntil: keep}, body)
}

func open(t testing.TB, dir string, max int64) *Layer {
	t.Helper()
	l, err := Open(Options{Dir: dir, MaxBytes: max, FlushEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestSetGetOpenAndRestart(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, 1<<30)
	body := randomBytes(300_000)
	if err := l.Set(ctx, entry("a", "x/y.bin", body)); err != nil {
		t.Fatal(err)
	}
	k := cache.Key{Bucket: "a", Object: "x/y.bin"}
	e, err := l.Get(ctx, k)
	if err != nil || !bytes.Equal(e.Body, body) || e.ContentType != "application/x-test" {
		t.Fatalf("Get = %v", err)
	}
	m, rc, err := l.Open(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, body) || m.Size != int64(len(body)) {
		t.Fatalf("Open read %d bytes, %v", len(got), err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// A restart keeps the entry.
	l2 := open(t, dir, 1<<30)
	if e, err := l2.Get(ctx, k); err != nil || !bytes.Equal(e.Body, body) {
		t.Fatalf("after restart: %v", err)
	}
	if st := l2.Stats(); st.Items != 1 || st.Buckets["a"].Items != 1 {
		t.Fatalf("stats after restart = %+v", st)
	}
}

func TestRecoveryDropsOrphansCorruptionAndTempFiles(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, 1<<30)
	for _, k := range []string{"good", "corrupt", "truncated", "missing"} {
		if err := l.Set(ctx, entry("a", k, randomBytes(10_000))); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	path := func(k string) string { return l.path(hashName(cache.Key{Bucket: "a", Object: k})) }
	// Flip one body byte, cut another file, delete a third, and leave an orphan and a temp file.
	data, _ := os.ReadFile(path("corrupt"))
	data[len(data)-10] ^= 0xff
	_ = os.WriteFile(path("corrupt"), data, 0o600)
	_ = os.Truncate(path("truncated"), 100)
	_ = os.Remove(path("missing"))
	orphan := filepath.Join(dir, "objects", "ab", strings.Repeat("ab", 32))
	_ = os.MkdirAll(filepath.Dir(orphan), 0o750)
	_ = os.WriteFile(orphan, []byte("stray"), 0o600)
	temp := filepath.Join(dir, "tmp", "entry-123")
	_ = os.WriteFile(temp, []byte("half"), 0o600)

	l2 := open(t, dir, 1<<30)
	if _, err := l2.Get(ctx, cache.Key{Bucket: "a", Object: "good"}); err != nil {
		t.Fatalf("good entry lost: %v", err)
	}
	for _, k := range []string{"corrupt", "truncated", "missing"} {
		if _, err := l2.Get(ctx, cache.Key{Bucket: "a", Object: k}); !errors.Is(err, cache.ErrNotFound) {
			t.Errorf("%s: %v, want a miss", k, err)
		}
		if _, err := os.Stat(path(k)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: file still on disk", k)
		}
	}
	for _, p := range []string{orphan, temp} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s not removed", p)
		}
	}
	if st := l2.Stats(); st.Items != 1 {
		t.Fatalf("items = %d, want 1", st.Items)
	}
}

func TestCorruptionFoundOnLoad(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, 1<<30)
	k := cache.Key{Bucket: "a", Object: "k"}
	_ = l.Set(ctx, entry("a", "k", randomBytes(100_000)))
	p := l.path(hashName(k))
	data, _ := os.ReadFile(p)
	data[len(data)-1] ^= 1
	_ = os.WriteFile(p, data, 0o600)
	if _, err := l.Get(ctx, k); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("corrupted entry loaded: %v", err)
	}
	if _, _, err := l.Open(ctx, k); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("corrupted entry still indexed: %v", err)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("corrupted file not removed")
	}
}

func TestStreamSeeks(t *testing.T) {
	l := open(t, t.TempDir(), 1<<30)
	body := randomBytes(1000)
	_ = l.Set(ctx, entry("a", "k", body))
	_, rc, err := l.Open(ctx, cache.Key{Bucket: "a", Object: "k"})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if size, _ := rc.Seek(0, io.SeekEnd); size != 1000 {
		t.Fatalf("size = %d", size)
	}
	_, _ = rc.Seek(500, io.SeekStart)
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, body[500:]) {
		t.Fatalf("range read: %v", err)
	}
}

func TestLRUEvictionKeepsTheBound(t *testing.T) {
	l := open(t, t.TempDir(), 50_000)
	for i := range 20 {
		if err := l.Set(ctx, entry("a", fmt.Sprint(i), randomBytes(9_000))); err != nil {
			t.Fatal(err)
		}
		if i >= 1 {
			_, _ = l.Get(ctx, cache.Key{Bucket: "a", Object: "0"}) // keep 0 hot
		}
	}
	st := l.Stats()
	if st.Bytes > 50_000 || st.Evictions == 0 {
		t.Fatalf("stats = %+v", st)
	}
	if _, err := l.Get(ctx, cache.Key{Bucket: "a", Object: "0"}); err != nil {
		t.Fatal("the most recently used entry was evicted")
	}
	if _, err := l.Get(ctx, cache.Key{Bucket: "a", Object: "1"}); err == nil {
		t.Fatal("the least recently used entry survived")
	}
	if err := l.Set(ctx, entry("a", "huge", randomBytes(60_000))); !errors.Is(err, cache.ErrTooLarge) {
		t.Fatalf("entry above the bound: %v", err)
	}
}

// fullDisk fails writes past a byte budget, as a full filesystem does (ENOSPC).
type fullDisk struct {
	w    io.Writer
	left *int
}

func (f fullDisk) Write(p []byte) (int, error) {
	if len(p) > *f.left {
		return 0, fmt.Errorf("write: %w", errors.New("no space left on device"))
	}
	*f.left -= len(p)
	return f.w.Write(p)
}

func TestFullDiskFailsTheWriteAndKeepsServing(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, 1<<30)
	_ = l.Set(ctx, entry("a", "before", []byte("ok")))
	budget := 1000
	l.wrap = func(w io.Writer) io.Writer { return fullDisk{w, &budget} }
	if err := l.Set(ctx, entry("a", "big", randomBytes(5000))); err == nil || !strings.Contains(err.Error(), "no space") {
		t.Fatalf("Set on a full disk = %v", err)
	}
	if tmp, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(tmp) != 0 {
		t.Fatalf("temp files left behind: %d", len(tmp))
	}
	if _, err := l.Get(ctx, cache.Key{Bucket: "a", Object: "big"}); !errors.Is(err, cache.ErrNotFound) {
		t.Fatal("a failed write is visible")
	}
	if _, err := l.Get(ctx, cache.Key{Bucket: "a", Object: "before"}); err != nil {
		t.Fatalf("existing entry lost: %v", err)
	}
	if st := l.Stats(); st.Errors != 1 {
		t.Fatalf("errors = %d", st.Errors)
	}
}

func TestKeysCannotEscapeTheDirectory(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "cache")
	l := open(t, dir, 1<<30)
	for _, k := range []string{"../../escape", "/etc/passwd", "a/../../b", "..", "x\x00y", strings.Repeat("a/", 600)} {
		if err := l.Set(ctx, entry("../b", k, []byte(k))); err != nil {
			t.Fatalf("Set %q: %v", k, err)
		}
		if e, err := l.Get(ctx, cache.Key{Bucket: "../b", Object: k}); err != nil || string(e.Body) != k {
			t.Fatalf("Get %q: %v", k, err)
		}
	}
	entries, _ := os.ReadDir(root)
	if len(entries) != 1 {
		t.Fatalf("files outside the cache dir: %v", entries)
	}
	// A tampered index cannot make recovery touch files outside the directory.
	_ = l.Close()
	victim := filepath.Join(root, "victim")
	_ = os.WriteFile(victim, []byte("keep me"), 0o600)
	idx := `{"version":1,"entries":[{"key":{"Bucket":"a","Object":"b"},"file":"../../victim","file_size":7,"keep_until":"2999-01-01T00:00:00Z"}]}`
	_ = os.WriteFile(filepath.Join(dir, "index.json"), []byte(idx), 0o600)
	open(t, dir, 1<<30)
	if _, err := os.Stat(victim); err != nil {
		t.Fatalf("recovery removed a file outside the cache: %v", err)
	}
}

func TestConcurrentUse(t *testing.T) {
	l := open(t, t.TempDir(), 200_000)
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				k := fmt.Sprint(i % 20)
				switch (i + g) % 4 {
				case 0:
					_ = l.Set(ctx, entry("a", k, bytes.Repeat([]byte(k), 500)))
				case 1:
					if e, err := l.Get(ctx, cache.Key{Bucket: "a", Object: k}); err == nil && !bytes.Equal(e.Body, bytes.Repeat([]byte(k), 500)) {
						t.Errorf("wrong body for %s", k)
					}
				case 2:
					if _, rc, err := l.Open(ctx, cache.Key{Bucket: "a", Object: k}); err == nil {
						if b, err := io.ReadAll(rc); err == nil && !bytes.Equal(b, bytes.Repeat([]byte(k), 500)) {
							t.Errorf("wrong streamed body for %s", k)
						}
						rc.Close()
					}
				case 3:
					_, _ = l.Delete(ctx, cache.Key{Bucket: "a", Object: k})
				}
			}
		}()
	}
	wg.Wait()
	if st := l.Stats(); st.Bytes > 200_000 || st.Bytes < 0 {
		t.Fatalf("stats = %+v", st)
	}
}

// BenchmarkStream1MiB compares streaming a 1 MiB hit from the layer (open, header, CRC check)
// with io.Copy of the same bytes from a plain file; benchstat shows the ratio.
func BenchmarkStream1MiB(b *testing.B) {
	dir := b.TempDir()
	l := open(b, dir, 1<<30)
	body := randomBytes(1 << 20)
	k := cache.Key{Bucket: "a", Object: "one-mib.bin"}
	_ = l.Set(ctx, entry("a", k.Object, body))
	plain := filepath.Join(dir, "plain.bin")
	_ = os.WriteFile(plain, body, 0o600)
	buf := make([]byte, 32<<10)
	b.Run("impl=file-io.Copy", func(b *testing.B) {
		b.SetBytes(1 << 20)
		for b.Loop() {
			f, err := os.Open(plain)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, buf); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	})
	b.Run("impl=disk-layer", func(b *testing.B) {
		b.SetBytes(1 << 20)
		for b.Loop() {
			_, rc, err := l.Open(ctx, k)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{rc}, buf); err != nil {
				b.Fatal(err)
			}
			rc.Close()
		}
	})
}
