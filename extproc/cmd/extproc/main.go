// Command extproc runs the Yatagarasu ext_proc service, the origin and the admin server.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/yatagarasu/yatagarasu/extproc"
	"github.com/yatagarasu/yatagarasu/internal/config"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "extproc:", err)
		os.Exit(1)
	}
}

func run() error {
	path := flag.String("config", "config.yaml", "path to the Yatagarasu YAML config")
	check := flag.Bool("check", false, "validate the config and exit")
	drain := flag.Duration("drain-timeout", 30*time.Second, "on SIGTERM, how long in-flight requests may take before they are cut")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))

	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	if *check {
		fmt.Printf("%s: OK (%d buckets)\n", *path, len(cfg.Buckets))
		return nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	svc, err := extproc.Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	w, err := svc.Follow(ctx, *path)
	if err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-hup:
			_ = w.ReloadNow(ctx)
		case err := <-svc.Err():
			log.Error("server failed", "err", err)
			done = true
		}
	}
	stop() // from here a second SIGINT/SIGTERM takes the default action: exit at once
	log.Info("draining: ready is false, in-flight requests may finish", "deadline", drain.String())
	sctx, cancel := context.WithTimeout(context.Background(), *drain)
	defer cancel()
	return svc.Shutdown(sctx)
}
