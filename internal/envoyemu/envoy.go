package envoyemu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/google/uuid"
)

// Resources is one complete set of xDS resources (what a snapshot holds), used to start the
// harness without an xDS server.
type Resources struct {
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
}

// Options configures the harness.
type Options struct {
	// NodeID is sent as node.id on the ADS stream.
	NodeID string
	// Logger receives access-log style lines and xDS events; nil discards them.
	Logger *slog.Logger
	// ListenAddress overrides the listener's socket address (e.g. "127.0.0.1:0" in tests).
	ListenAddress string
}

// Envoy is a running emulation of Envoy's HTTP data path driven by xDS resources.
type Envoy struct {
	log      *slog.Logger
	opts     Options
	nodeAddr string // Envoy's local_info address, appended to XFF for loopback peers
	cfg      atomic.Pointer[dataPlane]
	pool     *upstreamPool
	als      *alsSender // gRPC access logger (accesslog.go)

	mu       sync.Mutex
	srv      *http.Server
	ln       net.Listener
	boundFor string // listener address the socket was bound for
	closed   bool
	active   int // in-flight handlers
	idle     *sync.Cond

	bgCancel context.CancelFunc
	bgWG     sync.WaitGroup
}

// maxServerHeaderBytes lets Go's server read up to Envoy's 8192 KiB cap so that the configured
// max_request_headers_kb is enforced by the handler with Envoy's 431 reply.
const maxServerHeaderBytes = 8192*1024 + 64*1024

func newEnvoy(opts Options) *Envoy {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Envoy{log: log, opts: opts, nodeAddr: localNodeAddress(), pool: newUpstreamPool()}
	e.idle = sync.NewCond(&e.mu)
	e.als = newALSSender(e, &corev3.Node{Id: opts.NodeID, Cluster: "yatagarasu", UserAgentName: "envoyemu"})
	return e
}

// New starts the harness from resources given directly (unit tests). It fails with an
// *UnsupportedError when the resources use anything the harness does not emulate.
func New(ctx context.Context, res Resources, opts Options) (*Envoy, error) {
	dp, err := compile(res)
	if err != nil {
		return nil, err
	}
	dp.version = "static"
	e := newEnvoy(opts)
	if err := e.apply(ctx, dp); err != nil {
		_ = e.Close()
		return nil, err
	}
	return e, nil
}

// apply swaps in a new data plane, binding the listener socket on first use.
func (e *Envoy) apply(_ context.Context, dp *dataPlane) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return errors.New("envoyemu: closed")
	}
	if e.srv == nil {
		addr := dp.listenAddr
		if e.opts.ListenAddress != "" {
			addr = e.opts.ListenAddress
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("envoyemu: listen on %s: %w", addr, err)
		}
		e.ln = ln
		e.boundFor = dp.listenAddr
		e.srv = &http.Server{
			Handler:        e,
			MaxHeaderBytes: maxServerHeaderBytes,
			ErrorLog:       slog.NewLogLogger(e.log.Handler(), slog.LevelDebug),
		}
		e.cfg.Store(dp)
		srv := e.srv
		e.bgWG.Add(1)
		go func() {
			defer e.bgWG.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				e.log.Error("envoyemu: listener stopped", "err", err)
			}
		}()
		e.log.Info("envoyemu: listener started", "address", ln.Addr().String(), "version", dp.version)
		return nil
	}
	if dp.listenAddr != e.boundFor && e.opts.ListenAddress == "" {
		e.log.Warn("envoyemu: listener address changed; rebinding is not emulated, keeping the old socket", "old", e.boundFor, "new", dp.listenAddr)
	}
	e.cfg.Store(dp)
	e.log.Info("envoyemu: config applied", "version", dp.version)
	return nil
}

// URL returns http://host:port of the running listener.
func (e *Envoy) URL() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ln == nil {
		return ""
	}
	return "http://" + e.ln.Addr().String()
}

// Version returns the last applied xDS version ("cds/lds/rds"), or "static" for New.
func (e *Envoy) Version() string {
	if dp := e.cfg.Load(); dp != nil {
		return dp.version
	}
	return ""
}

// Close stops the ADS client and the listener, waits for in-flight requests and closes all
// upstream connections.
func (e *Envoy) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	srv := e.srv
	cancel := e.bgCancel
	e.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	var errs []error
	if srv != nil {
		if err := srv.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close listener: %w", err))
		}
	}
	e.mu.Lock()
	for e.active > 0 {
		e.idle.Wait()
	}
	e.mu.Unlock()
	e.bgWG.Wait()
	e.als.close() // after the last request: its entry is queued
	if err := e.pool.close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// ServeHTTP runs one downstream request through HCM → ext_proc → router.
func (e *Envoy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		panic(http.ErrAbortHandler)
	}
	e.active++
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.active--
		if e.active == 0 {
			e.idle.Broadcast()
		}
		e.mu.Unlock()
	}()

	start := time.Now()
	dp := e.cfg.Load()
	cw := &countingWriter{ResponseWriter: w}
	st := &stream{e: e, dp: dp, w: cw, r: r, start: start}
	defer st.logAccess(cw) // also when the handler aborts (reset after headers)
	st.serve()
}

// stream is the state of one downstream request.
type stream struct {
	e       *Envoy
	dp      *dataPlane
	w       http.ResponseWriter
	r       *http.Request
	start   time.Time
	headers *headerMap
	route   *route
	body    []byte // non-nil when CONTINUE_AND_REPLACE replaced the request body
	replace bool
	access  accessInfo // what the access-log entry needs (accesslog.go)
}

func (s *stream) serve() {
	if !s.decodeHeaders() {
		return
	}
	s.route = s.matchRoute()
	if ep := s.dp.extProc; ep != nil {
		if !s.runExtProc(ep) {
			return
		}
	}
	s.routeRequest()
}

// decodeHeaders builds Envoy's request header map and applies the HCM request mutations
// (ConnectionManagerUtility::mutateRequestHeaders) for the fields the harness allows.
func (s *stream) decodeHeaders() bool {
	r, hcm := s.r, s.dp.hcm
	h := &headerMap{}
	h.add(":authority", r.Host)
	h.add(":path", r.RequestURI)
	h.add(":method", r.Method)
	keys := make([]string, 0, len(r.Header))
	for k := range r.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys) // Go's header map loses order; sorted for determinism (see doc.go)
	regular := 0
	for _, k := range keys {
		lk := strings.ToLower(k)
		vals := r.Header[k]
		if lk == "x-forwarded-for" && len(vals) > 1 {
			vals = []string{strings.Join(vals, ",")} // inline header: Envoy coalesces
		}
		for _, v := range vals {
			h.add(lk, v)
			regular++
		}
	}
	if regular+1 > hcm.maxHeadersCount { // +1: Host
		s.localReply(431, []byte("Request Header Fields Too Large"), "http1.too_many_headers", nil)
		return false
	}
	size := len("host") + len(r.Host) // the HTTP/1 codec counts Host, not the request line
	for _, e := range h.entries {
		if !strings.HasPrefix(e.key, ":") {
			size += len(e.key) + len(e.value)
		}
	}
	if size > hcm.maxHeadersKB*1024 {
		s.localReply(431, []byte("Request Header Fields Too Large"), "http1.headers_too_large", nil)
		return false
	}

	// Connection-specific and proxy headers.
	for _, k := range []string{"connection", "upgrade", "keep-alive", "proxy-connection", "transfer-encoding", "x-envoy-internal", "x-forwarded-client-cert"} {
		h.remove(k)
	}
	if te, ok := h.get("te"); ok {
		h.remove("te")
		for _, tok := range strings.Split(te, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "trailers") {
				h.add("te", "trailers")
				break
			}
		}
	}
	if n := h.count("referer"); n > 1 {
		h.remove("referer")
	} else if n == 1 {
		ref, _ := h.get("referer")
		if u, err := url.Parse(ref); err != nil || u.Scheme == "" || u.Host == "" {
			h.remove("referer")
		}
	}

	peer := peerIP(r.RemoteAddr)
	if hcm.useRemoteAddress {
		xffIP := peer
		if ip := net.ParseIP(peer); ip != nil && ip.IsLoopback() {
			xffIP = s.e.nodeAddr
		}
		if cur, ok := h.get("x-forwarded-for"); ok && cur != "" {
			h.set("x-forwarded-for", cur+","+xffIP)
		} else {
			h.set("x-forwarded-for", xffIP)
		}
		h.set("x-forwarded-proto", "http") // xff_num_trusted_hops is 0: always overwrite
	}
	if _, ok := h.get("x-forwarded-proto"); !ok {
		h.set("x-forwarded-proto", "http")
	}
	proto, _ := h.get("x-forwarded-proto")
	if proto != "https" {
		proto = "http"
	}
	h.set(":scheme", proto)

	// Since Envoy 1.33 no address is internal unless internal_address_config says so (the
	// harness does not allow that field), so every request is external; with
	// use_remote_address it is also an edge request.
	edge := hcm.useRemoteAddress
	for _, k := range []string{
		"x-envoy-retriable-status-codes", "x-envoy-retriable-header-names", "x-envoy-retry-on",
		"x-envoy-retry-grpc-on", "x-envoy-max-retries", "x-envoy-upstream-alt-stat-name",
		"x-envoy-upstream-rq-timeout-ms", "x-envoy-upstream-rq-per-try-timeout-ms",
		"x-envoy-upstream-rq-timeout-alt-response", "x-envoy-expected-rq-timeout-ms",
		"x-envoy-force-trace", "x-envoy-ip-tags", "x-envoy-original-url", "x-envoy-hedge-on-per-try-timeout",
	} {
		h.remove(k)
	}
	if edge {
		for _, k := range []string{"x-envoy-decorator-operation", "x-envoy-downstream-service-cluster", "x-envoy-downstream-service-node"} {
			h.remove(k)
		}
		if peer != "" {
			h.set("x-envoy-external-address", peer)
		}
	}
	if hcm.generateRequestID {
		_, has := h.get("x-request-id")
		force := !hcm.preserveRequestID && edge
		if force || !has {
			h.set("x-request-id", uuid.NewString())
		}
	}
	s.headers = h
	return true
}

func peerIP(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return remoteAddr
	}
	return host
}

// localNodeAddress mirrors Envoy's LocalInfo address (Network::Utility::getLocalAddress(v4)):
// the first non-loopback IPv4 address of the host, else loopback.
func localNodeAddress() string {
	ifaces, err := net.Interfaces()
	if err == nil {
		for _, ifc := range ifaces {
			if ifc.Flags&net.FlagUp == 0 {
				continue
			}
			addrs, err := ifc.Addrs()
			if err != nil {
				continue
			}
			for _, a := range addrs {
				if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
					return ipn.IP.String()
				}
			}
		}
	}
	return "127.0.0.1"
}
