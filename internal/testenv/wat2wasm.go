package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Wat2Wasm returns the path of wabt's wat2wasm, installing Debian's wabt package with apt-get
// when it is missing and we run as root, so host tests can build their WAT fixtures.
func Wat2Wasm(ctx context.Context) (string, error) {
	dirs := []string{"/usr/bin", "/usr/local/bin"}
	if p, ok := lookBinary("wat2wasm", dirs...); ok {
		return p, nil
	}
	if os.Geteuid() != 0 {
		return "", errors.New("wat2wasm not found in PATH or /usr/bin; install the wabt package")
	}
	err := withFileLock("yatagarasu-wabt-install.lock", func() error {
		if _, ok := lookBinary("wat2wasm", dirs...); ok {
			return nil
		}
		install := func() ([]byte, error) {
			cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "wabt")
			cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
			return cmd.CombinedOutput()
		}
		if _, err := install(); err != nil {
			if out, err := exec.CommandContext(ctx, "apt-get", "update").CombinedOutput(); err != nil {
				return fmt.Errorf("apt-get update: %w\n%s", err, out)
			}
			if out, err := install(); err != nil {
				return fmt.Errorf("apt-get install wabt: %w\n%s", err, out)
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if p, ok := lookBinary("wat2wasm", dirs...); ok {
		return p, nil
	}
	return "", errors.New("apt-get installed wabt but wat2wasm is not in PATH or /usr/bin")
}

// CompileWAT turns the WAT file src into a .wasm file in dir and returns its path.
func CompileWAT(ctx context.Context, src, dir string) (string, error) {
	bin, err := Wat2Wasm(ctx)
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, strings.TrimSuffix(filepath.Base(src), ".wat")+".wasm")
	if msg, err := exec.CommandContext(ctx, bin, "-o", out, src).CombinedOutput(); err != nil {
		return "", fmt.Errorf("wat2wasm %s: %w\n%s", src, err, msg)
	}
	return out, nil
}
