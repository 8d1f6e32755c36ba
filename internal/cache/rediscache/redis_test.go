package rediscache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/yatagarasu/yatagarasu/internal/cache"
	"github.com/yatagarasu/yatagarasu/internal/testenv"
)

var ctx = context.Background()

func entry(bucket, key string, body []byte, keep time.Duration) *cache.Entry {
	k := time.Now().Add(keep)
	return cache.NewEntry(cache.Meta{Key: cache.Key{Bucket: bucket, Object: key}, ETag: `"e"`, FreshUntil: k, KeepUntil: k}, body)
}

func startRedis(t *testing.T) *testenv.Redis {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	r, err := testenv.StartRedis(sctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

func newLayer(t *testing.T, addr, prefix string, o Options) *Layer {
	t.Helper()
	c, err := NewClient("redis://"+addr+"/0", "", 0, time.Second, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	o.Client, o.Prefix = c, prefix
	l, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestSetGetPurgeWithPrefixes(t *testing.T) {
	r := startRedis(t)
	l := newLayer(t, r.Addr(), "gw1:", Options{})
	other := newLayer(t, r.Addr(), "gw2:", Options{})
	body := bytes.Repeat([]byte("z"), 100_000)
	for _, e := range []*cache.Entry{entry("a", "k1", body, time.Hour), entry("a", "k2", []byte("2"), time.Hour), entry("b", "k1", []byte("b1"), time.Hour)} {
		if err := l.Set(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	_ = other.Set(ctx, entry("a", "k1", []byte("other gateway"), time.Hour))
	e, err := l.Get(ctx, cache.Key{Bucket: "a", Object: "k1"})
	if err != nil || !bytes.Equal(e.Body, body) || e.ETag != `"e"` {
		t.Fatalf("Get = %v", err)
	}
	if _, err := l.Get(ctx, cache.Key{Bucket: "a", Object: "nope"}); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("missing key: %v", err)
	}
	if n, err := l.PurgeBucket(ctx, "a"); n != 2 || err != nil {
		t.Fatalf("PurgeBucket = %d, %v", n, err)
	}
	if _, err := l.Get(ctx, cache.Key{Bucket: "b", Object: "k1"}); err != nil {
		t.Fatalf("other bucket purged: %v", err)
	}
	if ok, _ := l.Delete(ctx, cache.Key{Bucket: "b", Object: "k1"}); !ok {
		t.Fatal("Delete found nothing")
	}
	_ = l.Set(ctx, entry("c", "x", []byte("c"), time.Hour))
	if err := l.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Get(ctx, cache.Key{Bucket: "c", Object: "x"}); !errors.Is(err, cache.ErrNotFound) {
		t.Fatal("Purge left an entry")
	}
	if e, err := other.Get(ctx, cache.Key{Bucket: "a", Object: "k1"}); err != nil || string(e.Body) != "other gateway" {
		t.Fatalf("another prefix was purged: %v", err)
	}
	// The TTL is the entry's retention, capped by MaxTTL.
	capped := newLayer(t, r.Addr(), "gw3:", Options{MaxTTL: 10 * time.Second})
	_ = capped.Set(ctx, entry("a", "k", []byte("x"), time.Hour))
	if ttl, _ := capped.c.TTL(ctx, capped.key(cache.Key{Bucket: "a", Object: "k"})).Result(); ttl <= 0 || ttl > 10*time.Second {
		t.Fatalf("TTL = %s, want ≤ 10s", ttl)
	}
}

func TestCorruptValueIsDroppedAsAMiss(t *testing.T) {
	r := startRedis(t)
	l := newLayer(t, r.Addr(), "gw:", Options{})
	k := cache.Key{Bucket: "a", Object: "k"}
	_ = l.Set(ctx, entry("a", "k", []byte("body"), time.Hour))
	raw, _ := l.c.Get(ctx, l.key(k)).Bytes()
	raw[len(raw)-1] ^= 1
	_ = l.c.Set(ctx, l.key(k), raw, time.Hour).Err()
	if _, err := l.Get(ctx, k); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("corrupt value: %v", err)
	}
	if n, _ := l.c.Exists(ctx, l.key(k)).Result(); n != 0 {
		t.Fatal("corrupt value not deleted")
	}
}

func TestRedisKilledOpensTheBreaker(t *testing.T) {
	r := startRedis(t)
	l := newLayer(t, r.Addr(), "gw:", Options{FailuresToOpen: 3, OpenFor: time.Hour})
	k := cache.Key{Bucket: "a", Object: "k"}
	if err := l.Set(ctx, entry("a", "k", []byte("v"), time.Hour)); err != nil {
		t.Fatal(err)
	}
	r.Close() // Redis dies mid-test
	for i := range 3 {
		if _, err := l.Get(ctx, k); err == nil || errors.Is(err, cache.ErrUnavailable) {
			t.Fatalf("attempt %d against a dead Redis: %v", i, err)
		}
	}
	if !l.BreakerOpen() {
		t.Fatal("breaker did not open after 3 failures")
	}
	// While open, commands fail fast without touching the network.
	if _, err := l.Get(ctx, k); !errors.Is(err, cache.ErrUnavailable) {
		t.Fatalf("open breaker: %v", err)
	}
	if err := l.Set(ctx, entry("a", "k", []byte("v"), time.Hour)); !errors.Is(err, cache.ErrUnavailable) {
		t.Fatalf("open breaker Set: %v", err)
	}
	if st := l.Stats(); st.Errors != 3 {
		t.Fatalf("errors = %d, want 3", st.Errors)
	}
}

// TestTieredKeepsServingWithoutRedis: memory in front of a dead Redis still answers hits and
// takes writes.
func TestTieredKeepsServingWithoutRedis(t *testing.T) {
	r := startRedis(t)
	mem := newMapLayer()
	l := newLayer(t, r.Addr(), "gw:", Options{FailuresToOpen: 2, OpenFor: time.Hour})
	tc := cache.NewTiered([]cache.Layer{mem, l}, cache.Options{})
	defer tc.Close()
	tc.Set(ctx, entry("a", "hot", []byte("hot"), time.Hour))
	tc.Flush(ctx)
	r.Close()
	for i := range 5 {
		if h, ok := tc.Lookup(ctx, cache.Key{Bucket: "a", Object: "hot"}, 1<<20, true); !ok || string(h.Bytes) != "hot" {
			t.Fatalf("hit %d lost with Redis down", i)
		}
		if _, ok := tc.Lookup(ctx, cache.Key{Bucket: "a", Object: fmt.Sprint("cold", i)}, 1<<20, true); ok {
			t.Fatal("phantom hit")
		}
	}
	tc.Set(ctx, entry("a", "new", []byte("n"), time.Hour))
	if _, ok := tc.Lookup(ctx, cache.Key{Bucket: "a", Object: "new"}, 1<<20, true); !ok {
		t.Fatal("write to the memory layer failed with Redis down")
	}
	if !l.BreakerOpen() {
		t.Fatal("breaker not open")
	}
}

// mapLayer is a minimal synchronous memory layer for the tiered test.
type mapLayer struct {
	mu sync.Mutex
	m  map[cache.Key]*cache.Entry
}

func newMapLayer() *mapLayer                { return &mapLayer{m: map[cache.Key]*cache.Entry{}} }
func (l *mapLayer) Name() string            { return "memory" }
func (l *mapLayer) Close() error            { return nil }
func (l *mapLayer) Stats() cache.LayerStats { return cache.LayerStats{Layer: "memory"} }
func (l *mapLayer) Get(_ context.Context, k cache.Key) (*cache.Entry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.m[k]; ok {
		return e, nil
	}
	return nil, cache.ErrNotFound
}
func (l *mapLayer) Set(_ context.Context, e *cache.Entry) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.m[e.Key] = e
	return nil
}
func (l *mapLayer) Delete(context.Context, cache.Key) (bool, error)  { return false, nil }
func (l *mapLayer) PurgeBucket(context.Context, string) (int, error) { return 0, nil }
func (l *mapLayer) Purge(context.Context) error                      { return nil }
