package main

import (
	"fmt"
	"strings"
)

// caseResult is one case (object size × hit/miss) measured on both stacks.
type caseResult struct {
	Name        string // e.g. "1 KiB hit"
	Ours, Nginx wrkResult
	// S3 requests seen during the run: ours from the origin's S3 metrics, nginx from its access
	// log ($upstream_addr); they show that hits stayed in the cache and misses went to S3.
	OursS3, NginxS3 int64
}

// reportHeader says what was compared and how, above the table.
type reportHeader struct {
	Load    load
	Keys    int    // keys per object size
	Command string // how to reproduce
	Host    string // e.g. "2 CPUs, linux/amd64, go1.26"
}

// markdown renders the comparison table with ours/nginx ratios (throughput: higher is better
// for us; latency: lower is better for us).
func markdown(h reportHeader, cases []caseResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "### Load comparison: Yatagarasu vs nginx `proxy_cache` (same versitygw, same run)\n\n")
	fmt.Fprintf(&b, "Ours = the emulation harness **standing in for Envoy (a Go proxy, not Envoy)** + extproc + origin, "+
		"memory cache layer; nginx = Debian nginx with `proxy_cache` (disk). nginx reads the bucket anonymously "+
		"(public-read bucket policy) while ours signs every S3 request with SigV4. "+
		"Misses: ours uses a bucket with the cache off, nginx `proxy_cache_bypass`/`proxy_no_cache` on a header. "+
		"wrk %d threads, %d connections, %s per case, %d keys per size, all on one loopback host (%s). `%s`\n\n",
		h.Load.Threads, h.Load.Conns, h.Load.Duration, h.Keys, h.Host, h.Command)
	b.WriteString("| Case | ours req/s | nginx req/s | ours/nginx | ours p50 | nginx p50 | ours/nginx | ours p99 | nginx p99 | ours/nginx | S3 GETs ours / nginx | errors ours / nginx |\n")
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, c := range cases {
		fmt.Fprintf(&b, "| %s | %.0f | %.0f | %s | %s | %s | %s | %s | %s | %s | %d / %d | %d / %d |\n",
			c.Name,
			c.Ours.RPS(), c.Nginx.RPS(), ratio(c.Ours.RPS(), c.Nginx.RPS()),
			ms(c.Ours.P50US), ms(c.Nginx.P50US), ratio(c.Ours.P50US, c.Nginx.P50US),
			ms(c.Ours.P99US), ms(c.Nginx.P99US), ratio(c.Ours.P99US, c.Nginx.P99US),
			c.OursS3, c.NginxS3, c.Ours.Errors, c.Nginx.Errors)
	}
	return b.String()
}

// ms formats microseconds as milliseconds.
func ms(us float64) string { return fmt.Sprintf("%.2f ms", us/1000) }

// ratio formats a/b, or "n/a" when b is zero.
func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f×", a/b)
}
