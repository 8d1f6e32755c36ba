package e2e

import (
	"log/slog"
	"net/http"
	"testing"

	"github.com/yatagarasu/yatagarasu/internal/devstack"
)

// TestReadyWhenEveryBackendAnswers starts a second stack whose buckets are all healthy.
func TestReadyWhenEveryBackendAnswers(t *testing.T) {
	st, err := devstack.Start(t.Context(), devstack.Options{
		S3: s3srv, Buckets: []devstack.Bucket{{Name: "products"}}, Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	res, body := do(t, http.MethodGet, st.AdminURL, "/ready")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("ready = %d %s", res.StatusCode, body)
	}
}
