package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Sink is one audit destination. Write must deliver all lines or return an error (the lines
// are then retried from the spool, in order); Flush makes written lines durable at the sink.
type Sink interface {
	Name() string
	Write(ctx context.Context, lines [][]byte) error
	Flush(ctx context.Context) error
	Close(ctx context.Context) error
}

// Options configure a Logger.
type Options struct {
	QueueSize int        // bound of the in-memory queue (default 10000)
	SpoolDir  string     // where the overflow and per-sink spools live (required)
	MinLevel  slog.Level // records below it are not written (default info: everything)
	Sinks     []Sink
	Log       *slog.Logger
	Metrics   *Metrics // may be nil
	// RetryMin and RetryMax bound the backoff after a failed sink write (defaults 100ms, 5s).
	RetryMin, RetryMax time.Duration
}

// Logger takes records from requests without blocking them and delivers each to every sink.
//
// Path of a record: Log → bounded channel (or, when it is full, the overflow spool, in order) →
// dispatcher encodes it once and appends it to each sink's spool → one goroutine per sink reads
// its spool and writes to the sink, committing the spool offset only after the sink accepted
// (and flushed) the lines. A sink that is down leaves its lines in its spool; they are retried
// with backoff and survive a restart.
type Logger struct {
	opts     Options
	log      *slog.Logger
	metrics  *Metrics
	q        chan Record
	overflow *spool
	ovMu     sync.Mutex  // serialises appends to overflow while spilling
	spilling atomic.Bool // set: every Log goes to overflow until the dispatcher caught up
	lanes    []*lane

	closed   atomic.Bool
	stop     chan struct{} // closed by Close: dispatcher drains and exits
	drained  chan struct{} // closed by the dispatcher when everything is in the lane spools
	laneStop chan struct{} // closed when lanes must give up (Close's ctx ended)
	wg       sync.WaitGroup
}

// New opens the spools (replaying whatever a previous run left in them) and starts delivering.
func New(opts Options) (*Logger, error) {
	if opts.SpoolDir == "" {
		return nil, errors.New("audit: spool dir is required")
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 10000
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = 100 * time.Millisecond
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = 5 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	l := &Logger{
		opts: opts, log: opts.Log, metrics: opts.Metrics,
		q: make(chan Record, opts.QueueSize), stop: make(chan struct{}), drained: make(chan struct{}), laneStop: make(chan struct{}),
	}
	var err error
	if l.overflow, err = openSpool(opts.SpoolDir, "queue-overflow"); err != nil {
		return nil, err
	}
	if l.overflow.Backlog() > 0 {
		l.spilling.Store(true) // a previous run stopped while spilling
	}
	for _, s := range opts.Sinks {
		sp, err := openSpool(opts.SpoolDir, s.Name())
		if err != nil {
			l.closeSpools()
			return nil, err
		}
		l.lanes = append(l.lanes, &lane{sink: s, sp: sp, l: l})
	}
	l.metrics.register(l)
	l.wg.Add(1 + len(l.lanes))
	go l.dispatch()
	for _, ln := range l.lanes {
		go ln.run()
	}
	return l, nil
}

// Log queues r for every sink and returns at once. When the queue is full the record is
// appended to the overflow spool (a local buffered write) instead of waiting.
func (l *Logger) Log(r Record) {
	if r.Level() < l.opts.MinLevel {
		return
	}
	if l.closed.Load() {
		l.metrics.dropped()
		l.log.Error("audit record after shutdown dropped", "request_id", r.RequestID)
		return
	}
	if !l.spilling.Load() {
		select {
		case l.q <- r:
			return
		default:
		}
	}
	l.spill(r)
}

func (l *Logger) spill(r Record) {
	line, err := r.MarshalLine()
	if err != nil {
		l.metrics.dropped()
		l.log.Error("audit record cannot be encoded", "request_id", r.RequestID, "err", err)
		return
	}
	l.ovMu.Lock()
	l.spilling.Store(true)
	err = l.overflow.Append(line)
	l.ovMu.Unlock()
	l.metrics.spilled()
	if err != nil {
		l.metrics.dropped()
		l.log.Error("audit overflow spool write failed: record lost", "request_id", r.RequestID, "err", err)
	}
}

// QueueDepth is the number of records in the in-memory queue.
func (l *Logger) QueueDepth() int { return len(l.q) }

// dispatch moves records from the queue (then the overflow spool) into every lane's spool.
func (l *Logger) dispatch() {
	defer l.wg.Done()
	defer close(l.drained)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case r := <-l.q:
			l.fanOut(r)
			l.drainQueue()
			continue // spools are flushed on the tick: one write per sink per 50 ms, not per record
		case <-tick.C:
		case <-l.stop:
			l.drainQueue()
			l.drainOverflow(true)
			l.drainQueue() // records that raced with the drain
			l.flushLanes()
			return
		}
		if len(l.q) == 0 && l.spilling.Load() {
			l.drainOverflow(false)
		}
		l.flushLanes()
	}
}

func (l *Logger) drainQueue() {
	for {
		select {
		case r := <-l.q:
			l.fanOut(r)
		default:
			return
		}
	}
}

func (l *Logger) fanOut(r Record) {
	line, err := r.MarshalLine()
	if err != nil {
		l.metrics.dropped()
		l.log.Error("audit record cannot be encoded", "request_id", r.RequestID, "err", err)
		return
	}
	l.appendLine(line)
}

func (l *Logger) appendLine(line []byte) {
	for _, ln := range l.lanes {
		if err := ln.sp.Append(line); err != nil {
			l.metrics.dropped()
			l.log.Error("audit spool write failed: record lost for this sink", "sink", ln.sink.Name(), "err", err)
		}
	}
}

func (l *Logger) flushLanes() {
	for _, ln := range l.lanes {
		if err := ln.sp.Flush(); err != nil {
			l.log.Error("audit spool flush failed", "sink", ln.sink.Name(), "err", err)
		}
	}
}

// drainOverflow moves the overflow spool into the lanes; when it has caught up (and final is
// false) new records go through the queue again.
func (l *Logger) drainOverflow(final bool) {
	for {
		if err := l.overflow.Flush(); err != nil {
			l.log.Error("audit overflow flush failed", "err", err)
		}
		lines, next, err := l.overflow.Read(0, 1024, 1<<20)
		if err != nil {
			l.log.Error("audit overflow read failed", "err", err)
			return
		}
		if len(lines) == 0 {
			l.ovMu.Lock()
			if l.overflow.Backlog() == 0 {
				if !final {
					l.spilling.Store(false)
				}
				l.ovMu.Unlock()
				return
			}
			l.ovMu.Unlock()
			continue
		}
		for _, line := range lines {
			l.appendLine(line)
		}
		l.flushLanes() // lanes hold the lines durably before the overflow forgets them
		if _, err := l.overflow.Commit(next); err != nil {
			l.log.Error("audit overflow commit failed", "err", err)
		}
	}
}

// Close stops accepting records, moves everything queued into the spools and lets every sink
// deliver until ctx ends; whatever a sink could not take stays in its spool for the next start.
func (l *Logger) Close(ctx context.Context) error {
	if l.closed.Swap(true) {
		return nil
	}
	close(l.stop)
	<-l.drained
	for _, ln := range l.lanes {
		ln.finish()
	}
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		close(l.laneStop)
		<-done
		err = fmt.Errorf("audit: shutdown before every sink caught up (records stay spooled): %w", ctx.Err())
	}
	for _, ln := range l.lanes {
		if cerr := ln.sink.Close(ctx); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close audit sink %s: %w", ln.sink.Name(), cerr))
		}
	}
	return errors.Join(err, l.closeSpools())
}

func (l *Logger) closeSpools() error {
	err := l.overflow.Close()
	for _, ln := range l.lanes {
		err = errors.Join(err, ln.sp.Close())
	}
	return err
}

// lane delivers one sink's spool.
type lane struct {
	sink      Sink
	sp        *spool
	l         *Logger
	finishing atomic.Bool
}

// finish asks the lane to exit once its spool is empty.
func (ln *lane) finish() {
	ln.finishing.Store(true)
	select {
	case ln.sp.notify <- struct{}{}:
	default:
	}
}

func (ln *lane) run() {
	defer ln.l.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-ln.l.laneStop:
			cancel()
		case <-ctx.Done():
		}
	}()
	name := ln.sink.Name()
	var backoff time.Duration
	retry := func(what string, n int, err error) bool {
		ln.l.metrics.failed(name)
		backoff = ln.nextBackoff(backoff)
		ln.l.log.Warn("audit sink "+what+" failed; records stay spooled", "sink", name, "records", n, "retry_in", backoff, "err", err)
		return ln.sleep(ctx, backoff)
	}
	idle := time.NewTicker(time.Second)
	defer idle.Stop()
	cur := ln.sp.Committed()
	unflushed := false
	for {
		lines, next, err := ln.sp.Read(cur, 512, 1<<20)
		if err != nil {
			ln.l.log.Error("audit spool read failed", "sink", name, "err", err)
		}
		if len(lines) > 0 {
			if err := ln.sink.Write(ctx, lines); err != nil {
				cur, unflushed = ln.sp.Committed(), false // resend what the sink may not hold
				if !retry("write", len(lines), err) {
					return
				}
				continue
			}
			ln.l.metrics.written(name, len(lines))
			cur, unflushed = next, true
			if cur < ln.sp.Readable() {
				continue // more to send: flush once at the end of the burst
			}
		}
		if unflushed {
			if err := ln.sink.Flush(ctx); err != nil {
				cur, unflushed = ln.sp.Committed(), false
				if !retry("flush", 0, err) {
					return
				}
				continue
			}
			backoff, unflushed = 0, false
			committed, err := ln.sp.Commit(cur)
			if err != nil {
				ln.l.log.Error("audit spool commit failed", "sink", name, "err", err)
			}
			if committed == 0 {
				cur = 0 // the spool was truncated
			}
			continue
		}
		if ln.finishing.Load() && ln.sp.Backlog() == 0 {
			return
		}
		if err := ln.sp.SaveOffset(); err != nil {
			ln.l.log.Error("audit spool offset save failed", "sink", name, "err", err)
		}
		select {
		case <-ln.sp.notify:
		case <-idle.C:
		case <-ctx.Done():
			return
		}
	}
}

func (ln *lane) nextBackoff(b time.Duration) time.Duration {
	if b == 0 {
		return ln.l.opts.RetryMin
	}
	return min(2*b, ln.l.opts.RetryMax)
}

func (ln *lane) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
