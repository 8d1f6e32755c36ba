package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// The binary form of an entry, shared by the disk layer (file header + body) and the Redis layer
// (one value): "YGC", a version byte, the metadata length (uint32 big endian), the metadata, the
// body. Metadata: nine length-prefixed strings (uvarint), three times (varint Unix nanoseconds),
// the CRC-32C (uint32 big endian) and the body size (uvarint). A new field means a new version;
// a reader refuses versions it does not know, which a cache treats as a miss.
const (
	codecMagic   = "YGC"
	codecVersion = 1
	// HeaderPrefixLen is the fixed part before the metadata: magic, version and metadata length.
	HeaderPrefixLen = len(codecMagic) + 1 + 4
	// maxMetaLen bounds the metadata a reader accepts (object keys are at most 1 KiB in S3).
	maxMetaLen = 64 << 10
)

// ErrCorrupt is returned for bytes that are not a valid encoded entry.
var ErrCorrupt = errors.New("cache: corrupt entry encoding")

// AppendHeader appends m's encoded header (prefix and metadata) to dst.
func AppendHeader(dst []byte, m *Meta) []byte {
	start := len(dst)
	dst = append(dst, codecMagic...)
	dst = append(dst, codecVersion, 0, 0, 0, 0)
	for _, s := range [...]string{m.Key.Bucket, m.Key.Object, m.Key.Variant, m.ContentType, m.ContentEncoding,
		m.ContentDisposition, m.CacheControl, m.ETag, m.LastModified} {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	for _, t := range [...]time.Time{m.StoredAt, m.FreshUntil, m.KeepUntil} {
		dst = binary.AppendVarint(dst, unixNano(t))
	}
	dst = binary.BigEndian.AppendUint32(dst, m.Checksum)
	dst = binary.AppendUvarint(dst, uint64(m.Size))
	binary.BigEndian.PutUint32(dst[start+len(codecMagic)+1:], uint32(len(dst)-start-HeaderPrefixLen))
	return dst
}

// Encode returns e as one byte slice (header then body).
func Encode(e *Entry) []byte {
	buf := make([]byte, 0, HeaderPrefixLen+256+len(e.Body))
	buf = AppendHeader(buf, &e.Meta)
	return append(buf, e.Body...)
}

// MetaLen reads the metadata length from a header prefix of HeaderPrefixLen bytes.
func MetaLen(prefix []byte) (int, error) {
	if len(prefix) < HeaderPrefixLen || string(prefix[:len(codecMagic)]) != codecMagic {
		return 0, fmt.Errorf("%w: bad magic", ErrCorrupt)
	}
	if v := prefix[len(codecMagic)]; v != codecVersion {
		return 0, fmt.Errorf("%w: unknown version %d", ErrCorrupt, v)
	}
	n := binary.BigEndian.Uint32(prefix[len(codecMagic)+1:])
	if n > maxMetaLen {
		return 0, fmt.Errorf("%w: metadata length %d", ErrCorrupt, n)
	}
	return int(n), nil
}

// DecodeMeta decodes the metadata bytes that follow a header prefix.
func DecodeMeta(b []byte) (*Meta, error) {
	m := &Meta{}
	r := reader{b: b}
	for _, p := range [...]*string{&m.Key.Bucket, &m.Key.Object, &m.Key.Variant, &m.ContentType, &m.ContentEncoding,
		&m.ContentDisposition, &m.CacheControl, &m.ETag, &m.LastModified} {
		*p = r.str()
	}
	for _, p := range [...]*time.Time{&m.StoredAt, &m.FreshUntil, &m.KeepUntil} {
		*p = fromUnixNano(r.varint())
	}
	m.Checksum = r.u32()
	size := r.uvarint()
	if r.err != nil || len(r.b) != 0 || size > 1<<40 {
		return nil, fmt.Errorf("%w: metadata", ErrCorrupt)
	}
	m.Size = int64(size)
	return m, nil
}

// Decode parses an encoded entry and verifies the body against its size and checksum.
func Decode(b []byte) (*Entry, error) {
	n, err := MetaLen(b)
	if err != nil {
		return nil, err
	}
	if len(b) < HeaderPrefixLen+n {
		return nil, fmt.Errorf("%w: truncated metadata", ErrCorrupt)
	}
	m, err := DecodeMeta(b[HeaderPrefixLen : HeaderPrefixLen+n])
	if err != nil {
		return nil, err
	}
	e := &Entry{Meta: *m, Body: b[HeaderPrefixLen+n:]}
	if !e.Verify() {
		return nil, fmt.Errorf("%w: body does not match its size or checksum", ErrCorrupt)
	}
	return e, nil
}

// reader consumes encoded fields, remembering the first error.
type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = ErrCorrupt
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = ErrCorrupt
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) str() string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.b)) {
		r.err = ErrCorrupt
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *reader) u32() uint32 {
	if r.err != nil {
		return 0
	}
	if len(r.b) < 4 {
		r.err = ErrCorrupt
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}
