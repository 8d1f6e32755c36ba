package policy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/yatagarasu/yatagarasu/internal/testenv"
)

// wasmDir holds the WAT fixtures compiled once per test binary.
var wasmDir string

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "policy-wat-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	srcs, _ := filepath.Glob("testdata/*.wat")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, src := range srcs {
		if _, err := testenv.CompileWAT(ctx, src, dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	wasmDir = dir
	return m.Run()
}

func fixture(name string) string { return filepath.Join(wasmDir, name+".wasm") }

func newHost(t *testing.T, reg prometheus.Registerer) *Host {
	t.Helper()
	h, err := NewHost(Options{Registerer: reg, RetireGrace: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close(context.Background()) })
	return h
}

// load applies one spec and returns its policy.
func load(t *testing.T, h *Host, spec Spec) *Policy {
	t.Helper()
	set, _, err := h.Apply(context.Background(), []Spec{spec})
	if err != nil {
		t.Fatal(err)
	}
	p, ok := set.Get(spec.Name)
	if !ok {
		t.Fatalf("policy %q missing from the set", spec.Name)
	}
	return p
}

func request() *Request {
	return &Request{
		Method: "GET", URI: "/tenant-a/file.txt?x=1", ClientIP: "192.0.2.7",
		Headers: [][2]string{{":path", "/tenant-a/file.txt?x=1"}, {"user-agent", "curl/8"}, {"x-yatagarasu-subject", "forged"}},
		Bucket:  "files", Key: "tenant-a/file.txt", Subject: "alice",
		Claims: map[string]any{"tenant": "tenant-a", "realm_access": map[string]any{"roles": []any{"reader", "admin"}}},
		Now:    time.Unix(1_700_000_000, 0),
	}
}

func kindOf(err error) error {
	var ee *EvalError
	if errors.As(err, &ee) {
		return ee.Kind
	}
	return nil
}

func TestAllowAddsUpstreamHeader(t *testing.T) {
	p := load(t, newHost(t, nil), Spec{Name: "allow", WasmPath: fixture("allow")})
	res, err := p.Evaluate(context.Background(), request())
	if err != nil {
		t.Fatal(err)
	}
	if !res.Allow || len(res.SetUpstream) != 1 || res.SetUpstream[0] != [2]string{"x-policy", "allow"} {
		t.Fatalf("got %+v", res)
	}
	if res.FuelUsed != 1 {
		t.Errorf("fuel used = %d, want 1 (one function entry)", res.FuelUsed)
	}
}

func TestDenyCarriesStatusHeadersBody(t *testing.T) {
	p := load(t, newHost(t, nil), Spec{Name: "deny", WasmPath: fixture("deny")})
	res, err := p.Evaluate(context.Background(), request())
	if err != nil {
		t.Fatal(err)
	}
	if res.Allow || res.Status != 418 || string(res.Body) != "no tea here" ||
		len(res.Headers) != 1 || res.Headers[0] != [2]string{"content-type", "text/plain"} {
		t.Fatalf("got %+v", res)
	}
}

func TestReadSideOfTheABI(t *testing.T) {
	p := load(t, newHost(t, nil), Spec{Name: "echo", WasmPath: fixture("echo"), Config: []byte(`{"k":"v"}`)})
	res, err := p.Evaluate(context.Background(), request())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, h := range res.SetUpstream {
		got[h[0]] = h[1]
	}
	want := map[string]string{"x-method": "GET", "x-bucket": "files", "x-claim": "tenant-a", "x-role": "reader", "x-ua": "curl/8", "x-config": `{"k":"v"}`}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
}

func TestFuelCountsLoopIterations(t *testing.T) {
	p := load(t, newHost(t, nil), Spec{Name: "loop", WasmPath: fixture("loopn")})
	res, err := p.Evaluate(context.Background(), request())
	if err != nil {
		t.Fatal(err)
	}
	if res.FuelUsed != 1002 {
		t.Fatalf("fuel used = %d, want 1002 (entry + 1001 loop heads)", res.FuelUsed)
	}
	// A budget below the cost stops it.
	p = load(t, newHost(t, nil), Spec{Name: "loop", WasmPath: fixture("loopn"), Fuel: 500})
	if _, err := p.Evaluate(context.Background(), request()); kindOf(err) != ErrBudget {
		t.Fatalf("err = %v, want budget exhaustion", err)
	}
}

func TestSpinningGuestStopsWithinBudgetWhileOthersRun(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := newHost(t, reg)
	set, _, err := h.Apply(context.Background(), []Spec{
		{Name: "spin", WasmPath: fixture("spin"), Fuel: 50_000_000},
		{Name: "allow", WasmPath: fixture("allow")},
	})
	if err != nil {
		t.Fatal(err)
	}
	spin, _ := set.Get("spin")
	allow, _ := set.Get("allow")
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var allowed int
	wg.Add(2)
	go func() { // other requests keep being evaluated
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := allow.Evaluate(context.Background(), request()); err != nil {
				t.Error(err)
				return
			}
			allowed++
		}
	}()
	go func() { // a GC stop-the-world must not wait forever on the spinning guest
		defer wg.Done()
		goruntime.GC()
	}()
	for i := 0; i < 3; i++ {
		res, err := spin.Evaluate(context.Background(), request())
		if kindOf(err) != ErrBudget {
			t.Fatalf("spin: err = %v, want budget exhaustion", err)
		}
		if res.FuelUsed != 50_000_000 {
			t.Errorf("fuel used = %d", res.FuelUsed)
		}
	}
	close(stop)
	wg.Wait()
	if allowed == 0 {
		t.Error("no other evaluation completed")
	}
	if got := testutil.ToFloat64(h.metrics.failures.WithLabelValues("spin", "budget")); got != 3 {
		t.Errorf("budget failures metric = %v, want 3", got)
	}
}

func TestRunawayRecursionStops(t *testing.T) {
	p := load(t, newHost(t, nil), Spec{Name: "rec", WasmPath: fixture("recurse"), Fuel: 200_000})
	_, err := p.Evaluate(context.Background(), request())
	if kindOf(err) != ErrBudget {
		t.Fatalf("err = %v, want budget exhaustion", err)
	}
}

func TestTrapDiscardsInstance(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := newHost(t, reg)
	p := load(t, h, Spec{Name: "trap", WasmPath: fixture("trap"), MaxInstances: 1})
	for i := 0; i < 3; i++ { // each call gets a fresh instance: the pool never wedges
		_, err := p.Evaluate(context.Background(), request())
		if kindOf(err) != ErrTrap {
			t.Fatalf("call %d: err = %v, want trap", i, err)
		}
		if !strings.Contains(err.Error(), "unreachable") {
			t.Errorf("error lacks the trap message: %v", err)
		}
	}
	if got := testutil.ToFloat64(h.metrics.instances.WithLabelValues("trap")); got != 0 {
		t.Errorf("live instances = %v, want 0 after traps", got)
	}
}

func TestMemoryLimit(t *testing.T) {
	h := newHost(t, nil)
	small := load(t, h, Spec{Name: "small", WasmPath: fixture("grow"), MemoryMB: 32})
	if _, err := small.Evaluate(context.Background(), request()); kindOf(err) != ErrTrap {
		t.Fatalf("32 MiB: err = %v, want a trap from the refused memory.grow", err)
	}
	big := load(t, h, Spec{Name: "big", WasmPath: fixture("grow"), MemoryMB: 128, RecycleAfter: 1})
	if res, err := big.Evaluate(context.Background(), request()); err != nil || !res.Allow {
		t.Fatalf("128 MiB: %+v, %v", res, err)
	}
}

func TestLoadErrorsNameTheProblem(t *testing.T) {
	for name, want := range map[string]string{
		"noexport":  "does not export handle_request",
		"badimport": "imports http_handler.set_uri",
		"fsimport":  "imports wasi_snapshot_preview1.path_open",
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := newHost(t, nil).Apply(context.Background(), []Spec{{Name: name, WasmPath: fixture(name)}})
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("err = %v, want it to contain %q", err, want)
			}
		})
	}
	bad := filepath.Join(t.TempDir(), "bad.wasm")
	os.WriteFile(bad, []byte("not wasm"), 0o600)
	if _, _, err := newHost(t, nil).Apply(context.Background(), []Spec{{Name: "bad", WasmPath: bad}}); err == nil || !strings.Contains(err.Error(), "bad magic") {
		t.Fatalf("err = %v", err)
	}
}

func TestForgedInternalHeaderIsAnABIError(t *testing.T) {
	p := load(t, newHost(t, nil), Spec{Name: "forge", WasmPath: fixture("forge")})
	if _, err := p.Evaluate(context.Background(), request()); kindOf(err) != ErrABI {
		t.Fatalf("err = %v, want ABI misuse", err)
	}
}

func TestPoolExhaustion(t *testing.T) {
	p := load(t, newHost(t, nil), Spec{Name: "one", WasmPath: fixture("loopn"), MaxInstances: 1, QueueTimeout: time.Millisecond})
	held, err := p.get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Evaluate(context.Background(), request()); kindOf(err) != ErrPoolTimeout {
		t.Fatalf("err = %v, want pool timeout", err)
	}
	p.idle <- held
	if _, err := p.Evaluate(context.Background(), request()); err != nil {
		t.Fatal(err)
	}
}

func TestPoolUnderConcurrency(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := newHost(t, reg)
	p := load(t, h, Spec{Name: "two", WasmPath: fixture("loopn"), MaxInstances: 2, QueueTimeout: time.Minute})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				if res, err := p.Evaluate(context.Background(), request()); err != nil || !res.Allow {
					t.Errorf("%+v %v", res, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if got := testutil.ToFloat64(h.metrics.instances.WithLabelValues("two")); got > 2 || got < 1 {
		t.Errorf("live instances = %v, want 1..2", got)
	}
	if got := testutil.ToFloat64(h.metrics.evaluations.WithLabelValues("two", "allow")); got != 1600 {
		t.Errorf("allow evaluations = %v, want 1600", got)
	}
}

func TestApplyReusesUnchangedAndKeepsOldOnBadReload(t *testing.T) {
	h := newHost(t, nil)
	path := filepath.Join(t.TempDir(), "p.wasm")
	copyFile(t, fixture("allow"), path)
	spec := Spec{Name: "p", WasmPath: path}
	first := load(t, h, spec)
	if again := load(t, h, spec); again != first {
		t.Fatal("unchanged .wasm was reloaded instead of reused")
	}
	copyFile(t, fixture("deny"), path)
	swapped := load(t, h, spec)
	if swapped == first {
		t.Fatal("changed .wasm was not reloaded")
	}
	if res, _ := swapped.Evaluate(context.Background(), request()); res.Allow {
		t.Fatal("new version not in effect")
	}
	os.WriteFile(path, []byte("\x00asm garbage"), 0o600)
	set, kept, err := h.Apply(context.Background(), []Spec{spec})
	if err != nil || len(kept) != 1 {
		t.Fatalf("kept=%v err=%v", kept, err)
	}
	if p, _ := set.Get("p"); p != swapped {
		t.Fatal("a failed reload replaced the running version")
	}
	// The first version was retired: once closed it refuses work instead of crashing.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := first.Evaluate(context.Background(), request())
		if kindOf(err) == ErrRetired {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("retired policy still serving")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCompilationCacheDir(t *testing.T) {
	dir := t.TempDir()
	h, err := NewHost(Options{CacheDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	load(t, h, Spec{Name: "a", WasmPath: fixture("allow")})
	if err := h.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) == 0 {
		t.Fatal("compilation cache directory is empty")
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
