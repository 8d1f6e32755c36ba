package chaos

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// DelayProxy is a TCP proxy that forwards to a backend after holding each new connection for a
// configurable delay: a slow S3 server (every request on a fresh connection waits, bytes flow
// unchanged once it is through).
type DelayProxy struct {
	ln      net.Listener
	backend string
	delay   atomic.Int64 // nanoseconds
	wg      sync.WaitGroup
	ctx     context.Context
	cancel  context.CancelFunc
}

// NewDelayProxy listens on a free loopback port and forwards to backend (host:port).
func NewDelayProxy(backend string) (*DelayProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("delay proxy: listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &DelayProxy{ln: ln, backend: backend, ctx: ctx, cancel: cancel}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Addr is the proxy's host:port, to use as a bucket's S3 endpoint.
func (p *DelayProxy) Addr() string { return p.ln.Addr().String() }

// SetDelay sets how long connections accepted from now on wait before bytes flow (0: none).
func (p *DelayProxy) SetDelay(d time.Duration) { p.delay.Store(int64(d)) }

func (p *DelayProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.handle(c)
		}()
	}
}

func (p *DelayProxy) handle(c net.Conn) {
	defer c.Close()
	if d := time.Duration(p.delay.Load()); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-p.ctx.Done():
			t.Stop()
			return
		}
	}
	var dialer net.Dialer
	up, err := dialer.DialContext(p.ctx, "tcp", p.backend)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	select {
	case <-done:
		<-done
	case <-p.ctx.Done():
	}
}

// Close stops accepting, cuts every connection and waits for the proxy's goroutines.
func (p *DelayProxy) Close() error {
	p.cancel()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

// FlakyProxy is an HTTP reverse proxy in front of S3 that fails a share of requests: every
// FailEvery-th request gets a 500 S3 error document, every CutEvery-th forwarded response is cut
// off halfway through its body. It keeps the Host header, so SigV4 signatures still verify.
type FlakyProxy struct {
	srv   *http.Server
	ln    net.Listener
	n     atomic.Int64
	fail  atomic.Int64
	cut   atomic.Int64
	proxy *httputil.ReverseProxy
	done  chan struct{}
}

// NewFlakyProxy listens on a free loopback port in front of backend (an http:// URL); it
// forwards everything until SetFaults is called.
func NewFlakyProxy(backend string) (*FlakyProxy, error) {
	u, err := url.Parse(backend)
	if err != nil {
		return nil, fmt.Errorf("flaky proxy: backend %q: %w", backend, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("flaky proxy: listen: %w", err)
	}
	p := &FlakyProxy{ln: ln, done: make(chan struct{})}
	p.proxy = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = r.In.Host // the client signed this Host
		},
	}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(p.done)
		_ = p.srv.Serve(ln)
	}()
	return p, nil
}

// URL is the proxy's base URL, to use as a bucket's S3 endpoint.
func (p *FlakyProxy) URL() string { return "http://" + p.ln.Addr().String() }

// SetFaults makes every failEvery-th request a 500 and cuts every cutEvery-th forwarded body
// (0 turns a fault off).
func (p *FlakyProxy) SetFaults(failEvery, cutEvery int) {
	p.fail.Store(int64(failEvery))
	p.cut.Store(int64(cutEvery))
}

// ServeHTTP applies the configured faults to one request.
func (p *FlakyProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := p.n.Add(1)
	if f := p.fail.Load(); f > 0 && n%f == 0 {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>chaos</Message></Error>`)
		return
	}
	if c := p.cut.Load(); c > 0 && n%c == 0 && r.Method == http.MethodGet {
		w = &cutWriter{ResponseWriter: w}
	}
	p.proxy.ServeHTTP(w, r)
}

// cutWriter forwards headers and the first half of the announced body, then aborts the response
// (the server turns a panic with http.ErrAbortHandler into a dropped connection, which is how a
// backend dying mid-body looks to its client).
type cutWriter struct {
	http.ResponseWriter
	left int64
	set  bool
}

func (c *cutWriter) WriteHeader(code int) {
	if !c.set {
		c.set = true
		var n int64
		if _, err := fmt.Sscan(c.Header().Get("Content-Length"), &n); err == nil {
			c.left = n / 2
		}
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *cutWriter) Write(b []byte) (int, error) {
	if !c.set {
		c.WriteHeader(http.StatusOK)
	}
	if int64(len(b)) >= c.left {
		_, _ = c.ResponseWriter.Write(b[:c.left])
		if f, ok := c.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		panic(http.ErrAbortHandler)
	}
	c.left -= int64(len(b))
	return c.ResponseWriter.Write(b)
}

// Close stops the proxy and waits for its server loop.
func (p *FlakyProxy) Close() error {
	err := p.srv.Close()
	<-p.done
	if err != nil {
		return fmt.Errorf("flaky proxy: %w", err)
	}
	return nil
}
