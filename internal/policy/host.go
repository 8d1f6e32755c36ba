// Package policy hosts custom access policies written as WebAssembly modules (ARCHITECTURE.md §2
// step 8) on wazero: each module is compiled once off the request path (with an optional disk
// cache), fuel-instrumented against runaway loops and recursion, and evaluated on a bounded pool
// of instances through the http-wasm handler ABI plus the `yatagarasu` host module
// (wasm-policies/ABI.md).
package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	goruntime "runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// Defaults for a Spec's zero fields.
const (
	DefaultFuel          = 5_000_000
	DefaultMemoryLimitMB = 32
	DefaultQueueTimeout  = 100 * time.Millisecond
	DefaultMinInstances  = 1
	// DefaultRecycleAfter is how many calls an instance serves before it is replaced, since a
	// guest's linear memory never shrinks.
	DefaultRecycleAfter = 100_000
)

// Failure kinds, used in errors and as the metric label.
var (
	ErrBudget       = errors.New("policy exceeded its fuel budget")
	ErrTrap         = errors.New("policy trapped")
	ErrABI          = errors.New("policy misused the ABI")
	ErrPoolTimeout  = errors.New("no policy instance became free in time")
	ErrInstantiate  = errors.New("policy instance could not be created")
	ErrRetired      = errors.New("policy version was retired")
	errKindForLabel = map[error]string{ErrBudget: "budget", ErrTrap: "trap", ErrABI: "abi",
		ErrPoolTimeout: "pool_timeout", ErrInstantiate: "instantiate", ErrRetired: "retired"}
)

// Spec is one configured policy, as the host needs it.
type Spec struct {
	Name         string
	WasmPath     string
	Config       []byte // handed to the guest by get_config (JSON)
	FailOpen     bool   // allow the request when the policy fails (default: 503)
	MemoryMB     int    // linear memory cap; 0 → DefaultMemoryLimitMB
	Fuel         int64  // budget per request; 0 → DefaultFuel
	MaxInstances int    // pool bound; 0 → 2×GOMAXPROCS
	MinInstances int    // instances created at load; 0 → DefaultMinInstances
	QueueTimeout time.Duration
	RecycleAfter int
}

func (s Spec) withDefaults() Spec {
	if s.MemoryMB <= 0 {
		s.MemoryMB = DefaultMemoryLimitMB
	}
	if s.Fuel <= 0 {
		s.Fuel = DefaultFuel
	}
	if s.MaxInstances <= 0 {
		s.MaxInstances = 2 * goruntime.GOMAXPROCS(0)
	}
	if s.MinInstances <= 0 {
		s.MinInstances = DefaultMinInstances
	}
	if s.MinInstances > s.MaxInstances {
		s.MinInstances = s.MaxInstances
	}
	if s.QueueTimeout <= 0 {
		s.QueueTimeout = DefaultQueueTimeout
	}
	if s.RecycleAfter <= 0 {
		s.RecycleAfter = DefaultRecycleAfter
	}
	return s
}

// Options configure a Host.
type Options struct {
	// CacheDir keeps compiled native code across restarts; empty keeps it in memory only. The
	// directory holds executable code: it must be writable by the service user only.
	CacheDir   string
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// RetireGrace is how long a replaced policy version keeps serving requests that already
	// picked it up before its instances are closed (default 5s).
	RetireGrace time.Duration

	// unmetered skips fuel instrumentation; only benchmarks set it, to measure what the
	// runaway protection costs.
	unmetered bool
}

// Host compiles and runs policies. It lives as long as the extproc service; Apply turns each
// config version's policy list into a Set, reusing what did not change.
type Host struct {
	opts    Options
	cache   wazero.CompilationCache
	metrics *metrics
	log     *slog.Logger

	mu      sync.Mutex // serialises Apply and module bookkeeping
	modules map[moduleKey]*module
	current map[string]*Policy
	wg      sync.WaitGroup // retirements in flight
	done    chan struct{}  // closed by Close: retirements stop waiting for their grace period
	once    sync.Once
}

// moduleKey identifies compiled code: the .wasm content and the runtime-wide memory cap.
type moduleKey struct {
	hash  [sha256.Size]byte
	pages uint32
}

// module is one compiled, instrumented binary in its own runtime, shared by the policies using it.
type module struct {
	key      moduleKey
	rt       wazero.Runtime
	compiled wazero.CompiledModule
	refs     int
}

// NewHost creates a Host; Close releases every runtime.
func NewHost(opts Options) (*Host, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.RetireGrace <= 0 {
		opts.RetireGrace = 5 * time.Second
	}
	h := &Host{opts: opts, log: opts.Logger, metrics: newMetrics(opts.Registerer),
		modules: map[moduleKey]*module{}, current: map[string]*Policy{}, done: make(chan struct{})}
	if opts.CacheDir != "" {
		if err := os.MkdirAll(opts.CacheDir, 0o700); err != nil {
			return nil, fmt.Errorf("policy compilation cache: %w", err)
		}
		c, err := wazero.NewCompilationCacheWithDir(opts.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("policy compilation cache %s: %w", opts.CacheDir, err)
		}
		h.cache = c
	} else {
		h.cache = wazero.NewCompilationCache()
	}
	return h, nil
}

// Set is the immutable group of policies one config version uses, looked up by name per request.
type Set struct{ byName map[string]*Policy }

// Get returns the policy called name.
func (s *Set) Get(name string) (*Policy, bool) {
	if s == nil {
		return nil, false
	}
	p, ok := s.byName[name]
	return p, ok
}

// LoadError reports a policy whose new .wasm could not be loaded while its previous version
// stays in service.
type LoadError struct {
	Policy string
	Err    error
}

func (e *LoadError) Error() string {
	return fmt.Sprintf("policy %q: %v (the previous version stays in service)", e.Policy, e.Err)
}

func (e *LoadError) Unwrap() error { return e.Err }

// Apply loads specs: unchanged policies (same .wasm content and settings) are reused with their
// warm instances, changed ones are compiled and pre-warmed, and policies left out are retired
// after RetireGrace. A policy whose new .wasm fails to load keeps its previous version and is
// reported in kept; a new policy that fails makes Apply fail and change nothing.
func (h *Host) Apply(ctx context.Context, specs []Spec) (set *Set, kept []error, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	next := make(map[string]*Policy, len(specs))
	var fresh []*Policy
	fail := func(e error) (*Set, []error, error) {
		for _, p := range fresh {
			h.closePolicy(ctx, p)
		}
		return nil, nil, e
	}
	for _, spec := range specs {
		spec = spec.withDefaults()
		wasm, rerr := os.ReadFile(spec.WasmPath)
		var p *Policy
		if rerr == nil {
			key := moduleKey{hash: sha256.Sum256(wasm), pages: uint32(spec.MemoryMB) * 16}
			if old := h.current[spec.Name]; old != nil && old.key == key && old.spec.equal(spec) {
				next[spec.Name] = old
				continue
			}
			p, rerr = h.newPolicy(ctx, spec, key, wasm)
		}
		if rerr != nil {
			rerr = fmt.Errorf("load policy %q from %s: %w", spec.Name, spec.WasmPath, rerr)
			if old := h.current[spec.Name]; old != nil {
				h.metrics.loadFailures.WithLabelValues(spec.Name).Inc()
				h.log.ErrorContext(ctx, "policy reload failed; keeping the previous version", "policy", spec.Name, "error", rerr.Error())
				next[spec.Name] = old
				kept = append(kept, &LoadError{Policy: spec.Name, Err: rerr})
				continue
			}
			return fail(rerr)
		}
		fresh = append(fresh, p)
		next[spec.Name] = p
	}
	for name, old := range h.current {
		if next[name] != old {
			h.retire(old)
		}
	}
	h.current = next
	for _, p := range fresh {
		h.log.InfoContext(ctx, "policy loaded", "policy", p.spec.Name, "sha256", p.Version(), "wasm", p.spec.WasmPath)
	}
	return &Set{byName: next}, kept, nil
}

func (a Spec) equal(b Spec) bool {
	return a.Name == b.Name && a.WasmPath == b.WasmPath && string(a.Config) == string(b.Config) &&
		a.FailOpen == b.FailOpen && a.MemoryMB == b.MemoryMB && a.Fuel == b.Fuel &&
		a.MaxInstances == b.MaxInstances && a.MinInstances == b.MinInstances &&
		a.QueueTimeout == b.QueueTimeout && a.RecycleAfter == b.RecycleAfter
}

// newPolicy compiles (or reuses) the module and pre-warms MinInstances instances.
func (h *Host) newPolicy(ctx context.Context, spec Spec, key moduleKey, wasm []byte) (*Policy, error) {
	mod, err := h.module(ctx, key, wasm)
	if err != nil {
		return nil, err
	}
	p := &Policy{spec: spec, config: string(spec.Config), key: key, mod: mod, host: h,
		idle:  make(chan *instance, spec.MaxInstances),
		slots: make(chan struct{}, spec.MaxInstances),
		m:     h.metrics.forPolicy(spec.Name)}
	for i := 0; i < spec.MinInstances; i++ {
		p.slots <- struct{}{}
		in, err := p.newInstance(ctx)
		if err != nil {
			<-p.slots
			h.closePolicy(ctx, p)
			return nil, err
		}
		p.idle <- in
	}
	return p, nil
}

// module returns the compiled module for key, compiling it on first use.
func (h *Host) module(ctx context.Context, key moduleKey, wasm []byte) (*module, error) {
	if m := h.modules[key]; m != nil {
		m.refs++
		return m, nil
	}
	start := time.Now()
	m, err := compileModule(ctx, h.cache, key.pages, wasm, !h.opts.unmetered)
	if err != nil {
		return nil, err
	}
	m.key, m.refs = key, 1
	h.modules[key] = m
	h.metrics.compileSeconds.Observe(time.Since(start).Seconds())
	return m, nil
}

// compileModule instruments, checks and compiles wasm in a new runtime capped at pages.
func compileModule(ctx context.Context, cache wazero.CompilationCache, pages uint32, wasm []byte, metered bool) (*module, error) {
	inst := wasm
	if metered {
		var err error
		if inst, err = InstrumentFuel(wasm); err != nil {
			return nil, fmt.Errorf("instrument: %w", err)
		}
	}
	cfg := wazero.NewRuntimeConfigCompiler().WithMemoryLimitPages(pages).WithCompilationCache(cache)
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	ok := false
	defer func() {
		if !ok {
			_ = rt.Close(ctx)
		}
	}()
	compiled, err := rt.CompileModule(ctx, inst)
	if err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	if err := checkExports(compiled); err != nil {
		return nil, err
	}
	if err := checkImports(compiled); err != nil {
		return nil, err
	}
	for _, def := range compiled.ExportedMemories() {
		if min := def.Min(); min > pages {
			return nil, fmt.Errorf("needs %d pages (%d MiB) of memory at start, above the limit of %d MiB", min, min/16, pages/16)
		}
	}
	if err := instantiateHostModules(ctx, rt); err != nil {
		return nil, err
	}
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		return nil, fmt.Errorf("instantiate WASI: %w", err)
	}
	ok = true
	return &module{rt: rt, compiled: compiled}, nil
}

// release drops one reference to m and closes its runtime at the last one.
func (h *Host) release(ctx context.Context, m *module) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.releaseLocked(ctx, m)
}

func (h *Host) releaseLocked(ctx context.Context, m *module) {
	m.refs--
	if m.refs == 0 {
		delete(h.modules, m.key)
		_ = m.rt.Close(ctx)
	}
}

// closePolicy closes a policy that never served (Apply failed); h.mu is held.
func (h *Host) closePolicy(ctx context.Context, p *Policy) {
	p.closeInstances(ctx)
	h.releaseLocked(ctx, p.mod)
}

// retire closes p after the grace period, once requests still using it are done.
func (h *Host) retire(p *Policy) {
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		t := time.NewTimer(h.opts.RetireGrace)
		defer t.Stop()
		select {
		case <-t.C:
		case <-h.done:
		}
		ctx := context.Background()
		p.closeInstances(ctx)
		h.release(ctx, p.mod)
	}()
}

// Close retires every policy at once and waits for the runtimes to close.
func (h *Host) Close(ctx context.Context) error {
	h.mu.Lock()
	cur := h.current
	h.current = map[string]*Policy{}
	h.mu.Unlock()
	h.once.Do(func() { close(h.done) })
	for _, p := range cur {
		p.closeInstances(ctx)
		h.release(ctx, p.mod)
	}
	h.wg.Wait()
	return h.cache.Close(ctx)
}

// shortHash is a policy version label: the first 12 hex digits of the .wasm SHA-256.
func shortHash(h [sha256.Size]byte) string { return hex.EncodeToString(h[:6]) }
