package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/yatagarasu/yatagarasu/internal/devstack"
)

// TestShutdownDrainsInFlightDownloads starts 20 downloads of the 64 MiB object, shuts extproc
// down while they are in flight, and requires every one to complete byte for byte; meanwhile
// /ready says "draining" and new requests are refused rather than half-served.
func TestShutdownDrainsInFlightDownloads(t *testing.T) {
	st, err := devstack.Start(t.Context(), devstack.Options{
		S3: s3srv, Buckets: []devstack.Bucket{{Name: "products"}}, Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	want := sha256.Sum256(objects["big.bin"])
	const n = 20
	var started, wg sync.WaitGroup
	proceed := make(chan struct{}) // readers stall after the first MiB until the drain is visible
	started.Add(n)
	wg.Add(n)
	errs := make(chan string, n)
	for range n {
		go func() {
			defer wg.Done()
			res, err := http.Get(st.GatewayURL + "/products/big.bin")
			if err != nil {
				started.Done()
				errs <- err.Error()
				<-proceed
				return
			}
			defer res.Body.Close()
			h := sha256.New()
			_, err = io.CopyN(h, res.Body, 1<<20) // in flight: headers and the first MiB arrived
			started.Done()
			<-proceed
			if err == nil {
				_, err = io.Copy(h, res.Body)
			}
			switch {
			case err != nil:
				errs <- "truncated: " + err.Error()
			case res.StatusCode != http.StatusOK || !bytes.Equal(h.Sum(nil), want[:]):
				errs <- "wrong body"
			}
		}()
	}
	started.Wait()

	shutdownDone := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		shutdownDone <- st.ExtProc.Shutdown(ctx)
	}()
	eventually(t, "/ready to report draining", func() bool {
		res, body := do(t, http.MethodGet, st.AdminURL, "/ready")
		return res.StatusCode == http.StatusServiceUnavailable && bytes.Contains(body, []byte("draining"))
	})
	close(proceed)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("download during drain: %s", e)
	}
	if err := <-shutdownDone; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	// After the drain, new work is refused by Envoy's side with a clean status, never a body.
	res, body := do(t, http.MethodGet, st.GatewayURL, "/products/a.txt")
	if res.StatusCode < 500 || bytes.Equal(body, objects["a.txt"]) {
		t.Fatalf("after shutdown: %d %q", res.StatusCode, body)
	}
}
