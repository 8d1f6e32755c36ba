package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/yatagarasu/yatagarasu/internal/config"
)

// gcra charges every key of one decision atomically with the generic cell rate algorithm: each
// key stores its theoretical arrival time (TAT, µs on Redis's clock, so replicas with skewed
// clocks agree). The request passes only if every key has room; only then is each key charged.
// ARGV holds, per key, the emission interval (µs per token) and the burst.
// Returns {index of the first refusing key or 0, retry-after µs, remaining tokens}.
var gcra = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tats = {}
local denied, retry, remaining = 0, 0, -1
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  local new_tat = tat + interval
  local slack = now - (new_tat - burst * interval)
  if slack < 0 then
    if denied == 0 then denied = i end
    if -slack > retry then retry = -slack end
  else
    local rem = math.floor(slack / interval)
    if remaining < 0 or rem < remaining then remaining = rem end
  end
  tats[i] = new_tat
end
if denied == 0 then
  for i, key in ipairs(KEYS) do
    redis.call('SET', key, string.format('%.0f', tats[i]), 'PX', math.ceil((tats[i] - now) / 1000) + 1)
  end
end
return {denied, string.format('%.0f', retry), remaining}
`)

// Redis keeps token buckets in Redis, shared by every extproc replica.
type Redis struct {
	client  redis.UniversalClient
	prefix  string
	timeout time.Duration
}

// NewRedis connects (lazily) to the Redis that settings name: a URL for one server, or addresses
// for a cluster (or sentinels with master_name).
func NewRedis(s config.RedisLimit) (*Redis, error) {
	var opts redis.UniversalOptions
	if s.URL != "" {
		o, err := redis.ParseURL(s.URL)
		if err != nil {
			return nil, fmt.Errorf("redis url: %w", err)
		}
		opts = redis.UniversalOptions{Addrs: []string{o.Addr}, Username: o.Username, Password: o.Password, DB: o.DB, TLSConfig: o.TLSConfig}
	} else {
		opts = redis.UniversalOptions{Addrs: s.Addresses, MasterName: s.MasterName, Username: s.Username, Password: s.Password, DB: s.DB}
	}
	if s.Username != "" {
		opts.Username = s.Username
	}
	if s.Password != "" {
		opts.Password = s.Password
	}
	// A limiter call must stay short: past the timeout the local limiter decides.
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = s.Timeout.D(), s.Timeout.D(), s.Timeout.D()
	opts.MaxRetries = -1
	opts.ContextTimeoutEnabled = true
	return &Redis{client: redis.NewUniversalClient(&opts), prefix: s.KeyPrefix, timeout: s.Timeout.D()}, nil
}

// Client exposes the client, for tests that count round trips.
func (r *Redis) Client() redis.UniversalClient { return r.client }

// Close closes the connections.
func (r *Redis) Close() error { return r.client.Close() }

// Key returns the Redis key of k. Every key shares one hash tag so that the keys of a decision
// sit in one cluster slot (a Lua script may only touch keys of one slot).
func (r *Redis) Key(k Key) string { return r.prefix + "{rl}:" + k.name() }

// Allow charges one token to every key in one round trip (EVALSHA of the GCRA script).
func (r *Redis) Allow(ctx context.Context, keys []Key) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	names := make([]string, len(keys))
	args := make([]any, 0, 2*len(keys))
	for i, k := range keys {
		names[i] = r.Key(k)
		interval := int64(math.Max(1, math.Round(1e6/k.Limit.Rate)))
		args = append(args, interval, k.Limit.Burst)
	}
	v, err := gcra.Run(ctx, r.client, names, args...).Slice()
	if err != nil {
		return Result{}, fmt.Errorf("redis rate limit: %w", err)
	}
	if len(v) != 3 {
		return Result{}, errors.New("redis rate limit: unexpected script reply")
	}
	denied, _ := v[0].(int64)
	retryStr, _ := v[1].(string)
	retry, _ := strconv.ParseInt(retryStr, 10, 64)
	remaining, _ := v[2].(int64)
	res := Result{Allowed: denied == 0, Remaining: int(max(remaining, 0)), Backend: "redis"}
	if !res.Allowed {
		if denied < 1 || int(denied) > len(keys) {
			return Result{}, errors.New("redis rate limit: script named no key")
		}
		res.Denied = keys[denied-1]
		res.RetryAfter = time.Duration(retry) * time.Microsecond
		res.Remaining = 0
	}
	return res, nil
}
