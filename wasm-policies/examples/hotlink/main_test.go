//go:build !wasip1

package main

import (
	"testing"

	"github.com/yatagarasu/yatagarasu/wasm-policies/policy"
)

func TestHotlink(t *testing.T) {
	cfg := `{"allowed_hosts":["example.com",".example.org"],"allow_empty":true}`
	cases := []struct {
		name    string
		headers map[string][]string
		config  string
		status  int
	}{
		{"own site", map[string][]string{"Referer": {"https://example.com/page"}}, cfg, 0},
		{"subdomain", map[string][]string{"Referer": {"https://cdn.example.org/x"}}, cfg, 0},
		{"apex of wildcard", map[string][]string{"Referer": {"https://example.org/"}}, cfg, 0},
		{"foreign site", map[string][]string{"Referer": {"https://evil.test/"}}, cfg, 403},
		{"suffix trick", map[string][]string{"Referer": {"https://notexample.com/"}}, cfg, 403},
		{"origin header", map[string][]string{"Origin": {"https://evil.test"}}, cfg, 403},
		{"no referer allowed", nil, cfg, 0},
		{"no referer refused", nil, `{"allowed_hosts":["example.com"]}`, 403},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			settings = nil
			out := policy.Run(policy.Mock{Headers: c.headers, Config: c.config}, policy.Registered())
			if out.Decision.Status() != c.status {
				t.Fatalf("status = %d, want %d (%s)", out.Decision.Status(), c.status, out.Decision.Message())
			}
		})
	}
}
