package devstack

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/yatagarasu/yatagarasu/internal/config"
	"github.com/yatagarasu/yatagarasu/internal/testenv"
)

// TestRenderedConfigLoads checks the template, including per-bucket and top-level extras, yields
// a config the real loader accepts.
func TestRenderedConfigLoads(t *testing.T) {
	s := &Stack{ConfigPath: filepath.Join(t.TempDir(), "c.yaml"), data: tmplData{
		GatewayPort: 18080, ExtProcPort: 19001, OriginPort: 19002, AdminPort: 19090, XDSPort: 28000,
		Secret: strings.Repeat("ab", 32),
		S3:     &testenv.S3{Endpoint: "http://127.0.0.1:7070", AccessKey: "AK", SecretKey: "SK", Region: "us-east-1"},
		Extra:  "image_optimization:\n  enabled: false",
	}}
	err := s.Rewrite([]Bucket{{Name: "products"}, {Name: "b2", Prefix: "/two", S3Bucket: "products", Timeout: 3, Extra: "watermark:\n  enabled: true"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(s.ConfigPath)
	if err != nil {
		raw, _ := os.ReadFile(s.ConfigPath)
		t.Fatalf("%v\n%s", err, raw)
	}
	if len(cfg.Buckets) != 2 || cfg.Buckets[1].PathPrefix != "/two" || cfg.Buckets[1].Watermark["enabled"] != true || cfg.ImageOptimization["enabled"] != false {
		t.Fatalf("config = %+v", cfg)
	}
	if cfg.Buckets[1].S3.Timeout.D().Seconds() != 3 || cfg.Server.Port != 18080 {
		t.Fatalf("timeout/port = %v %d", cfg.Buckets[1].S3.Timeout.D(), cfg.Server.Port)
	}
}

func TestBootstrapForRewritesAddresses(t *testing.T) {
	b, err := BootstrapFor("127.0.0.1:23456", 34567)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if !strings.Contains(s, "port_value: 23456") || !strings.Contains(s, "port_value: 34567") || strings.Contains(s, "18000") {
		t.Fatalf("bootstrap not rewritten:\n%s", s)
	}
}
