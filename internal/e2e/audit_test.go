package e2e

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/yatagarasu/yatagarasu/internal/audit"
	"github.com/yatagarasu/yatagarasu/internal/audit/audittest"
	"github.com/yatagarasu/yatagarasu/internal/devstack"
)

// otlpReceiver is an OTLP/HTTP trace collector: it keeps the spans the gateway exports.
type otlpReceiver struct {
	mu    sync.Mutex
	spans map[string][]string // trace id → span names
	attrs map[string]string   // span name+trace → request id attribute
	srv   *httptest.Server
}

func startOTLP(t *testing.T) *otlpReceiver {
	r := &otlpReceiver{spans: map[string][]string{}, attrs: map[string]string{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var msg coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &msg); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		for _, rs := range msg.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					id := hex.EncodeToString(s.TraceId)
					r.spans[id] = append(r.spans[id], s.Name)
					for _, a := range s.Attributes {
						if a.Key == "yatagarasu.request_id" {
							r.attrs[s.Name+"/"+id] = a.Value.GetStringValue()
						}
					}
				}
			}
		}
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write([]byte{})
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// syncBuffer is a log destination shared by the stack's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func readAudit(t *testing.T, path string) []audit.Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []audit.Record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r audit.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("bad audit line %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

// TestAuditTraceAndLogAgreeForEveryRequest sends N requests of every kind (served by the origin,
// refused by extproc, answered by S3 with an error) and checks that each has exactly one audit
// record, in the file and in syslog, with the fields of its response, and that the request id
// joins the record with the exported trace and the request log line.
func TestAuditTraceAndLogAgreeForEveryRequest(t *testing.T) {
	dir := t.TempDir()
	otlp := startOTLP(t)
	sys, err := audittest.StartSyslog("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Stop()
	logs := &syncBuffer{}
	auditPath := filepath.Join(dir, "audit", "audit.log")
	st, err := devstack.Start(t.Context(), devstack.Options{
		S3: s3srv, Buckets: []devstack.Bucket{{Name: "products"}}, Dir: dir,
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Extra: fmt.Sprintf(`audit_log:
  enabled: true
  outputs: [file, syslog]
  spool_dir: %q
  record_headers: [authorization]
  file: {path: %q}
  syslog: {address: %q, protocol: tcp}
observability:
  tracing:
    enabled: true
    exporter: otlp_http
    otlp_endpoint: %q
    service_name: yatagarasu-e2e
  request_logging: {log_requests: true}
`, filepath.Join(dir, "spool"), auditPath, sys.Addr, otlp.srv.URL+"/v1/traces"),
	})
	if err != nil {
		t.Fatal(err)
	}
	type sent struct {
		method, target, correlation string
		status                      int
		bytes                       int
		rid                         string
		source                      string
	}
	cases := []sent{
		{method: "GET", target: "/products/a.txt", correlation: "order-1", status: 200, source: "origin"},
		{method: "HEAD", target: "/products/a.txt", status: 200, source: "origin"},
		{method: "GET", target: "/products/missing.txt?token=s3cret", status: 404, source: "origin"},
		{method: "GET", target: "/nowhere/x", correlation: "bad correlation!", status: 404, source: "extproc"},
		{method: "PUT", target: "/products/a.txt", status: 405, source: "extproc"},
		{method: "GET", target: "/products/with%20space.txt", correlation: "trace:abc.def_1", status: 200, source: "origin"},
	}
	var all []sent
	for range 3 {
		for _, c := range cases {
			hdr := []string{"Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", "User-Agent", "e2e/1", "Referer", "https://ref.example/"}
			if c.correlation != "" {
				hdr = append(hdr, "X-Correlation-ID", c.correlation)
			}
			res, body := do(t, c.method, st.GatewayURL, c.target, hdr...)
			if res.StatusCode != c.status {
				t.Fatalf("%s %s = %d %s", c.method, c.target, res.StatusCode, body)
			}
			rid := res.Header.Get("X-Request-Id")
			wantCorr := c.correlation
			if wantCorr == "" || strings.Contains(wantCorr, " ") {
				wantCorr = rid
			}
			if got := res.Header.Get("X-Correlation-Id"); rid == "" || got != wantCorr {
				t.Fatalf("%s %s: x-request-id %q, x-correlation-id %q (want %q)", c.method, c.target, rid, got, wantCorr)
			}
			c.rid, c.bytes = rid, len(body)
			all = append(all, c)
		}
	}
	st.Close() // flushes the audit log and the trace exporter

	recs := readAudit(t, auditPath)
	if len(recs) != len(all) {
		t.Fatalf("audit records = %d, want %d (one per request)", len(recs), len(all))
	}
	byID := map[string]audit.Record{}
	for _, r := range recs {
		if _, dup := byID[r.RequestID]; dup {
			t.Errorf("two records for request %s", r.RequestID)
		}
		byID[r.RequestID] = r
	}
	logText := logs.String()
	for _, c := range all {
		r, ok := byID[c.rid]
		if !ok {
			t.Errorf("no record for %s %s (request %s)", c.method, c.target, c.rid)
			continue
		}
		if r.Status != c.status || r.Method != c.method || r.Source != c.source || r.UserAgent != "e2e/1" ||
			r.Referer != "https://ref.example/" || r.ClientIP == "" || r.Timestamp.IsZero() || r.DurationMS <= 0 {
			t.Errorf("%s %s: record %+v", c.method, c.target, r)
		}
		if c.method == "GET" && c.status == 200 && (r.Bytes != int64(c.bytes) || r.CacheStatus != "miss" || r.Bucket != "products") {
			t.Errorf("%s %s: bytes %d (sent %d), cache %s", c.method, c.target, r.Bytes, c.bytes, r.CacheStatus)
		}
		if r.Headers["authorization"] != "Bearer [REDACTED]" || strings.Contains(r.Query, "s3cret") {
			t.Errorf("not redacted: %+v", r)
		}
		if r.TraceID == "" {
			t.Errorf("%s %s: record without trace id", c.method, c.target)
			continue
		}
		otlp.mu.Lock()
		spans := otlp.spans[r.TraceID]
		decideRID := otlp.attrs["extproc.decide/"+r.TraceID]
		otlp.mu.Unlock()
		if decideRID != c.rid {
			t.Errorf("%s %s: trace %s has request id %q (spans %v)", c.method, c.target, r.TraceID, decideRID, spans)
		}
		if c.source == "origin" && !(contains(spans, "origin") && contains(spans, "s3."+strings.ToLower(c.method))) {
			t.Errorf("%s %s: trace spans %v lack the origin and S3 spans", c.method, c.target, spans)
		}
		if !strings.Contains(logText, `"request_id":"`+c.rid+`"`) || !strings.Contains(logText, `"trace_id":"`+r.TraceID+`"`) {
			t.Errorf("%s %s: no log line with request %s and trace %s", c.method, c.target, c.rid, r.TraceID)
		}
	}
	t.Logf("%d requests, %d audit records, %d traces exported, %d syslog messages", len(all), len(recs), len(otlp.spans), len(sys.Messages()))
	var syslogIDs []string
	for _, m := range sys.Messages() {
		syslogIDs = append(syslogIDs, (*m.StructuredData)[audit.SDID]["request_id"])
	}
	if len(syslogIDs) != len(recs) {
		t.Errorf("syslog got %d records, the file %d", len(syslogIDs), len(recs))
	}
	for i, r := range recs {
		if i < len(syslogIDs) && syslogIDs[i] != r.RequestID {
			t.Errorf("syslog record %d is %s, file has %s", i, syslogIDs[i], r.RequestID)
			break
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestAuditFileSinkKeepsEveryRecordUnderLoad drives 1,000 requests per second for 30 seconds
// (half served from S3 by the origin, half refused by extproc) and checks that the file sink
// holds one record per request. It is long: -short skips it; `make test` runs it.
func TestAuditFileSinkKeepsEveryRecordUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("30 s load test; run without -short")
	}
	const (
		rate     = 1000
		duration = 30 * time.Second
		workers  = 64
	)
	dir := t.TempDir()
	auditPath := filepath.Join(dir, "audit.log")
	st, err := devstack.Start(t.Context(), devstack.Options{
		S3: s3srv, Buckets: []devstack.Bucket{{Name: "products"}}, Dir: dir, Logger: slog.New(slog.DiscardHandler),
		Extra: fmt.Sprintf("audit_log:\n  enabled: true\n  spool_dir: %q\n  file: {path: %q, max_file_size_mb: 1000}\n", filepath.Join(dir, "spool"), auditPath),
	})
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	jobs := make(chan int, 4*rate)
	var (
		mu      sync.Mutex
		ids     = map[string]int{}
		failed  atomic.Int64
		wg      sync.WaitGroup
		targets = []string{"/products/a.txt", "/nowhere/a.txt"}
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				req, _ := http.NewRequest(http.MethodGet, st.GatewayURL+targets[i%2], nil)
				res, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				mu.Lock()
				ids[res.Header.Get("X-Request-Id")] = res.StatusCode
				mu.Unlock()
			}
		}()
	}
	// Pace by what is owed since the start, so a late tick catches up instead of lowering the rate.
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	n := 0
	for elapsed := time.Duration(0); elapsed < duration; elapsed = time.Since(start) {
		<-tick.C
		for owed := int(time.Since(start).Seconds()*rate) - n; owed > 0 && n < int(duration.Seconds()*rate); owed-- {
			jobs <- n
			n++
		}
	}
	tick.Stop()
	close(jobs)
	wg.Wait()
	elapsed := time.Since(start)
	st.Close()
	if f := failed.Load(); f > 0 {
		t.Errorf("%d requests failed at the client", f)
	}
	recs := readAudit(t, auditPath)
	t.Logf("sent %d requests in %s (%.0f/s); %d audit records", n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), len(recs))
	if len(recs) != len(ids) {
		t.Fatalf("audit records = %d, answered requests = %d", len(recs), len(ids))
	}
	for _, r := range recs {
		if status, ok := ids[r.RequestID]; !ok || status != r.Status {
			t.Fatalf("record %s (status %d) does not match a response (%d, %v)", r.RequestID, r.Status, status, ok)
		}
	}
}
