// Package ipfilter decides from the client IP whether a request may proceed (pipeline step 4):
// the IP is taken from Envoy's x-forwarded-for with a configured number of trusted hops, and
// checked against CIDR allow and block lists, gateway-wide and per bucket.
package ipfilter

import (
	"fmt"
	"net/netip"
	"strings"

	"go4.org/netipx"

	"github.com/yatagarasu/yatagarasu/internal/config"
)

// ClientIP returns the client address from an x-forwarded-for value. Envoy (use_remote_address)
// appends the address of the peer it accepted the connection from as the last entry; each of the
// trustedHops proxies in front of Envoy appended one before it. So the client is the entry
// trustedHops places left of the last one. When the chain is shorter than that, the leftmost entry
// is the best there is (the request skipped a proxy). ok is false when the chosen entry is not an
// IP address.
func ClientIP(xff string, trustedHops int) (addr netip.Addr, ok bool) {
	if xff == "" {
		return netip.Addr{}, false
	}
	end := len(xff)
	entry := ""
	for i := 0; ; i++ {
		start := strings.LastIndexByte(xff[:end], ',')
		entry = xff[start+1 : end]
		if i == trustedHops || start < 0 {
			break
		}
		end = start
	}
	a, err := netip.ParseAddr(strings.TrimSpace(entry))
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}

// Filter is one compiled allow/block list. The zero value allows everyone.
type Filter struct {
	allow, block *netipx.IPSet
}

// Compile builds a filter from config entries (validated by config.Load).
func Compile(f config.IPFilter) (*Filter, error) {
	if f.Empty() {
		return nil, nil
	}
	build := func(entries []string) (*netipx.IPSet, error) {
		if len(entries) == 0 {
			return nil, nil
		}
		var b netipx.IPSetBuilder
		for _, e := range entries {
			p, err := config.ParseIPOrCIDR(e)
			if err != nil {
				return nil, fmt.Errorf("ip_filter entry %q: %w", e, err)
			}
			b.AddPrefix(p)
		}
		return b.IPSet()
	}
	allow, err := build(f.Allowlist)
	if err != nil {
		return nil, err
	}
	block, err := build(f.Blocklist)
	if err != nil {
		return nil, err
	}
	return &Filter{allow: allow, block: block}, nil
}

// Verdict is the outcome of one check, named for metrics and audit records.
type Verdict string

// The verdicts.
const (
	Allowed      Verdict = "allowed"
	NotAllowed   Verdict = "not_in_allowlist"
	Blocked      Verdict = "blocklisted"
	NoClientIP   Verdict = "no_client_ip"
	Unrestricted Verdict = "unrestricted"
)

// Check applies the filter to addr (valid=false when the client IP is unknown). A non-empty
// allowlist wins: only listed clients pass and the blocklist is not consulted (as in the original
// product). An unknown IP fails every configured filter (fail closed).
func (f *Filter) Check(addr netip.Addr, valid bool) Verdict {
	switch {
	case f == nil:
		return Unrestricted
	case !valid:
		return NoClientIP
	case f.allow != nil:
		if f.allow.Contains(addr) {
			return Allowed
		}
		return NotAllowed
	case f.block != nil && f.block.Contains(addr):
		return Blocked
	}
	return Allowed
}

// Set is every filter of one config version: the gateway-wide one, then one per bucket.
type Set struct {
	TrustedHops int
	Global      *Filter
	Buckets     []*Filter // by bucket index; nil entries allow everyone
}

// Build compiles the config's filters.
func Build(cfg *config.Config) (*Set, error) {
	s := &Set{TrustedHops: cfg.Server.TrustedHops, Buckets: make([]*Filter, len(cfg.Buckets))}
	var err error
	if s.Global, err = Compile(cfg.Server.IPFilter); err != nil {
		return nil, fmt.Errorf("server.ip_filter: %w", err)
	}
	for i, b := range cfg.Buckets {
		if s.Buckets[i], err = Compile(b.IPFilter); err != nil {
			return nil, fmt.Errorf("bucket %q: %w", b.Name, err)
		}
	}
	return s, nil
}

// Active reports whether any filter applies to bucket i, so the stage can skip IP parsing.
func (s *Set) Active(i int) bool { return s != nil && (s.Global != nil || s.Buckets[i] != nil) }

// Check runs the global filter, then the bucket's; the first refusal decides.
func (s *Set) Check(bucket int, addr netip.Addr, valid bool) (v Verdict, scope string) {
	if v := s.Global.Check(addr, valid); v != Allowed && v != Unrestricted {
		return v, "global"
	}
	if v := s.Buckets[bucket].Check(addr, valid); v != Allowed && v != Unrestricted {
		return v, "bucket"
	}
	return Allowed, ""
}
