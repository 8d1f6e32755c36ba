package extproc

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/golang-jwt/jwt/v5"

	"github.com/yatagarasu/yatagarasu/internal/auth/authtest"
)

// BenchmarkRoundTripAccess compares, in one run and on Envoy-shaped streams at 64 concurrent
// streams: the null server, the step 1–3 skeleton (method, limits, route), and the full access
// decision (IP lists + global/per-IP/per-bucket rate limits + JWT RS256 from the verified-token
// cache + route). Compare the last two with benchstat for the throughput ratio.
func BenchmarkRoundTripAccess(b *testing.B) {
	prefixes := []string{"/products", "/assets", "/docs", "/media", "/logs", "/a", "/b", "/c", "/d", "/e"}
	key := authtest.NewKey(b, b.TempDir(), "RS256", "k1")
	var buckets strings.Builder
	for _, p := range prefixes {
		name := strings.TrimPrefix(p, "/")
		buckets.WriteString("  - name: " + name + "\n    path_prefix: " + p + "\n    s3: {bucket: " + name +
			", access_key: a, secret_key: s, endpoint: \"http://127.0.0.1:1\", rate_limit: {requests_per_second: 1e9, burst: 1000000000}}\n" +
			"    auth: {enabled: true}\n    ip_filter: {allowlist: [\"198.51.100.0/24\", \"2001:db8::/32\"]}\n")
	}
	cfg := accessConfigRaw(b, `origin:
  shared_secret: "0123456789abcdef0123456789abcdef"
server:
  trusted_hops: 1
  ip_filter: {blocklist: ["203.0.113.0/24"]}
  rate_limit:
    global: {requests_per_second: 1e9, burst: 1000000000}
    per_ip: {requests_per_second: 1e9, burst: 1000000000}
jwt:
  keys: [{id: k1, algorithm: RS256, path: "`+key.PEMPath+`"}]
buckets:
`+buckets.String())
	access, _, store := accessPipeline(b, cfg)
	token := key.Sign(b, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
	servers := map[string]extprocv3.ExternalProcessorServer{
		"null":     nullServer{},
		"skeleton": NewServer(NewPipeline(store, time.Now), slog.New(slog.DiscardHandler), nil), // same snapshot, no stages
		"access":   NewServer(access, slog.New(slog.DiscardHandler), nil),
	}
	for _, name := range []string{"null", "skeleton", "access"} {
		b.Run(name, func(b *testing.B) {
			req := envoyHeaders("GET", "/media/2026/11/video.mp4", "user-agent", "bench/1.0", "accept", "*/*",
				"x-forwarded-for", "198.51.100.7,10.0.0.1", "authorization", "Bearer "+token)
			benchStreams(b, servers[name], req, continued)
		})

	}
}
