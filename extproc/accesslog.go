package extproc

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"time"

	accesslogdatav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"github.com/google/uuid"

	"github.com/yatagarasu/yatagarasu/internal/audit"
	"github.com/yatagarasu/yatagarasu/internal/telemetry"
)

// Defaults of the access-log service.
const (
	// DefaultAccessLogSettle is how long an Envoy entry waits before it is checked against the
	// records extproc and the origin wrote: Envoy can report a request before the origin's
	// record (written after its last byte) or a late extproc decision has been logged.
	DefaultAccessLogSettle = 2 * time.Second
	accessLogQueueSize     = 10000
	// originClusterName is the translator's origin cluster (xDS contract): an entry proxied to
	// it ("via_upstream") was answered, and recorded, by the origin.
	originClusterName = "yatagarasu_origin"
)

// AccessLogServer is Envoy's gRPC access-log service (envoy.service.accesslog.v3). It exists so
// that requests Envoy answers by itself — its own 431, ext_proc timeout or error, upstream
// connect failure or timeout, the unprocessed route — still get exactly one audit record
// (source "envoy"). Entries for requests extproc or the origin recorded are dropped: every
// record they write marks its request id in Recorded, and an entry is looked up there after
// Settle.
type AccessLogServer struct {
	alsv3.UnimplementedAccessLogServiceServer

	obs    *Observability
	settle time.Duration
	now    func() time.Time
	q      chan pendingEntry

	mu      sync.Mutex
	stopped bool
	stop    chan struct{}
	streams sync.WaitGroup
	done    chan struct{}
}

type pendingEntry struct {
	due   time.Time
	entry *accesslogdatav3.HTTPAccessLogEntry
}

// NewAccessLogServer starts the service's settle queue; settle <= 0 means DefaultAccessLogSettle.
// Stop it with Stop once Envoy no longer sends (after the listener drained).
func NewAccessLogServer(obs *Observability, settle time.Duration) *AccessLogServer {
	if settle <= 0 {
		settle = DefaultAccessLogSettle
	}
	a := &AccessLogServer{obs: obs, settle: settle, now: time.Now, q: make(chan pendingEntry, accessLogQueueSize),
		stop: make(chan struct{}), done: make(chan struct{})}
	go a.run()
	return a
}

// StreamAccessLogs receives Envoy's entries until Envoy closes the stream or Stop is called.
func (a *AccessLogServer) StreamAccessLogs(stream alsv3.AccessLogService_StreamAccessLogsServer) error {
	a.mu.Lock()
	if a.stopped {
		a.mu.Unlock()
		return stream.SendAndClose(&alsv3.StreamAccessLogsResponse{})
	}
	a.streams.Add(1)
	a.mu.Unlock()
	defer a.streams.Done()

	msgs := make(chan *alsv3.StreamAccessLogsMessage)
	errc := make(chan error, 1)
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				errc <- err
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case m := <-msgs:
			for _, e := range m.GetHttpLogs().GetLogEntry() {
				a.enqueue(ctx, e)
			}
		case err := <-errc:
			if errors.Is(err, io.EOF) {
				return stream.SendAndClose(&alsv3.StreamAccessLogsResponse{})
			}
			if ctx.Err() != nil {
				return nil
			}
			return err
		case <-a.stop:
			// Draining: end the stream with OK; Envoy reconnects (to another replica).
			return stream.SendAndClose(&alsv3.StreamAccessLogsResponse{})
		}
	}
}

// enqueue waits for room (backpressure on Envoy's log stream, never on requests).
func (a *AccessLogServer) enqueue(ctx context.Context, e *accesslogdatav3.HTTPAccessLogEntry) {
	if !a.wanted(e) {
		return
	}
	select {
	case a.q <- pendingEntry{due: a.now().Add(a.settle), entry: e}:
	case <-ctx.Done():
	case <-a.stop:
	}
}

// wanted drops what cannot need an Envoy record before it waits: audit off, or answered by
// the origin (which writes its own record).
func (a *AccessLogServer) wanted(e *accesslogdatav3.HTTPAccessLogEntry) bool {
	if a.obs == nil || a.obs.Audit == nil {
		return false
	}
	return !(e.GetResponse().GetResponseCodeDetails() == "via_upstream" && e.GetCommonProperties().GetUpstreamCluster() == originClusterName)
}

// run checks each entry once it is due (entries are due in arrival order) and writes a record
// for it unless its request id was recorded; after Stop it checks the rest without waiting.
func (a *AccessLogServer) run() {
	defer close(a.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for p := range a.q {
		if wait := p.due.Sub(a.now()); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-a.stop:
				timer.Stop()
			}
		}
		a.handle(p.entry)
	}
}

func (a *AccessLogServer) handle(e *accesslogdatav3.HTTPAccessLogEntry) {
	id := e.GetRequest().GetRequestId()
	if a.obs.Recorded.Contains(id) {
		return
	}
	rec := a.obs.envoyRecord(e)
	a.obs.logAudit(rec)
}

// Stop ends the open streams, then writes what is still waiting (without the settle delay)
// and returns once it is in the audit queue.
func (a *AccessLogServer) Stop() {
	if a == nil {
		return
	}
	a.mu.Lock()
	if a.stopped {
		a.mu.Unlock()
		return
	}
	a.stopped = true
	close(a.stop)
	a.mu.Unlock()
	a.streams.Wait()
	close(a.q)
	<-a.done
}

// envoyRecord turns an Envoy access-log entry into an audit record. Envoy does not know the
// bucket, key or user (those are extproc's decision); a request it refused before decoding
// headers (431) has no request id, so the record gets a fresh one.
func (o *Observability) envoyRecord(e *accesslogdatav3.HTTPAccessLogEntry) audit.Record {
	cm, rq, rs := e.GetCommonProperties(), e.GetRequest(), e.GetResponse()
	id := rq.GetRequestId()
	if id == "" {
		id = uuid.NewString()
	}
	path, query, _ := strings.Cut(rq.GetPath(), "?")
	method := ""
	if m := rq.GetRequestMethod(); m != 0 {
		method = m.String()
	}
	clientIP := telemetry.ClientIP(rq.GetForwardedFor(), o.hops())
	if clientIP == "" {
		if sa := cm.GetDownstreamRemoteAddress().GetSocketAddress(); sa != nil {
			clientIP = sa.GetAddress()
		}
	}
	start := time.Time{}
	if cm.GetStartTime() != nil {
		start = cm.GetStartTime().AsTime()
	}
	rec := audit.Record{
		Timestamp: start, RequestID: id, CorrelationID: id, ClientIP: clientIP,
		Method: method, Path: path, Query: o.Redactor.Query(query),
		Status: int(rs.GetResponseCode().GetValue()), Bytes: int64(rs.GetResponseBodyBytes()),
		CacheStatus: audit.CacheBypass, UserAgent: rq.GetUserAgent(),
		Referer: o.Redactor.Header("referer", rq.GetReferer()),
		Reason:  rs.GetResponseCodeDetails(), Source: audit.SourceEnvoy,
	}
	if d := cm.GetTimeToLastDownstreamTxByte(); d != nil {
		rec.DurationMS = float64(d.AsDuration().Microseconds()) / 1000
	}
	return rec
}

// logAudit writes a record and remembers its request id, so Envoy's access-log entry for the
// same request is not recorded again. Every audit record goes through here.
func (o *Observability) logAudit(r audit.Record) {
	o.Recorded.Add(r.RequestID)
	o.Audit.Log(r)
}

// registerAccessLog serves Envoy's access logs on the ext_proc gRPC server, so the generated
// access logger reuses the ext_proc cluster and no extra port or cluster is needed.
func (s *Service) registerAccessLog() *AccessLogServer {
	a := NewAccessLogServer(s.obs, 0)
	alsv3.RegisterAccessLogServiceServer(s.grpc, a)
	return a
}
