package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// BuildPolicy builds the Go policy package pkg (e.g. "./wasm-policies/examples/tenant", relative
// to the module root) as a wasip1 reactor into dir and returns the .wasm path. The build runs in
// the module root so callers in any package get the same result; Go's build cache makes repeat
// builds quick.
func BuildPolicy(ctx context.Context, pkg, dir string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, filepath.Base(pkg)+".wasm")
	cmd := exec.CommandContext(ctx, "go", "build", "-buildmode=c-shared", "-trimpath", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build policy %s: %w\n%s", pkg, err, msg)
	}
	return out, nil
}

// ModuleRoot finds the directory holding go.mod, walking up from the working directory, so
// tests and tools can find repository files (envoy/bootstrap.yaml, example policies).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}
