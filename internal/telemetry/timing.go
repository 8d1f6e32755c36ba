package telemetry

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"
)

// HeaderTiming carries extproc's timing breakdown to the origin for its slow-request log. It is
// an x-yatagarasu-* header, so extproc strips any client-sent copy.
const HeaderTiming = "x-yatagarasu-timing"

// Timings collects how long each part of one request took (stage name → duration), for the
// slow-request log. Safe for concurrent use; a nil *Timings ignores everything.
type Timings struct {
	mu    sync.Mutex
	parts []timingPart
}

type timingPart struct {
	name string
	d    time.Duration
}

type timingsKey struct{}

// WithTimings returns ctx carrying t.
func WithTimings(ctx context.Context, t *Timings) context.Context {
	return context.WithValue(ctx, timingsKey{}, t)
}

// TimingsFrom returns the Timings in ctx, or nil.
func TimingsFrom(ctx context.Context) *Timings {
	t, _ := ctx.Value(timingsKey{}).(*Timings)
	return t
}

// Add records (or adds to) the time spent in part name.
func (t *Timings) Add(name string, d time.Duration) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range t.parts {
		if t.parts[i].name == name {
			t.parts[i].d += d
			return
		}
	}
	t.parts = append(t.parts, timingPart{name, d})
}

// Map returns the parts in milliseconds, for a log attribute.
func (t *Timings) Map() map[string]float64 {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	m := make(map[string]float64, len(t.parts))
	for _, p := range t.parts {
		m[p.name] = float64(p.d.Microseconds()) / 1000
	}
	return m
}

// Header encodes the parts as "name=micros,..." for HeaderTiming.
func (t *Timings) Header() string {
	if t == nil {
		return ""
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var b strings.Builder
	for i, p := range t.parts {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(p.name)
		b.WriteByte('=')
		b.WriteString(strconv.FormatInt(p.d.Microseconds(), 10))
	}
	return b.String()
}

// maxTimingMicros bounds one part (one hour): larger values are not timings and would overflow.
const maxTimingMicros = int64(time.Hour / time.Microsecond)

// ParseTimings decodes a HeaderTiming value; malformed parts are skipped.
func ParseTimings(v string) *Timings {
	t := &Timings{}
	if v == "" {
		return t
	}
	for _, part := range strings.Split(v, ",") {
		name, us, ok := strings.Cut(part, "=")
		n, err := strconv.ParseInt(us, 10, 64)
		if !ok || err != nil || n < 0 || n > maxTimingMicros || name == "" || len(name) > 64 || len(t.parts) >= 32 {
			continue
		}
		t.Add(name, time.Duration(n)*time.Microsecond)
	}
	return t
}
