//go:build !wasip1

package main

import (
	"testing"
	"time"

	"github.com/yatagarasu/yatagarasu/wasm-policies/policy"
)

func TestMaintenance(t *testing.T) {
	at := func(hm string) time.Time {
		tm, _ := time.Parse("2006-01-02 15:04", "2026-11-26 "+hm)
		return tm
	}
	win := `{"windows":[{"start":"02:00","end":"03:30"}],"exempt_prefixes":["status/"],"retry_after":600}`
	night := `{"windows":[{"start":"23:00","end":"01:00"}]}`
	cases := []struct {
		name, config, key string
		now               time.Time
		status            int
	}{
		{"before window", win, "a", at("01:59"), 0},
		{"in window", win, "a", at("02:00"), 503},
		{"end is exclusive", win, "a", at("03:30"), 0},
		{"exempt prefix", win, "status/ping", at("02:30"), 0},
		{"wraps midnight late", night, "a", at("23:30"), 503},
		{"wraps midnight early", night, "a", at("00:30"), 503},
		{"outside wrap", night, "a", at("12:00"), 0},
		{"switch on", `{"enabled":true}`, "a", at("12:00"), 503},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			settings = nil
			out := policy.Run(policy.Mock{Key: c.key, Config: c.config, Now: c.now}, policy.Registered())
			if out.Decision.Status() != c.status {
				t.Fatalf("status = %d, want %d", out.Decision.Status(), c.status)
			}
		})
	}
}
