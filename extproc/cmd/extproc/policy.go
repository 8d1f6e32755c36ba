package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/yatagarasu/yatagarasu/internal/policy"
)

// requestFile is the JSON request description `extproc policy test --request` reads.
type requestFile struct {
	Method   string            `json:"method"`
	URI      string            `json:"uri"`
	Headers  map[string]string `json:"headers"`
	Bucket   string            `json:"bucket"`
	Key      string            `json:"key"`
	Subject  string            `json:"subject"`
	ClientIP string            `json:"client_ip"`
	Claims   map[string]any    `json:"claims"`
	Now      time.Time         `json:"now"`
}

// policyCommand runs `extproc policy test`: one request through one module on the production host.
func policyCommand(args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "test" {
		return errors.New("usage: extproc policy test --wasm FILE [--config JSON] --request FILE [--budget N] [--memory-mb N]")
	}
	fs := flag.NewFlagSet("policy test", flag.ContinueOnError)
	wasm := fs.String("wasm", "", "the policy module (.wasm)")
	conf := fs.String("config", "", "the policy's config as JSON (what `config:` holds in the YAML)")
	reqPath := fs.String("request", "", "a JSON request description: method, uri, headers, bucket, key, subject, client_ip, claims, now")
	budget := fs.Int64("budget", policy.DefaultFuel, "fuel budget per request")
	mem := fs.Int("memory-mb", policy.DefaultMemoryLimitMB, "memory limit in MiB")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *wasm == "" || *reqPath == "" {
		return errors.New("policy test: --wasm and --request are required")
	}
	if *conf != "" && !json.Valid([]byte(*conf)) {
		return fmt.Errorf("policy test: --config is not valid JSON: %s", *conf)
	}
	raw, err := os.ReadFile(*reqPath)
	if err != nil {
		return fmt.Errorf("policy test: %w", err)
	}
	var rf requestFile
	if err := json.Unmarshal(raw, &rf); err != nil {
		return fmt.Errorf("policy test: request %s: %w", *reqPath, err)
	}
	if rf.Method == "" {
		rf.Method = "GET"
	}
	if rf.Now.IsZero() {
		rf.Now = time.Now()
	}
	req := &policy.Request{Method: rf.Method, URI: rf.URI, Bucket: rf.Bucket, Key: rf.Key, Subject: rf.Subject,
		ClientIP: rf.ClientIP, Claims: rf.Claims, Now: rf.Now}
	names := make([]string, 0, len(rf.Headers))
	for k := range rf.Headers {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		req.Headers = append(req.Headers, [2]string{strings.ToLower(k), rf.Headers[k]})
	}

	ctx := context.Background()
	host, err := policy.NewHost(policy.Options{})
	if err != nil {
		return err
	}
	defer host.Close(ctx)
	start := time.Now()
	set, _, err := host.Apply(ctx, []policy.Spec{{Name: "test", WasmPath: *wasm, Config: []byte(*conf), Fuel: *budget, MemoryMB: *mem, MaxInstances: 1}})
	if err != nil {
		return err
	}
	load := time.Since(start)
	p, _ := set.Get("test")
	res, err := p.Evaluate(ctx, req)
	fmt.Fprintf(stdout, "module:   %s (sha256 %s…), loaded in %s\n", *wasm, p.Version(), load.Round(time.Millisecond))
	if err != nil {
		var ee *policy.EvalError
		if errors.As(err, &ee) {
			fmt.Fprintf(stdout, "decision: FAILED (%v) → the gateway answers 503 (fail_mode: closed) or lets it through (open)\n", ee.Kind)
			fmt.Fprintf(stdout, "error:    %s\n", ee.Detail)
			if ee.Stderr != "" {
				fmt.Fprintf(stdout, "stderr:   %s\n", ee.Stderr)
			}
		}
		fmt.Fprintf(stdout, "time:     %s\nbudget:   %d of %d fuel\n", res.Duration, res.FuelUsed, *budget)
		return errors.New("policy failed")
	}
	if res.Allow {
		fmt.Fprintln(stdout, "decision: ALLOW")
		for _, h := range res.SetUpstream {
			fmt.Fprintf(stdout, "upstream: %s: %s\n", h[0], h[1])
		}
		for _, h := range res.RemoveUpstream {
			fmt.Fprintf(stdout, "upstream: remove %s\n", h)
		}
	} else {
		fmt.Fprintf(stdout, "decision: DENY %d\n", res.Status)
		for _, h := range res.Headers {
			fmt.Fprintf(stdout, "header:   %s: %s\n", h[0], h[1])
		}
		fmt.Fprintf(stdout, "body:     %s\n", res.Body)
	}
	fmt.Fprintf(stdout, "time:     %s (first call on a fresh instance)\nbudget:   %d of %d fuel (%.2f%%)\n",
		res.Duration, res.FuelUsed, *budget, 100*float64(res.FuelUsed)/float64(*budget))
	return nil
}
