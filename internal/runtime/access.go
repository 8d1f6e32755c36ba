package runtime

import (
	"fmt"

	"github.com/yatagarasu/yatagarasu/internal/auth"
	"github.com/yatagarasu/yatagarasu/internal/config"
	"github.com/yatagarasu/yatagarasu/internal/ipfilter"
	"github.com/yatagarasu/yatagarasu/internal/ratelimit"
)

// Access is the compiled access-control configuration of one config version (pipeline steps 4,
// 5 and 7): CIDR sets, rate limits and JWT specs with their keys loaded. The state that must
// survive a reload (token buckets, verified-token caches, JWKS fetchers) is not here: extproc
// keeps it in long-lived objects looked up by the identities these carry.
type Access struct {
	IPFilters  *ipfilter.Set
	RateLimits *ratelimit.Plan
	Auth       *auth.Plan
}

// buildAccess compiles cfg's access-control sections.
func buildAccess(cfg *config.Config) (Access, error) {
	ips, err := ipfilter.Build(cfg)
	if err != nil {
		return Access{}, fmt.Errorf("ip filters: %w", err)
	}
	plan, err := auth.Build(cfg)
	if err != nil {
		return Access{}, fmt.Errorf("jwt: %w", err)
	}
	return Access{IPFilters: ips, RateLimits: ratelimit.Build(cfg), Auth: plan}, nil
}
