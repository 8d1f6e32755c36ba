package ipfilter

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/yatagarasu/yatagarasu/internal/config"
)

func TestClientIP(t *testing.T) {
	cases := []struct {
		xff  string
		hops int
		want string
	}{
		{"203.0.113.9", 0, "203.0.113.9"},
		{"1.1.1.1, 203.0.113.9", 0, "203.0.113.9"},
		{"1.1.1.1,203.0.113.9", 1, "1.1.1.1"},
		{"6.6.6.6, 1.1.1.1, 10.0.0.2, 192.0.2.1", 2, "1.1.1.1"}, // spoofed 6.6.6.6 is ignored
		{"192.0.2.1", 3, "192.0.2.1"},                           // shorter chain: leftmost
		{"2001:db8::7, 192.0.2.1", 1, "2001:db8::7"},
		{"::ffff:10.1.2.3", 0, "10.1.2.3"},
		{"fe80::1%eth0", 0, "fe80::1"},
	}
	for _, tc := range cases {
		got, ok := ClientIP(tc.xff, tc.hops)
		if !ok || got.String() != tc.want {
			t.Errorf("ClientIP(%q, %d) = %v, %v; want %s", tc.xff, tc.hops, got, ok, tc.want)
		}
	}
	for _, bad := range []string{"", "unknown", "1.1.1.1, garbage", "1.1.1.1,"} {
		if got, ok := ClientIP(bad, 0); ok {
			t.Errorf("ClientIP(%q) = %v, want not ok", bad, got)
		}
	}
}

func mustCompile(t *testing.T, allow, block []string) *Filter {
	t.Helper()
	f, err := Compile(config.IPFilter{Allowlist: allow, Blocklist: block})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestFilter(t *testing.T) {
	ip := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	block := mustCompile(t, nil, []string{"203.0.113.0/24", "2001:db8:bad::/48", "198.51.100.7"})
	for addr, want := range map[string]Verdict{
		"203.0.113.200": Blocked, "203.0.114.1": Allowed, "2001:db8:bad::1": Blocked,
		"2001:db8:900d::1": Allowed, "198.51.100.7": Blocked, "198.51.100.8": Allowed,
	} {
		if got := block.Check(ip(addr), true); got != want {
			t.Errorf("blocklist %s = %s, want %s", addr, got, want)
		}
	}
	// The allowlist wins: a listed address passes even when the blocklist names it too.
	both := mustCompile(t, []string{"10.0.0.0/8"}, []string{"10.0.0.50"})
	if got := both.Check(ip("10.0.0.50"), true); got != Allowed {
		t.Errorf("allowlist must take precedence, got %s", got)
	}
	if got := both.Check(ip("11.0.0.1"), true); got != NotAllowed {
		t.Errorf("outside allowlist = %s", got)
	}
	if got := both.Check(netip.Addr{}, false); got != NoClientIP {
		t.Errorf("unknown client IP must fail closed, got %s", got)
	}
	var none *Filter
	if got := none.Check(netip.Addr{}, false); got != Unrestricted {
		t.Errorf("nil filter = %s", got)
	}
}

func TestSetChecksGlobalThenBucket(t *testing.T) {
	cfg := &config.Config{
		Server:  config.Server{IPFilter: config.IPFilter{Blocklist: []string{"192.0.2.0/24"}}, TrustedHops: 1},
		Buckets: []config.Bucket{{Name: "a"}, {Name: "b", IPFilter: config.IPFilter{Allowlist: []string{"10.0.0.0/8"}}}},
	}
	s, err := Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if v, scope := s.Check(1, netip.MustParseAddr("192.0.2.1"), true); v != Blocked || scope != "global" {
		t.Errorf("global block = %s %s", v, scope)
	}
	if v, scope := s.Check(1, netip.MustParseAddr("172.16.0.1"), true); v != NotAllowed || scope != "bucket" {
		t.Errorf("bucket allowlist = %s %s", v, scope)
	}
	if v, _ := s.Check(0, netip.MustParseAddr("172.16.0.1"), true); v != Allowed {
		t.Errorf("bucket a = %s", v)
	}
	if !s.Active(0) || s.TrustedHops != 1 {
		t.Error("global filter must make every bucket active")
	}
}

// FuzzClientIP: any header value yields either no IP or a valid, unmapped, zone-less address
// that literally appears in the header.
func FuzzClientIP(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "a, b, 1.2.3.4", "::ffff:1.2.3.4", ",,,", "fe80::1%x, 1.1.1.1"} {
		f.Add(s, 1)
	}
	f.Fuzz(func(t *testing.T, xff string, hops int) {
		if hops < 0 || hops > 64 {
			return
		}
		a, ok := ClientIP(xff, hops)
		if !ok {
			return
		}
		if !a.IsValid() || a.Is4In6() || a.Zone() != "" {
			t.Fatalf("ClientIP(%q) = %v", xff, a)
		}
		if !strings.Contains(xff, ",") && hops == 0 {
			if b, err := netip.ParseAddr(strings.TrimSpace(xff)); err != nil || b.Unmap().WithZone("") != a {
				t.Fatalf("ClientIP(%q) = %v, parse = %v %v", xff, a, b, err)
			}
		}
	})
}
