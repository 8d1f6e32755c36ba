package e2e

import (
	"bytes"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/yatagarasu/yatagarasu/internal/config"
	"github.com/yatagarasu/yatagarasu/internal/devstack"
)

// TestReloadWindowAnswers503 opens the reload window on purpose: extproc learns a new bucket
// before xds pushes its route. A request for it during that window must get the fallback's
// 503 JSON with Retry-After (a retry finds the route), never 403 and never another bucket's
// object; once the file reaches xds too, the same request serves.
func TestReloadWindowAnswers503(t *testing.T) {
	st, err := devstack.Start(t.Context(), devstack.Options{
		S3: s3srv, Buckets: []devstack.Bucket{{Name: "products"}}, Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	next := []devstack.Bucket{{Name: "products"}, {Name: "catalog", S3Bucket: "products"}}
	raw, err := st.Render(next)
	if err != nil {
		t.Fatal(err)
	}
	// extproc only: load the new config from a side file and reload directly; the watched file
	// (and so xds and the gateway's routes) stays on the old config.
	side := filepath.Join(t.TempDir(), "next.yaml")
	if err := os.WriteFile(side, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(side)
	if err != nil {
		t.Fatal(err)
	}
	version := st.ControlPlane.Server.Version()
	if err := st.ExtProc.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		res, body := do(t, http.MethodGet, st.GatewayURL, "/catalog/a.txt")
		jsonError(t, res, body, http.StatusServiceUnavailable)
		if got := res.Header.Get("Retry-After"); got != "1" {
			t.Fatalf("Retry-After = %q, want 1", got)
		}
		if bytes.Contains(body, objects["a.txt"]) {
			t.Fatal("the window served an object")
		}
	}
	if got := st.ControlPlane.Server.Version(); got != version {
		t.Fatalf("xds changed version to %q during the test's window", got)
	}
	// The old bucket keeps serving through the window.
	if res, body := do(t, http.MethodGet, st.GatewayURL, "/products/a.txt"); res.StatusCode != http.StatusOK || !bytes.Equal(body, objects["a.txt"]) {
		t.Fatalf("products during the window = %d", res.StatusCode)
	}
	if err := st.WriteRaw(raw); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new route to reach the gateway", func() bool {
		res, body := do(t, http.MethodGet, st.GatewayURL, "/catalog/a.txt")
		return res.StatusCode == http.StatusOK && bytes.Equal(body, objects["a.txt"])
	})
}
