// Command loadcmp compares Yatagarasu (harness + extproc + origin, memory cache) with Debian's
// nginx using proxy_cache, both in front of the same versitygw on loopback, under the same wrk
// load, for 1 KiB and 1 MiB objects, cache hit and miss, and writes a markdown table. It exists
// so `make bench` reports where we stand against a well-known caching proxy.
package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/yatagarasu/yatagarasu/internal/devstack"
	"github.com/yatagarasu/yatagarasu/internal/testenv"
)

const (
	s3Bucket = "loadcmp"
	kib      = 1 << 10
	mib      = 1 << 20
)

// options are the command-line flags.
type options struct {
	load           load
	keys           int
	out            string
	nginxBin       string
	wrkBin         string
	deadline       time.Duration
	commandForDocs string
}

func main() {
	var o options
	flag.DurationVar(&o.load.Duration, "duration", 10*time.Second, "wrk duration per case and stack")
	flag.IntVar(&o.load.Threads, "threads", 2, "wrk threads")
	flag.IntVar(&o.load.Conns, "conns", 32, "wrk connections")
	flag.IntVar(&o.keys, "keys", 4, "objects per size")
	flag.StringVar(&o.out, "out", "bin/loadcmp.md", "markdown output file")
	flag.StringVar(&o.nginxBin, "nginx", "nginx", "nginx binary")
	flag.StringVar(&o.wrkBin, "wrk", "wrk", "wrk binary")
	flag.DurationVar(&o.deadline, "deadline", 10*time.Minute, "give up after this long")
	flag.Parse()
	o.commandForDocs = "go run ./internal/loadcmp " + strings.Join(os.Args[1:], " ")

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.deadline)
	defer cancel()
	table, err := run(ctx, log, o)
	if err != nil {
		log.Error("loadcmp failed", "err", err)
		os.Exit(1)
	}
	fmt.Print(table)
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err == nil {
		err = os.WriteFile(o.out, []byte(table), 0o644)
		if err != nil {
			log.Error("write table", "err", err)
			os.Exit(1)
		}
	}
	log.Info("table written", "file", o.out)
}

// run starts versitygw, our stack and nginx, measures every case on both, and returns the table.
func run(ctx context.Context, log *slog.Logger, o options) (string, error) {
	loadAvg := "unknown"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil && len(strings.Fields(string(b))) > 0 {
		loadAvg = strings.Fields(string(b))[0] // other work on the host skews every figure
	}
	nginxBin, err := exec.LookPath(o.nginxBin)
	if err != nil {
		return "", fmt.Errorf("nginx not found (apt-get install -y nginx): %w", err)
	}
	wrkBin, err := exec.LookPath(o.wrkBin)
	if err != nil {
		return "", fmt.Errorf("wrk not found (apt-get install -y wrk): %w", err)
	}
	work, err := os.MkdirTemp("", "yatagarasu-loadcmp-")
	if err != nil {
		return "", fmt.Errorf("work dir: %w", err)
	}
	defer os.RemoveAll(work)
	if err := os.Chmod(work, 0o755); err != nil { // nginx workers (nobody) must reach their prefix below it
		return "", fmt.Errorf("work dir: %w", err)
	}

	log.Info("starting versitygw")
	srv, err := testenv.StartS3(ctx, testenv.Options{})
	if err != nil {
		return "", fmt.Errorf("start versitygw: %w", err)
	}
	defer srv.Close()
	paths, err := seed(ctx, srv, o.keys)
	if err != nil {
		return "", err
	}

	log.Info("starting our stack (harness + extproc + origin)")
	stackDir := filepath.Join(work, "stack")
	if err := os.Mkdir(stackDir, 0o700); err != nil {
		return "", fmt.Errorf("stack dir: %w", err)
	}
	st, err := devstack.Start(ctx, devstack.Options{
		S3: srv, Dir: stackDir,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})).With("component", "stack"),
		Buckets: []devstack.Bucket{
			{Name: "cached", S3Bucket: s3Bucket},
			{Name: "nocache", S3Bucket: s3Bucket, Extra: "cache: {enabled: false}"},
		},
		Extra: "cache:\n  enabled: true\n  cache_layers: [memory]\n  memory: {max_item_size_mb: 4, max_cache_size_mb: 256}\n",
	})
	if err != nil {
		return "", fmt.Errorf("start our stack: %w", err)
	}
	defer st.Close()

	log.Info("starting nginx")
	port, err := testenv.FreePort()
	if err != nil {
		return "", err
	}
	ngxDir := filepath.Join(work, "nginx")
	if err := os.Mkdir(ngxDir, 0o755); err != nil {
		return "", fmt.Errorf("nginx dir: %w", err)
	}
	ngx, err := startNginx(ctx, nginxBin, nginxConfig{
		Port: port, Upstream: strings.TrimPrefix(srv.Endpoint, "http://"), Prefix: ngxDir,
		Workers: goruntime.NumCPU(), CacheMB: 512,
	})
	if err != nil {
		return "", err
	}
	defer ngx.stop()

	client := &http.Client{Timeout: 30 * time.Second}
	var results []caseResult
	for _, size := range []string{"1 KiB", "1 MiB"} {
		for _, hit := range []bool{true, false} {
			name := size + map[bool]string{true: " hit", false: " miss"}[hit]
			c := caseResult{Name: name}
			keys := paths[size]
			ours, theirs := make([]string, len(keys)), make([]string, len(keys))
			var hdr map[string]string
			for i, k := range keys {
				ours[i] = "/nocache/" + k
				if hit {
					ours[i] = "/cached/" + k
				}
				theirs[i] = "/" + s3Bucket + "/" + k
			}
			if !hit {
				hdr = map[string]string{bypassHeader: "1"}
			}
			want := map[bool][2]string{true: {"HIT", "HIT"}, false: {"BYPASS", "BYPASS"}}[hit]
			if err := warm(ctx, client, st.GatewayURL, ours, nil, want[0], hit); err != nil {
				return "", fmt.Errorf("%s, ours: %w", name, err)
			}
			if err := warm(ctx, client, ngx.URL, theirs, hdr, want[1], hit); err != nil {
				return "", fmt.Errorf("%s, nginx: %w; nginx error.log: %s", name, err, ngx.errorLog())
			}

			measureOurs := func() error {
				log.Info("measuring", "case", name, "stack", "ours")
				before, err := s3Requests(st.ExtProc.Registry)
				if err != nil {
					return err
				}
				if c.Ours, err = runWrk(ctx, wrkBin, work, o.load, st.GatewayURL, ours, nil); err != nil {
					return err
				}
				after, err := s3Requests(st.ExtProc.Registry)
				c.OursS3 = after - before
				return err
			}
			measureNginx := func() error {
				log.Info("measuring", "case", name, "stack", "nginx")
				off, err := ngx.accessLogOffset()
				if err != nil {
					return err
				}
				if c.Nginx, err = runWrk(ctx, wrkBin, work, o.load, ngx.URL, theirs, hdr); err != nil {
					return err
				}
				n, err := ngx.countSince(off)
				c.NginxS3 = int64(n.Upstream)
				return err
			}
			// Alternate which stack goes first, so neither always runs right after the other's load.
			order := []func() error{measureOurs, measureNginx}
			if len(results)%2 == 1 {
				order[0], order[1] = order[1], order[0]
			}
			for _, m := range order {
				if err := m(); err != nil {
					return "", fmt.Errorf("%s: %w", name, err)
				}
			}
			if err := checkCase(c, hit); err != nil {
				return "", fmt.Errorf("%s: %w", name, err)
			}
			results = append(results, c)
		}
	}
	return markdown(reportHeader{
		Load: o.load, Keys: o.keys, Command: o.commandForDocs,
		Host: fmt.Sprintf("%d CPUs, %s/%s, %s, load average at start %s", goruntime.NumCPU(), goruntime.GOOS, goruntime.GOARCH, goruntime.Version(), loadAvg),
	}, results), nil
}

// checkCase refuses a measurement that did not test what its name says: hits must not reach S3
// and misses must reach it for (nearly) every request. wrk counts only completed requests, so a
// miss run may see up to one extra S3 request per connection that was cut off at the end.
func checkCase(c caseResult, hit bool) error {
	if hit {
		if c.OursS3 != 0 || c.NginxS3 != 0 {
			return fmt.Errorf("hit case went to S3 (ours %d, nginx %d requests)", c.OursS3, c.NginxS3)
		}
		return nil
	}
	for _, x := range []struct {
		who     string
		s3, req int64
	}{{"ours", c.OursS3, c.Ours.Requests}, {"nginx", c.NginxS3, c.Nginx.Requests}} {
		if x.s3 < x.req {
			return fmt.Errorf("miss case: %s made %d S3 requests for %d client requests", x.who, x.s3, x.req)
		}
	}
	return nil
}

// seed creates the public-read bucket and the 1 KiB and 1 MiB objects; it returns the keys by size.
func seed(ctx context.Context, srv *testenv.S3, keys int) (map[string][]string, error) {
	if err := srv.CreateBucket(ctx, s3Bucket); err != nil {
		return nil, err
	}
	policy := `{"Version":"2012-10-17","Statement":[{"Sid":"PublicRead","Effect":"Allow","Principal":"*",` +
		`"Action":["s3:GetObject"],"Resource":["arn:aws:s3:::` + s3Bucket + `/*"]}]}`
	if _, err := srv.Client().PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(s3Bucket), Policy: aws.String(policy)}); err != nil {
		return nil, fmt.Errorf("put public-read bucket policy: %w", err)
	}
	paths := map[string][]string{}
	for _, sz := range []struct {
		name, prefix string
		n            int
	}{{"1 KiB", "1k", kib}, {"1 MiB", "1m", mib}} {
		for i := 0; i < keys; i++ {
			body := make([]byte, sz.n)
			_, _ = rand.Read(body)
			key := fmt.Sprintf("%s-%d.bin", sz.prefix, i)
			if err := srv.PutObject(ctx, s3Bucket, key, body, "application/octet-stream"); err != nil {
				return nil, err
			}
			paths[sz.name] = append(paths[sz.name], key)
		}
	}
	// nginx reads anonymously: check that the policy really opened the bucket.
	status, _, err := cacheStatus(ctx, http.DefaultClient, srv.Endpoint+"/"+s3Bucket+"/"+paths["1 KiB"][0], nil)
	if err != nil {
		return nil, fmt.Errorf("anonymous GET from versitygw: %w", err)
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("anonymous GET from versitygw answered %d: the public-read bucket policy did not take effect", status)
	}
	return paths, nil
}

// warm fetches every path (twice for hits, so the second answer must come from the cache) and
// checks the cache header says want.
func warm(ctx context.Context, client *http.Client, base string, paths []string, hdr map[string]string, want string, hit bool) error {
	h := http.Header{}
	for k, v := range hdr {
		h.Set(k, v)
	}
	for _, p := range paths {
		rounds := 1
		if hit {
			rounds = 2
		}
		var status int
		var got string
		var err error
		for r := 0; r < rounds; r++ {
			if status, got, err = cacheStatus(ctx, client, base+p, h); err != nil {
				return err
			}
			if status != http.StatusOK {
				return fmt.Errorf("GET %s: status %d", p, status)
			}
		}
		if got != want {
			return fmt.Errorf("GET %s: cache status %q, want %q", p, got, want)
		}
	}
	return nil
}

// s3Requests sums the origin's S3 request histogram counts (every S3 GET/HEAD it made).
func s3Requests(g prometheus.Gatherer) (int64, error) {
	mfs, err := g.Gather()
	if err != nil {
		return 0, fmt.Errorf("gather metrics: %w", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "yatagarasu_origin_s3_request_duration_seconds" {
			continue
		}
		var n uint64
		for _, m := range mf.GetMetric() {
			n += m.GetHistogram().GetSampleCount()
		}
		return int64(n), nil
	}
	return 0, nil // no S3 request yet
}
