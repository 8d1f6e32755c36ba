package envoyemu

import (
	"context"
	"fmt"
	"slices"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

// Dial connects to an xDS server over ADS (state of the world), and returns once the first
// complete configuration (CDS + LDS + RDS) has been applied. If that first configuration is
// unsupported, Dial fails with the checker's error (after NACKing it).
func Dial(ctx context.Context, xdsAddress string, opts Options) (*Envoy, error) {
	conn, err := grpc.NewClient(xdsAddress, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("envoyemu: dial xDS %s: %w", xdsAddress, err)
	}
	e := newEnvoy(opts)
	runCtx, cancel := context.WithCancel(context.Background())
	e.bgCancel = cancel
	c := &adsClient{
		e:     e,
		conn:  conn,
		node:  &corev3.Node{Id: opts.NodeID, Cluster: "yatagarasu", UserAgentName: "envoyemu"},
		state: map[string]*typeState{},
		first: make(chan error, 1),
	}
	e.bgWG.Add(1)
	go func() {
		defer e.bgWG.Done()
		defer conn.Close()
		c.run(runCtx)
	}()
	select {
	case err := <-c.first:
		if err != nil {
			_ = e.Close()
			return nil, err
		}
		return e, nil
	case <-ctx.Done():
		_ = e.Close()
		return nil, fmt.Errorf("envoyemu: waiting for the first xDS config from %s: %w", xdsAddress, ctx.Err())
	}
}

// typeState is the per-type-URL subscription state Envoy keeps on an ADS stream.
type typeState struct {
	version  string   // last ACKed version
	nonce    string   // last received nonce
	names    []string // subscribed names (nil = wildcard)
	received bool
}

// adsClient is a minimal SotW ADS client scripted like Envoy: CDS and LDS wildcard, then RDS
// by the names the listener's HCM references. Only its run goroutine touches its fields.
type adsClient struct {
	e     *Envoy
	conn  *grpc.ClientConn
	node  *corev3.Node
	state map[string]*typeState

	clusters  []*clusterv3.Cluster
	listeners []*listenerv3.Listener
	routes    []*routev3.RouteConfiguration

	applied   bool
	first     chan error
	firstSent bool
}

func (c *adsClient) st(typeURL string) *typeState {
	s, ok := c.state[typeURL]
	if !ok {
		s = &typeState{}
		c.state[typeURL] = s
	}
	return s
}

// run keeps a stream open, reconnecting with exponential backoff.
func (c *adsClient) run(ctx context.Context) {
	backoff := 50 * time.Millisecond
	for {
		progressed, err := c.session(ctx)
		if ctx.Err() != nil {
			return
		}
		if progressed {
			backoff = 50 * time.Millisecond
		}
		c.e.log.Warn("envoyemu: ADS stream broken; reconnecting", "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (c *adsClient) session(ctx context.Context) (progressed bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(c.conn).StreamAggregatedResources(sctx)
	if err != nil {
		return false, fmt.Errorf("open ADS stream: %w", err)
	}
	// On (re)connect Envoy re-subscribes with the last accepted versions and no nonce.
	for _, t := range []string{resourcev3.ClusterType, resourcev3.ListenerType} {
		s := c.st(t)
		s.nonce = ""
		if err := c.send(stream, t, s.version, "", s.names, nil); err != nil {
			return false, err
		}
	}
	if rs := c.st(resourcev3.RouteType); len(rs.names) > 0 {
		rs.nonce = ""
		if err := c.send(stream, resourcev3.RouteType, rs.version, "", rs.names, nil); err != nil {
			return false, err
		}
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return progressed, fmt.Errorf("receive: %w", err)
		}
		progressed = true
		if err := c.handle(stream, resp); err != nil {
			return progressed, err
		}
	}
}

type adsStream = grpc.BidiStreamingClient[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse]

func (c *adsClient) send(stream adsStream, typeURL, version, nonce string, names []string, nackErr error) error {
	req := &discoveryv3.DiscoveryRequest{
		Node:          c.node,
		TypeUrl:       typeURL,
		VersionInfo:   version,
		ResponseNonce: nonce,
		ResourceNames: names,
	}
	if nackErr != nil {
		req.ErrorDetail = &statuspb.Status{Code: int32(codes.InvalidArgument), Message: nackErr.Error()}
	}
	if err := stream.Send(req); err != nil {
		return fmt.Errorf("send %s request: %w", typeURL, err)
	}
	return nil
}

// handle validates one response, ACKs or NACKs it, and applies a complete config.
func (c *adsClient) handle(stream adsStream, resp *discoveryv3.DiscoveryResponse) error {
	t := resp.GetTypeUrl()
	s := c.st(t)
	s.nonce = resp.GetNonce()
	clusters, listeners, routes := c.clusters, c.listeners, c.routes
	var decodeErr error
	switch t {
	case resourcev3.ClusterType:
		clusters, decodeErr = decodeAll[*clusterv3.Cluster](resp, func() *clusterv3.Cluster { return &clusterv3.Cluster{} })
	case resourcev3.ListenerType:
		listeners, decodeErr = decodeAll[*listenerv3.Listener](resp, func() *listenerv3.Listener { return &listenerv3.Listener{} })
	case resourcev3.RouteType:
		routes, decodeErr = decodeAll[*routev3.RouteConfiguration](resp, func() *routev3.RouteConfiguration { return &routev3.RouteConfiguration{} })
	default:
		decodeErr = fmt.Errorf("envoyemu: unsupported xDS type %s", t)
	}
	if decodeErr == nil {
		decodeErr = checkPerType(t, clusters, listeners, routes)
	}
	var dp *dataPlane
	var newRouteNames []string
	if decodeErr == nil && t == resourcev3.ListenerType {
		newRouteNames, decodeErr = routeConfigNames(listeners)
	}
	complete := false
	if decodeErr == nil {
		rs := c.st(resourcev3.RouteType)
		names := rs.names
		if newRouteNames != nil {
			names = newRouteNames
		}
		cdsOK := c.st(resourcev3.ClusterType).received || t == resourcev3.ClusterType
		ldsOK := c.st(resourcev3.ListenerType).received || t == resourcev3.ListenerType
		complete = cdsOK && ldsOK && haveRoutes(routes, names)
		if complete {
			dp, decodeErr = compile(Resources{Listeners: listeners, Routes: routes, Clusters: clusters})
		}
	}
	if decodeErr != nil {
		c.e.log.Error("envoyemu: NACK; keeping the last good config", "type", t, "version", resp.GetVersionInfo(), "err", decodeErr)
		if err := c.send(stream, t, s.version, s.nonce, s.names, decodeErr); err != nil {
			return err
		}
		if !c.applied {
			c.signalFirst(decodeErr)
		}
		return nil
	}
	s.version, s.received = resp.GetVersionInfo(), true
	c.clusters, c.listeners, c.routes = clusters, listeners, routes
	if err := c.send(stream, t, s.version, s.nonce, s.names, nil); err != nil {
		return err
	}
	if t == resourcev3.ListenerType {
		rs := c.st(resourcev3.RouteType)
		if !slices.Equal(rs.names, newRouteNames) {
			rs.names = newRouteNames
			if err := c.send(stream, resourcev3.RouteType, rs.version, rs.nonce, rs.names, nil); err != nil {
				return err
			}
		}
	}
	if dp != nil {
		dp.version = c.versionString()
		if err := c.e.apply(context.Background(), dp); err != nil {
			c.signalFirst(err)
			return err
		}
		c.applied = true
		c.signalFirst(nil)
	}
	return nil
}

func (c *adsClient) signalFirst(err error) {
	if c.firstSent {
		return
	}
	c.firstSent = true
	c.first <- err
}

func (c *adsClient) versionString() string {
	return c.st(resourcev3.ClusterType).version + "/" + c.st(resourcev3.ListenerType).version + "/" + c.st(resourcev3.RouteType).version
}

func haveRoutes(routes []*routev3.RouteConfiguration, names []string) bool {
	if len(names) == 0 {
		return false
	}
	for _, n := range names {
		if !slices.ContainsFunc(routes, func(r *routev3.RouteConfiguration) bool { return r.GetName() == n }) {
			return false
		}
	}
	return true
}

// checkPerType checks the resources of the type just received, so a bad resource is NACKed
// even while the config is still incomplete.
func checkPerType(t string, clusters []*clusterv3.Cluster, listeners []*listenerv3.Listener, routes []*routev3.RouteConfiguration) error {
	switch t {
	case resourcev3.ClusterType:
		for _, cl := range clusters {
			if err := checkResource(cl, fmt.Sprintf("Cluster[%q]", cl.GetName())); err != nil {
				return err
			}
			if _, err := compileCluster(cl); err != nil {
				return err
			}
		}
	case resourcev3.ListenerType:
		if len(listeners) != 1 {
			return fmt.Errorf("envoyemu: %d listeners received; the harness emulates exactly one listener", len(listeners))
		}
		for _, l := range listeners {
			if err := checkResource(l, fmt.Sprintf("Listener[%q]", l.GetName())); err != nil {
				return err
			}
			if err := compileListener(&dataPlane{}, l); err != nil {
				return err
			}
		}
	case resourcev3.RouteType:
		for _, r := range routes {
			if err := checkResource(r, fmt.Sprintf("RouteConfiguration[%q]", r.GetName())); err != nil {
				return err
			}
			if _, err := compileRouteConfig(r); err != nil {
				return err
			}
		}
	}
	return nil
}

func decodeAll[T proto.Message](resp *discoveryv3.DiscoveryResponse, mk func() T) ([]T, error) {
	out := make([]T, 0, len(resp.GetResources()))
	for i, a := range resp.GetResources() {
		m := mk()
		if err := a.UnmarshalTo(m); err != nil {
			return nil, fmt.Errorf("envoyemu: decode %s resource %d: %w", resp.GetTypeUrl(), i, err)
		}
		out = append(out, m)
	}
	return out, nil
}
