// Package rediscache is the shared cache layer on Redis (go-redis UniversalClient: single,
// sentinel or cluster): entries in a versioned binary encoding under a key prefix with a TTL,
// every command bounded by a timeout, and a circuit breaker so that a Redis outage costs one
// fast failure per request instead of a timeout, while the other layers keep serving.
package rediscache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"

	"github.com/yatagarasu/yatagarasu/internal/cache"
)

// Options configure the layer.
type Options struct {
	Client  redis.UniversalClient
	Prefix  string        // every key starts with Prefix + "obj:"
	MaxTTL  time.Duration // upper bound on an entry's Redis TTL (redis_ttl_seconds)
	Timeout time.Duration // per command (default 100ms)
	Now     func() time.Time
	Logger  *slog.Logger
	// Breaker: after FailuresToOpen consecutive failures (default 5) commands fail fast for
	// OpenFor (default 5s), then one probe decides whether Redis is back.
	FailuresToOpen uint32
	OpenFor        time.Duration
}

// Layer is the Redis layer.
type Layer struct {
	c       redis.UniversalClient
	prefix  string
	maxTTL  time.Duration
	timeout time.Duration
	now     func() time.Time
	log     *slog.Logger
	br      *gobreaker.CircuitBreaker[[]byte]
	errs    atomic.Int64
}

// NewClient builds the UniversalClient for a redis:// or rediss:// URL; password and db
// override the URL's when set (password non-empty, db ≥ 0 and the URL has no /db).
func NewClient(rawURL, password string, db int, dialTimeout, opTimeout time.Duration) (redis.UniversalClient, error) {
	o, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redis cache: parse redis_url: %w", err)
	}
	if password != "" {
		o.Password = password
	}
	if db > 0 {
		o.DB = db
	}
	o.DialTimeout = dialTimeout
	o.ReadTimeout = opTimeout
	o.WriteTimeout = opTimeout
	o.MaxRetries = -1 // one attempt: a lookup must not outlive extproc's message timeout
	o.ContextTimeoutEnabled = true
	return redis.NewClient(o), nil
}

// New creates the layer over an existing client.
func New(o Options) (*Layer, error) {
	if o.Client == nil {
		return nil, errors.New("redis cache: a client is required")
	}
	if o.Timeout <= 0 {
		o.Timeout = 100 * time.Millisecond
	}
	if o.MaxTTL <= 0 {
		o.MaxTTL = time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.FailuresToOpen == 0 {
		o.FailuresToOpen = 5
	}
	if o.OpenFor <= 0 {
		o.OpenFor = 5 * time.Second
	}
	l := &Layer{c: o.Client, prefix: o.Prefix + "obj:", maxTTL: o.MaxTTL, timeout: o.Timeout, now: o.Now, log: o.Logger}
	l.br = gobreaker.NewCircuitBreaker[[]byte](gobreaker.Settings{
		Name:        "redis-cache",
		MaxRequests: 1,
		Timeout:     o.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= o.FailuresToOpen },
		// A miss is an answer, not a failure.
		IsSuccessful: func(err error) bool { return err == nil || errors.Is(err, redis.Nil) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			o.Logger.Warn("redis cache breaker", "from", from.String(), "to", to.String())
		},
	})
	return l, nil
}

// Name implements cache.Layer.
func (l *Layer) Name() string { return "redis" }

// BreakerOpen reports whether the breaker currently refuses commands.
func (l *Layer) BreakerOpen() bool { return l.br.State() == gobreaker.StateOpen }

// key is prefix + "obj:" + bucket + ":" + hex SHA-256 of the full key, so keys have a bounded
// length, cannot collide across buckets, and a bucket's keys match one SCAN pattern.
func (l *Layer) key(k cache.Key) string {
	sum := sha256.Sum256([]byte(k.String()))
	return l.prefix + k.Bucket + ":" + hex.EncodeToString(sum[:])
}

// do runs f through the breaker with the per-command timeout.
func (l *Layer) do(ctx context.Context, f func(ctx context.Context) ([]byte, error)) ([]byte, error) {
	out, err := l.br.Execute(func() ([]byte, error) {
		ctx, cancel := context.WithTimeout(ctx, l.timeout)
		defer cancel()
		return f(ctx)
	})
	switch {
	case err == nil || errors.Is(err, redis.Nil):
		return out, err
	case errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests):
		return nil, fmt.Errorf("%w: %w", cache.ErrUnavailable, err)
	}
	l.errs.Add(1)
	return nil, fmt.Errorf("redis cache: %w", err)
}

// Get implements cache.Layer; an entry that fails to decode is deleted and reported as a miss.
func (l *Layer) Get(ctx context.Context, k cache.Key) (*cache.Entry, error) {
	rk := l.key(k)
	data, err := l.do(ctx, func(ctx context.Context) ([]byte, error) { return l.c.Get(ctx, rk).Bytes() })
	if errors.Is(err, redis.Nil) {
		return nil, cache.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	e, err := cache.Decode(data)
	if err == nil && e.Key != k {
		err = errors.New("value holds another key")
	}
	if err != nil {
		l.log.Warn("redis cache: dropping an undecodable entry", "key", rk, "err", err)
		_, _ = l.Delete(ctx, k)
		return nil, cache.ErrNotFound
	}
	if e.Expired(l.now()) {
		return nil, cache.ErrNotFound
	}
	return e, nil
}

// Set implements cache.Layer. The TTL is the entry's retention, at most MaxTTL.
func (l *Layer) Set(ctx context.Context, e *cache.Entry) error {
	ttl := min(e.KeepUntil.Sub(l.now()), l.maxTTL)
	if ttl < time.Second {
		return nil
	}
	val := cache.Encode(e)
	rk := l.key(e.Key)
	_, err := l.do(ctx, func(ctx context.Context) ([]byte, error) { return nil, l.c.Set(ctx, rk, val, ttl).Err() })
	return err
}

// Delete implements cache.Layer.
func (l *Layer) Delete(ctx context.Context, k cache.Key) (bool, error) {
	var n int64
	rk := l.key(k)
	_, err := l.do(ctx, func(ctx context.Context) ([]byte, error) {
		var err error
		n, err = l.c.Del(ctx, rk).Result()
		return nil, err
	})
	return n > 0, err
}

// PurgeBucket implements cache.Layer with SCAN + DEL (per master on a cluster).
func (l *Layer) PurgeBucket(ctx context.Context, bucket string) (int, error) {
	return l.purge(ctx, escapeGlob(l.prefix+bucket+":")+"*")
}

// Purge implements cache.Layer: it removes this gateway's cache keys only, never the database.
func (l *Layer) Purge(ctx context.Context) error {
	_, err := l.purge(ctx, escapeGlob(l.prefix)+"*")
	return err
}

func (l *Layer) purge(ctx context.Context, pattern string) (int, error) {
	var total atomic.Int64
	scan := func(ctx context.Context, c redis.UniversalClient) error {
		iter := c.Scan(ctx, 0, pattern, 500).Iterator()
		batch := make([]string, 0, 500)
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			n, err := c.Del(ctx, batch...).Result()
			total.Add(n)
			batch = batch[:0]
			return err
		}
		for iter.Next(ctx) {
			batch = append(batch, iter.Val())
			if len(batch) == cap(batch) {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := iter.Err(); err != nil {
			return err
		}
		return flush()
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var err error
	if cc, ok := l.c.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
	} else {
		err = scan(ctx, l.c)
	}
	if err != nil {
		return int(total.Load()), fmt.Errorf("redis cache: purge %q: %w", pattern, err)
	}
	return int(total.Load()), nil
}

// escapeGlob escapes the characters SCAN's MATCH treats specially.
func escapeGlob(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`)
	return r.Replace(s)
}

// Stats implements cache.Layer; Redis is shared, so items and bytes are not counted here.
func (l *Layer) Stats() cache.LayerStats {
	return cache.LayerStats{Layer: l.Name(), Items: -1, Bytes: -1, MaxBytes: -1, Errors: l.errs.Load()}
}

// Close implements cache.Layer.
func (l *Layer) Close() error { return l.c.Close() }
