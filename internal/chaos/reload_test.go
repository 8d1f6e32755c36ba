package chaos

import (
	"testing"

	"github.com/yatagarasu/yatagarasu/internal/devstack"
)

// TestHundredReloadsUnderLoad rewrites the config 100 times (adding and removing a bucket no
// request uses, so both xds and extproc rebuild everything) while 4 clients read objects through
// the gateway: every single request must serve the exact object.
func TestHundredReloadsUnderLoad(t *testing.T) {
	base := []devstack.Bucket{{Name: "live", S3Bucket: s3Bucket}}
	withSpare := append(append([]devstack.Bucket{}, base...), devstack.Bucket{Name: "spare", S3Bucket: s3Bucket})
	st := startStack(t, devstack.Options{Buckets: base})
	keys := append(append([]string{}, smallKeys...), bigKeys[:5]...)
	l := startLoad(t.Context(), st.GatewayURL, "/live/", keys, 4, 100000)
	l.waitFor(t, 10)
	for i := range 100 {
		version := st.ControlPlane.Server.Version()
		next := base
		if i%2 == 0 {
			next = withSpare
		}
		if err := st.Rewrite(next); err != nil {
			t.Fatal(err)
		}
		eventually(t, "xds to push the rewritten config", func() bool { return st.ControlPlane.Server.Version() != version })
	}
	tl := l.finish()
	t.Logf("100 reloads: %s", tl)
	tl.requireNoBad(t)
	if total := tl.get(okBody) + tl.get(cleanError) + tl.get(broken); tl.get(okBody) != total || total == 0 {
		t.Fatalf("requests failed during reloads: %s", tl)
	}
}
