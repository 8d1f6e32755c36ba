// Package originauth signs the internal headers extproc hands to the origin, so a client can never
// reach the origin (and through it S3) around the decision pipeline.
package originauth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Header names extproc sets on allowed requests and the origin reads. Every client-sent header
// with Prefix is removed by extproc before these are set. The bucket has a header of its own
// because Envoy's route table matches on it; everything else rides in one header, since each
// header is a message on the ext_proc stream and an entry Envoy validates per request.
const (
	Prefix       = "x-yatagarasu-"
	HeaderBucket = "x-yatagarasu-bucket"
	// HeaderAuth carries "v1;ts=<unix>;key=<k>;sub=<s>;rid=<id>;sig=<hex>", values PathEscape'd.
	HeaderAuth = "x-yatagarasu-auth"
)

// Claims is what extproc decided about one request and what the origin acts on.
type Claims struct {
	Method    string
	Bucket    string // config bucket name
	Key       string // decoded S3 object key
	Subject   string // authenticated subject, empty for anonymous
	RequestID string
	Time      time.Time
}

// Errors the origin maps to 403.
var (
	ErrMissing = errors.New("origin signature missing")
	ErrInvalid = errors.New("origin signature invalid")
	ErrExpired = errors.New("origin signature outside the allowed clock skew")
)

// Signer computes and checks signatures with one shared secret.
type Signer struct {
	secret  []byte
	maxSkew time.Duration
	macs    sync.Pool // of hash.Hash keyed with secret: hmac.New costs several allocations per call
}

// NewSigner returns a Signer; maxSkew bounds how stale or early a signature may be.
func NewSigner(secret string, maxSkew time.Duration) *Signer {
	s := &Signer{secret: []byte(secret), maxSkew: maxSkew}
	s.macs.New = func() any { return hmac.New(sha256.New, s.secret) }
	return s
}

// Headers returns the internal headers (name → value) that carry c to the origin.
func (s *Signer) Headers(c Claims) [][2]string {
	ts := strconv.FormatInt(c.Time.Unix(), 10)
	key, sub, rid := url.PathEscape(c.Key), url.PathEscape(c.Subject), url.PathEscape(c.RequestID)
	sig := s.mac(c.Method, c.Bucket, key, sub, rid, ts)
	auth := make([]byte, 0, 32+len(ts)+len(key)+len(sub)+len(rid)+len(sig))
	auth = append(auth, "v1;ts="...)
	auth = append(auth, ts...)
	auth = append(auth, ";key="...)
	auth = append(auth, key...)
	auth = append(auth, ";sub="...)
	auth = append(auth, sub...)
	auth = append(auth, ";rid="...)
	auth = append(auth, rid...)
	auth = append(auth, ";sig="...)
	auth = append(auth, sig...)
	return [][2]string{{HeaderBucket, c.Bucket}, {HeaderAuth, string(auth)}}
}

// Verify checks the signed headers (read through get) for a request with method at time now.
func (s *Signer) Verify(method string, get func(string) string, now time.Time) (Claims, error) {
	auth := get(HeaderAuth)
	if auth == "" {
		return Claims{}, ErrMissing
	}
	f, ok := parseAuth(auth)
	if !ok {
		return Claims{}, fmt.Errorf("%w: malformed %s", ErrInvalid, HeaderAuth)
	}
	bucket := get(HeaderBucket)
	want := s.mac(method, bucket, f.key, f.sub, f.rid, f.ts)
	if !hmac.Equal([]byte(f.sig), []byte(want)) {
		return Claims{}, ErrInvalid
	}
	secs, err := strconv.ParseInt(f.ts, 10, 64)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: bad timestamp", ErrInvalid)
	}
	t := time.Unix(secs, 0)
	if d := now.Sub(t); d > s.maxSkew || d < -s.maxSkew {
		return Claims{}, ErrExpired
	}
	key, err1 := url.PathUnescape(f.key)
	sub, err2 := url.PathUnescape(f.sub)
	rid, err3 := url.PathUnescape(f.rid)
	if err1 != nil || err2 != nil || err3 != nil || bucket == "" || key == "" {
		return Claims{}, fmt.Errorf("%w: bad bucket or key", ErrInvalid)
	}
	return Claims{Method: method, Bucket: bucket, Key: key, Subject: sub, RequestID: rid, Time: t}, nil
}

type authFields struct{ ts, key, sub, rid, sig string }

// parseAuth splits the auth header; fields must come in the order Headers writes them.
func parseAuth(v string) (authFields, bool) {
	var f authFields
	rest, ok := strings.CutPrefix(v, "v1;")
	if !ok {
		return f, false
	}
	for _, dst := range []struct {
		name string
		val  *string
	}{{"ts=", &f.ts}, {"key=", &f.key}, {"sub=", &f.sub}, {"rid=", &f.rid}, {"sig=", &f.sig}} {
		var field string
		field, rest, _ = strings.Cut(rest, ";")
		if *dst.val, ok = strings.CutPrefix(field, dst.name); !ok {
			return f, false
		}
	}
	return f, rest == ""
}

func (s *Signer) mac(parts ...string) string {
	m := s.macs.Get().(hash.Hash)
	defer s.macs.Put(m)
	m.Reset()
	var buf [256]byte
	msg := append(buf[:0], "yatagarasu-origin-v1"...)
	for _, p := range parts {
		msg = append(msg, '\n')
		msg = append(msg, p...)
	}
	m.Write(msg)
	var sum [sha256.Size]byte
	return hex.EncodeToString(m.Sum(sum[:0]))
}

// IsInternal reports whether a header name is one clients must never be allowed to send.
func IsInternal(name string) bool {
	return len(name) >= len(Prefix) && strings.EqualFold(name[:len(Prefix)], Prefix)
}
