package main

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testNginxConfig(t *testing.T) nginxConfig {
	t.Helper()
	return nginxConfig{Port: 18080, Upstream: "127.0.0.1:7070", Prefix: t.TempDir(), Workers: 2, CacheMB: 64}
}

func TestNginxConfRender(t *testing.T) {
	c := testNginxConfig(t)
	conf, err := c.render()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"worker_processes 2;",
		"listen 127.0.0.1:18080;",
		"server 127.0.0.1:7070;",
		"proxy_set_header Host 127.0.0.1:7070;",
		"proxy_cache_path " + c.Prefix + "/cache ",
		"max_size=64m",
		"proxy_cache_bypass $http_x_loadcmp_bypass;",
		"proxy_no_cache $http_x_loadcmp_bypass;",
		"log_format loadcmp '$upstream_cache_status $upstream_addr $status';",
		"pid " + c.Prefix + "/nginx.pid;",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("nginx.conf lacks %q:\n%s", want, conf)
		}
	}
}

func TestNginxConfRenderRejectsIncomplete(t *testing.T) {
	for _, c := range []nginxConfig{
		{Upstream: "127.0.0.1:1", Prefix: "/tmp/x"},
		{Port: 1, Prefix: "/tmp/x"},
		{Port: 1, Upstream: "127.0.0.1:1", Prefix: "relative"},
	} {
		if _, err := c.render(); err == nil {
			t.Errorf("render(%+v) succeeded", c)
		}
	}
}

// TestNginxConfParses runs `nginx -t` on the generated file when nginx is installed.
func TestNginxConfParses(t *testing.T) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		t.Skip("nginx not installed (apt-get install -y nginx)")
	}
	c := testNginxConfig(t)
	if err := os.MkdirAll(filepath.Join(c.Prefix, "tmp"), 0o777); err != nil {
		t.Fatal(err)
	}
	conf, err := c.render()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.Prefix, "nginx.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-t", "-p", c.Prefix, "-c", "nginx.conf").CombinedOutput()
	if err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
}

func TestCountAccessLog(t *testing.T) {
	log := "HIT - 200\nBYPASS 127.0.0.1:7070 200\nMISS 127.0.0.1:7070 200\n- 127.0.0.1:7070 200\nHIT -"
	got, err := countAccessLog(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	if got != (upstreamCount{Requests: 4, Upstream: 3}) {
		t.Errorf("countAccessLog = %+v, want 4 requests, 3 upstream (partial last line skipped)", got)
	}
}

const wrkOutput = `Running 10s test @ http://127.0.0.1:8080
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.02ms  300.00us   9.00ms   80.00%
  120000 requests in 10.00s, 140.00MB read
Requests/sec:  12000.00
Transfer/sec:     14.00MB
LOADCMP requests=120000 duration_us=10000000 bytes=146800640 errors=3 p50_us=950.0 p99_us=2400.5
`

func TestParseWrk(t *testing.T) {
	r, err := parseWrk([]byte(wrkOutput))
	if err != nil {
		t.Fatal(err)
	}
	want := wrkResult{Requests: 120000, DurationUS: 10000000, Bytes: 146800640, Errors: 3, P50US: 950, P99US: 2400.5}
	if r != want {
		t.Errorf("parseWrk = %+v, want %+v", r, want)
	}
	if rps := r.RPS(); rps != 12000 {
		t.Errorf("RPS = %v, want 12000", rps)
	}
}

func TestParseWrkErrors(t *testing.T) {
	for name, out := range map[string]string{
		"no summary":    "Requests/sec: 1\n",
		"missing field": "LOADCMP requests=1 duration_us=1 errors=0 p50_us=1\n",
		"bad number":    "LOADCMP requests=x duration_us=1 errors=0 p50_us=1 p99_us=1\n",
		"bad field":     "LOADCMP requests\n",
	} {
		if _, err := parseWrk([]byte(out)); err == nil {
			t.Errorf("%s: parseWrk succeeded", name)
		}
	}
}

func FuzzParseWrk(f *testing.F) {
	f.Add([]byte(wrkOutput))
	f.Add([]byte("LOADCMP requests=1 duration_us=0 errors=0 p50_us=NaN p99_us=1e308\n"))
	f.Fuzz(func(t *testing.T, out []byte) {
		r, err := parseWrk(out)
		if err != nil {
			return
		}
		_ = r.RPS() // must not panic, whatever the numbers
		if !strings.Contains(string(out), "LOADCMP ") {
			t.Errorf("parsed a result from output without a summary line: %+v", r)
		}
	})
}

func TestRenderWrkScript(t *testing.T) {
	s, err := renderWrkScript([]string{"/b/1k-0.bin", "/b/1k-1.bin"}, map[string]string{bypassHeader: "1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`local paths = {"/b/1k-0.bin", "/b/1k-1.bin"}`,
		`wrk.headers["X-Loadcmp-Bypass"] = "1"`,
		`latency:percentile(99)`,
		`LOADCMP requests=%d`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("script lacks %q:\n%s", want, s)
		}
	}
	if _, err := renderWrkScript(nil, nil); err == nil {
		t.Error("empty path list accepted")
	}
	if _, err := renderWrkScript([]string{`/a"b`}, nil); err == nil {
		t.Error("path with a quote accepted")
	}
}

// TestWrkScriptRuns runs the generated script through wrk against a tiny server when wrk is
// installed, so the Lua is checked by wrk itself and the summary line parses.
func TestWrkScriptRuns(t *testing.T) {
	bin, err := exec.LookPath("wrk")
	if err != nil {
		t.Skip("wrk not installed (apt-get install -y wrk)")
	}
	srv := newCountingServer(t)
	r, err := runWrk(context.Background(), bin, t.TempDir(), load{Threads: 1, Conns: 2, Duration: time.Second}, srv.URL, []string{"/a", "/b"}, map[string]string{bypassHeader: "1"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests == 0 || r.Errors != 0 || r.P99US < r.P50US {
		t.Errorf("wrk result %+v: want requests, no errors, p99 ≥ p50", r)
	}
	a, b, hdr := srv.counts()
	if a == 0 || b == 0 {
		t.Errorf("script did not cycle through both paths: /a %d, /b %d", a, b)
	}
	if hdr != a+b {
		t.Errorf("bypass header on %d of %d requests", hdr, a+b)
	}
}

func TestMarkdown(t *testing.T) {
	md := markdown(reportHeader{Load: load{Threads: 2, Conns: 32, Duration: 10 * time.Second}, Keys: 4, Command: "go run ./internal/loadcmp", Host: "2 CPUs"},
		[]caseResult{{
			Name:   "1 KiB hit",
			Ours:   wrkResult{Requests: 5000, DurationUS: 1e6, P50US: 2000, P99US: 8000},
			Nginx:  wrkResult{Requests: 20000, DurationUS: 1e6, P50US: 500, P99US: 4000},
			OursS3: 0, NginxS3: 0,
		}, {
			Name:  "1 MiB miss",
			Ours:  wrkResult{Requests: 10, DurationUS: 1e6},
			Nginx: wrkResult{},
		}})
	for _, want := range []string{
		"not Envoy",
		"public-read",
		"| 1 KiB hit | 5000 | 20000 | 0.25× | 2.00 ms | 0.50 ms | 4.00× | 8.00 ms | 4.00 ms | 2.00× | 0 / 0 | 0 / 0 |",
		"| 1 MiB miss | 10 | 0 | n/a |",
		"`go run ./internal/loadcmp`",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("table lacks %q:\n%s", want, md)
		}
	}
	if got := strings.Count(md, "\n| "); got != 3 {
		t.Errorf("table has %d rows (header + 2 cases expected):\n%s", got, md)
	}
}

func TestCheckCase(t *testing.T) {
	ok := []struct {
		c   caseResult
		hit bool
	}{
		{caseResult{}, true},
		{caseResult{Ours: wrkResult{Requests: 10}, Nginx: wrkResult{Requests: 5}, OursS3: 12, NginxS3: 5}, false},
	}
	for _, x := range ok {
		if err := checkCase(x.c, x.hit); err != nil {
			t.Errorf("checkCase(%+v, %v): %v", x.c, x.hit, err)
		}
	}
	bad := []struct {
		c   caseResult
		hit bool
	}{
		{caseResult{OursS3: 1}, true},
		{caseResult{NginxS3: 1}, true},
		{caseResult{Ours: wrkResult{Requests: 10}, OursS3: 9}, false},
		{caseResult{Nginx: wrkResult{Requests: 10}, NginxS3: 0}, false},
	}
	for _, x := range bad {
		if err := checkCase(x.c, x.hit); err == nil {
			t.Errorf("checkCase(%+v, %v) accepted", x.c, x.hit)
		}
	}
}

// TestRunSmoke runs the whole comparison briefly (versitygw, our stack through the harness,
// nginx, wrk) when nginx and wrk are installed: every case must pass its hit/miss checks against
// the S3 request counts and the table must have a row per case.
func TestRunSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts versitygw, our stack and nginx")
	}
	for _, bin := range []string{"nginx", "wrk"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (apt-get install -y nginx wrk)", bin)
		}
	}
	o := options{load: load{Threads: 1, Conns: 4, Duration: time.Second}, keys: 2, nginxBin: "nginx", wrkBin: "wrk", commandForDocs: "test"}
	table, err := run(t.Context(), slog.New(slog.DiscardHandler), o)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"| 1 KiB hit |", "| 1 KiB miss |", "| 1 MiB hit |", "| 1 MiB miss |"} {
		if !strings.Contains(table, c) {
			t.Errorf("table lacks %q:\n%s", c, table)
		}
	}
}
