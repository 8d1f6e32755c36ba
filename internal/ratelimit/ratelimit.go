// Package ratelimit decides whether a request fits its rate limits (pipeline steps 5 and 7b):
// gateway-wide, per client IP, per bucket and per user, each a token bucket with a rate and a
// burst. State lives in this process (golang.org/x/time/rate) or, shared by every extproc replica,
// in Redis (one Lua call per decision). When Redis fails the local limiter decides instead and a
// metric says so: the gateway never fails open silently and never errors a request for it.
package ratelimit

import (
	"math"
	"strconv"
	"time"

	"github.com/yatagarasu/yatagarasu/internal/config"
)

// Limit is one token bucket: Rate tokens per second refill, Burst tokens capacity.
type Limit struct {
	Rate  float64
	Burst int
}

// On reports whether the limit applies.
func (l Limit) On() bool { return l.Rate > 0 && l.Burst > 0 }

// Policy renders the limit as an IETF RateLimit-Policy value: quota;w=window-seconds.
func (l Limit) Policy() string {
	w := int(math.Ceil(float64(l.Burst) / l.Rate))
	return strconv.Itoa(l.Burst) + ";w=" + strconv.Itoa(max(w, 1))
}

// Scope is which limit a key belongs to; it names the key and the refusal reason.
type Scope string

// The scopes, in pipeline order.
const (
	Global Scope = "global"
	IP     Scope = "ip"
	Bucket Scope = "bucket"
	User   Scope = "user"
)

// Key is one token bucket to charge: the scope, the identity within it and its limit.
type Key struct {
	Scope Scope
	ID    string
	Limit Limit
}

func (k Key) name() string { return string(k.Scope) + ":" + k.ID }

// Result is the outcome of charging a set of keys together: all pass, or none is charged.
type Result struct {
	Allowed    bool
	Denied     Key           // the first key (in the order given) that had no token
	RetryAfter time.Duration // when Denied will have a token again
	Remaining  int           // tokens left in the tightest key after this request (0 when denied)
	Backend    string        // "local", "redis" or "local_fallback" (Redis failed)
}

// Plan is the rate-limit configuration of one config version, compiled for the per-request path.
type Plan struct {
	Global, PerIP, PerUser Limit
	UserClaim              string
	Buckets                []Limit // by bucket index
	Settings               config.RateLimit
}

// Build compiles cfg's limits. A limit is on when configured and server.rate_limit.enabled is
// not false.
func Build(cfg *config.Config) *Plan {
	rl := cfg.Server.RateLimit
	p := &Plan{UserClaim: rl.PerUser.Claim, Buckets: make([]Limit, len(cfg.Buckets)), Settings: rl}
	off := rl.Set && !rl.Enabled
	if off {
		return p
	}
	conv := func(r config.Rate) Limit { return Limit{Rate: r.RequestsPerSecond, Burst: r.Burst} }
	p.Global, p.PerIP, p.PerUser = conv(rl.Global), conv(rl.PerIP), conv(rl.PerUser.Rate())
	for i, b := range cfg.Buckets {
		p.Buckets[i] = conv(b.S3.RateLimit)
	}
	return p
}

// Active reports whether any pre-auth limit (global, per IP, per bucket) applies to bucket i.
func (p *Plan) Active(i int) bool {
	return p != nil && (p.Global.On() || p.PerIP.On() || p.Buckets[i].On())
}

// NeedsIP reports whether the per-IP limit is on (the stage parses the client IP only then).
func (p *Plan) NeedsIP() bool { return p.PerIP.On() }

// Keys appends the pre-auth keys for a request to bucket i from clientIP, in the order the
// original product checks them: global, per IP, per bucket.
func (p *Plan) Keys(buf []Key, i int, bucket, clientIP string) []Key {
	if p.Global.On() {
		buf = append(buf, Key{Scope: Global, ID: "all", Limit: p.Global})
	}
	if p.PerIP.On() {
		buf = append(buf, Key{Scope: IP, ID: clientIP, Limit: p.PerIP})
	}
	if l := p.Buckets[i]; l.On() {
		buf = append(buf, Key{Scope: Bucket, ID: bucket, Limit: l})
	}
	return buf
}
