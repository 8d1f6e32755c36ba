package cache

import (
	"strconv"
	"strings"
	"time"

	"github.com/yatagarasu/yatagarasu/internal/config"
)

// Policy is one bucket's effective cache settings, read from the current config snapshot on
// every request so a reload changes them without rebuilding the cache.
type Policy struct {
	Enabled      bool
	TTL          time.Duration // freshness when S3 sends no max-age
	MaxItemBytes int64         // larger objects are never cached
}

// PolicyFor returns bucket's policy under cfg; an unknown bucket or a disabled cache gives a
// disabled policy.
func PolicyFor(cfg *config.Config, bucket string) Policy {
	if cfg == nil || !cfg.Cache.Enabled {
		return Policy{}
	}
	b, ok := cfg.BucketByName(bucket)
	if !ok || !b.Cache.Enabled {
		return Policy{}
	}
	return Policy{Enabled: true, TTL: b.Cache.TTLSeconds.D(), MaxItemBytes: config.MB(b.Cache.MaxItemSizeMB)}
}

// Directives is what the cache reads from S3's Cache-Control header.
type Directives struct {
	NoStore, Private, NoCache bool
	MaxAge, SMaxAge           time.Duration // -1 when absent
}

// ParseCacheControl reads a Cache-Control value leniently (RFC 9111 §5.2): unknown directives
// are ignored, a malformed max-age is treated as 0 (stale), names are case-insensitive.
func ParseCacheControl(v string) Directives {
	d := Directives{MaxAge: -1, SMaxAge: -1}
	for part := range strings.SplitSeq(v, ",") {
		name, arg, _ := strings.Cut(strings.TrimSpace(part), "=")
		name = strings.ToLower(strings.TrimSpace(name))
		arg = strings.Trim(strings.TrimSpace(arg), `"`)
		switch name {
		case "no-store":
			d.NoStore = true
		case "private":
			d.Private = true
		case "no-cache":
			d.NoCache = true
		case "max-age":
			d.MaxAge = seconds(arg)
		case "s-maxage":
			d.SMaxAge = seconds(arg)
		}
	}
	return d
}

// seconds parses a delta-seconds value; a malformed one counts as 0 and a huge one saturates.
func seconds(s string) time.Duration {
	n, err := strconv.ParseUint(s, 10, 63)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return maxFreshness
		}
		return 0
	}
	if n > uint64(maxFreshness/time.Second) {
		return maxFreshness
	}
	return time.Duration(n) * time.Second
}

// maxFreshness caps how long anything stays fresh (a year, as RFC 9111 suggests for "forever").
const maxFreshness = 365 * 24 * time.Hour

// Freshness decides from S3's Cache-Control whether a shared cache may store the object and
// for how long it is fresh: s-maxage, then max-age, then def (the bucket's TTL). no-cache stores
// the object stale, so every use is revalidated by ETag.
func Freshness(cacheControl string, def time.Duration) (fresh time.Duration, store bool) {
	d := ParseCacheControl(cacheControl)
	switch {
	case d.NoStore || d.Private:
		return 0, false
	case d.NoCache:
		return 0, true
	case d.SMaxAge >= 0:
		return d.SMaxAge, true
	case d.MaxAge >= 0:
		return d.MaxAge, true
	}
	return def, true
}

// Retention is how long past its freshness an entry is kept for ETag revalidation: as long
// again as it was fresh, at least a minute and at most a day.
func Retention(fresh time.Duration) time.Duration {
	return fresh + min(max(fresh, time.Minute), 24*time.Hour)
}
