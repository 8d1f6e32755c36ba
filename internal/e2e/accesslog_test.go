package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/yatagarasu/yatagarasu/extproc"
	"github.com/yatagarasu/yatagarasu/internal/audit"
	"github.com/yatagarasu/yatagarasu/internal/devstack"
	"github.com/yatagarasu/yatagarasu/internal/testenv"
)

// envoySent is one request of the access-log tests and the record it must produce.
type envoySent struct {
	name, method, target string
	big                  bool // headers above Envoy's max_request_headers_kb: Envoy's own 431
	status               int
	source               string
	rid                  string
}

func auditExtra(dir string) (string, string) {
	path := filepath.Join(dir, "audit", "audit.log")
	return path, fmt.Sprintf("audit_log:\n  enabled: true\n  spool_dir: %q\n  file: {path: %q}\n", filepath.Join(dir, "spool"), path)
}

// sendAll sends each request, checks its status and keeps the x-request-id Envoy returned.
func sendAll(t *testing.T, gateway string, cases []envoySent) []envoySent {
	t.Helper()
	out := make([]envoySent, 0, len(cases))
	for _, c := range cases {
		hdr := []string{"User-Agent", "e2e-als/1"}
		if c.big {
			hdr = append(hdr, "X-Big", strings.Repeat("b", 100<<10)) // > 64 KiB limit + 32 KiB slack
		}
		res, body := do(t, c.method, gateway, c.target, hdr...)
		if res.StatusCode != c.status {
			t.Fatalf("%s: %s %s = %d %s", c.name, c.method, c.target, res.StatusCode, body)
		}
		c.rid = res.Header.Get("X-Request-Id")
		if c.rid == "" && !c.big {
			t.Fatalf("%s: no x-request-id on the answer", c.name)
		}
		out = append(out, c)
	}
	return out
}

// checkOneRecordEach requires exactly one record per request, matched by request id (Envoy's
// 431 carries none: those are matched by status and source).
func checkOneRecordEach(t *testing.T, recs []audit.Record, sent []envoySent) {
	t.Helper()
	if len(recs) != len(sent) {
		for _, r := range recs {
			t.Logf("record: %s %s %s %d %s", r.RequestID, r.Source, r.Method, r.Status, r.Reason)
		}
		t.Fatalf("audit records = %d, want %d (one per request)", len(recs), len(sent))
	}
	byID := map[string]audit.Record{}
	var noID []audit.Record
	for _, r := range recs {
		if r.RequestID == "" {
			t.Errorf("record without request id: %+v", r)
		}
		if _, dup := byID[r.RequestID]; dup {
			t.Errorf("two records for request %s", r.RequestID)
		}
		byID[r.RequestID] = r
		if r.Status == 431 && r.Source == audit.SourceEnvoy {
			noID = append(noID, r)
		}
	}
	want431 := 0
	for _, c := range sent {
		if c.big {
			want431++
			continue
		}
		r, ok := byID[c.rid]
		if !ok {
			t.Errorf("%s: no record for request %s", c.name, c.rid)
			continue
		}
		if r.Status != c.status || r.Source != c.source || r.Method != c.method || r.UserAgent != "e2e-als/1" || r.ClientIP == "" || r.Timestamp.IsZero() {
			t.Errorf("%s: record %+v", c.name, r)
		}
	}
	if len(noID) != want431 {
		t.Errorf("Envoy 431 records = %d, want %d", len(noID), want431)
	}
	for _, r := range noID {
		if r.Method != "" || r.Reason != "http1.headers_too_large" {
			t.Errorf("431 record: %+v", r)
		}
	}
}

// TestEnvoyAccessLogRecordsEnvoysOwnRepliesOnce runs the whole path (xDS-generated access logger
// → harness → extproc's AccessLogService → audit file): requests Envoy answers itself get one
// record each (source envoy, Envoy's status and request id), while requests answered by
// extproc or the origin keep exactly one record (no duplicate from the access log).
func TestEnvoyAccessLogRecordsEnvoysOwnRepliesOnce(t *testing.T) {
	t.Run("origin up", func(t *testing.T) {
		dir := t.TempDir()
		auditPath, extra := auditExtra(dir)
		st, err := devstack.Start(t.Context(), devstack.Options{S3: s3srv, Buckets: []devstack.Bucket{{Name: "products"}}, Dir: dir, Extra: extra})
		if err != nil {
			t.Fatal(err)
		}
		sent := sendAll(t, st.GatewayURL, []envoySent{
			{name: "origin GET", method: "GET", target: "/products/a.txt", status: 200, source: audit.SourceOrigin},
			{name: "origin 404", method: "GET", target: "/products/missing.txt", status: 404, source: audit.SourceOrigin},
			{name: "origin HEAD", method: "HEAD", target: "/products/a.txt", status: 200, source: audit.SourceOrigin},
			{name: "extproc 405", method: "PUT", target: "/products/a.txt", status: 405, source: audit.SourceExtProc},
			{name: "extproc no route", method: "GET", target: "/nowhere/x", status: 404, source: audit.SourceExtProc},
			{name: "envoy 431", method: "GET", target: "/products/a.txt", big: true, status: 431, source: audit.SourceEnvoy},
			{name: "origin GET again", method: "GET", target: "/products/a.txt", status: 200, source: audit.SourceOrigin},
		})
		// Let the access-log entries of the origin's and extproc's requests reach the settle check
		// (so a duplicate would be written now, not hidden by the shutdown flush).
		time.Sleep(extproc.DefaultAccessLogSettle + 500*time.Millisecond)
		st.Close()
		checkOneRecordEach(t, readAudit(t, auditPath), sent)
	})

	t.Run("origin down", func(t *testing.T) {
		dir := t.TempDir()
		auditPath, extra := auditExtra(dir)
		st, err := devstack.Start(t.Context(), devstack.Options{S3: s3srv, Buckets: []devstack.Bucket{{Name: "products"}}, Dir: dir, Extra: extra, NoExtProc: true})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		// extproc runs with its origin on another port than the one Envoy was given, so Envoy's
		// origin cluster refuses connections: Envoy itself answers 503.
		cfg := *st.Config
		port, err := testenv.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		cfg.Origin.Address = fmt.Sprintf("127.0.0.1:%d", port)
		svc, err := extproc.Start(t.Context(), &cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		sent := sendAll(t, st.GatewayURL, []envoySent{
			{name: "envoy 503 GET", method: "GET", target: "/products/a.txt", status: 503, source: audit.SourceEnvoy},
			{name: "extproc 405", method: "PUT", target: "/products/a.txt", status: 405, source: audit.SourceExtProc},
			{name: "envoy 503 HEAD", method: "HEAD", target: "/products/a.txt", status: 503, source: audit.SourceEnvoy},
			{name: "envoy 431", method: "GET", target: "/products/a.txt", big: true, status: 431, source: audit.SourceEnvoy},
			{name: "envoy 503 again", method: "GET", target: "/products/b.txt", status: 503, source: audit.SourceEnvoy},
		})
		st.Close() // the gateway flushes its access log, then extproc records what waits
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := svc.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		recs := readAudit(t, auditPath)
		checkOneRecordEach(t, recs, sent)
		for _, r := range recs {
			if r.Source == audit.SourceEnvoy && r.Status == 503 && (!strings.HasPrefix(r.Reason, "upstream_reset_before_response_started") || r.Path != "/products/a.txt" && r.Path != "/products/b.txt") {
				t.Errorf("503 record: %+v", r)
			}
		}
	})
}
