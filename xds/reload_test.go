package xds_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/yatagarasu/yatagarasu/internal/config"
	"github.com/yatagarasu/yatagarasu/internal/watch"
	"github.com/yatagarasu/yatagarasu/xds"
	"github.com/yatagarasu/yatagarasu/xds/server"
	"github.com/yatagarasu/yatagarasu/xds/translator"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitFor bounds polling for a condition; a hang guard, not a performance threshold.
const waitFor = 30 * time.Second

// configYAML is a valid config whose buckets (and so whose xDS version) depend on buckets.
func configYAML(buckets ...string) []byte {
	s := "origin:\n  shared_secret: \"0123456789abcdef0123456789abcdef\"\nbuckets:\n"
	for _, b := range buckets {
		s += fmt.Sprintf("  - name: %s\n    path_prefix: /%s\n    s3:\n      bucket: %s\n      endpoint: http://127.0.0.1:9000\n      access_key: AK\n      secret_key: SK\n", b, b, b)
	}
	return []byte(s)
}

// versionOf is the version the server must serve for data.
func versionOf(t *testing.T, data []byte) string {
	t.Helper()
	cfg, err := config.Parse("expected.yaml", data, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	res, err := translator.Translate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return res.Version()
}

type fixture struct {
	t    *testing.T
	path string
	srv  *server.Server
	reg  *prometheus.Registry
	w    *watch.Watcher
}

func setup(t *testing.T, path string, opts watch.Options) *fixture {
	t.Helper()
	reg := prometheus.NewRegistry()
	logger := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	srv := server.New(logger, reg)
	opts.Path = path
	opts.Reload = xds.Apply(path, config.Load, srv)
	opts.Logger = logger
	w, err := watch.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := w.ReloadNow(ctx); err != nil {
		cancel()
		_ = w.Close()
		t.Fatalf("initial reload: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return &fixture{t: t, path: path, srv: srv, reg: reg, w: w}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func (f *fixture) write(data []byte) {
	f.t.Helper()
	if err := os.WriteFile(f.path, data, 0o600); err != nil {
		f.t.Fatal(err)
	}
}

// replace writes data atomically (temp file + rename), so no reader ever sees a half-written file.
func (f *fixture) replace(data []byte) {
	f.t.Helper()
	tmp := f.path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Rename(tmp, f.path); err != nil {
		f.t.Fatal(err)
	}
}

// eventually polls cond until it holds or waitFor passes.
func (f *fixture) eventually(what string, cond func() bool) {
	f.t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			f.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (f *fixture) reloads(result string) float64 {
	f.t.Helper()
	families, err := f.reg.Gather()
	if err != nil {
		f.t.Fatal(err)
	}
	for _, fam := range families {
		if fam.GetName() != "yatagarasu_xds_reloads_total" {
			continue
		}
		for _, m := range fam.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func (f *fixture) waitVersion(data []byte) {
	f.t.Helper()
	want := versionOf(f.t, data)
	f.eventually("version "+want, func() bool { return f.srv.Version() == want })
}

func TestReloadsOnWriteKeepsLastGoodAndFollowsRenameOver(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	v1 := configYAML("a")
	if err := os.WriteFile(path, v1, 0o600); err != nil {
		t.Fatal(err)
	}
	f := setup(t, path, watch.Options{Debounce: 20 * time.Millisecond, PollInterval: time.Hour})
	if got, want := f.srv.Version(), versionOf(t, v1); got != want {
		t.Fatalf("after start-up version %q, want %q", got, want)
	}

	// A new valid config written in place is served.
	v2 := configYAML("a", "b")
	f.write(v2)
	f.waitVersion(v2)

	// An invalid config is counted as an error and the old version stays. (An in-place write
	// may also be seen half-written, which is another counted error, hence ">".)
	errorsBefore := f.reloads(server.ResultError)
	f.write([]byte("buckets:\n  - name: x\n    pathprefix: /x\n"))
	f.eventually("reload error counted", func() bool { return f.reloads(server.ResultError) > errorsBefore })
	if got, want := f.srv.Version(), versionOf(t, v2); got != want {
		t.Fatalf("after invalid config version %q, want last good %q", got, want)
	}

	// Editors save by writing a temp file and renaming it over the config.
	v3 := configYAML("c")
	tmp := filepath.Join(dir, ".config.yaml.swp")
	if err := os.WriteFile(tmp, v3, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	f.waitVersion(v3)

	// Rewriting identical bytes does not reload; proven by the count when the next change lands.
	before := f.w.Reloads()
	f.replace(v3)
	v4 := configYAML("d")
	f.replace(v4)
	f.waitVersion(v4)
	if got := f.w.Reloads() - before; got != 1 {
		t.Errorf("%d reloads for one content change, want 1", got)
	}
	if got := f.reloads(server.ResultApplied); got != 4 {
		t.Errorf("reloads{applied} = %v, want 4 (start-up + 3 changes)", got)
	}
}

func TestRapidWritesReloadOnce(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, configYAML("start"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A generous debounce: the burst below takes far less, so it is one quiet period.
	f := setup(t, path, watch.Options{Debounce: time.Second, PollInterval: time.Hour})
	before := f.w.Reloads()
	var last []byte
	for i := range 5 {
		last = configYAML(fmt.Sprintf("b%d", i))
		f.replace(last)
	}
	f.waitVersion(last)
	if got := f.w.Reloads() - before; got != 1 {
		t.Fatalf("%d reloads for a burst of 5 writes, want 1", got)
	}
	if got := f.reloads(server.ResultApplied); got != 2 {
		t.Fatalf("reloads{applied} = %v, want 2 (start-up + burst)", got)
	}
}

func TestKubernetesSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	mkdata := func(name string, data []byte) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "config.yaml"), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	v1, v2 := configYAML("one"), configYAML("two")
	mkdata("..2026_01", v1)
	if err := os.Symlink("..2026_01", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "config.yaml")
	if err := os.Symlink(filepath.Join("..data", "config.yaml"), path); err != nil {
		t.Fatal(err)
	}
	f := setup(t, path, watch.Options{Debounce: 20 * time.Millisecond, PollInterval: time.Hour})
	if f.srv.Version() != versionOf(t, v1) {
		t.Fatal("initial version wrong")
	}
	// The kubelet's atomic update: new dir, new ..data_tmp symlink, rename over ..data.
	mkdata("..2026_02", v2)
	if err := os.Symlink("..2026_02", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	f.waitVersion(v2)
}

func TestPollFallback(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, configYAML("a"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := setup(t, path, watch.Options{PollOnly: true, PollInterval: 20 * time.Millisecond})
	v2 := configYAML("polled")
	f.write(v2)
	f.waitVersion(v2)
}

func TestNewRejectsBadOptions(t *testing.T) {
	if _, err := watch.New(watch.Options{Reload: func(context.Context) error { return nil }}); err == nil {
		t.Error("empty path accepted")
	}
	if _, err := watch.New(watch.Options{Path: "x.yaml"}); err == nil {
		t.Error("nil reload accepted")
	}
	if _, err := watch.New(watch.Options{Path: filepath.Join(t.TempDir(), "missing", "x.yaml"), Reload: func(context.Context) error { return nil }}); err == nil {
		t.Error("missing directory accepted")
	}
}
