package extproc

import (
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/yatagarasu/yatagarasu/internal/config"
	"github.com/yatagarasu/yatagarasu/internal/testenv"
)

// TestStartReleasesWhatItStartedOnFailure: when the admin address is taken, Start fails and the
// listeners it had already bound are closed again, so a retry can use them.
func TestStartReleasesWhatItStartedOnFailure(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	ports := make([]int, 3)
	for i := range ports {
		if ports[i], err = testenv.FreePort(); err != nil {
			t.Fatal(err)
		}
	}
	yaml := fmt.Sprintf(`extproc: {grpc_address: "127.0.0.1:%d"}
origin: {address: "127.0.0.1:%d", shared_secret: "%s"}
admin: {address: "%s"}
xds: {address: "127.0.0.1:%d"}
buckets:
  - name: products
    path_prefix: /products
    s3: {bucket: products, endpoint: "http://127.0.0.1:1", access_key: AK, secret_key: SK}
`, ports[0], ports[1], strings.Repeat("s", 32), taken.Addr(), ports[2])
	cfg, err := config.Parse("start.yaml", []byte(yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Start(t.Context(), cfg, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "listen on") {
		t.Fatalf("Start with a taken admin address = %v", err)
	}
	for _, a := range []string{cfg.ExtProc.GRPCAddress, cfg.Origin.Address} {
		l, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("%s still held after the failed Start: %v", a, err)
		}
		l.Close()
	}
}
