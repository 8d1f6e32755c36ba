// Command xds is Yatagarasu's control plane: it serves the Envoy config generated from the YAML
// file over ADS and reloads it when the file changes; --print shows what Envoy would get.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/yatagarasu/yatagarasu/internal/config"
	"github.com/yatagarasu/yatagarasu/xds"
	"github.com/yatagarasu/yatagarasu/xds/server"
	"github.com/yatagarasu/yatagarasu/xds/translator"
)

// adminShutdownGrace bounds how long in-flight admin requests may take at shutdown.
const adminShutdownGrace = 5 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is main without process globals, so tests can drive it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("xds", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "path to the Yatagarasu YAML config (required)")
	printOnly := fs.Bool("print", false, "print the generated Envoy resources as YAML and exit")
	adminAddr := fs.String("admin", "", "address for /metrics and /health (disabled when empty)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *configPath == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: xds --config FILE [--print] [--admin ADDR]")
		return 2
	}
	if *printOnly {
		if err := printResources(*configPath, stdout); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		return 0
	}
	logger := slog.New(slog.NewJSONHandler(stderr, nil))
	if err := serve(ctx, logger, *configPath, *adminAddr); err != nil {
		logger.Error("xds control plane failed", "error", err.Error())
		return 1
	}
	return 0
}

func printResources(path string, w io.Writer) error {
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	res, err := translator.Translate(cfg)
	if err != nil {
		return err
	}
	out, err := res.YAML()
	if err != nil {
		return fmt.Errorf("render %s: %w", path, err)
	}
	_, err = w.Write(out)
	return err
}

func serve(ctx context.Context, logger *slog.Logger, path, adminAddr string) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cp, err := xds.Start(ctx, logger, path, reg)
	if err != nil {
		return err
	}
	if adminAddr == "" {
		return <-cp.Done()
	}
	adminLis, err := net.Listen("tcp", adminAddr)
	if err != nil {
		_ = cp.Close()
		return fmt.Errorf("listen for admin on %s: %w", adminAddr, err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return <-cp.Done() })
	g.Go(func() error { return serveAdmin(gctx, logger, adminLis, reg, cp.Server) })
	return g.Wait()
}

func serveAdmin(ctx context.Context, logger *slog.Logger, lis net.Listener, reg *prometheus.Registry, srv *server.Server) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if srv.Version() == "" {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"status":"no config served yet"}`)
			return
		}
		_, _ = fmt.Fprintf(w, `{"status":"ok","version":%q}`, srv.Version())
	})
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(lis) }()
	logger.InfoContext(ctx, "admin listening", "address", lis.Addr().String())
	select {
	case err := <-served:
		return fmt.Errorf("serve admin on %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), adminShutdownGrace)
	defer cancel()
	if err := hs.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shut down admin: %w", err)
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve admin on %s: %w", lis.Addr(), err)
	}
	return nil
}
