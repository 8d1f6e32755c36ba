// Command maintenance is an example policy: a maintenance switch and daily time windows. While
// the switch is on, or during a window (UTC), requests get 503 with Retry-After; paths under an
// exempt prefix (health checks) always pass.
//
// Config: {"enabled": false, "windows": [{"start": "02:00", "end": "03:30"}],
//
//	"exempt_prefixes": ["status/"], "retry_after": 600}
//
// A window whose end is before its start wraps past midnight.
package main

import (
	"strconv"
	"strings"
	"time"

	"github.com/yatagarasu/yatagarasu/wasm-policies/policy"
)

type window struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

type config struct {
	Enabled        bool     `json:"enabled"`
	Windows        []window `json:"windows"`
	ExemptPrefixes []string `json:"exempt_prefixes"`
	RetryAfter     int      `json:"retry_after"`
}

var settings *config

// minutes parses "HH:MM" into minutes after midnight.
func minutes(s string) (int, bool) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, false
	}
	return t.Hour()*60 + t.Minute(), true
}

func inWindow(now time.Time, w window) bool {
	start, ok1 := minutes(w.Start)
	end, ok2 := minutes(w.End)
	if !ok1 || !ok2 {
		return false
	}
	m := now.Hour()*60 + now.Minute()
	if start <= end {
		return m >= start && m < end
	}
	return m >= start || m < end
}

func decide(r policy.Request) policy.Decision {
	if settings == nil {
		c := config{RetryAfter: 300}
		if err := r.DecodeConfig(&c); err != nil {
			return policy.Deny(500, "maintenance policy: bad config")
		}
		settings = &c
	}
	key := r.Key()
	for _, p := range settings.ExemptPrefixes {
		if strings.HasPrefix(key, p) {
			return policy.Allow()
		}
	}
	on := settings.Enabled
	now := r.Now()
	for _, w := range settings.Windows {
		on = on || inWindow(now, w)
	}
	if on {
		return policy.Deny(503, "down for maintenance").WithHeader("Retry-After", strconv.Itoa(settings.RetryAfter))
	}
	return policy.Allow()
}

func init() { policy.Handle(decide) }

func main() {}
