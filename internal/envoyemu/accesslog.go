package envoyemu

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogdatav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	grpcalsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/grpc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// accessLogConfig is one HCM access_log entry of type envoy.access_loggers.http_grpc.
type accessLogConfig struct {
	logName string
	cluster string
}

// alsQueueSize bounds the entries waiting for the ALS stream; beyond it entries are dropped, as
// Envoy drops them when its buffer is over buffer_size_bytes and the stream is not writable.
const alsQueueSize = 16384

// compileAccessLogs reads the HCM's access loggers; the checker has already limited them to
// http_grpc with log_name, envoy_grpc and transport_api_version V3.
func compileAccessLogs(dp *dataPlane, hcm *hcmv3.HttpConnectionManager, path string) error {
	dp.hcm.alwaysSetRequestID = hcm.GetAlwaysSetRequestIdInResponse()
	logs := hcm.GetAccessLog()
	if len(logs) > 1 {
		return &UnsupportedError{Field: "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.access_log", Path: path + " (more than one access logger)", What: "feature"}
	}
	for _, al := range logs {
		cfg := &grpcalsv3.HttpGrpcAccessLogConfig{}
		if al.GetTypedConfig() == nil || !al.GetTypedConfig().MessageIs(cfg) {
			return &UnsupportedError{Field: al.GetTypedConfig().GetTypeUrl(), Path: path + ".access_log[0]", What: "extension type"}
		}
		if err := al.GetTypedConfig().UnmarshalTo(cfg); err != nil {
			return fmt.Errorf("envoyemu: %s.access_log[0]: decode HttpGrpcAccessLogConfig: %w", path, err)
		}
		cc := cfg.GetCommonConfig()
		cluster := cc.GetGrpcService().GetEnvoyGrpc().GetClusterName()
		if cluster == "" {
			return &UnsupportedError{Field: "envoy.extensions.access_loggers.grpc.v3.CommonGrpcAccessLogConfig.grpc_service", Path: path + ".access_log[0] (only envoy_grpc is emulated)", What: "feature"}
		}
		if cc.GetTransportApiVersion() != corev3.ApiVersion_V3 {
			return fmt.Errorf("envoyemu: %s.access_log[0]: transport_api_version must be V3 (Envoy rejects %s)", path, cc.GetTransportApiVersion())
		}
		// Like Envoy, a cluster that does not exist (yet) is accepted; each log attempt then fails.
		if c, ok := dp.clusters[cluster]; ok && !c.http2 {
			return fmt.Errorf("envoyemu: %s.access_log[0]: cluster %q has no HTTP/2 protocol options; Envoy's gRPC client needs HTTP/2", path, cluster)
		}
		dp.accessLog = &accessLogConfig{logName: cc.GetLogName(), cluster: cluster}
	}
	return nil
}

// accessInfo is what the stream learns for its access-log entry while it runs.
type accessInfo struct {
	details         string // %RESPONSE_CODE_DETAILS%
	upstreamCluster string
	upstreamTx      time.Time // first byte sent upstream
	upstreamRx      time.Time // response headers from upstream
	upstreamDone    time.Time // upstream body complete
}

// countingWriter records what went downstream: status, body bytes, first and last byte times.
type countingWriter struct {
	http.ResponseWriter
	status  int
	bytes   uint64
	firstTx time.Time
}

func (w *countingWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status, w.firstTx = status, time.Now()
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *countingWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status, w.firstTx = http.StatusOK, time.Now()
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += uint64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the server's writer (Flush).
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// accessLogEntry builds the HTTPAccessLogEntry Envoy's http_grpc logger fills, for the fields
// the harness knows. Request properties come from the request header map, so a request refused
// by the codec (431) has none, as in Envoy.
func (s *stream) accessLogEntry(cw *countingWriter, end time.Time) *accesslogdatav3.HTTPAccessLogEntry {
	common := &accesslogdatav3.AccessLogCommon{
		DownstreamRemoteAddress:    tcpAddress(s.r.RemoteAddr),
		StartTime:                  timestamppb.New(s.start),
		TimeToLastDownstreamTxByte: durationpb.New(end.Sub(s.start)),
		UpstreamCluster:            s.access.upstreamCluster,
		RouteName:                  routeName(s.route),
	}
	if local, ok := s.r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		common.DownstreamLocalAddress = tcpAddress(local.String())
	}
	if s.headers != nil {
		common.TimeToLastRxByte = durationpb.New(0) // headers-only: complete when decoded
	}
	if !cw.firstTx.IsZero() {
		common.TimeToFirstDownstreamTxByte = durationpb.New(cw.firstTx.Sub(s.start))
	}
	for _, t := range []struct {
		at  time.Time
		set func(*durationpb.Duration)
	}{
		{s.access.upstreamTx, func(d *durationpb.Duration) { common.TimeToFirstUpstreamTxByte, common.TimeToLastUpstreamTxByte = d, d }},
		{s.access.upstreamRx, func(d *durationpb.Duration) { common.TimeToFirstUpstreamRxByte = d }},
		{s.access.upstreamDone, func(d *durationpb.Duration) { common.TimeToLastUpstreamRxByte = d }},
	} {
		if !t.at.IsZero() {
			t.set(durationpb.New(t.at.Sub(s.start)))
		}
	}
	details := s.access.details
	if cw.status == 0 && details == "" {
		details = "downstream_remote_disconnect"
	}
	entry := &accesslogdatav3.HTTPAccessLogEntry{
		CommonProperties: common,
		ProtocolVersion:  accesslogdatav3.HTTPAccessLogEntry_HTTP11,
		Response: &accesslogdatav3.HTTPResponseProperties{
			ResponseBodyBytes:   cw.bytes,
			ResponseCodeDetails: details,
		},
	}
	if cw.status != 0 {
		entry.Response.ResponseCode = wrapperspb.UInt32(uint32(cw.status))
	}
	if h := s.headers; h != nil {
		get := func(k string) string { v, _ := h.getJoined(k); return v }
		method := corev3.RequestMethod_METHOD_UNSPECIFIED
		if v, ok := corev3.RequestMethod_value[get(":method")]; ok {
			method = corev3.RequestMethod(v)
		}
		entry.Request = &accesslogdatav3.HTTPRequestProperties{
			RequestMethod: method,
			Scheme:        get(":scheme"),
			Authority:     get(":authority"),
			Path:          get(":path"),
			UserAgent:     get("user-agent"),
			Referer:       get("referer"),
			ForwardedFor:  get("x-forwarded-for"),
			RequestId:     get("x-request-id"),
		}
	}
	return entry
}

func routeName(r *route) string {
	if r == nil {
		return ""
	}
	return r.name
}

func tcpAddress(hostport string) *corev3.Address {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil
	}
	p, err := strconv.ParseUint(port, 10, 32)
	if err != nil {
		return nil
	}
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: strings.Trim(host, "[]"), PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)},
	}}}
}

// logAccess hands the finished stream's entry to the ALS sender (no-op without access_log).
func (s *stream) logAccess(cw *countingWriter) {
	cfg := s.dp.accessLog
	if cfg == nil {
		return
	}
	c, ok := s.dp.clusters[cfg.cluster]
	if !ok {
		s.e.log.Warn("envoyemu: access-log cluster not found; entry dropped", "cluster", cfg.cluster)
		return
	}
	s.e.als.enqueue(alsItem{cfg: cfg, cluster: c, entry: s.accessLogEntry(cw, time.Now())})
}

// alsItem is one entry with the logger and cluster it goes to (a push may change either).
type alsItem struct {
	cfg     *accessLogConfig
	cluster *clusterConfig
	entry   *accesslogdatav3.HTTPAccessLogEntry
}

// alsSender plays Envoy's gRPC access logger: one long-lived StreamAccessLogs stream per
// (cluster, log_name), the identifier (node + log_name) on its first message only, entries sent
// in batches of whatever is queued. A failed stream is reopened for the next batch; the failed
// batch is dropped (Envoy's access logging is best effort). Entries are sent as soon as they are
// queued rather than after buffer_flush_interval (1 s), which only shortens the delay.
type alsSender struct {
	e    *Envoy
	node *corev3.Node
	q    chan alsItem

	mu     sync.Mutex
	closed bool
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
}

func newALSSender(e *Envoy, node *corev3.Node) *alsSender {
	return &alsSender{e: e, node: node, q: make(chan alsItem, alsQueueSize), stop: make(chan struct{}), done: make(chan struct{})}
}

func (a *alsSender) enqueue(it alsItem) {
	a.once.Do(func() { go a.run() })
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return
	}
	select {
	case a.q <- it:
	default:
		a.e.log.Warn("envoyemu: access-log queue full; entry dropped", "request_id", it.entry.GetRequest().GetRequestId())
	}
}

// close sends what is queued (bounded by a short deadline) and ends the stream.
func (a *alsSender) close() {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	a.closed = true
	close(a.stop)
	a.mu.Unlock()
	a.once.Do(func() { close(a.done) }) // never started: nothing to wait for
	<-a.done
}

const alsCloseDeadline = 2 * time.Second

// alsStream is the open StreamAccessLogs stream; only the run goroutine touches it.
type alsStream struct {
	key    string
	st     alsv3.AccessLogService_StreamAccessLogsClient
	cancel context.CancelFunc
}

// close half-closes the stream and waits (bounded) for the server's reply, which it sends only
// after it has read every entry, so entries sent just before a shutdown are not cut off.
func (s *alsStream) close() {
	if s.st == nil {
		return
	}
	done := make(chan struct{})
	go func(st alsv3.AccessLogService_StreamAccessLogsClient) {
		defer close(done)
		_, _ = st.CloseAndRecv()
	}(s.st)
	t := time.NewTimer(alsCloseDeadline)
	select {
	case <-done:
	case <-t.C:
	}
	t.Stop()
	s.cancel()
	<-done
	s.st, s.cancel = nil, nil
}

func (a *alsSender) run() {
	defer close(a.done)
	var cur alsStream
	defer cur.close()
	var deadline <-chan time.Time
	for {
		var first alsItem
		select {
		case first = <-a.q:
		case <-a.stop:
			if deadline == nil {
				t := time.NewTimer(alsCloseDeadline)
				defer t.Stop()
				deadline = t.C
			}
			select {
			case first = <-a.q:
			default:
				return // everything queued was sent
			}
		case <-deadline:
			return
		}
		batch := []alsItem{first}
		for len(batch) < 256 && len(a.q) > 0 {
			it := <-a.q
			if it.cfg.logName != batch[0].cfg.logName || it.cluster.poolKey() != batch[0].cluster.poolKey() {
				a.send(&cur, batch)
				batch = batch[:0]
			}
			batch = append(batch, it)
		}
		a.send(&cur, batch)
	}
}

// send writes one batch, opening the stream (identifier first) when needed; a stream that
// fails is reopened once for the same batch, then the batch is dropped.
func (a *alsSender) send(cur *alsStream, batch []alsItem) {
	it := batch[0]
	key := it.cfg.logName + "|" + it.cluster.poolKey()
	if cur.st != nil && cur.key != key {
		cur.close()
	}
	entries := make([]*accesslogdatav3.HTTPAccessLogEntry, len(batch))
	for i, b := range batch {
		entries[i] = b.entry
	}
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		msg := &alsv3.StreamAccessLogsMessage{LogEntries: &alsv3.StreamAccessLogsMessage_HttpLogs{
			HttpLogs: &alsv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: entries},
		}}
		if cur.st == nil {
			if err = a.open(cur, it, key); err != nil {
				continue
			}
			msg.Identifier = &alsv3.StreamAccessLogsMessage_Identifier{Node: a.node, LogName: it.cfg.logName}
		}
		if err = cur.st.Send(msg); err == nil {
			return
		}
		cur.close()
	}
	a.e.log.Warn("envoyemu: access-log entries dropped", "entries", len(batch), "cluster", it.cluster.name, "err", err)
}

func (a *alsSender) open(cur *alsStream, it alsItem, key string) error {
	conn, err := a.e.pool.grpcConn(it.cluster)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	st, err := alsv3.NewAccessLogServiceClient(conn).StreamAccessLogs(ctx)
	if err != nil {
		cancel()
		return fmt.Errorf("open access-log stream to cluster %q: %w", it.cluster.name, err)
	}
	cur.key, cur.st, cur.cancel = key, st, cancel
	return nil
}
