package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/yatagarasu/yatagarasu/internal/config"
	"github.com/yatagarasu/yatagarasu/xds/translator"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const waitFor = 30 * time.Second

func TestPrintMatchesTranslator(t *testing.T) {
	path := "../../translator/testdata/in/multi_bucket_dns.yaml"
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"--config", path, "--print"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d, stderr %s", code, stderr.String())
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	res, err := translator.Translate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want, err := res.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stdout.Bytes(), want) {
		t.Fatalf("--print output differs from translator YAML:\n%s", stdout.String())
	}
	msgs, err := translator.ParseYAML(stdout.Bytes())
	if err != nil || len(msgs) != 4 {
		t.Fatalf("--print output parses to %d resources, err %v", len(msgs), err)
	}
}

func TestPrintBadConfigFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(path, []byte("buckets:\n  - name: x\n    pathprefix: /x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--config", path, "--print"}, &stdout, &stderr)
	if code == 0 || stdout.Len() != 0 || !strings.Contains(stderr.String(), "pathprefix") {
		t.Fatalf("exit %d, stdout %q, stderr %q; want failure naming the bad key", code, stdout.String(), stderr.String())
	}
	if code := run(context.Background(), []string{"--print"}, &stdout, &stderr); code != 2 {
		t.Fatalf("missing --config: exit %d, want 2", code)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestServeADSAndAdminUntilCancelled(t *testing.T) {
	xdsAddr, adminAddr := freeAddr(t), freeAddr(t)
	path := filepath.Join(t.TempDir(), "config.yaml")
	cfgYAML := fmt.Sprintf(`xds:
  address: %q
origin:
  shared_secret: "0123456789abcdef0123456789abcdef"
buckets:
  - name: a
    path_prefix: /a
    s3:
      bucket: a
      endpoint: http://127.0.0.1:9000
      access_key: AK
      secret_key: SK
`, xdsAddr)
	if err := os.WriteFile(path, []byte(cfgYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr syncBuffer
	exited := make(chan int, 1)
	go func() { exited <- run(ctx, []string{"--config", path, "--admin", adminAddr}, io.Discard, &stderr) }()

	// /health turns 200 once the first snapshot is served.
	deadline := time.Now().Add(waitFor)
	client := &http.Client{Timeout: 5 * time.Second}
	for {
		resp, err := client.Get("http://" + adminAddr + "/health")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(string(body), `"version"`) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("admin /health never became ready; logs:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	resp, err := client.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if !strings.Contains(string(metrics), "yatagarasu_xds_config_info{version=") {
		t.Fatalf("/metrics lacks config info:\n%s", metrics)
	}

	conn, err := grpc.NewClient(xdsAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	streamCtx, streamCancel := context.WithTimeout(ctx, waitFor)
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(streamCtx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "e2e"}, TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}
	cds, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(cds.GetResources()) != 2 {
		t.Fatalf("CDS returned %d clusters", len(cds.GetResources()))
	}
	streamCancel()
	_ = conn.Close()

	cancel()
	select {
	case code := <-exited:
		if code != 0 {
			t.Fatalf("exit %d after cancel; logs:\n%s", code, stderr.String())
		}
	case <-time.After(waitFor):
		t.Fatal("run did not return after cancel")
	}
	if !strings.Contains(stderr.String(), `"msg":"xds snapshot updated"`) {
		t.Errorf("expected JSON logs on stderr, got:\n%s", stderr.String())
	}
}
