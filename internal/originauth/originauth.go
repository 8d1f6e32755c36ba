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
// with Prefix is removed by extproc before these are set.
const (
	Prefix          = "x-yatagarasu-"
	HeaderBucket    = "x-yatagarasu-bucket"
	HeaderKey       = "x-yatagarasu-key" // object key, percent-encoded (url.PathEscape)
	HeaderSubject   = "x-yatagarasu-subject"
	HeaderRequestID = "x-yatagarasu-request-id"
	HeaderTimestamp = "x-yatagarasu-ts" // unix seconds
	HeaderSignature = "x-yatagarasu-signature"
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
	key := url.PathEscape(c.Key)
	return [][2]string{
		{HeaderBucket, c.Bucket},
		{HeaderKey, key},
		{HeaderSubject, c.Subject},
		{HeaderRequestID, c.RequestID},
		{HeaderTimestamp, ts},
		{HeaderSignature, s.mac(c.Method, c.Bucket, key, c.Subject, c.RequestID, ts)},
	}
}

// Verify checks the signed headers (read through get) for a request with method at time now.
func (s *Signer) Verify(method string, get func(string) string, now time.Time) (Claims, error) {
	sig := get(HeaderSignature)
	if sig == "" {
		return Claims{}, ErrMissing
	}
	bucket, key, sub, rid, ts := get(HeaderBucket), get(HeaderKey), get(HeaderSubject), get(HeaderRequestID), get(HeaderTimestamp)
	want := s.mac(method, bucket, key, sub, rid, ts)
	if !hmac.Equal([]byte(sig), []byte(want)) {
		return Claims{}, ErrInvalid
	}
	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: bad timestamp", ErrInvalid)
	}
	t := time.Unix(secs, 0)
	if d := now.Sub(t); d > s.maxSkew || d < -s.maxSkew {
		return Claims{}, ErrExpired
	}
	decoded, err := url.PathUnescape(key)
	if err != nil || bucket == "" || decoded == "" {
		return Claims{}, fmt.Errorf("%w: bad bucket or key", ErrInvalid)
	}
	return Claims{Method: method, Bucket: bucket, Key: decoded, Subject: sub, RequestID: rid, Time: t}, nil
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
