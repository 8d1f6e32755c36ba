// Command demo runs the whole gateway on this machine for `make run`: a versitygw S3 server seeded
// with sample objects, the xds control plane, extproc (with origin and admin), and a gateway on
// :8080 — real Envoy if `envoy` is on PATH, otherwise the Envoy emulation harness.
package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/yatagarasu/yatagarasu/internal/devstack"
	"github.com/yatagarasu/yatagarasu/internal/testenv"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	fmt.Println("starting versitygw (installs it with `go install` on first use, ~1-2 min)...")
	setup, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	s3, err := testenv.StartS3(setup, testenv.Options{})
	if err != nil {
		return err
	}
	defer s3.Close()
	if err := seed(setup, s3); err != nil {
		return err
	}
	envoy, _ := exec.LookPath("envoy")
	dir, err := os.MkdirTemp("", "yatagarasu-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	st, err := devstack.Start(ctx, devstack.Options{
		S3:           s3,
		Buckets:      []devstack.Bucket{{Name: "products"}, {Name: "media", Prefix: "/media/public"}},
		Dir:          dir,
		Logger:       log,
		DefaultPorts: true,
		Envoy:        envoy,
	})
	if err != nil {
		return fmt.Errorf("%w (are ports 8080, 9001, 9002, 9090, 18000 free?)", err)
	}
	defer st.Close()

	gw := st.GatewayURL
	fmt.Printf(`
Yatagarasu demo is up (gateway: %s, config: %s).
The config file is live: edit it and both xds and extproc reload.

  curl -i %[1]s/products/hello.txt                 # 200, X-Cache: MISS, X-Request-Id
  curl -I %[1]s/products/big.bin                   # HEAD of an 8 MiB object
  curl -s %[1]s/products/big.bin | sha256sum       # streamed through harness → extproc → origin → S3
  curl -i -H 'Range: bytes=0-4' %[1]s/products/hello.txt     # 206 Partial Content
  curl -i '%[1]s/products/docs/read%%20me.md'        # key with a space
  curl -i %[1]s/media/public/logo.svg             # second bucket on a nested prefix
  curl -i %[1]s/products/missing.txt              # 404 JSON from S3
  curl -i %[1]s/nowhere/x                         # 404 JSON: no bucket for the path
  curl -i -X PUT %[1]s/products/hello.txt         # 405: read-only gateway
  curl -i --path-as-is %[1]s/products/../media/x  # 400: traversal refused
  curl -s %[3]s/metrics | grep yatagarasu_        # Prometheus metrics
  curl -s %[3]s/ready                             # readiness (S3 reachable)
  go run ./xds/cmd/xds --config %[2]s --print     # what Envoy is sent

Gateway: %[4]s. Press Ctrl-C to stop.
`, gw, st.ConfigPath, st.AdminURL, st.Gateway())
	<-ctx.Done()
	fmt.Println("\nstopping")
	return nil
}

func seed(ctx context.Context, s3 *testenv.S3) error {
	for _, b := range []string{"products", "media"} {
		if err := s3.CreateBucket(ctx, b); err != nil {
			return err
		}
	}
	big := make([]byte, 8<<20)
	_, _ = rand.Read(big)
	objects := []struct {
		bucket, key, ctype string
		body               []byte
	}{
		{"products", "hello.txt", "text/plain", []byte("hello from yatagarasu\n")},
		{"products", "docs/read me.md", "text/markdown", []byte("# A key with a space\n")},
		{"products", "big.bin", "application/octet-stream", big},
		{"media", "logo.svg", "image/svg+xml", []byte(`<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8"/></svg>`)},
	}
	for _, o := range objects {
		if err := s3.PutObject(ctx, o.bucket, o.key, o.body, o.ctype); err != nil {
			return fmt.Errorf("seed %s/%s: %w", o.bucket, o.key, err)
		}
	}
	return nil
}
