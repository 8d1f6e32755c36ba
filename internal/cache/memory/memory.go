// Package memory is the in-process cache layer on ristretto: cost is the entry's bytes, with a
// maximum item size, a total bound, TTL and per-bucket accounting.
package memory

import (
	"context"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"

	"github.com/yatagarasu/yatagarasu/internal/cache"
)

// entryOverhead approximates the bytes an entry costs beyond its body (metadata, map slot).
const entryOverhead = 256

// Options size the layer.
type Options struct {
	MaxBytes     int64 // total cost bound
	MaxItemBytes int64 // larger entries are refused with cache.ErrTooLarge
	Now          func() time.Time
}

// Layer is the memory layer. Ristretto applies Sets asynchronously: a Set is visible to Get
// once ristretto has processed it (Wait forces that, for tests and the fill path).
type Layer struct {
	c       *ristretto.Cache[uint64, *cache.Entry]
	seed    maphash.Seed
	maxItem int64
	maxCost int64
	now     func() time.Time
	// checkExpiry compares KeepUntil with now on Get (tests with a fake clock).
	checkExpiry bool

	mu      sync.Mutex
	buckets map[string]*bucketCount
	evicted atomic.Int64
}

type bucketCount struct{ items, bytes, evictions atomic.Int64 }

// New creates the layer.
func New(o Options) (*Layer, error) {
	if o.MaxBytes <= 0 || o.MaxItemBytes <= 0 {
		return nil, fmt.Errorf("memory cache: sizes must be positive (max %d, item %d)", o.MaxBytes, o.MaxItemBytes)
	}
	// Ristretto drops entries at their TTL (KeepUntil) itself; a second clock read per Get
	// would double its cost, so the entry's own retention is checked only with an injected clock.
	checkExpiry := o.Now != nil
	if o.Now == nil {
		o.Now = time.Now
	}
	l := &Layer{checkExpiry: checkExpiry, maxItem: o.MaxItemBytes, maxCost: o.MaxBytes, now: o.Now, buckets: map[string]*bucketCount{}, seed: maphash.MakeSeed()}
	// Ten counters per expected item; items are assumed to average 4 KiB, bounded to keep the
	// counters' memory (about 3 bytes each) reasonable.
	counters := min(max(o.MaxBytes/(4<<10)*10, 1000), 50_000_000)
	c, err := ristretto.NewCache(&ristretto.Config[uint64, *cache.Entry]{
		NumCounters:        counters,
		MaxCost:            o.MaxBytes,
		BufferItems:        64,
		IgnoreInternalCost: true,
		OnEvict: func(it *ristretto.Item[*cache.Entry]) {
			if it.Value != nil {
				l.evicted.Add(1)
				l.bucket(it.Value.Key.Bucket).evictions.Add(1)
			}
		},
		OnExit: func(e *cache.Entry) {
			if e != nil {
				b := l.bucket(e.Key.Bucket)
				b.items.Add(-1)
				b.bytes.Add(-cost(e))
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("memory cache: %w", err)
	}
	l.c = c
	return l, nil
}

// hash is the ristretto key: a 64-bit hash of the key's parts, computed without allocating.
// Ristretto keeps no conflict hash for uint64 keys, so Get compares the entry's own key: a
// collision is a miss, never a wrong object.
func (l *Layer) hash(k cache.Key) uint64 {
	var h maphash.Hash
	h.SetSeed(l.seed)
	h.WriteString(k.Bucket)
	h.WriteByte(0)
	h.WriteString(k.Object)
	h.WriteByte(0)
	h.WriteString(k.Variant)
	return h.Sum64()
}

func cost(e *cache.Entry) int64 { return int64(len(e.Body)) + entryOverhead }

func (l *Layer) bucket(name string) *bucketCount {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[name]
	if b == nil {
		b = &bucketCount{}
		l.buckets[name] = b
	}
	return b
}

// Name implements cache.Layer.
func (l *Layer) Name() string { return "memory" }

// Get implements cache.Layer. Entries past their retention are misses.
func (l *Layer) Get(_ context.Context, k cache.Key) (*cache.Entry, error) {
	e, ok := l.c.Get(l.hash(k))
	if !ok || e.Key != k || (l.checkExpiry && e.Expired(l.now())) {
		return nil, cache.ErrNotFound
	}
	return e, nil
}

// Set implements cache.Layer. The entry must not be modified afterwards.
func (l *Layer) Set(_ context.Context, e *cache.Entry) error {
	if int64(len(e.Body)) > l.maxItem || cost(e) > l.maxCost {
		return cache.ErrTooLarge
	}
	ttl := e.KeepUntil.Sub(l.now())
	if ttl <= 0 {
		return nil
	}
	b := l.bucket(e.Key.Bucket)
	b.items.Add(1)
	b.bytes.Add(cost(e))
	if !l.c.SetWithTTL(l.hash(e.Key), e, cost(e), ttl) {
		b.items.Add(-1) // dropped under contention: never stored, OnExit will not run
		b.bytes.Add(-cost(e))
	}
	return nil
}

// Wait blocks until every Set so far has been applied (ristretto buffers them).
func (l *Layer) Wait() { l.c.Wait() }

// Delete implements cache.Layer.
func (l *Layer) Delete(_ context.Context, k cache.Key) (bool, error) {
	e, ok := l.c.Get(l.hash(k))
	if !ok || e.Key != k {
		return false, nil
	}
	l.c.Del(l.hash(k))
	return true, nil
}

// PurgeBucket implements cache.Layer.
func (l *Layer) PurgeBucket(_ context.Context, bucket string) (int, error) {
	var keys []uint64
	l.c.IterValues(func(e *cache.Entry) bool {
		if e.Key.Bucket == bucket {
			keys = append(keys, l.hash(e.Key))
		}
		return false
	})
	for _, k := range keys {
		l.c.Del(k)
	}
	l.c.Wait()
	return len(keys), nil
}

// Purge implements cache.Layer.
func (l *Layer) Purge(context.Context) error {
	l.c.Clear()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, b := range l.buckets {
		b.items.Store(0)
		b.bytes.Store(0)
	}
	return nil
}

// Stats implements cache.Layer.
func (l *Layer) Stats() cache.LayerStats {
	s := cache.LayerStats{Layer: l.Name(), MaxBytes: l.maxCost, Evictions: l.evicted.Load(), Buckets: map[string]cache.BucketStats{}}
	l.mu.Lock()
	defer l.mu.Unlock()
	for name, b := range l.buckets {
		bs := cache.BucketStats{Items: b.items.Load(), Bytes: b.bytes.Load(), Evictions: b.evictions.Load()}
		s.Items += bs.Items
		s.Bytes += bs.Bytes
		s.Buckets[name] = bs
	}
	return s
}

// Close implements cache.Layer.
func (l *Layer) Close() error {
	l.c.Close()
	return nil
}
