// Package cache is the gateway's tiered object cache: the entry and key types, the Layer
// interface the memory, disk and Redis layers implement, the Tiered cache that looks them up in
// the configured order, and the HTTP glue that serves hits (extproc for small ones, the origin
// for large ones) and fills the cache on misses.
package cache

import (
	"context"
	"errors"
	"hash/crc32"
	"io"
	"strings"
	"time"
)

// ErrNotFound is what a layer returns for a key it does not hold (or holds past its retention).
var ErrNotFound = errors.New("cache: not found")

// ErrTooLarge is what a layer returns for an entry above its item size limit.
var ErrTooLarge = errors.New("cache: entry too large for this layer")

// ErrUnavailable is what a layer returns while its backend is known to be down (Redis breaker open).
var ErrUnavailable = errors.New("cache: layer unavailable")

// Key identifies one cached object: the gateway bucket, the S3 object key and what makes a
// variant of the same object differ (empty for the object as stored; image parameters later).
type Key struct {
	Bucket  string
	Object  string
	Variant string
}

// String is the key's unique flat form, used as the map key in every layer. NUL cannot appear in
// a bucket name, and keys containing it are rejected by S3, so the form is unambiguous.
func (k Key) String() string {
	var b strings.Builder
	b.Grow(len(k.Bucket) + len(k.Object) + len(k.Variant) + 2)
	b.WriteString(k.Bucket)
	b.WriteByte(0)
	b.WriteString(k.Object)
	b.WriteByte(0)
	b.WriteString(k.Variant)
	return b.String()
}

// ParseKey undoes Key.String.
func ParseKey(s string) (Key, bool) {
	b, rest, ok1 := strings.Cut(s, "\x00")
	o, v, ok2 := strings.Cut(rest, "\x00")
	if !ok1 || !ok2 || strings.Contains(v, "\x00") {
		return Key{}, false
	}
	return Key{Bucket: b, Object: o, Variant: v}, true
}

// Meta is everything about a cached object except its body: the response headers a hit
// replays, its freshness and the body's checksum.
type Meta struct {
	Key                Key
	Size               int64
	ContentType        string
	ContentEncoding    string
	ContentDisposition string
	CacheControl       string
	ETag               string
	LastModified       string // HTTP date as S3 sent it
	StoredAt           time.Time
	// FreshUntil is when the entry goes stale and must be revalidated with S3 (ETag).
	FreshUntil time.Time
	// KeepUntil is when layers may drop the entry; stale entries are kept until then so a
	// revalidation can refresh them without a download.
	KeepUntil time.Time
	Checksum  uint32 // CRC-32C of the body
}

// Entry is a cached object with its whole body.
type Entry struct {
	Meta
	Body []byte
}

// Fresh reports whether the entry may be served without asking S3.
func (m *Meta) Fresh(now time.Time) bool { return now.Before(m.FreshUntil) }

// Expired reports whether layers should no longer keep the entry.
func (m *Meta) Expired(now time.Time) bool { return !now.Before(m.KeepUntil) }

// crcTable is CRC-32C (Castagnoli), hardware-accelerated on amd64 and arm64.
var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Checksum returns the CRC-32C of body, the value Meta.Checksum holds.
func Checksum(body []byte) uint32 { return crc32.Checksum(body, crcTable) }

// Verify reports whether e's body matches its size and checksum.
func (e *Entry) Verify() bool {
	return int64(len(e.Body)) == e.Size && Checksum(e.Body) == e.Checksum
}

// NewEntry builds an entry with its size and checksum from the body.
func NewEntry(m Meta, body []byte) *Entry {
	m.Size = int64(len(body))
	m.Checksum = Checksum(body)
	return &Entry{Meta: m, Body: body}
}

// Layer is one storage tier. Implementations are safe for concurrent use.
type Layer interface {
	// Name is the layer's config name (memory, disk, redis), used in stats and metrics.
	Name() string
	// Get returns the entry with its verified body, or ErrNotFound.
	Get(ctx context.Context, k Key) (*Entry, error)
	// Set stores e (replacing any entry under the same key); ErrTooLarge when it cannot hold it.
	Set(ctx context.Context, e *Entry) error
	// Delete removes k and reports whether it was there.
	Delete(ctx context.Context, k Key) (bool, error)
	// PurgeBucket removes every entry of bucket and returns how many it removed.
	PurgeBucket(ctx context.Context, bucket string) (int, error)
	// Purge removes every entry the layer holds for this gateway.
	Purge(ctx context.Context) error
	// Stats returns the layer's counters, in total and per bucket.
	Stats() LayerStats
	// Close releases the layer's resources (flushing what must survive a restart).
	Close() error
}

// Streamer is implemented by layers that can hand out a body without loading it into memory
// (the disk layer), so large hits are streamed.
type Streamer interface {
	// Open returns the entry's metadata and a reader over its body; the reader verifies the
	// checksum when read sequentially to the end and fails the last read on a mismatch.
	Open(ctx context.Context, k Key) (*Meta, ReadSeekCloser, error)
}

// ReadSeekCloser is a body a Streamer hands out.
type ReadSeekCloser = io.ReadSeekCloser

// LayerStats are a layer's counters. Items and Bytes are -1 when the layer cannot count them
// cheaply (Redis).
type LayerStats struct {
	Layer     string                 `json:"layer"`
	Items     int64                  `json:"items"`
	Bytes     int64                  `json:"size_bytes"`
	MaxBytes  int64                  `json:"max_size_bytes"`
	Evictions int64                  `json:"evictions"`
	Errors    int64                  `json:"errors"`
	Buckets   map[string]BucketStats `json:"buckets,omitempty"`
}

// BucketStats are one bucket's share of a layer.
type BucketStats struct {
	Items     int64 `json:"items"`
	Bytes     int64 `json:"size_bytes"`
	Evictions int64 `json:"evictions"`
}
