package e2e

import (
	"bytes"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/yatagarasu/yatagarasu/internal/devstack"
)

// eventually polls cond until it holds or the deadline passes (a liveness bound, not a timing claim).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestConfigEditReachesBothServices edits the file the way an editor does: xds pushes new routes
// to the gateway and extproc swaps its snapshot, so a new bucket serves; a broken edit changes
// nothing.
func TestConfigEditReachesBothServices(t *testing.T) {
	st, err := devstack.Start(t.Context(), devstack.Options{
		S3: s3srv, Buckets: []devstack.Bucket{{Name: "products"}}, Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if res, _ := do(t, http.MethodGet, st.GatewayURL, "/catalog/a.txt"); res.StatusCode != http.StatusNotFound {
		t.Fatalf("before the edit /catalog = %d", res.StatusCode)
	}
	if err := st.Rewrite([]devstack.Bucket{{Name: "products"}, {Name: "catalog", S3Bucket: "products"}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new bucket to serve", func() bool {
		res, body := do(t, http.MethodGet, st.GatewayURL, "/catalog/a.txt")
		return res.StatusCode == http.StatusOK && bytes.Equal(body, objects["a.txt"])
	})
	version := st.ControlPlane.Server.Version()
	if err := st.WriteRaw([]byte("buckets: [ this is not a config\n")); err != nil {
		t.Fatal(err)
	}
	// Give both watchers time to see the bad file; both must keep the last good config.
	time.Sleep(time.Second)
	if got := st.ControlPlane.Server.Version(); got != version {
		t.Fatalf("xds version changed to %q after a broken edit", got)
	}
	for _, p := range []string{"/catalog/a.txt", "/products/a.txt"} {
		if res, body := do(t, http.MethodGet, st.GatewayURL, p); res.StatusCode != http.StatusOK || !bytes.Equal(body, objects["a.txt"]) {
			t.Fatalf("after a broken edit %s = %d", p, res.StatusCode)
		}
	}
}
