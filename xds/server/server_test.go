package server_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/yatagarasu/yatagarasu/internal/config"
	"github.com/yatagarasu/yatagarasu/xds/server"
	"github.com/yatagarasu/yatagarasu/xds/translator"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitFor bounds every blocking step; it is a hang guard, not a performance threshold.
const waitFor = 30 * time.Second

func resources(t *testing.T, buckets ...string) *translator.Resources {
	t.Helper()
	cfg := &config.Config{
		Server: config.Server{Address: "127.0.0.1", Port: 8080},
		Origin: config.Origin{Address: "127.0.0.1:9002"},
	}
	for _, b := range buckets {
		cfg.Buckets = append(cfg.Buckets, config.Bucket{Name: b, PathPrefix: "/" + b})
	}
	res, err := translator.Translate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

type harness struct {
	srv  *server.Server
	reg  *prometheus.Registry
	conn *grpc.ClientConn
}

func start(t *testing.T) *harness {
	t.Helper()
	reg := prometheus.NewRegistry()
	srv := server.New(slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})), reg)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		cancel()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve returned %v after cancel", err)
			}
		case <-time.After(waitFor):
			t.Error("Serve did not return after cancel")
		}
	})
	return &harness{srv: srv, reg: reg, conn: conn}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// envoy plays Envoy's side of one SotW ADS stream.
type envoy struct {
	t      *testing.T
	stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	node   *corev3.Node
	sent   bool
	// last ACKed response per type URL
	acked map[string]*discoveryv3.DiscoveryResponse
}

func connect(t *testing.T, h *harness, nodeID string) *envoy {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	t.Cleanup(cancel)
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(h.conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &envoy{t: t, stream: stream, node: &corev3.Node{Id: nodeID, Cluster: "yatagarasu"}, acked: map[string]*discoveryv3.DiscoveryResponse{}}
}

func (e *envoy) send(req *discoveryv3.DiscoveryRequest) {
	e.t.Helper()
	if !e.sent { // set_node_on_first_message_only
		req.Node = e.node
		e.sent = true
	}
	if err := e.stream.Send(req); err != nil {
		e.t.Fatalf("send: %v", err)
	}
}

func (e *envoy) recv() *discoveryv3.DiscoveryResponse {
	e.t.Helper()
	resp, err := e.stream.Recv()
	if err != nil {
		e.t.Fatalf("recv: %v", err)
	}
	return resp
}

func (e *envoy) ack(resp *discoveryv3.DiscoveryResponse, names []string) {
	e.t.Helper()
	e.acked[resp.GetTypeUrl()] = resp
	e.send(&discoveryv3.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce(), ResourceNames: names})
}

// handshake follows Envoy's ADS order: CDS wildcard, LDS wildcard, then RDS by name; each ACKed.
func (e *envoy) handshake(wantVersion string) {
	e.t.Helper()
	steps := []struct {
		typeURL string
		names   []string
		want    []string
	}{
		{resourcev3.ClusterType, nil, []string{translator.ExtProcCluster, translator.OriginCluster}},
		{resourcev3.ListenerType, nil, []string{translator.ListenerName}},
		{resourcev3.RouteType, []string{translator.RouteConfigName}, []string{translator.RouteConfigName}},
	}
	for _, s := range steps {
		e.send(&discoveryv3.DiscoveryRequest{TypeUrl: s.typeURL, ResourceNames: s.names})
		resp := e.recv()
		if resp.GetTypeUrl() != s.typeURL || resp.GetVersionInfo() != wantVersion {
			e.t.Fatalf("%s: got %s version %q, want version %q", e.node.Id, resp.GetTypeUrl(), resp.GetVersionInfo(), wantVersion)
		}
		if got := names(e.t, resp); !equal(got, s.want) {
			e.t.Fatalf("%s %s: resources %v, want %v", e.node.Id, s.typeURL, got, s.want)
		}
		e.ack(resp, s.names)
	}
}

// nextPush reads responses until each of CDS, LDS and RDS arrived once, ACKing each.
func (e *envoy) nextPush() map[string]*discoveryv3.DiscoveryResponse {
	e.t.Helper()
	got := map[string]*discoveryv3.DiscoveryResponse{}
	for len(got) < 3 {
		resp := e.recv()
		if _, dup := got[resp.GetTypeUrl()]; dup {
			e.t.Fatalf("second %s response before the others", resp.GetTypeUrl())
		}
		got[resp.GetTypeUrl()] = resp
		var subscribed []string
		if resp.GetTypeUrl() == resourcev3.RouteType {
			subscribed = []string{translator.RouteConfigName}
		}
		e.ack(resp, subscribed)
	}
	return got
}

func names(t *testing.T, resp *discoveryv3.DiscoveryResponse) []string {
	t.Helper()
	var out []string
	for _, a := range resp.GetResources() {
		m, err := a.UnmarshalNew()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m.(interface{ GetName() string }).GetName())
	}
	return out
}

func equal(a, b []string) bool {
	set := map[string]int{}
	for _, s := range a {
		set[s]++
	}
	for _, s := range b {
		set[s]--
	}
	for _, n := range set {
		if n != 0 {
			return false
		}
	}
	return len(a) == len(b)
}

func metric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue next
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func TestEveryNodeGetsTheSnapshotAndUpdatesArePushed(t *testing.T) {
	h := start(t)
	ctx := context.Background()
	r1 := resources(t, "a")
	if err := h.srv.Update(ctx, r1); err != nil {
		t.Fatal(err)
	}
	if h.srv.Version() != r1.Version() {
		t.Fatalf("Version() = %q, want %q", h.srv.Version(), r1.Version())
	}
	if got := metric(t, h.reg, "yatagarasu_xds_config_info", map[string]string{"version": r1.Version()}); got != 1 {
		t.Fatalf("config_info{version=%s} = %v", r1.Version(), got)
	}

	a, b := connect(t, h, "envoy-a"), connect(t, h, "envoy-b")
	a.handshake(r1.Version())
	b.handshake(r1.Version())

	// A changed config is pushed to both, for every type, with the new version.
	r2 := resources(t, "a", "b")
	if r2.Version() == r1.Version() {
		t.Fatal("different configs share a version")
	}
	if err := h.srv.Update(ctx, r2); err != nil {
		t.Fatal(err)
	}
	for _, e := range []*envoy{a, b} {
		push := e.nextPush()
		for typ, resp := range push {
			if resp.GetVersionInfo() != r2.Version() {
				t.Errorf("%s %s: version %q, want %q", e.node.Id, typ, resp.GetVersionInfo(), r2.Version())
			}
		}
		if got := len(push[resourcev3.RouteType].GetResources()); got != 1 {
			t.Errorf("%s: %d route configurations", e.node.Id, got)
		}
	}

	// An identical config (rebuilt from scratch) changes nothing.
	if err := h.srv.Update(ctx, resources(t, "a", "b")); err != nil {
		t.Fatal(err)
	}
	if h.srv.Version() != r2.Version() {
		t.Fatalf("identical update moved version to %q", h.srv.Version())
	}
	if got := metric(t, h.reg, "yatagarasu_xds_reloads_total", map[string]string{"result": server.ResultUnchanged}); got != 1 {
		t.Fatalf("reloads{unchanged} = %v, want 1", got)
	}
	// Proof that nothing was pushed for it: the next message on each stream belongs to the
	// next real change (streams are ordered), not a repeat of r2.
	r3 := resources(t, "c")
	if err := h.srv.Update(ctx, r3); err != nil {
		t.Fatal(err)
	}
	for _, e := range []*envoy{a, b} {
		for typ, resp := range e.nextPush() {
			if resp.GetVersionInfo() != r3.Version() {
				t.Errorf("%s %s: version %q after identical update, want %q", e.node.Id, typ, resp.GetVersionInfo(), r3.Version())
			}
		}
	}
	if got := metric(t, h.reg, "yatagarasu_xds_reloads_total", map[string]string{"result": server.ResultApplied}); got != 3 {
		t.Errorf("reloads{applied} = %v, want 3", got)
	}
	if got := metric(t, h.reg, "yatagarasu_xds_config_info", map[string]string{"version": r1.Version()}); got != 0 {
		t.Errorf("stale config_info for %s still exported", r1.Version())
	}
}

func TestNackIsCountedAndServingContinues(t *testing.T) {
	h := start(t)
	ctx := context.Background()
	r1 := resources(t, "a")
	if err := h.srv.Update(ctx, r1); err != nil {
		t.Fatal(err)
	}
	e := connect(t, h, "envoy-nack")
	e.handshake(r1.Version())

	r2 := resources(t, "a", "b")
	if err := h.srv.Update(ctx, r2); err != nil {
		t.Fatal(err)
	}
	// Envoy rejects the new clusters: it repeats the last accepted version with error_detail.
	var cds *discoveryv3.DiscoveryResponse
	for cds == nil {
		resp := e.recv()
		if resp.GetTypeUrl() == resourcev3.ClusterType {
			cds = resp
			continue
		}
		var subscribed []string
		if resp.GetTypeUrl() == resourcev3.RouteType {
			subscribed = []string{translator.RouteConfigName}
		}
		e.ack(resp, subscribed)
	}
	e.send(&discoveryv3.DiscoveryRequest{
		TypeUrl:       resourcev3.ClusterType,
		VersionInfo:   r1.Version(),
		ResponseNonce: cds.GetNonce(),
		ErrorDetail:   &rpcstatus.Status{Code: 3, Message: "cluster yatagarasu_origin: bad thing"},
	})
	deadline := time.Now().Add(waitFor)
	for metric(t, h.reg, "yatagarasu_xds_nacks_total", map[string]string{"type_url": resourcev3.ClusterType}) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("NACK was not counted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The stream still works: the next change is delivered.
	r3 := resources(t, "z")
	if err := h.srv.Update(ctx, r3); err != nil {
		t.Fatal(err)
	}
	for {
		resp := e.recv()
		if resp.GetTypeUrl() == resourcev3.ClusterType {
			if resp.GetVersionInfo() != r3.Version() {
				t.Fatalf("after NACK got CDS %q, want %q", resp.GetVersionInfo(), r3.Version())
			}
			break
		}
	}
}

func TestUpdateRejectsNil(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv := server.New(nil, reg)
	if err := srv.Update(context.Background(), nil); err == nil {
		t.Fatal("Update(nil) succeeded")
	}
	srv.ReloadFailed(context.Background(), errors.New("bad yaml"))
	if got := metric(t, reg, "yatagarasu_xds_reloads_total", map[string]string{"result": server.ResultError}); got != 2 {
		t.Fatalf("reloads{error} = %v, want 2", got)
	}
	if srv.Version() != "" {
		t.Fatalf("Version() = %q before any good update", srv.Version())
	}
}
