// Package xds assembles the control plane: the config file watcher feeding the ADS server.
// Its subpackages do one job each (translator, validate, server, watch).
package xds

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/yatagarasu/yatagarasu/internal/config"
	"github.com/yatagarasu/yatagarasu/internal/watch"
	"github.com/yatagarasu/yatagarasu/xds/server"
	"github.com/yatagarasu/yatagarasu/xds/translator"
)

// ControlPlane serves the config file's Envoy resources over ADS and follows edits to the file.
type ControlPlane struct {
	Server *server.Server
	addr   string
	cancel context.CancelFunc
	done   chan error

	closeOnce sync.Once
	closeErr  error
}

// Start loads path (failing on a bad file: there is no last good config yet), binds the ADS
// listener at the file's xds.address and starts serving and watching until ctx ends or Close.
// The listen address and debounce are read once; later edits to them need a restart.
func Start(ctx context.Context, logger *slog.Logger, path string, reg prometheus.Registerer) (*ControlPlane, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	srv := server.New(logger, reg)
	w, err := watch.New(watch.Options{
		Path:     path,
		Debounce: cfg.XDS.Debounce.D(),
		Reload:   Apply(path, config.Load, srv),
		Logger:   logger,
	})
	if err != nil {
		return nil, err
	}
	if err := w.ReloadNow(ctx); err != nil {
		_ = w.Close()
		return nil, err
	}
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", cfg.XDS.Address)
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("listen for xds on %s: %w", cfg.XDS.Address, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Serve(gctx, lis) })
	g.Go(func() error { return w.Run(gctx) })
	cp := &ControlPlane{Server: srv, addr: lis.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { cp.done <- g.Wait() }()
	logger.InfoContext(ctx, "xds serving", "address", cp.addr, "version", srv.Version())
	return cp, nil
}

// Addr is the bound ADS address.
func (c *ControlPlane) Addr() string { return c.addr }

// Done delivers the result once serving stops.
func (c *ControlPlane) Done() <-chan error { return c.done }

// Close stops serving and watching and waits for both; later calls return the same result.
func (c *ControlPlane) Close() error {
	c.closeOnce.Do(func() {
		c.cancel()
		c.closeErr = <-c.done
	})
	return c.closeErr
}

// LoadFunc reads and validates a config file; config.Load in production.
type LoadFunc func(path string) (*config.Config, error)

// Apply returns the reload step for the watcher: load → translate → push a new snapshot. Any
// failure keeps the last good snapshot and is counted by the server.
func Apply(path string, load LoadFunc, srv *server.Server) watch.ReloadFunc {
	return func(ctx context.Context) error {
		cfg, err := load(path)
		if err != nil {
			srv.ReloadFailed(ctx, err)
			return fmt.Errorf("load %s: %w", path, err)
		}
		res, err := translator.Translate(cfg)
		if err != nil {
			srv.ReloadFailed(ctx, err)
			return err
		}
		if err := srv.Update(ctx, res); err != nil {
			return fmt.Errorf("apply %s: %w", path, err)
		}
		return nil
	}
}
