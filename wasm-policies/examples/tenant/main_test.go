//go:build !wasip1

package main

import (
	"testing"

	"github.com/yatagarasu/yatagarasu/wasm-policies/policy"
)

func TestTenantIsolation(t *testing.T) {
	cases := []struct {
		name   string
		claims map[string]any
		key    string
		config string
		status int
	}{
		{"own tenant", map[string]any{"tenant": "acme"}, "acme/report.pdf", "", 0},
		{"other tenant", map[string]any{"tenant": "acme"}, "globex/report.pdf", "", 403},
		{"prefix is not a segment", map[string]any{"tenant": "acme"}, "acme-evil/x", "", 403},
		{"no claim", map[string]any{}, "acme/x", "", 403},
		{"configured claim path", map[string]any{"org": map[string]any{"id": "acme"}}, "acme/x", `{"claim":"org.id"}`, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			settings = nil
			out := policy.Run(policy.Mock{Key: c.key, Claims: c.claims, Config: c.config}, policy.Registered())
			if out.Decision.Status() != c.status {
				t.Fatalf("status = %d, want %d (%s)", out.Decision.Status(), c.status, out.Decision.Message())
			}
		})
	}
}
