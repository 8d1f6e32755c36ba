package devstack

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/yatagarasu/yatagarasu/internal/testenv"
)

// envoyProcess is a real Envoy started from envoy/bootstrap.yaml with the addresses rewritten.
type envoyProcess struct {
	cmd    *exec.Cmd
	output *bytes.Buffer
}

// BootstrapFor returns envoy/bootstrap.yaml (found from the module root) with the xDS address and
// admin port replaced, so a real Envoy can follow a stack started on free ports.
func BootstrapFor(xdsAddr string, adminPort int) ([]byte, error) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(root, "envoy", "bootstrap.yaml"))
	if err != nil {
		return nil, fmt.Errorf("read bootstrap: %w", err)
	}
	host, port, err := net.SplitHostPort(xdsAddr)
	if err != nil {
		return nil, fmt.Errorf("xds address %q: %w", xdsAddr, err)
	}
	s := string(b)
	s = strings.Replace(s, "address: 127.0.0.1\n                port_value: 18000", "address: "+host+"\n                port_value: "+port, 1)
	s = strings.Replace(s, "port_value: 9901", "port_value: "+strconv.Itoa(adminPort), 1)
	if !strings.Contains(s, "port_value: "+port) {
		return nil, fmt.Errorf("bootstrap layout changed: could not point it at %s", xdsAddr)
	}
	return []byte(s), nil
}

func startEnvoy(ctx context.Context, bin, dir, xdsAddr, gateway string) (*envoyProcess, error) {
	adminPort, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	boot, err := BootstrapFor(xdsAddr, adminPort)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "envoy-bootstrap.yaml")
	if err := os.WriteFile(path, boot, 0o600); err != nil {
		return nil, fmt.Errorf("write bootstrap: %w", err)
	}
	p := &envoyProcess{output: &bytes.Buffer{}}
	p.cmd = exec.Command(bin, "-c", path, "--base-id", strconv.Itoa(adminPort), "--log-level", "warn", "--concurrency", "2")
	p.cmd.Stdout, p.cmd.Stderr = p.output, p.output
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start envoy: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", gateway, 200*time.Millisecond); err == nil {
			c.Close()
			return p, nil
		}
		select {
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	p.stop()
	return nil, fmt.Errorf("envoy did not open %s within 30s; output:\n%s", gateway, p.output.String())
}

func (p *envoyProcess) stop() {
	if p.cmd.Process != nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		_ = p.cmd.Wait()
	}
}
