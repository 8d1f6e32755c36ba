// Command hotlink is an example policy: hotlink protection. A request whose Referer (or, without
// one, Origin) names a site outside the allowlist is refused, so other sites cannot embed our
// objects.
//
// Config: {"allowed_hosts": ["example.com", ".example.org"], "allow_empty": true}
// A leading dot allows every subdomain; allow_empty lets requests without either header through
// (direct downloads, privacy-stripping browsers).
package main

import (
	"net/url"
	"strings"

	"github.com/yatagarasu/yatagarasu/wasm-policies/policy"
)

type config struct {
	AllowedHosts []string `json:"allowed_hosts"`
	AllowEmpty   bool     `json:"allow_empty"`
}

var settings *config

func allowed(host string, list []string) bool {
	host = strings.ToLower(host)
	for _, a := range list {
		a = strings.ToLower(a)
		if host == a || (strings.HasPrefix(a, ".") && (strings.HasSuffix(host, a) || host == a[1:])) {
			return true
		}
	}
	return false
}

func decide(r policy.Request) policy.Decision {
	if settings == nil {
		var c config
		if err := r.DecodeConfig(&c); err != nil {
			return policy.Deny(500, "hotlink policy: bad config")
		}
		settings = &c
	}
	src, ok := r.Header("referer")
	if !ok {
		src, ok = r.Header("origin")
	}
	if !ok || src == "" {
		if settings.AllowEmpty {
			return policy.Allow()
		}
		return policy.Deny(403, "hotlinking is not allowed: no Referer")
	}
	u, err := url.Parse(src)
	if err != nil || u.Hostname() == "" || !allowed(u.Hostname(), settings.AllowedHosts) {
		return policy.Deny(403, "hotlinking is not allowed from this site")
	}
	return policy.Allow()
}

func init() { policy.Handle(decide) }

func main() {}
