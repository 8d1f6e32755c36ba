//go:build linux

package chaos

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"syscall"
	"testing"

	"github.com/yatagarasu/yatagarasu/internal/devstack"
)

// TestCacheDiskFullThenReadOnly puts the disk cache on a 3 MiB tmpfs, fills it past full with
// 1 MiB objects, then remounts it read-only: every request serves the exact object throughout
// (failed cache writes leave nothing behind, the layer keeps serving what it has), and every
// entry read back later is whole. Mounting needs CAP_SYS_ADMIN; without it the test skips.
func TestCacheDiskFullThenReadOnly(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=3m"); err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
			t.Skipf("SKIPPED: cannot mount a tmpfs here (%v); run as root with CAP_SYS_ADMIN to cover a full and read-only cache disk", err)
		}
		t.Fatal(err)
	}
	defer func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	}()
	st := startStack(t, devstack.Options{
		Buckets: []devstack.Bucket{{Name: "d", S3Bucket: s3Bucket}},
		Extra:   fmt.Sprintf("cache:\n  enabled: true\n  cache_layers: [disk]\n  disk:\n    enabled: true\n    cache_dir: %q\n    max_disk_cache_size_mb: 100\n", dir),
	})
	ctx := t.Context()
	client := &http.Client{}
	check := func(phase string, keys []string) {
		t.Helper()
		for _, k := range keys {
			if r := fetch(ctx, client, st.GatewayURL, "/d/"+k, k); r.kind != okBody {
				t.Fatalf("%s %s: %v (%d) %s", phase, k, r.kind, r.status, r.detail)
			}
		}
	}
	full := bigKeys[:8] // 8 MiB into 3 MiB
	check("filling", full)
	check("full", full)
	check("full, small objects", smallKeys)
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err == nil {
		t.Logf("cache disk after filling: %d of %d blocks free", fs.Bfree, fs.Blocks)
	}

	if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Fatalf("remount read-only: %v", err)
	}
	if f, err := os.CreateTemp(dir, "probe"); err == nil {
		f.Close()
		t.Fatal("the cache disk is still writable after the read-only remount")
	}
	check("read-only, new objects", bigKeys[8:12])
	check("read-only, old objects", full)
	check("read-only, small objects", smallKeys)
}
