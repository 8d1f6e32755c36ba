package audit

import (
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
)

// Defaults of RecentIDs: enough for a few minutes at thousands of requests per second.
const (
	DefaultRecentIDs   = 1 << 17
	DefaultRecentIDTTL = 5 * time.Minute
)

// RecentIDs remembers the request ids that extproc or the origin recorded lately (bounded in
// count and age), so a later report of the same request — Envoy's access log — can be recognised
// as already recorded instead of written twice. Safe for concurrent use; a nil *RecentIDs
// remembers nothing.
type RecentIDs struct {
	lru *expirable.LRU[string, struct{}]
}

// NewRecentIDs keeps at most size ids (oldest evicted first), each for at most ttl.
func NewRecentIDs(size int, ttl time.Duration) *RecentIDs {
	if size <= 0 {
		size = DefaultRecentIDs
	}
	if ttl <= 0 {
		ttl = DefaultRecentIDTTL
	}
	return &RecentIDs{lru: expirable.NewLRU[string, struct{}](size, nil, ttl)}
}

// Add remembers id (empty ids are ignored: they identify nothing).
func (r *RecentIDs) Add(id string) {
	if r == nil || id == "" {
		return
	}
	r.lru.Add(id, struct{}{})
}

// Contains reports whether id was added within the TTL and not evicted since.
func (r *RecentIDs) Contains(id string) bool {
	if r == nil || id == "" {
		return false
	}
	return r.lru.Contains(id)
}
