package ratelimit

import (
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// Local keeps token buckets in this process, at most maxKeys of them (least recently used go
// first: an idle client's bucket is full anyway, so forgetting it changes nothing).
type Local struct {
	buckets *lru.Cache[string, *rate.Limiter]
}

// NewLocal returns a local limiter holding at most maxKeys buckets.
func NewLocal(maxKeys int) *Local {
	c, _ := lru.New[string, *rate.Limiter](max(maxKeys, 1))
	return &Local{buckets: c}
}

// Resize changes how many buckets are kept (a reload may change max_keys).
func (l *Local) Resize(maxKeys int) { l.buckets.Resize(max(maxKeys, 1)) }

// limiter returns the bucket for k, created full; a changed limit is applied to the existing
// bucket so that a reload does not refill anyone.
func (l *Local) limiter(k Key, now time.Time) *rate.Limiter {
	name := k.name()
	lim, ok := l.buckets.Get(name)
	if !ok {
		lim = rate.NewLimiter(rate.Limit(k.Limit.Rate), k.Limit.Burst)
		if prev, found, _ := l.buckets.PeekOrAdd(name, lim); found {
			lim = prev
		}
	}
	if lim.Limit() != rate.Limit(k.Limit.Rate) {
		lim.SetLimitAt(now, rate.Limit(k.Limit.Rate))
	}
	if lim.Burst() != k.Limit.Burst {
		lim.SetBurstAt(now, k.Limit.Burst)
	}
	return lim
}

// Allow charges one token to every key, or to none when any key is out of tokens.
func (l *Local) Allow(now time.Time, keys []Key) Result {
	res := Result{Allowed: true, Remaining: -1, Backend: "local"}
	var buf [4]*rate.Reservation
	held := buf[:0]
	for _, k := range keys {
		lim := l.limiter(k, now)
		r := lim.ReserveN(now, 1)
		delay := time.Duration(1<<63 - 1)
		if r.OK() {
			delay = r.DelayFrom(now)
		}
		if delay > 0 {
			if res.Allowed {
				res.Denied = k
			}
			res.Allowed = false
			res.RetryAfter = max(res.RetryAfter, delay)
		} else if rem := int(lim.TokensAt(now)); res.Remaining < 0 || rem < res.Remaining {
			res.Remaining = rem
		}
		held = append(held, r)
	}
	if !res.Allowed {
		for _, r := range held {
			r.CancelAt(now)
		}
		res.Remaining = 0
	}
	if res.Remaining < 0 {
		res.Remaining = 0
	}
	return res
}
