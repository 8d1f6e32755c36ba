package translator

import (
	"bytes"
	"fmt"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"
)

// yamlSeparator separates documents in the YAML this package writes and reads.
const yamlSeparator = "---\n"

// Snapshot wraps the resources in a consistent go-control-plane snapshot with version.
func (r *Resources) Snapshot(version string) (*cachev3.Snapshot, error) {
	listeners := make([]types.Resource, 0, len(r.Listeners))
	for _, l := range r.Listeners {
		listeners = append(listeners, l)
	}
	routes := make([]types.Resource, 0, len(r.Routes))
	for _, rc := range r.Routes {
		routes = append(routes, rc)
	}
	clusters := make([]types.Resource, 0, len(r.Clusters))
	for _, c := range r.Clusters {
		clusters = append(clusters, c)
	}
	snap, err := cachev3.NewSnapshot(version, map[resourcev3.Type][]types.Resource{
		resourcev3.ListenerType: listeners,
		resourcev3.RouteType:    routes,
		resourcev3.ClusterType:  clusters,
	})
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", version, err)
	}
	if err := snap.Consistent(); err != nil {
		return nil, fmt.Errorf("snapshot %s inconsistent: %w", version, err)
	}
	return snap, nil
}

// YAML renders every resource (listeners, then routes, then clusters) as Envoy-style
// snake_case YAML documents, each carrying its "@type", for humans to read and diff.
func (r *Resources) YAML() ([]byte, error) {
	return MarshalYAML(r.all()...)
}

// MarshalYAML writes msgs as a multi-document YAML stream, one "@type"-tagged document each;
// ParseYAML reads it back.
func MarshalYAML(msgs ...proto.Message) ([]byte, error) {
	var buf bytes.Buffer
	opts := protojson.MarshalOptions{UseProtoNames: true}
	for _, m := range msgs {
		a, err := anypb.New(m)
		if err != nil {
			return nil, fmt.Errorf("pack %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
		}
		j, err := opts.Marshal(a)
		if err != nil {
			return nil, fmt.Errorf("marshal %s %q: %w", m.ProtoReflect().Descriptor().FullName(), resourceName(m), err)
		}
		y, err := yaml.JSONToYAML(j)
		if err != nil {
			return nil, fmt.Errorf("yaml %s %q: %w", m.ProtoReflect().Descriptor().FullName(), resourceName(m), err)
		}
		buf.WriteString(yamlSeparator)
		buf.Write(y)
	}
	return buf.Bytes(), nil
}

// ParseYAML reads documents written by MarshalYAML back into messages, rejecting unknown
// fields and unresolvable types, so a golden file proves Envoy's parser would accept it.
func ParseYAML(data []byte) ([]proto.Message, error) {
	var out []proto.Message
	for i, doc := range splitYAML(data) {
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		a := &anypb.Any{}
		if err := protojson.Unmarshal(j, a); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		m, err := a.UnmarshalNew()
		if err != nil {
			return nil, fmt.Errorf("document %d (%s): %w", i, a.GetTypeUrl(), err)
		}
		out = append(out, m)
	}
	return out, nil
}

// splitYAML splits on "---" lines and drops empty documents.
func splitYAML(data []byte) [][]byte {
	var docs [][]byte
	for _, part := range bytes.Split(append([]byte("\n"), data...), []byte("\n"+yamlSeparator)) {
		if len(bytes.TrimSpace(part)) > 0 {
			docs = append(docs, part)
		}
	}
	return docs
}
