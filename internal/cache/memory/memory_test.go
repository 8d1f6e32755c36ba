package memory

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/yatagarasu/yatagarasu/internal/cache"
)

var ctx = context.Background()

func entry(bucket, key string, size int, keep time.Time) *cache.Entry {
	return cache.NewEntry(cache.Meta{Key: cache.Key{Bucket: bucket, Object: key}, FreshUntil: keep, KeepUntil: keep},
		bytes.Repeat([]byte{'x'}, size))
}

func newLayer(t testing.TB, max, item int64, now func() time.Time) *Layer {
	l, err := New(Options{MaxBytes: max, MaxItemBytes: item, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestSetGetDeleteAndStats(t *testing.T) {
	l := newLayer(t, 1<<20, 1<<10, nil)
	keep := time.Now().Add(time.Hour)
	if err := l.Set(ctx, entry("a", "k1", 100, keep)); err != nil {
		t.Fatal(err)
	}
	if err := l.Set(ctx, entry("b", "k2", 200, keep)); err != nil {
		t.Fatal(err)
	}
	if err := l.Set(ctx, entry("a", "big", 2000, keep)); !errors.Is(err, cache.ErrTooLarge) {
		t.Fatalf("oversized Set = %v", err)
	}
	l.Wait()
	e, err := l.Get(ctx, cache.Key{Bucket: "a", Object: "k1"})
	if err != nil || len(e.Body) != 100 {
		t.Fatalf("Get = %v, %v", e, err)
	}
	st := l.Stats()
	if st.Items != 2 || st.Buckets["a"].Items != 1 || st.Buckets["b"].Bytes != 200+entryOverhead {
		t.Fatalf("stats = %+v", st)
	}
	if ok, _ := l.Delete(ctx, cache.Key{Bucket: "a", Object: "k1"}); !ok {
		t.Fatal("Delete did not find the entry")
	}
	l.Wait()
	if _, err := l.Get(ctx, cache.Key{Bucket: "a", Object: "k1"}); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("Get after Delete = %v", err)
	}
	if st := l.Stats(); st.Items != 1 || st.Buckets["a"].Items != 0 {
		t.Fatalf("stats after delete = %+v", st)
	}
}

func TestRetentionAndPurge(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	l := newLayer(t, 1<<20, 1<<10, clock)
	for i := range 10 {
		b := "a"
		if i%2 == 1 {
			b = "b"
		}
		if err := l.Set(ctx, entry(b, fmt.Sprint(i), 10, now.Add(time.Hour))); err != nil {
			t.Fatal(err)
		}
	}
	l.Wait()
	now = now.Add(2 * time.Hour) // past retention: a miss even before ristretto's TTL sweep
	if _, err := l.Get(ctx, cache.Key{Bucket: "a", Object: "0"}); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("expired entry returned: %v", err)
	}
	now = now.Add(-2 * time.Hour)
	n, _ := l.PurgeBucket(ctx, "a")
	if n != 5 {
		t.Fatalf("PurgeBucket = %d, want 5", n)
	}
	if _, err := l.Get(ctx, cache.Key{Bucket: "b", Object: "1"}); err != nil {
		t.Fatalf("other bucket purged: %v", err)
	}
	if st := l.Stats(); st.Buckets["a"].Items != 0 || st.Buckets["b"].Items != 5 {
		t.Fatalf("stats = %+v", st)
	}
	_ = l.Purge(ctx)
	if _, err := l.Get(ctx, cache.Key{Bucket: "b", Object: "1"}); err == nil {
		t.Fatal("Purge left an entry")
	}
}

func TestBoundedByCost(t *testing.T) {
	l := newLayer(t, 64<<10, 8<<10, nil)
	keep := time.Now().Add(time.Hour)
	for i := range 200 {
		_ = l.Set(ctx, entry("a", fmt.Sprint(i), 4<<10, keep))
		l.Wait()
	}
	st := l.Stats()
	if st.Bytes > 64<<10 {
		t.Fatalf("layer holds %d bytes, bound is %d", st.Bytes, 64<<10)
	}
	if st.Evictions == 0 || st.Buckets["a"].Evictions == 0 {
		t.Fatalf("no evictions counted: %+v", st)
	}
}

func TestConcurrentUse(t *testing.T) {
	l := newLayer(t, 1<<20, 1<<10, nil)
	keep := time.Now().Add(time.Hour)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				k := fmt.Sprint(i % 50)
				switch i % 4 {
				case 0:
					_ = l.Set(ctx, entry(fmt.Sprint(g%2), k, 64, keep))
				case 1, 2:
					if e, err := l.Get(ctx, cache.Key{Bucket: fmt.Sprint(g % 2), Object: k}); err == nil && !e.Verify() {
						t.Error("entry does not verify")
					}
				case 3:
					_, _ = l.Delete(ctx, cache.Key{Bucket: fmt.Sprint(g % 2), Object: k})
				}
			}
		}()
	}
	wg.Wait()
	l.Wait()
	if st := l.Stats(); st.Items < 0 || st.Bytes < 0 {
		t.Fatalf("counters went negative: %+v", st)
	}
}

func BenchmarkGet(b *testing.B) {
	l := newLayer(b, 64<<20, 1<<20, nil)
	e := entry("products", "images/2026/11/cat.jpg", 1024, time.Now().Add(time.Hour))
	_ = l.Set(ctx, e)
	l.Wait()
	k := e.Key
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.Get(ctx, k); err != nil {
			b.Fatal(err)
		}
	}
}
