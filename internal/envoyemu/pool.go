package envoyemu

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// upstreamPool owns the upstream connections: one shared *grpc.ClientConn per gRPC cluster (as
// Envoy's async gRPC client multiplexes streams over one HTTP/2 pool) and one *http.Transport per
// HTTP/1.1 cluster. Entries are keyed by the cluster's settings, so a push that changes a cluster
// gets fresh connections; superseded entries are closed only at Close (in-flight requests may
// still use them).
type upstreamPool struct {
	mu         sync.Mutex
	closed     bool
	grpcConns  map[string]*grpc.ClientConn
	transports map[string]*http.Transport
}

func newUpstreamPool() *upstreamPool {
	return &upstreamPool{grpcConns: map[string]*grpc.ClientConn{}, transports: map[string]*http.Transport{}}
}

var errPoolClosed = errors.New("envoyemu: upstream pool closed")

// dialer connects to a cluster's endpoint honouring connect_timeout and, for STRICT_DNS, the
// dns_lookup_family (resolution happens per connection, not on Envoy's refresh timer).
func dialer(c *clusterConfig) func(ctx context.Context, _, _ string) (net.Conn, error) {
	return func(ctx context.Context, _, _ string) (net.Conn, error) {
		host := c.host
		if net.ParseIP(host) == nil {
			ip, err := resolve(ctx, host, c.family)
			if err != nil {
				return nil, fmt.Errorf("resolve cluster %q host %q: %w", c.name, host, err)
			}
			host = ip
		}
		d := net.Dialer{Timeout: c.connectTimeout}
		return d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.FormatUint(uint64(c.port), 10)))
	}
}

func resolve(ctx context.Context, host string, family clusterv3.Cluster_DnsLookupFamily) (string, error) {
	addrs, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return "", err
	}
	var v4, v6 []string
	for _, a := range addrs {
		if a.IP.To4() != nil {
			v4 = append(v4, a.IP.String())
		} else {
			v6 = append(v6, a.IP.String())
		}
	}
	var order [][]string
	switch family {
	case clusterv3.Cluster_V4_ONLY:
		order = [][]string{v4}
	case clusterv3.Cluster_V6_ONLY:
		order = [][]string{v6}
	case clusterv3.Cluster_V4_PREFERRED, clusterv3.Cluster_ALL:
		order = [][]string{v4, v6}
	default: // AUTO: IPv6 preferred
		order = [][]string{v6, v4}
	}
	for _, list := range order {
		if len(list) > 0 {
			return list[0], nil
		}
	}
	return "", fmt.Errorf("no address of family %s for %q", family, host)
}

// grpcConn returns the shared gRPC connection for an HTTP/2 cluster.
func (p *upstreamPool) grpcConn(c *clusterConfig) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errPoolClosed
	}
	key := c.poolKey()
	if cc, ok := p.grpcConns[key]; ok {
		return cc, nil
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return dialer(c)(ctx, "tcp", addr) }),
		// envoy_grpc uses the cluster name as :authority.
		grpc.WithAuthority(c.name),
		// EnvoyGrpc.max_receive_message_length defaults to 0 = unlimited.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32)),
	}
	if c.keepalive != nil && c.keepalive.interval > 0 {
		opts = append(opts, grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: c.keepalive.interval, Timeout: c.keepalive.timeout}))
	}
	cc, err := grpc.NewClient("passthrough:///"+c.endpoint(), opts...)
	if err != nil {
		return nil, fmt.Errorf("envoyemu: grpc client for cluster %q: %w", c.name, err)
	}
	p.grpcConns[key] = cc
	return cc, nil
}

// transport returns the HTTP/1.1 transport for a router cluster.
func (p *upstreamPool) transport(c *clusterConfig) (*http.Transport, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errPoolClosed
	}
	key := c.poolKey()
	if t, ok := p.transports[key]; ok {
		return t, nil
	}
	t := &http.Transport{
		Proxy:                 nil, // Envoy does not honour HTTP_PROXY
		DialContext:           dialer(c),
		DisableCompression:    true, // never add Accept-Encoding or decompress
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       time.Hour, // Envoy's default upstream idle_timeout is 1h
		TLSNextProto:          map[string]func(string, *tls.Conn) http.RoundTripper{},
		ResponseHeaderTimeout: 0, // route.timeout is enforced by the router via the request context
	}
	p.transports[key] = t
	return t, nil
}

// close tears down every connection.
func (p *upstreamPool) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	var errs []error
	for k, cc := range p.grpcConns {
		if err := cc.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close grpc conn %s: %w", k, err))
		}
	}
	for _, t := range p.transports {
		t.CloseIdleConnections()
	}
	return errors.Join(errs...)
}
