// Command tenant is an example policy: tenant isolation. A request may only read objects under
// the key prefix named by its tenant claim: tenant "acme" reads acme/…, nothing else.
//
// Config: {"claim": "tenant"} (the claim's dotted path; default "tenant").
package main

import (
	"strings"

	"github.com/yatagarasu/yatagarasu/wasm-policies/policy"
)

type config struct {
	Claim string `json:"claim"`
}

// settings is parsed from the policy config on first use; the config of a loaded policy never changes.
var settings *config

func decide(r policy.Request) policy.Decision {
	if settings == nil {
		c := config{Claim: "tenant"}
		if err := r.DecodeConfig(&c); err != nil {
			return policy.Deny(500, "tenant policy: bad config")
		}
		settings = &c
	}
	tenant, ok := r.Claim(settings.Claim)
	if !ok || tenant == "" {
		return policy.Deny(403, "no tenant in the token")
	}
	key := r.Key()
	first, _, _ := strings.Cut(key, "/")
	if first != tenant {
		return policy.Deny(403, "object belongs to another tenant")
	}
	return policy.Allow()
}

func init() { policy.Handle(decide) }

func main() {}
