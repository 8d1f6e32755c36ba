package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func policyConfig(t *testing.T, policies, bucketPolicies string) (string, []byte) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.wasm"), []byte("\x00asm"), 0o600); err != nil {
		t.Fatal(err)
	}
	yml := `server: {address: "127.0.0.1", port: 8080}
origin: {shared_secret: "0123456789abcdef0123456789abcdef"}
buckets:
  - name: files
    path_prefix: /files
    s3: {bucket: b, endpoint: "http://127.0.0.1:9000", access_key: a, secret_key: s}
    policies: ` + bucketPolicies + `
policies:
` + policies
	return filepath.Join(dir, "config.yaml"), []byte(yml)
}

func TestPoliciesDefaultsAndRelativePath(t *testing.T) {
	src, yml := policyConfig(t, "  - name: tenant\n    wasm: p.wasm\n    config: {claim: org.id, n: 3}\n", "[tenant]")
	cfg, err := Parse(src, yml, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Policies[0]
	if p.FailMode != "closed" || p.FailOpen() || p.MemoryLimitMB != 32 || p.Budget != DefaultPolicyBudget || p.MinInstances != 1 || p.QueueTimeout.D().String() != "100ms" {
		t.Errorf("defaults: %+v", p)
	}
	if p.Config["claim"] != "org.id" {
		t.Errorf("config: %v", p.Config)
	}
	if got := p.WasmPath(cfg.Source); got != filepath.Join(filepath.Dir(src), "p.wasm") {
		t.Errorf("wasm path = %s", got)
	}
	if cfg.Buckets[0].Policies[0] != "tenant" {
		t.Errorf("bucket policies: %v", cfg.Buckets[0].Policies)
	}
}

func TestPoliciesErrorsNameLineAndFix(t *testing.T) {
	cases := map[string]struct{ policies, attach, want string }{
		"unknown policy":  {"  - name: tenant\n    wasm: p.wasm\n", "[tenat]", `config.yaml:7:16: buckets[0].policies[0]: unknown policy "tenat"; fix: use one of: tenant`},
		"missing wasm":    {"  - name: tenant\n    wasm: nope.wasm\n", "[tenant]", "policies[0].wasm: cannot read"},
		"bad fail mode":   {"  - name: tenant\n    wasm: p.wasm\n    fail_mode: allow\n", "[]", `policies[0].fail_mode: "allow" is not a fail mode`},
		"duplicate":       {"  - name: a\n    wasm: p.wasm\n  - name: a\n    wasm: p.wasm\n", "[]", `policies[1].name: policy "a" is already defined`},
		"memory":          {"  - name: a\n    wasm: p.wasm\n    memory_limit_mb: 0\n", "[]", "policies[0].memory_limit_mb: 0 is outside"},
		"typo in key":     {"  - name: a\n    wasm: p.wasm\n    budgett: 5\n", "[]", "budgett"},
		"negative budget": {"  - name: a\n    wasm: p.wasm\n    budget: -1\n", "[]", "policies[0].budget: must be greater than 0"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			src, yml := policyConfig(t, c.policies, c.attach)
			_, err := Parse(src, yml, func(string) (string, bool) { return "", false })
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v\nwant it to contain %q", err, c.want)
			}
		})
	}
}
