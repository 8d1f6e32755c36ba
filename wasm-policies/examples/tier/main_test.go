//go:build !wasip1

package main

import (
	"testing"

	"github.com/yatagarasu/yatagarasu/wasm-policies/policy"
)

func TestTierHeaders(t *testing.T) {
	cfg := `{"claim":"plan.tier","default":"free","tiers":{"gold":{"x-tier":"gold","x-priority":"high"},"free":{"x-tier":"free"}}}`
	cases := []struct {
		name   string
		claims map[string]any
		want   map[string]string
	}{
		{"gold", map[string]any{"plan": map[string]any{"tier": "gold"}}, map[string]string{"x-tier": "gold", "x-priority": "high"}},
		{"unknown tier gets default", map[string]any{"plan": map[string]any{"tier": "bronze"}}, map[string]string{"x-tier": "free"}},
		{"no claim gets default", nil, map[string]string{"x-tier": "free"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			settings = nil
			out := policy.Run(policy.Mock{Claims: c.claims, Config: cfg}, policy.Registered())
			if out.Decision.Denied() {
				t.Fatal("denied")
			}
			if len(out.Upstream) != len(c.want) {
				t.Fatalf("headers = %v, want %v", out.Upstream, c.want)
			}
			for k, v := range c.want {
				if out.Upstream[k] != v {
					t.Errorf("%s = %q, want %q", k, out.Upstream[k], v)
				}
			}
		})
	}
}
