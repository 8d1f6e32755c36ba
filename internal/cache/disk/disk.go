// Package disk is the local-disk cache layer: one file per entry written atomically (temp file
// + rename), an index that survives restarts, recovery that drops orphans and corrupted
// entries, a size bound with LRU eviction, and file names that are hashes, so no key can
// reach outside the cache directory.
package disk

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/yatagarasu/yatagarasu/internal/cache"
)

// Options configure the layer.
type Options struct {
	Dir      string
	MaxBytes int64 // bound on the files' total size; least recently used entries go first
	Now      func() time.Time
	Logger   *slog.Logger
	// FlushEvery is how often a changed index is written (default 1s); Close always writes it.
	FlushEvery time.Duration
}

// Layer is the disk layer.
type Layer struct {
	dir      string
	maxBytes int64
	now      func() time.Time
	log      *slog.Logger

	mu      sync.Mutex
	items   map[string]*list.Element // Key.String() → element holding *record
	lru     *list.List               // front: most recently used
	total   int64
	buckets map[string]*cache.BucketStats
	evicted int64
	errs    int64
	dirty   bool

	stop chan struct{}
	done chan struct{}
	// wrap lets tests replace the writer of new entry files (a full disk).
	wrap func(io.Writer) io.Writer
}

// record is one entry in the index.
type record struct {
	Key        cache.Key `json:"key"`
	File       string    `json:"file"` // hex SHA-256 of the key
	FileSize   int64     `json:"file_size"`
	Checksum   uint32    `json:"checksum"`
	KeepUntil  time.Time `json:"keep_until"`
	LastAccess time.Time `json:"last_access"`
}

type indexFile struct {
	Version int       `json:"version"`
	Entries []*record `json:"entries"`
}

const indexVersion = 1

var fileName = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Open opens (creating if needed) the cache in o.Dir and recovers it: temp files and files the
// index does not list are removed, index entries whose file is missing, expired, or fails its
// checksum are dropped, and the size bound is enforced.
func Open(o Options) (*Layer, error) {
	if o.Dir == "" || o.MaxBytes <= 0 {
		return nil, fmt.Errorf("disk cache: dir and a positive size are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.FlushEvery <= 0 {
		o.FlushEvery = time.Second
	}
	l := &Layer{
		dir: o.Dir, maxBytes: o.MaxBytes, now: o.Now, log: o.Logger,
		items: map[string]*list.Element{}, lru: list.New(), buckets: map[string]*cache.BucketStats{},
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	for _, d := range []string{l.objectsDir(), l.tmpDir()} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, fmt.Errorf("disk cache: create %s: %w", d, err)
		}
	}
	if err := l.recover(); err != nil {
		return nil, err
	}
	go l.flushLoop(o.FlushEvery)
	return l, nil
}

func (l *Layer) objectsDir() string      { return filepath.Join(l.dir, "objects") }
func (l *Layer) tmpDir() string          { return filepath.Join(l.dir, "tmp") }
func (l *Layer) indexPath() string       { return filepath.Join(l.dir, "index.json") }
func (l *Layer) path(file string) string { return filepath.Join(l.objectsDir(), file[:2], file) }

func hashName(k cache.Key) string {
	sum := sha256.Sum256([]byte(k.String()))
	return hex.EncodeToString(sum[:])
}

// recover rebuilds the in-memory index from index.json and the files on disk.
func (l *Layer) recover() error {
	entries, _ := os.ReadDir(l.tmpDir())
	for _, e := range entries {
		_ = os.Remove(filepath.Join(l.tmpDir(), e.Name()))
	}
	var idx indexFile
	switch data, err := os.ReadFile(l.indexPath()); {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("disk cache: read index: %w", err)
	default:
		if err := json.Unmarshal(data, &idx); err != nil || idx.Version != indexVersion {
			l.log.Warn("disk cache index unreadable; starting empty", "path", l.indexPath(), "err", err)
			idx = indexFile{}
		}
	}
	listed := map[string]*record{}
	for _, r := range idx.Entries {
		if r != nil && fileName.MatchString(r.File) && r.File == hashName(r.Key) {
			listed[r.File] = r
		}
	}
	present := map[string]bool{}
	err := filepath.WalkDir(l.objectsDir(), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if _, ok := listed[d.Name()]; !ok || filepath.Dir(p) != filepath.Join(l.objectsDir(), d.Name()[:min(2, len(d.Name()))]) {
			l.log.Info("disk cache: removing orphan file", "file", p)
			_ = os.Remove(p)
			return nil
		}
		present[d.Name()] = true
		return nil
	})
	if err != nil {
		return fmt.Errorf("disk cache: scan %s: %w", l.objectsDir(), err)
	}
	now := l.now()
	var keep []*record
	for name, r := range listed {
		switch {
		case !present[name]:
			continue
		case !now.Before(r.KeepUntil):
			_ = os.Remove(l.path(name))
			continue
		}
		if err := l.verifyFile(r); err != nil {
			l.log.Warn("disk cache: dropping a corrupted entry", "file", l.path(name), "err", err)
			_ = os.Remove(l.path(name))
			continue
		}
		keep = append(keep, r)
	}
	sort.Slice(keep, func(i, j int) bool { return keep[i].LastAccess.After(keep[j].LastAccess) })
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range keep {
		l.add(r, false)
	}
	l.evictLocked(0)
	l.dirty = true
	return l.flushLocked()
}

// verifyFile checks a file's header against its record and its body against the checksum.
func (l *Layer) verifyFile(r *record) error {
	f, err := os.Open(l.path(r.File))
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() != r.FileSize {
		return fmt.Errorf("size %d, index says %d", st.Size(), r.FileSize)
	}
	m, bodyOff, err := readHeader(f)
	if err != nil {
		return err
	}
	if m.Key != r.Key || m.Checksum != r.Checksum || bodyOff+m.Size != r.FileSize {
		return errors.New("header does not match the index")
	}
	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	if _, err := io.Copy(h, io.NewSectionReader(f, bodyOff, m.Size)); err != nil {
		return err
	}
	if h.Sum32() != m.Checksum {
		return errors.New("checksum mismatch")
	}
	return nil
}

// readHeader reads the encoded metadata at the start of f and returns it with the body offset.
func readHeader(f io.ReaderAt) (*cache.Meta, int64, error) {
	prefix := make([]byte, cache.HeaderPrefixLen)
	if _, err := f.ReadAt(prefix, 0); err != nil {
		return nil, 0, fmt.Errorf("%w: %w", cache.ErrCorrupt, err)
	}
	n, err := cache.MetaLen(prefix)
	if err != nil {
		return nil, 0, err
	}
	meta := make([]byte, n)
	if _, err := f.ReadAt(meta, int64(cache.HeaderPrefixLen)); err != nil {
		return nil, 0, fmt.Errorf("%w: %w", cache.ErrCorrupt, err)
	}
	m, err := cache.DecodeMeta(meta)
	if err != nil {
		return nil, 0, err
	}
	return m, int64(cache.HeaderPrefixLen + n), nil
}

// add puts r into the index (replacing an entry under the same key); l.mu is held.
func (l *Layer) add(r *record, front bool) {
	ks := r.Key.String()
	if el, ok := l.items[ks]; ok {
		l.removeLocked(el, false)
	}
	var el *list.Element
	if front {
		el = l.lru.PushFront(r)
	} else {
		el = l.lru.PushBack(r)
	}
	l.items[ks] = el
	l.total += r.FileSize
	b := l.bucketLocked(r.Key.Bucket)
	b.Items++
	b.Bytes += r.FileSize
	l.dirty = true
}

func (l *Layer) bucketLocked(name string) *cache.BucketStats {
	b := l.buckets[name]
	if b == nil {
		b = &cache.BucketStats{}
		l.buckets[name] = b
	}
	return b
}

// removeLocked drops an element from the index and, when unlink is set, its file.
func (l *Layer) removeLocked(el *list.Element, unlink bool) {
	r := el.Value.(*record)
	l.lru.Remove(el)
	delete(l.items, r.Key.String())
	l.total -= r.FileSize
	b := l.bucketLocked(r.Key.Bucket)
	b.Items--
	b.Bytes -= r.FileSize
	l.dirty = true
	if unlink {
		// An open reader keeps the inode: a body being streamed survives its eviction.
		if err := os.Remove(l.path(r.File)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			l.log.Warn("disk cache: remove file", "file", r.File, "err", err)
		}
	}
}

// evictLocked removes least recently used entries until need more bytes fit.
func (l *Layer) evictLocked(need int64) {
	for l.total+need > l.maxBytes && l.lru.Len() > 0 {
		el := l.lru.Back()
		r := el.Value.(*record)
		l.bucketLocked(r.Key.Bucket).Evictions++
		l.evicted++
		l.removeLocked(el, true)
	}
}

// Name implements cache.Layer.
func (l *Layer) Name() string { return "disk" }

// lookup finds k's record, marks it used and returns a copy; expired entries are removed.
func (l *Layer) lookup(k cache.Key) (record, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	el, ok := l.items[k.String()]
	if !ok {
		return record{}, false
	}
	r := el.Value.(*record)
	now := l.now()
	if !now.Before(r.KeepUntil) {
		l.removeLocked(el, true)
		return record{}, false
	}
	r.LastAccess = now
	l.lru.MoveToFront(el)
	l.dirty = true
	return *r, true
}

// drop removes k's entry after a read found its file corrupted or missing.
func (l *Layer) drop(k cache.Key, file string, err error) {
	l.log.Warn("disk cache: dropping an unreadable entry", "bucket", k.Bucket, "key", k.Object, "err", err)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs++
	if el, ok := l.items[k.String()]; ok && el.Value.(*record).File == file {
		l.removeLocked(el, true)
	}
}

// Get implements cache.Layer; it reads the whole body and verifies it.
func (l *Layer) Get(ctx context.Context, k cache.Key) (*cache.Entry, error) {
	r, ok := l.lookup(k)
	if !ok {
		return nil, cache.ErrNotFound
	}
	data, err := os.ReadFile(l.path(r.File))
	if err == nil {
		var e *cache.Entry
		if e, err = cache.Decode(data); err == nil && e.Key == k {
			return e, nil
		}
		if err == nil {
			err = errors.New("file holds another key")
		}
	}
	l.drop(k, r.File, err)
	return nil, cache.ErrNotFound
}

// Open implements cache.Streamer: the body is read from the file as the client reads it.
func (l *Layer) Open(ctx context.Context, k cache.Key) (*cache.Meta, cache.ReadSeekCloser, error) {
	r, ok := l.lookup(k)
	if !ok {
		return nil, nil, cache.ErrNotFound
	}
	f, err := os.Open(l.path(r.File))
	if err != nil {
		l.drop(k, r.File, err)
		return nil, nil, cache.ErrNotFound
	}
	m, off, err := readHeader(f)
	if err == nil && (m.Key != k || m.Checksum != r.Checksum) {
		err = errors.New("header does not match the index")
	}
	if err != nil {
		f.Close()
		l.drop(k, r.File, err)
		return nil, nil, cache.ErrNotFound
	}
	return m, &fileBody{SectionReader: io.NewSectionReader(f, off, m.Size), f: f}, nil
}

// fileBody streams a body from its file. It is not checksummed as it streams: every entry was
// verified when written or when recovery scanned it at start-up, and the CRC would cost more
// than the read itself (see BenchmarkStream1MiB); a truncated file still ends the stream short.
type fileBody struct {
	*io.SectionReader
	f *os.File
}

func (b *fileBody) Close() error { return b.f.Close() }

// Set implements cache.Layer: the entry is written to a temp file and renamed into place.
func (l *Layer) Set(ctx context.Context, e *cache.Entry) error {
	header := cache.AppendHeader(nil, &e.Meta)
	size := int64(len(header)) + int64(len(e.Body))
	if size > l.maxBytes {
		return cache.ErrTooLarge
	}
	tmp, err := os.CreateTemp(l.tmpDir(), "entry-*")
	if err != nil {
		return l.failed(fmt.Errorf("disk cache: create temp file: %w", err))
	}
	var w io.Writer = tmp
	if l.wrap != nil {
		w = l.wrap(tmp)
	}
	_, err = w.Write(header)
	if err == nil {
		_, err = w.Write(e.Body)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return l.failed(fmt.Errorf("disk cache: write %s/%s: %w", e.Key.Bucket, e.Key.Object, err))
	}
	r := &record{Key: e.Key, File: hashName(e.Key), FileSize: size, Checksum: e.Checksum, KeepUntil: e.KeepUntil, LastAccess: l.now()}
	final := l.path(r.File)
	if err := os.MkdirAll(filepath.Dir(final), 0o750); err != nil {
		_ = os.Remove(tmp.Name())
		return l.failed(fmt.Errorf("disk cache: %w", err))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, ok := l.items[e.Key.String()]; ok {
		l.removeLocked(el, false) // the rename below replaces the file
	}
	l.evictLocked(size)
	if err := os.Rename(tmp.Name(), final); err != nil {
		_ = os.Remove(tmp.Name())
		l.errs++
		return fmt.Errorf("disk cache: rename into place: %w", err)
	}
	l.add(r, true)
	return nil
}

func (l *Layer) failed(err error) error {
	l.mu.Lock()
	l.errs++
	l.mu.Unlock()
	return err
}

// Delete implements cache.Layer.
func (l *Layer) Delete(_ context.Context, k cache.Key) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	el, ok := l.items[k.String()]
	if ok {
		l.removeLocked(el, true)
	}
	return ok, nil
}

// PurgeBucket implements cache.Layer.
func (l *Layer) PurgeBucket(_ context.Context, bucket string) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for el := l.lru.Front(); el != nil; {
		next := el.Next()
		if el.Value.(*record).Key.Bucket == bucket {
			l.removeLocked(el, true)
			n++
		}
		el = next
	}
	return n, nil
}

// Purge implements cache.Layer.
func (l *Layer) Purge(context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for el := l.lru.Front(); el != nil; {
		next := el.Next()
		l.removeLocked(el, true)
		el = next
	}
	return nil
}

// Stats implements cache.Layer.
func (l *Layer) Stats() cache.LayerStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := cache.LayerStats{Layer: l.Name(), Items: int64(l.lru.Len()), Bytes: l.total, MaxBytes: l.maxBytes,
		Evictions: l.evicted, Errors: l.errs, Buckets: map[string]cache.BucketStats{}}
	for name, b := range l.buckets {
		s.Buckets[name] = *b
	}
	return s
}

func (l *Layer) flushLoop(every time.Duration) {
	defer close(l.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.mu.Lock()
			if err := l.flushLocked(); err != nil {
				l.log.Warn("disk cache: write index", "err", err)
			}
			l.mu.Unlock()
		}
	}
}

// flushLocked writes the index atomically when it changed; l.mu is held.
func (l *Layer) flushLocked() error {
	if !l.dirty {
		return nil
	}
	idx := indexFile{Version: indexVersion, Entries: make([]*record, 0, l.lru.Len())}
	for el := l.lru.Front(); el != nil; el = el.Next() {
		idx.Entries = append(idx.Entries, el.Value.(*record))
	}
	data, err := json.Marshal(idx)
	if err != nil {
		return fmt.Errorf("encode index: %w", err)
	}
	tmp, err := os.CreateTemp(l.tmpDir(), "index-*")
	if err != nil {
		return fmt.Errorf("create index temp file: %w", err)
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), l.indexPath())
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("write index: %w", err)
	}
	l.dirty = false
	return nil
}

// Close implements cache.Layer: it stops the flusher and writes the index.
func (l *Layer) Close() error {
	select {
	case <-l.stop:
		return nil
	default:
	}
	close(l.stop)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.flushLocked()
}
