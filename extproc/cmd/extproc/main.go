// Command extproc runs the Yatagarasu ext_proc service, the origin and the admin server.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/yatagarasu/yatagarasu/extproc"
	"github.com/yatagarasu/yatagarasu/internal/config"
	"github.com/yatagarasu/yatagarasu/internal/telemetry"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "extproc:", err)
		os.Exit(1)
	}
}

func run() error {
	if len(os.Args) > 1 && os.Args[1] == "policy" {
		return policyCommand(os.Args[2:], os.Stdout) // policy.go
	}
	path := flag.String("config", "config.yaml", "path to the Yatagarasu YAML config")
	check := flag.Bool("check", false, "validate the config and exit")
	drain := flag.Duration("drain-timeout", 30*time.Second, "on SIGTERM, how long in-flight requests may take before they are cut")
	drainDelay := flag.Duration("drain-delay", 0, "on SIGTERM, how long /ready reports draining while still serving, before new work is refused")
	flag.Parse()

	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	if *check {
		fmt.Printf("%s: OK (%d buckets)\n", *path, len(cfg.Buckets))
		return nil
	}
	log := telemetry.NewLogger(cfg.Logging, os.Stderr) // logging.level and logging.format
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
	log.Info("draining: ready is false, in-flight requests may finish", "delay", drainDelay.String(), "deadline", drain.String())
	svc.BeginDrain()
	time.Sleep(*drainDelay)
	sctx, cancel := context.WithTimeout(context.Background(), *drain)
	defer cancel()
	return svc.Shutdown(sctx)
}
