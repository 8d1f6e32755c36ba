package envoyemu

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
)

// constantHash puts every node on one snapshot, as the product's xDS server does.
type constantHash struct{}

func (constantHash) ID(*corev3.Node) string { return "yatagarasu" }

// xdsServer is a real go-control-plane SotW ADS server on loopback.
type xdsServer struct {
	cache cachev3.SnapshotCache
	addr  string
	nacks chan *discoveryv3.DiscoveryRequest
}

func startXDS(t *testing.T) *xdsServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	x := &xdsServer{cache: cachev3.NewSnapshotCache(true, constantHash{}, nil), nacks: make(chan *discoveryv3.DiscoveryRequest, 16)}
	cb := serverv3.CallbackFuncs{StreamRequestFunc: func(_ int64, r *discoveryv3.DiscoveryRequest) error {
		if r.GetErrorDetail() != nil {
			select {
			case x.nacks <- r:
			default:
			}
		}
		return nil
	}}
	srv := serverv3.NewServer(ctx, x.cache, cb)
	g := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	x.addr = lis.Addr().String()
	done := make(chan struct{})
	go func() { defer close(done); _ = g.Serve(lis) }()
	t.Cleanup(func() { g.Stop(); cancel(); <-done })
	return x
}

func (x *xdsServer) set(t *testing.T, version string, res Resources) {
	t.Helper()
	m := map[resourcev3.Type][]types.Resource{}
	for _, c := range res.Clusters {
		m[resourcev3.ClusterType] = append(m[resourcev3.ClusterType], c)
	}
	for _, l := range res.Listeners {
		m[resourcev3.ListenerType] = append(m[resourcev3.ListenerType], l)
	}
	for _, r := range res.Routes {
		m[resourcev3.RouteType] = append(m[resourcev3.RouteType], r)
	}
	snap, err := cachev3.NewSnapshot(version, m)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Consistent(); err != nil {
		t.Fatal(err)
	}
	if err := x.cache.SetSnapshot(context.Background(), "yatagarasu", snap); err != nil {
		t.Fatal(err)
	}
}

func TestDialAppliesSnapshotsAndNACKsUnsupported(t *testing.T) {
	ep := startExtProc(t, func(*extprocv3.ProcessingRequest, extprocv3.ExternalProcessor_ProcessServer) error { return errCloseOK })
	up := startUpstream(t)
	x := startXDS(t)
	c := contract{extProcAddr: ep.addr, originAddr: up.Listener.Addr().String()}
	res := c.resources(t)
	res.Routes = append(res.Routes[:0], c.withDefaults().routes("one"))
	x.set(t, "v1", res)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := Dial(ctx, x.addr, Options{NodeID: "test-node", ListenAddress: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = e.Close() })
	if v := e.Version(); v != "v1/v1/v1" {
		t.Fatalf("Version = %q, want v1/v1/v1", v)
	}
	if _, _, body := get(t, "GET", e.URL()+"/x", nil); string(body) != "one" {
		t.Fatalf("body %q, want one", body)
	}

	res2 := c.resources(t)
	res2.Routes = append(res2.Routes[:0], c.withDefaults().routes("two"))
	x.set(t, "v2", res2)
	waitFor(t, func() bool { return e.Version() == "v2/v2/v2" }, "version v2 applied")
	if _, _, body := get(t, "GET", e.URL()+"/x", nil); string(body) != "two" {
		t.Fatalf("after push body %q, want two", body)
	}

	bad := c.resources(t)
	bad.Routes = append(bad.Routes[:0], c.withDefaults().routes("three"))
	bad.Routes[0].VirtualHosts[0].Routes[0].Match.Headers[0].InvertMatch = true
	x.set(t, "v3", bad)
	var nack *discoveryv3.DiscoveryRequest
	select {
	case nack = <-x.nacks:
	case <-ctx.Done():
		t.Fatal("no NACK for an unsupported route configuration")
	}
	if nack.GetTypeUrl() != resourcev3.RouteType || nack.GetVersionInfo() != "v2" ||
		!strings.Contains(nack.GetErrorDetail().GetMessage(), "unsupported field envoy.config.route.v3.HeaderMatcher.invert_match") {
		t.Fatalf("NACK = %v", nack)
	}
	if v := e.Version(); !strings.HasSuffix(v, "/v2") {
		t.Errorf("Version = %q, want RDS still at v2", v)
	}
	if _, _, body := get(t, "GET", e.URL()+"/x", nil); string(body) != "two" {
		t.Fatalf("after NACK body %q, want the last good config (two)", body)
	}
}

func TestDialFailsOnUnsupportedFirstConfig(t *testing.T) {
	x := startXDS(t)
	res := contract{extProcAddr: "127.0.0.1:9001", originAddr: "127.0.0.1:9002"}.resources(t)
	res.Clusters[0].LbPolicy = 1
	x.set(t, "v1", res)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := Dial(ctx, x.addr, Options{NodeID: "n", ListenAddress: "127.0.0.1:0"})
	if err == nil {
		_ = e.Close()
		t.Fatal("Dial accepted an unsupported first config")
	}
	if !strings.Contains(err.Error(), "unsupported field envoy.config.cluster.v3.Cluster.lb_policy") {
		t.Fatalf("err = %v", err)
	}
}

// waitFor polls cond; the bound only stops a hung test, it is not a performance assertion.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for i := 0; i < 3000; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}
