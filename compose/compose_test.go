// Package compose_test checks the docker-compose kit without Docker: the files parse, images are
// pinned, the config loads and translates, and the Envoy bootstrap is a valid Bootstrap.
package compose_test

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"gopkg.in/yaml.v3"
	sigyaml "sigs.k8s.io/yaml"

	"github.com/yatagarasu/yatagarasu/internal/config"
	"github.com/yatagarasu/yatagarasu/xds/translator"
	"github.com/yatagarasu/yatagarasu/xds/validate"
)

type composeFile struct {
	Services map[string]struct {
		Image string         `yaml:"image"`
		Build map[string]any `yaml:"build"`
	} `yaml:"services"`
}

func TestComposeImagesArePinned(t *testing.T) {
	raw, err := os.ReadFile("docker-compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"envoy", "xds", "extproc", "s3", "redis", "otel-collector", "jaeger"} {
		if _, ok := c.Services[want]; !ok {
			t.Errorf("service %q missing", want)
		}
	}
	for name, s := range c.Services {
		if s.Build != nil {
			continue
		}
		if i := strings.LastIndex(s.Image, ":"); i < 0 || strings.HasSuffix(s.Image, ":latest") {
			t.Errorf("service %s: image %q is not pinned", name, s.Image)
		}
	}
	m := regexp.MustCompile(`^envoyproxy/envoy:v1\.(\d+)\.\d+$`).FindStringSubmatch(c.Services["envoy"].Image)
	if m == nil {
		t.Fatalf("envoy image %q is not a pinned release", c.Services["envoy"].Image)
	}
	if minor, _ := strconv.Atoi(m[1]); minor < 37 {
		t.Fatalf("envoy %s is older than 1.37", c.Services["envoy"].Image)
	}
}

func TestComposeConfigLoadsAndTranslates(t *testing.T) {
	raw, err := os.ReadFile("config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"AWS_ACCESS_KEY_ID": "demo-access-key", "AWS_SECRET_ACCESS_KEY": "demo-secret-key-change-me",
		"YATAGARASU_ORIGIN_SECRET": strings.Repeat("a", 64),
	}
	cfg, err := config.Parse("compose/config.yaml", raw, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	res, err := translator.Translate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range res.Clusters {
		if c.GetType() != clusterv3.Cluster_STRICT_DNS {
			t.Errorf("cluster %s is %v; service names need STRICT_DNS", c.GetName(), c.GetType())
		}
	}
}

func TestComposeEnvoyBootstrapIsValid(t *testing.T) {
	raw, err := os.ReadFile("envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	j, err := sigyaml.YAMLToJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	b := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(j, b); err != nil {
		t.Fatal(err)
	}
	if err := validate.Deep(b); err != nil {
		t.Fatal(err)
	}
	ep := b.GetStaticResources().GetClusters()[0].GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	if ep.GetAddress() != "xds" || ep.GetPortValue() != 18000 {
		t.Fatalf("xds endpoint = %v", ep)
	}
}
