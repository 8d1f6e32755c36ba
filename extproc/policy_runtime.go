package extproc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/yatagarasu/yatagarasu/internal/config"
	"github.com/yatagarasu/yatagarasu/internal/policy"
	"github.com/yatagarasu/yatagarasu/internal/runtime"
	"github.com/yatagarasu/yatagarasu/internal/watch"
)

// PolicyCacheEnv names the directory for compiled policy code; unset → the user cache dir.
const PolicyCacheEnv = "YATAGARASU_POLICY_CACHE_DIR"

// policyRuntime owns the service's policy host: it compiles each config version's policies,
// keeps them in the snapshot, and watches the .wasm files to hot-swap a changed module.
type policyRuntime struct {
	host  *policy.Host
	store *runtime.Store
	log   *slog.Logger

	mu       sync.Mutex // serialises applies from config reloads and .wasm changes
	ctx      context.Context
	cancel   context.CancelFunc
	watchers map[string]context.CancelFunc // by .wasm path
}

func newPolicyRuntime(store *runtime.Store, log *slog.Logger, reg prometheus.Registerer) (*policyRuntime, error) {
	dir := os.Getenv(PolicyCacheEnv)
	if dir == "" {
		if base, err := os.UserCacheDir(); err == nil {
			dir = filepath.Join(base, "yatagarasu", "wasm")
		}
	}
	host, err := policy.NewHost(policy.Options{CacheDir: dir, Logger: log, Registerer: reg})
	if err != nil {
		// A cache we cannot create only costs compile time at restart.
		log.Warn("policy compilation cache unavailable; compiling in memory", "dir", dir, "error", err.Error())
		if host, err = policy.NewHost(policy.Options{Logger: log, Registerer: reg}); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &policyRuntime{host: host, store: store, log: log, ctx: ctx, cancel: cancel, watchers: map[string]context.CancelFunc{}}, nil
}

// specs converts the config's policy list for the host.
func policySpecs(cfg *config.Config) ([]policy.Spec, error) {
	out := make([]policy.Spec, 0, len(cfg.Policies))
	for _, p := range cfg.Policies {
		var conf []byte
		if p.Config != nil {
			b, err := json.Marshal(p.Config)
			if err != nil {
				return nil, fmt.Errorf("policy %q: config is not representable as JSON: %w", p.Name, err)
			}
			conf = b
		}
		out = append(out, policy.Spec{
			Name: p.Name, WasmPath: p.WasmPath(cfg.Source), Config: conf, FailOpen: p.FailOpen(),
			MemoryMB: p.MemoryLimitMB, Fuel: p.Budget, MaxInstances: p.MaxInstances,
			MinInstances: p.MinInstances, QueueTimeout: p.QueueTimeout.D(),
		})
	}
	return out, nil
}

// publish loads cfg's policies into snap, makes snap current and follows the policies' files.
// A new policy that fails to load refuses the whole snapshot (the previous one stays).
func (r *policyRuntime) publish(ctx context.Context, cfg *config.Config, snap *runtime.Snapshot) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	specs, err := policySpecs(cfg)
	if err != nil {
		return err
	}
	set, kept, err := r.host.Apply(ctx, specs)
	if err != nil {
		return err
	}
	for _, k := range kept {
		r.log.ErrorContext(ctx, "policy kept at its previous version", "error", k.Error())
	}
	snap.Policies = set
	r.store.Set(snap)
	r.follow(cfg, specs)
	return nil
}

// follow starts a watcher for every .wasm file not yet watched and stops the ones no longer used.
func (r *policyRuntime) follow(cfg *config.Config, specs []policy.Spec) {
	want := map[string]bool{}
	for _, s := range specs {
		want[s.WasmPath] = true
	}
	for path, stop := range r.watchers {
		if !want[path] {
			stop()
			delete(r.watchers, path)
		}
	}
	for path := range want {
		if _, ok := r.watchers[path]; ok {
			continue
		}
		w, err := watch.New(watch.Options{Path: path, Debounce: cfg.XDS.Debounce.D(), Logger: r.log, Reload: r.reloadWasm})
		if err != nil {
			r.log.Error("cannot watch policy module; changes apply on config reload only", "path", path, "error", err.Error())
			continue
		}
		ctx, stop := context.WithCancel(r.ctx)
		r.watchers[path] = stop
		go func() { _ = w.Run(ctx) }()
	}
}

// reloadWasm re-applies the current config's policies after a .wasm file changed: changed
// modules are compiled and swapped in with a new snapshot; unchanged ones are reused.
func (r *policyRuntime) reloadWasm(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.store.Load()
	if cur == nil {
		return errors.New("no configuration loaded")
	}
	specs, err := policySpecs(cur.Config)
	if err != nil {
		return err
	}
	set, kept, err := r.host.Apply(ctx, specs)
	if err != nil {
		return err
	}
	next := *cur
	next.Policies = set
	r.store.Set(&next)
	if len(kept) > 0 {
		return errors.Join(kept...)
	}
	return nil
}

// close stops the watchers and releases every compiled module.
func (r *policyRuntime) close(ctx context.Context) error {
	r.cancel()
	return r.host.Close(ctx)
}
