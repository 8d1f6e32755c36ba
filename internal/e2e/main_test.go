// Package e2e drives the whole request path — client → gateway (the Envoy emulation harness
// configured over ADS by our xDS server, or real Envoy when it is on PATH) → extproc → origin →
// versitygw — with real servers on loopback.
package e2e

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/yatagarasu/yatagarasu/internal/devstack"
	"github.com/yatagarasu/yatagarasu/internal/testenv"
)

// Objects seeded into the "products" bucket, by key.
var objects = map[string][]byte{}

// secretBody is the one object of the "secret" bucket; no traversal may ever return it.
var secretBody = []byte("TOP SECRET: this must never leave through /products")

// stacks holds one running product per gateway kind (harness always; Envoy when on PATH).
var stacks []*devstack.Stack

var s3srv *testenv.S3

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var err error
	if s3srv, err = testenv.StartS3(ctx, testenv.Options{}); err != nil {
		return 0, err
	}
	defer s3srv.Close()
	if err := seed(ctx); err != nil {
		return 0, err
	}
	blackhole, err := net.Listen("tcp", "127.0.0.1:0") // accepts and never answers: S3 timeouts
	if err != nil {
		return 0, err
	}
	defer blackhole.Close()

	buckets := []devstack.Bucket{
		{Name: "products"},
		{Name: "secret"},
		{Name: "badcreds", S3Bucket: "products", SecretKey: "not-the-secret-key"},
		{Name: "slow", S3Bucket: "products", Endpoint: "http://" + blackhole.Addr().String(), Timeout: 1},
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	kinds := []string{""}
	if bin, err := exec.LookPath("envoy"); err == nil {
		kinds = append(kinds, bin)
	} else {
		fmt.Fprintln(os.Stderr, "e2e: no envoy binary on PATH: the suite runs against the emulation harness only; put envoy (>= 1.37) on PATH to run it against real Envoy too")
	}
	for _, envoy := range kinds {
		dir, err := os.MkdirTemp("", "yatagarasu-e2e-")
		if err != nil {
			return 0, err
		}
		defer os.RemoveAll(dir)
		st, err := devstack.Start(ctx, devstack.Options{S3: s3srv, Buckets: buckets, Dir: dir, Logger: log, Envoy: envoy})
		if err != nil {
			return 0, err
		}
		defer st.Close()
		stacks = append(stacks, st)
	}
	return m.Run(), nil
}

func seed(ctx context.Context) error {
	for _, b := range []string{"products", "secret"} {
		if err := s3srv.CreateBucket(ctx, b); err != nil {
			return err
		}
	}
	objects["a.txt"] = random(1 << 10)
	objects["big.bin"] = random(64 << 20)
	objects["one-mib.bin"] = random(1 << 20)
	for _, k := range []string{
		"with space.txt",
		"unicode-日本語-ü.txt",
		"plus+sign.txt",
		"literal%2Fpercent.txt",
		"many/nested/levels/of/dirs/file.txt",
		"dir/sub/encoded-slash.txt",
		"quote's & semi;colon=eq,comma.txt",
	} {
		objects[k] = []byte("content of " + k)
	}
	for k, v := range objects {
		if err := s3srv.PutObject(ctx, "products", k, v, "application/octet-stream"); err != nil {
			return fmt.Errorf("seed %q: %w", k, err)
		}
	}
	if err := s3srv.PutObject(ctx, "secret", "x", secretBody, "text/plain"); err != nil {
		return err
	}
	return s3srv.PutObject(ctx, "secret", "secret/x", secretBody, "text/plain")
}

func random(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// each runs f once per running gateway kind.
func each(t *testing.T, f func(t *testing.T, st *devstack.Stack)) {
	t.Helper()
	for _, st := range stacks {
		t.Run(st.Gateway(), func(t *testing.T) { f(t, st) })
	}
}
