// Command tier is an example policy: per-tier headers. It reads the caller's tier from a claim
// and adds that tier's headers to the request that goes to the origin (for logging, quotas or
// routing further on). Unknown tiers get the default tier's headers.
//
// Config: {"claim": "tier", "default": "free",
//
//	"tiers": {"gold": {"x-tier": "gold", "x-priority": "high"}, "free": {"x-tier": "free"}}}
package main

import (
	"sort"

	"github.com/yatagarasu/yatagarasu/wasm-policies/policy"
)

type config struct {
	Claim   string                       `json:"claim"`
	Default string                       `json:"default"`
	Tiers   map[string]map[string]string `json:"tiers"`
}

var settings *config

func decide(r policy.Request) policy.Decision {
	if settings == nil {
		c := config{Claim: "tier"}
		if err := r.DecodeConfig(&c); err != nil {
			return policy.Deny(500, "tier policy: bad config")
		}
		settings = &c
	}
	tier, _ := r.Claim(settings.Claim)
	headers, ok := settings.Tiers[tier]
	if !ok {
		headers = settings.Tiers[settings.Default]
	}
	names := make([]string, 0, len(headers))
	for k := range headers {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		r.SetHeader(k, headers[k])
	}
	return policy.Allow()
}

func init() { policy.Handle(decide) }

func main() {}
