package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Tiered looks entries up in its layers in order (cache_layers), promotes a lower layer's hit
// into the layers above it off the request path, writes new entries to the first layer at once
// and to the others in the background, and keeps hit/miss counts per layer and bucket.
type Tiered struct {
	layers  []Layer
	now     func() time.Time
	log     *slog.Logger
	metrics *metrics

	jobs    chan job
	workers sync.WaitGroup
	mu      sync.RWMutex // held for reading while enqueueing, for writing by Close
	closed  bool

	hits, misses atomic.Int64
	buckets      sync.Map // bucket → *bucketCounts
	dropped      atomic.Int64
	pending      atomic.Int64 // queued or running background jobs
}

type bucketCounts struct{ hits, misses atomic.Int64 }

// job is background work: write e into layers[from:to] (a fill), or load key from layers[from]
// and write it into layers[:from] (a promotion).
type job struct {
	entry     *Entry
	key       Key
	from, to  int
	promotion bool
}

// Options configure a Tiered cache.
type Options struct {
	Now      func() time.Time
	Logger   *slog.Logger
	Registry prometheus.Registerer // receives the cache metrics; may be nil
	// QueueSize bounds pending background writes and promotions (default 1024); past it they
	// are dropped (and counted), never blocking a request.
	QueueSize int
	Workers   int // background writers (default 2)
}

// NewTiered builds the cache over layers, first layer first.
func NewTiered(layers []Layer, o Options) *Tiered {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 1024
	}
	if o.Workers <= 0 {
		o.Workers = 2
	}
	t := &Tiered{layers: layers, now: o.Now, log: o.Logger, jobs: make(chan job, o.QueueSize)}
	t.metrics = newMetrics(t, o.Registry, o.Logger)
	for range o.Workers {
		t.workers.Add(1)
		go t.work()
	}
	return t
}

// Layers returns the layers, first first.
func (t *Tiered) Layers() []Layer { return t.layers }

// Hit is a found entry. Body reads it (from memory or a file) and must be closed.
type Hit struct {
	Meta  *Meta
	Layer string
	Body  ReadSeekCloser
	// Bytes is the whole body when the layer holds it in memory or it was small enough to load.
	Bytes []byte
}

// Close releases the body.
func (h *Hit) Close() error {
	if h.Body == nil {
		return nil
	}
	return h.Body.Close()
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

// Lookup finds k in the layers in order. A Streamer layer's entry larger than loadUpTo is not
// loaded: its Hit.Body reads the file. Stale entries are returned too (the caller revalidates).
// count records the hit or miss in the stats; a caller that may hand the request on (extproc's
// stage) passes false and calls RecordHit when it answers, so one request counts once.
func (t *Tiered) Lookup(ctx context.Context, k Key, loadUpTo int64, count bool) (*Hit, bool) {
	for i, l := range t.layers {
		start := time.Now()
		h, err := t.lookupLayer(ctx, l, k, loadUpTo)
		t.metrics.get.WithLabelValues(l.Name()).Observe(time.Since(start).Seconds())
		if err != nil {
			if count {
				t.metrics.misses.WithLabelValues(l.Name(), k.Bucket).Inc()
			}
			if !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrUnavailable) {
				t.log.Debug("cache layer lookup failed", "layer", l.Name(), "bucket", k.Bucket, "err", err)
			}
			continue
		}
		if count {
			t.RecordHit(k.Bucket, l.Name())
		}
		if i > 0 {
			t.enqueue(job{key: k, from: i, promotion: true})
		}
		return h, true
	}
	if count {
		t.misses.Add(1)
		t.bucket(k.Bucket).misses.Add(1)
	}
	return nil, false
}

// RecordHit counts a hit answered from layer for bucket.
func (t *Tiered) RecordHit(bucket, layer string) {
	t.hits.Add(1)
	t.bucket(bucket).hits.Add(1)
	t.metrics.hits.WithLabelValues(layer, bucket).Inc()
}

func (t *Tiered) lookupLayer(ctx context.Context, l Layer, k Key, loadUpTo int64) (*Hit, error) {
	if s, ok := l.(Streamer); ok {
		m, body, err := s.Open(ctx, k)
		if err != nil {
			return nil, err
		}
		h := &Hit{Meta: m, Layer: l.Name(), Body: body}
		if m.Size <= loadUpTo {
			b := make([]byte, m.Size)
			_, err := io.ReadFull(body, b)
			body.Close()
			if err != nil {
				return nil, fmt.Errorf("read %s entry: %w", l.Name(), err)
			}
			h.Bytes, h.Body = b, nopCloser{bytes.NewReader(b)}
		}
		return h, nil
	}
	e, err := l.Get(ctx, k)
	if err != nil {
		return nil, err
	}
	return &Hit{Meta: &e.Meta, Layer: l.Name(), Bytes: e.Body, Body: nopCloser{bytes.NewReader(e.Body)}}, nil
}

func (t *Tiered) bucket(name string) *bucketCounts {
	if v, ok := t.buckets.Load(name); ok {
		return v.(*bucketCounts)
	}
	v, _ := t.buckets.LoadOrStore(name, &bucketCounts{})
	return v.(*bucketCounts)
}

// waiter is implemented by layers whose writes become visible asynchronously (ristretto).
type waiter interface{ Wait() }

// Set stores e: in the first layer that accepts it before returning (so the next lookup finds
// it), in the layers below in the background.
func (t *Tiered) Set(ctx context.Context, e *Entry) {
	for i, l := range t.layers {
		err := t.setLayer(ctx, l, e)
		if errors.Is(err, ErrTooLarge) {
			continue
		}
		if err != nil {
			t.log.Warn("cache write failed", "layer", l.Name(), "bucket", e.Key.Bucket, "err", err)
		} else if w, ok := l.(waiter); ok {
			w.Wait()
		}
		if i+1 < len(t.layers) {
			t.enqueue(job{entry: e, from: i + 1, to: len(t.layers)})
		}
		return
	}
}

func (t *Tiered) setLayer(ctx context.Context, l Layer, e *Entry) error {
	start := time.Now()
	err := l.Set(ctx, e)
	t.metrics.set.WithLabelValues(l.Name()).Observe(time.Since(start).Seconds())
	return err
}

func (t *Tiered) enqueue(j job) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return
	}
	t.pending.Add(1)
	select {
	case t.jobs <- j:
	default:
		t.pending.Add(-1)
		t.dropped.Add(1)
	}
}

func (t *Tiered) work() {
	defer t.workers.Done()
	for j := range t.jobs {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		t.run(ctx, j)
		cancel()
		t.pending.Add(-1)
	}
}

func (t *Tiered) run(ctx context.Context, j job) {
	if j.promotion {
		e, err := t.layers[j.from].Get(ctx, j.key)
		if err != nil {
			return
		}
		for _, l := range t.layers[:j.from] {
			if err := t.setLayer(ctx, l, e); err != nil && !errors.Is(err, ErrTooLarge) {
				t.log.Debug("cache promotion failed", "layer", l.Name(), "err", err)
			}
		}
		return
	}
	for _, l := range t.layers[j.from:j.to] {
		if err := t.setLayer(ctx, l, j.entry); err != nil && !errors.Is(err, ErrTooLarge) {
			t.log.Warn("cache write failed", "layer", l.Name(), "bucket", j.entry.Key.Bucket, "err", err)
		}
	}
}

// Delete removes k from every layer and reports whether any held it.
func (t *Tiered) Delete(ctx context.Context, k Key) (bool, error) {
	var found bool
	var errs []error
	for _, l := range t.layers {
		ok, err := l.Delete(ctx, k)
		found = found || ok
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", l.Name(), err))
		}
	}
	return found, errors.Join(errs...)
}

// PurgeBucket removes bucket's entries from every layer; the count is the largest any layer
// removed (the same object in several layers counts once).
func (t *Tiered) PurgeBucket(ctx context.Context, bucket string) (int, error) {
	var most int
	var errs []error
	for _, l := range t.layers {
		n, err := l.PurgeBucket(ctx, bucket)
		most = max(most, n)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", l.Name(), err))
		}
	}
	return most, errors.Join(errs...)
}

// Purge empties every layer.
func (t *Tiered) Purge(ctx context.Context) error {
	var errs []error
	for _, l := range t.layers {
		if err := l.Purge(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", l.Name(), err))
		}
	}
	return errors.Join(errs...)
}

// Stats is the admin view of the cache.
type Stats struct {
	Hits      int64                  `json:"hits"`
	Misses    int64                  `json:"misses"`
	HitRate   float64                `json:"hit_rate"`
	Evictions int64                  `json:"evictions"`
	Bytes     int64                  `json:"current_size_bytes"`
	Items     int64                  `json:"current_item_count"`
	MaxBytes  int64                  `json:"max_size_bytes"`
	Dropped   int64                  `json:"background_writes_dropped"`
	Layers    []LayerStats           `json:"layers"`
	Buckets   map[string]BucketTotal `json:"buckets"`
}

// BucketTotal is one bucket's hits and misses and its share of each layer.
type BucketTotal struct {
	Hits    int64                  `json:"hits"`
	Misses  int64                  `json:"misses"`
	HitRate float64                `json:"hit_rate"`
	Layers  map[string]BucketStats `json:"layers"`
}

// Stats gathers the counters of the cache and its layers. Size and item totals come from the
// first layer that counts them (an entry is usually in several layers).
func (t *Tiered) Stats() Stats {
	s := Stats{Hits: t.hits.Load(), Misses: t.misses.Load(), Dropped: t.dropped.Load(), Buckets: map[string]BucketTotal{}}
	s.HitRate = rate(s.Hits, s.Misses)
	counted := false
	for _, l := range t.layers {
		ls := l.Stats()
		s.Layers = append(s.Layers, ls)
		s.Evictions += ls.Evictions
		if !counted && ls.Items >= 0 {
			s.Items, s.Bytes, s.MaxBytes, counted = ls.Items, ls.Bytes, ls.MaxBytes, true
		}
		for b, bs := range ls.Buckets {
			bt := s.Buckets[b]
			if bt.Layers == nil {
				bt.Layers = map[string]BucketStats{}
			}
			bt.Layers[l.Name()] = bs
			s.Buckets[b] = bt
		}
	}
	t.buckets.Range(func(k, v any) bool {
		c := v.(*bucketCounts)
		bt := s.Buckets[k.(string)]
		bt.Hits, bt.Misses = c.hits.Load(), c.misses.Load()
		bt.HitRate = rate(bt.Hits, bt.Misses)
		if bt.Layers == nil {
			bt.Layers = map[string]BucketStats{}
		}
		s.Buckets[k.(string)] = bt
		return true
	})
	return s
}

func rate(hits, misses int64) float64 {
	if hits+misses == 0 {
		return 0
	}
	return float64(hits) / float64(hits+misses)
}

// Flush waits until the background writes queued so far are done or ctx ends (tests, shutdown).
func (t *Tiered) Flush(ctx context.Context) {
	for t.pending.Load() > 0 && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
}

// Close finishes the queued background writes and closes every layer.
func (t *Tiered) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	close(t.jobs)
	t.mu.Unlock()
	t.workers.Wait()
	var errs []error
	for _, l := range t.layers {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s layer: %w", l.Name(), err))
		}
	}
	t.metrics.unregister()
	return errors.Join(errs...)
}

// bytesReader wraps an in-memory body as a ReadSeekCloser.
func bytesReader(b []byte) ReadSeekCloser { return nopCloser{bytes.NewReader(b)} }
