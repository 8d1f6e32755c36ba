package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/yatagarasu/yatagarasu/internal/config"
	"github.com/yatagarasu/yatagarasu/internal/testenv"
)

var redisSrv *testenv.Redis

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	var err error
	redisSrv, err = testenv.StartRedis(ctx)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start redis:", err)
		os.Exit(1)
	}
	code := m.Run()
	redisSrv.Close()
	os.Exit(code)
}

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func TestLocalTokenBucketRefills(t *testing.T) {
	l := NewLocal(10)
	key := []Key{{Scope: IP, ID: "10.0.0.1", Limit: Limit{Rate: 2, Burst: 3}}}
	for i := range 3 {
		if r := l.Allow(t0, key); !r.Allowed || r.Remaining != 2-i {
			t.Fatalf("request %d = %+v", i, r)
		}
	}
	r := l.Allow(t0, key)
	if r.Allowed || r.Denied.Scope != IP || r.RetryAfter != 500*time.Millisecond {
		t.Fatalf("4th request = %+v, want denied with retry 500ms", r)
	}
	if r := l.Allow(t0.Add(500*time.Millisecond), key); !r.Allowed {
		t.Fatalf("after refill = %+v", r)
	}
	// Another IP has its own bucket.
	if r := l.Allow(t0, []Key{{Scope: IP, ID: "10.0.0.2", Limit: Limit{Rate: 2, Burst: 3}}}); !r.Allowed {
		t.Fatal("a different key must not share the bucket")
	}
}

// TestLocalAllOrNothing: a refusal by one key charges none of the others.
func TestLocalAllOrNothing(t *testing.T) {
	l := NewLocal(10)
	global := Key{Scope: Global, ID: "all", Limit: Limit{Rate: 1, Burst: 100}}
	bucket := Key{Scope: Bucket, ID: "b", Limit: Limit{Rate: 1, Burst: 1}}
	if r := l.Allow(t0, []Key{global, bucket}); !r.Allowed || r.Remaining != 0 {
		t.Fatalf("first = %+v", r)
	}
	for range 5 {
		if r := l.Allow(t0, []Key{global, bucket}); r.Allowed || r.Denied.Scope != Bucket {
			t.Fatalf("want bucket refusal, got %+v", r)
		}
	}
	if r := l.Allow(t0, []Key{global}); !r.Allowed || r.Remaining != 98 {
		t.Fatalf("global must have lost one token only, got %+v", r)
	}
}

// TestLocalLimitChangeKeepsState: a reload that changes the limit does not refill the bucket.
func TestLocalLimitChangeKeepsState(t *testing.T) {
	l := NewLocal(10)
	k := Key{Scope: Global, ID: "all", Limit: Limit{Rate: 0.001, Burst: 2}}
	l.Allow(t0, []Key{k})
	l.Allow(t0, []Key{k})
	k.Limit.Burst = 5
	if r := l.Allow(t0, []Key{k}); r.Allowed {
		t.Fatalf("raising the burst must not hand out tokens already spent: %+v", r)
	}
}

func TestPlanKeysAndPolicy(t *testing.T) {
	cfg := &config.Config{
		Server: config.Server{RateLimit: config.RateLimit{Set: true, Enabled: true,
			Global: config.Rate{RequestsPerSecond: 100, Burst: 200}, PerIP: config.Rate{RequestsPerSecond: 5, Burst: 5}}},
		Buckets: []config.Bucket{{Name: "a"}, {Name: "b", S3: config.S3{RateLimit: config.Rate{RequestsPerSecond: 1, Burst: 1}}}},
	}
	p := Build(cfg)
	keys := p.Keys(nil, 1, "b", "10.0.0.1")
	if len(keys) != 3 || keys[0].Scope != Global || keys[1].ID != "10.0.0.1" || keys[2].ID != "b" {
		t.Fatalf("keys = %+v", keys)
	}
	if got := p.Global.Policy(); got != "200;w=2" {
		t.Errorf("policy = %q", got)
	}
	cfg.Server.RateLimit.Enabled = false
	if Build(cfg).Active(1) {
		t.Error("enabled: false must turn every limit off")
	}
}

func redisSettings(prefix string) config.RedisLimit {
	return config.RedisLimit{URL: "redis://" + redisSrv.Addr() + "/0", KeyPrefix: prefix,
		Timeout: config.Duration(2 * time.Second), RetryInterval: config.Duration(time.Hour)}
}

// countHook counts commands sent to Redis, i.e. round trips for unpipelined calls.
type countHook struct{ n atomic.Int64 }

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.n.Add(1); return next(ctx, cmd) }
}
func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.n.Add(1); return next(ctx, cmds) }
}

// TestRedisSharedAcrossReplicas: two limiters (two extproc replicas) share one budget, a refusal
// charges no key, and each decision costs one round trip.
func TestRedisSharedAcrossReplicas(t *testing.T) {
	prefix := "test-shared-" + t.Name() + ":"
	a, err := NewRedis(redisSettings(prefix))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, _ := NewRedis(redisSettings(prefix))
	defer b.Close()
	hook := &countHook{}
	a.Client().AddHook(hook)
	ctx := context.Background()
	keys := []Key{
		{Scope: Global, ID: "all", Limit: Limit{Rate: 0.001, Burst: 100}},
		{Scope: IP, ID: "192.0.2.1", Limit: Limit{Rate: 0.001, Burst: 4}},
	}
	if _, err := a.Allow(ctx, keys); err != nil { // loads the script (EVALSHA miss + EVAL)
		t.Fatal(err)
	}
	hook.n.Store(0)
	for i, l := range []*Redis{a, b, b} {
		r, err := l.Allow(ctx, keys)
		if err != nil || !r.Allowed || r.Remaining != 2-i || r.Backend != "redis" {
			t.Fatalf("request %d = %+v, %v", i, r, err)
		}
	}
	r, err := a.Allow(ctx, keys)
	if err != nil || r.Allowed || r.Denied.Scope != IP || r.RetryAfter < 900*time.Second {
		t.Fatalf("5th request across replicas = %+v, %v; want refused by ip", r, err)
	}
	if n := hook.n.Load(); n != 2 {
		t.Errorf("replica a sent %d commands for its 2 decisions, want one round trip each", n)
	}
	// The refused request charged nothing: the global key has 100-4 tokens left.
	r, _ = a.Allow(ctx, keys[:1])
	if !r.Allowed || r.Remaining != 95 {
		t.Errorf("global after refusal = %+v, want 95 remaining", r)
	}
}

func TestRedisRefills(t *testing.T) {
	r, _ := NewRedis(redisSettings("test-refill:"))
	defer r.Close()
	k := []Key{{Scope: User, ID: "alice", Limit: Limit{Rate: 20, Burst: 1}}}
	ctx := context.Background()
	if res, err := r.Allow(ctx, k); err != nil || !res.Allowed {
		t.Fatal(res, err)
	}
	res, err := r.Allow(ctx, k)
	if err != nil || res.Allowed || res.RetryAfter <= 0 || res.RetryAfter > 50*time.Millisecond {
		t.Fatalf("second = %+v, %v", res, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if res, _ := r.Allow(ctx, k); res.Allowed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the bucket never refilled")
		}
		time.Sleep(res.RetryAfter)
	}
}

// TestManagerFallsBackWhenRedisIsDown: with Redis unreachable the local limiter decides (limits
// still hold), the metric counts it, and no request errors.
func TestManagerFallsBackWhenRedisIsDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close() // nothing listens here now
	reg := prometheus.NewRegistry()
	m := NewManager(slog.New(slog.DiscardHandler), reg, func() time.Time { return t0 })
	defer m.Close()
	s := config.RateLimit{Set: true, Enabled: true, Backend: "redis", MaxKeys: 10,
		Redis: config.RedisLimit{URL: "redis://" + dead, KeyPrefix: "x:", Timeout: config.Duration(time.Second), RetryInterval: config.Duration(time.Hour)}}
	if err := m.Configure(s); err != nil {
		t.Fatal(err)
	}
	keys := []Key{{Scope: Global, ID: "all", Limit: Limit{Rate: 0.001, Burst: 2}}}
	for i := range 2 {
		if r := m.Allow(context.Background(), keys); !r.Allowed || r.Backend != "local_fallback" {
			t.Fatalf("request %d = %+v", i, r)
		}
	}
	if r := m.Allow(context.Background(), keys); r.Allowed {
		t.Fatal("the local fallback must still enforce the limit")
	}
	if got := testutil.ToFloat64(m.fallbacks); got != 3 {
		t.Errorf("fallback decisions = %v, want 3", got)
	}
	if got := testutil.ToFloat64(m.errors); got != 1 {
		t.Errorf("redis errors = %v, want 1 (retry_interval holds off further calls)", got)
	}
	if got := testutil.ToFloat64(m.up); got != 0 {
		t.Errorf("redis_up = %v", got)
	}
	// Same settings on reload: the backend (and its down state) is kept.
	if err := m.Configure(s); err != nil || m.Redis() == nil {
		t.Fatal("configure with unchanged settings must keep the backend")
	}
	s.Backend = "local"
	_ = m.Configure(s)
	if m.Redis() != nil {
		t.Fatal("switching to local must drop Redis")
	}
}

func BenchmarkDecision(b *testing.B) {
	keys := []Key{
		{Scope: Global, ID: "all", Limit: Limit{Rate: 1e9, Burst: 1 << 30}},
		{Scope: IP, ID: "192.0.2.1", Limit: Limit{Rate: 1e9, Burst: 1 << 30}},
		{Scope: Bucket, ID: "media", Limit: Limit{Rate: 1e9, Burst: 1 << 30}},
	}
	b.Run("local", func(b *testing.B) {
		l := NewLocal(1000)
		b.ReportAllocs()
		for b.Loop() {
			if !l.Allow(time.Now(), keys).Allowed {
				b.Fatal("denied")
			}
		}
	})
	b.Run("redis", func(b *testing.B) {
		r, _ := NewRedis(redisSettings("bench:"))
		defer r.Close()
		hook := &countHook{}
		r.Client().AddHook(hook)
		ctx := context.Background()
		_, _ = r.Allow(ctx, keys)
		hook.n.Store(0)
		b.ReportAllocs()
		for b.Loop() {
			if res, err := r.Allow(ctx, keys); err != nil || !res.Allowed {
				b.Fatal(res, err)
			}
		}
		b.ReportMetric(float64(hook.n.Load())/float64(b.N), "roundtrips/op")
	})
}
