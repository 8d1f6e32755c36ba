package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/yatagarasu/yatagarasu/internal/audit/audittest"
	"github.com/yatagarasu/yatagarasu/internal/testenv"
)

var s3srv *testenv.S3

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var err error
	if s3srv, err = testenv.StartS3(ctx, testenv.Options{}); err != nil {
		fmt.Fprintln(os.Stderr, "audit tests:", err)
		return 1
	}
	defer s3srv.Close()
	return m.Run()
}

func rec(i int) Record {
	return Record{
		Timestamp: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC), RequestID: "req-" + strconv.Itoa(i), CorrelationID: "c-" + strconv.Itoa(i),
		ClientIP: "203.0.113.7", Bucket: "products", Key: "a/b.txt", Method: "GET", Path: "/products/a/b.txt",
		Status: 200, Bytes: 42, DurationMS: 1.5, CacheStatus: CacheMiss, UserAgent: "curl/8", Referer: "https://ex.com/",
		Reason: "allowed", Source: SourceOrigin,
	}
}

// memSink records lines; while down it fails every write.
type memSink struct {
	name  string
	mu    sync.Mutex
	lines []string
	down  bool
	block chan struct{} // when set, Write waits on it
}

func (s *memSink) Name() string { return s.name }
func (s *memSink) Write(ctx context.Context, lines [][]byte) error {
	if s.block != nil {
		select {
		case <-s.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return errors.New("sink down")
	}
	for _, l := range lines {
		s.lines = append(s.lines, string(l))
	}
	return nil
}
func (s *memSink) Flush(context.Context) error { return nil }
func (s *memSink) Close(context.Context) error { return nil }
func (s *memSink) setDown(v bool) {
	s.mu.Lock()
	s.down = v
	s.mu.Unlock()
}
func (s *memSink) ids() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, l := range s.lines {
		var r Record
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			out = append(out, "BAD:"+l)
			continue
		}
		out = append(out, r.RequestID)
	}
	return out
}

func wantIDs(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, "req-"+strconv.Itoa(i))
	}
	return out
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func closeLogger(t *testing.T, l *Logger) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
}

func equal(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }

func TestRecordJSONHasEverySeedField(t *testing.T) {
	r := rec(1)
	line, err := r.MarshalLine()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"timestamp", "request_id", "correlation_id", "client_ip", "user", "bucket", "object_key", "http_method",
		"request_path", "response_status", "response_size_bytes", "duration_ms", "cache_status", "user_agent", "referer", "decision_reason"} {
		if _, ok := m[k]; !ok {
			t.Errorf("field %q missing in %s", k, line)
		}
	}
	if m["user"] != nil {
		t.Errorf("anonymous user = %v, want null", m["user"])
	}
	if m["timestamp"] != "2026-03-04T05:06:07Z" {
		t.Errorf("timestamp = %v", m["timestamp"])
	}
	r.User = UserPtr("alice")
	r.Path = "/q\"uote\n\u2028"
	line, _ = r.MarshalLine()
	if bytes.Count(line, []byte("\n")) != 1 || !bytes.Contains(line, []byte(`"user":"alice"`)) {
		t.Errorf("line = %s", line)
	}
}

func TestRedaction(t *testing.T) {
	r := NewRedactor([]string{"X-Tenant-Secret"}, []string{"session"})
	jwt := "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
	cases := []struct{ name, value, want string }{
		{"authorization", "Bearer " + jwt, "Bearer [REDACTED]"},
		{"Authorization", "Basic dXNlcjpwYXNz", "Basic [REDACTED]"},
		{"cookie", "sid=abc", "[REDACTED]"},
		{"x-tenant-secret", "s3cr3t", "[REDACTED]"},
		{"x-debug", "token was " + jwt + " ok", "token was [REDACTED] ok"},
		{"user-agent", "curl/8", "curl/8"},
	}
	for _, c := range cases {
		if got := r.Header(c.name, c.value); got != c.want {
			t.Errorf("Header(%s) = %q, want %q", c.name, got, c.want)
		}
	}
	q := r.Query("a=1&token=" + jwt + "&Session=xyz&X-Amz-Signature=abcd&b=" + jwt + "&flag")
	if strings.Contains(q, "xyz") || strings.Contains(q, "abcd") || strings.Contains(q, "eyJ") {
		t.Errorf("query not redacted: %s", q)
	}
	if want := "a=1&token=[REDACTED]&Session=[REDACTED]&X-Amz-Signature=[REDACTED]&b=[REDACTED]&flag"; q != want {
		t.Errorf("Query = %q, want %q", q, want)
	}
	if got := r.Query("%zz=1"); got != Redacted {
		t.Errorf("bad query = %q", got)
	}
}

func FuzzRedactQuery(f *testing.F) {
	f.Add("token=abc&x=1")
	f.Add("a=%20&TOKEN=secret")
	f.Add("sig=&&=x&access_token=eyJabcdef.eyJabcdef.xyz")
	r := NewRedactor(nil, nil)
	f.Fuzz(func(t *testing.T, q string) {
		out := r.Query(q)
		if out == Redacted {
			return
		}
		for _, p := range strings.Split(out, "&") {
			k, v, ok := strings.Cut(p, "=")
			name, err := urlUnescape(k)
			if err != nil {
				t.Fatalf("output %q has a bad name %q", out, k)
			}
			if ok && r.params[strings.ToLower(name)] && v != Redacted {
				t.Fatalf("Query(%q) = %q leaks %s", q, out, name)
			}
		}
		if strings.Count(out, "&") != strings.Count(q, "&") {
			t.Fatalf("Query(%q) = %q changed the parameter count", q, out)
		}
	})
}

func TestLoggerDeliversInOrderAndFlushesOnClose(t *testing.T) {
	sink := &memSink{name: "mem"}
	reg := prometheus.NewRegistry()
	l, err := New(Options{SpoolDir: t.TempDir(), Sinks: []Sink{sink}, Metrics: NewMetrics(reg), QueueSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		l.Log(rec(i))
	}
	closeLogger(t, l)
	if got := sink.ids(); !equal(got, wantIDs(0, 1000)) {
		t.Fatalf("got %d records, want 1000 in order (first mismatch near %v)", len(got), firstDiff(got, wantIDs(0, 1000)))
	}
	if v := testutil.ToFloat64(l.metrics.records.WithLabelValues("mem")); v != 1000 {
		t.Errorf("records_written_total = %v", v)
	}
}

func firstDiff(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("index %d: %s vs %s", i, a[i], b[i])
		}
	}
	return fmt.Sprintf("lengths %d vs %d", len(a), len(b))
}

func TestLoggerMinLevelSkipsLowerRecords(t *testing.T) {
	sink := &memSink{name: "mem"}
	l, err := New(Options{SpoolDir: t.TempDir(), Sinks: []Sink{sink}, MinLevel: 4}) // warn
	if err != nil {
		t.Fatal(err)
	}
	ok, denied := rec(0), rec(1)
	denied.Status = 403
	l.Log(ok)
	l.Log(denied)
	closeLogger(t, l)
	if got := sink.ids(); !equal(got, []string{"req-1"}) {
		t.Errorf("got %v", got)
	}
}

func TestSinkDownKeepsRecordsInSpoolThenDelivers(t *testing.T) {
	sink := &memSink{name: "mem", down: true}
	reg := prometheus.NewRegistry()
	l, err := New(Options{SpoolDir: t.TempDir(), Sinks: []Sink{sink}, Metrics: NewMetrics(reg), RetryMin: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		l.Log(rec(i))
	}
	waitUntil(t, "a failed write", func() bool { return testutil.ToFloat64(l.metrics.failures.WithLabelValues("mem")) > 0 })
	if b := l.lanes[0].sp.Backlog(); b == 0 {
		t.Error("spool is empty while the sink is down")
	}
	sink.setDown(false)
	waitUntil(t, "delivery after recovery", func() bool { return len(sink.ids()) >= 300 })
	closeLogger(t, l)
	if got := sink.ids(); !equal(got, wantIDs(0, 300)) {
		t.Fatalf("after recovery: %s", firstDiff(got, wantIDs(0, 300)))
	}
}

func TestSpoolSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	down := &memSink{name: "mem", down: true}
	l, err := New(Options{SpoolDir: dir, Sinks: []Sink{down}, RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		l.Log(rec(i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	err = l.Close(ctx) // the sink never comes back before the deadline
	cancel()
	if err == nil {
		t.Fatal("Close reported success although the sink took nothing")
	}
	up := &memSink{name: "mem"}
	l2, err := New(Options{SpoolDir: dir, Sinks: []Sink{up}})
	if err != nil {
		t.Fatal(err)
	}
	l2.Log(rec(100))
	closeLogger(t, l2)
	if got := up.ids(); !equal(got, wantIDs(0, 101)) {
		t.Fatalf("after restart: %s", firstDiff(got, wantIDs(0, 101)))
	}
}

func TestFullQueueSpillsInOrderWithoutBlocking(t *testing.T) {
	block := make(chan struct{})
	sink := &memSink{name: "mem", block: block}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	l, err := New(Options{SpoolDir: t.TempDir(), Sinks: []Sink{sink}, QueueSize: 4, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	// The sink is stuck, so the dispatcher backs up behind nothing: the queue of 4 fills and
	// Log must spill instead of waiting. Pause the dispatcher by logging faster than it drains.
	for i := range 2000 {
		l.Log(rec(i))
	}
	close(block)
	closeLogger(t, l)
	if got := sink.ids(); !equal(got, wantIDs(0, 2000)) {
		t.Fatalf("%s", firstDiff(got, wantIDs(0, 2000)))
	}
	t.Logf("spilled %v of 2000", testutil.ToFloat64(m.spills))
}

func TestSpoolDropsTornLastLine(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "mem.spool"), []byte("{\"request_id\":\"req-0\"}\n{\"request_id\":\"re"), 0o600); err != nil {
		t.Fatal(err)
	}
	sink := &memSink{name: "mem"}
	l, err := New(Options{SpoolDir: dir, Sinks: []Sink{sink}})
	if err != nil {
		t.Fatal(err)
	}
	l.Log(rec(1))
	closeLogger(t, l)
	if got := sink.ids(); !equal(got, wantIDs(0, 2)) {
		t.Fatalf("got %v", got)
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

func TestFileSinkRotatesBySizeAndKeepsBackups(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	fs, err := NewFileSink(FileOptions{Path: path, MaxSizeMB: 1, MaxBackups: 2, BufferSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	l, err := New(Options{SpoolDir: filepath.Join(dir, "spool"), Sinks: []Sink{fs}})
	if err != nil {
		t.Fatal(err)
	}
	r := rec(0)
	r.UserAgent = strings.Repeat("u", 2000) // ~2.3 KB per line
	const n = 2000                          // ~4.6 MB: at least 4 rotations
	for i := range n {
		r.RequestID = "req-" + strconv.Itoa(i)
		l.Log(r)
	}
	closeLogger(t, l)
	files, _ := filepath.Glob(filepath.Join(dir, "audit*.log"))
	if len(files) != 3 {
		t.Fatalf("files = %v, want the live file and 2 backups", files)
	}
	for _, f := range files {
		if st, _ := os.Stat(f); st.Size() > 1<<20 {
			t.Errorf("%s is %d bytes, over the 1 MiB limit", f, st.Size())
		}
	}
	live := readLines(t, path)
	var last Record
	if err := json.Unmarshal([]byte(live[len(live)-1]), &last); err != nil || last.RequestID != "req-"+strconv.Itoa(n-1) {
		t.Errorf("last record = %+v (%v)", last.RequestID, err)
	}
}

func TestFileSinkRotatesDaily(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	now := time.Date(2026, 1, 1, 23, 59, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	fs, err := NewFileSink(FileOptions{Path: path, MaxSizeMB: 50, MaxBackups: 5, Daily: true, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	line := func(i int) [][]byte { r := rec(i); b, _ := r.MarshalLine(); return [][]byte{b} }
	if err := fs.Write(ctx, line(1)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(2 * time.Minute) // next day
	mu.Unlock()
	if err := fs.Write(ctx, line(2)); err != nil {
		t.Fatal(err)
	}
	if err := fs.Close(ctx); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "audit*.log"))
	if len(files) != 2 {
		t.Fatalf("files = %v, want a backup for the first day", files)
	}
	if live := readLines(t, path); len(live) != 1 || !strings.Contains(live[0], "req-2") {
		t.Errorf("live file = %v", live)
	}
}

func TestSyslogRFC5424OverTCPAndUDP(t *testing.T) {
	for _, proto := range []string{"tcp", "udp"} {
		t.Run(proto, func(t *testing.T) {
			srv, err := audittest.StartSyslog(proto, "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Stop()
			s, err := NewSyslogSink(SyslogOptions{Address: srv.Addr, Protocol: proto, Facility: 17, AppName: "yatagarasu", Hostname: "gw1"})
			if err != nil {
				t.Fatal(err)
			}
			l, err := New(Options{SpoolDir: t.TempDir(), Sinks: []Sink{s}})
			if err != nil {
				t.Fatal(err)
			}
			denied := rec(1)
			denied.Status, denied.Bucket = 403, `we"ird]\b`
			l.Log(rec(0))
			l.Log(denied)
			closeLogger(t, l)
			waitUntil(t, "2 messages", func() bool { return len(srv.Messages()) >= 2 })
			if errs := srv.Errors(); len(errs) > 0 {
				t.Fatalf("parse errors: %v", errs)
			}
			msgs := srv.Messages()
			for i, m := range msgs {
				if *m.Facility != 17 || *m.Hostname != "gw1" || *m.Appname != "yatagarasu" || *m.MsgID != "audit" || m.Version != 1 {
					t.Errorf("header of %d = fac %v host %v app %v msgid %v", i, *m.Facility, *m.Hostname, *m.Appname, *m.MsgID)
				}
				sd := (*m.StructuredData)[SDID]
				if sd["request_id"] != "req-"+strconv.Itoa(i) {
					t.Errorf("structured data = %v", sd)
				}
				var r Record
				if err := json.Unmarshal([]byte(*m.Message), &r); err != nil || r.RequestID != sd["request_id"] {
					t.Errorf("message %q: %v", *m.Message, err)
				}
				if !m.Timestamp.Equal(rec(0).Timestamp) {
					t.Errorf("timestamp = %v", m.Timestamp)
				}
			}
			if *msgs[0].Severity != 6 || *msgs[1].Severity != 4 {
				t.Errorf("severities = %d, %d; want 6 (info) and 4 (warning)", *msgs[0].Severity, *msgs[1].Severity)
			}
			if got := (*msgs[1].StructuredData)[SDID]["bucket"]; got != `we"ird]\b` {
				t.Errorf("escaped param read back as %q", got)
			}
		})
	}
}

func TestSyslogServerDownThenBackLosesNothing(t *testing.T) {
	srv, err := audittest.StartSyslog("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSyslogSink(SyslogOptions{Address: srv.Addr, Protocol: "tcp", Facility: 16, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	l, err := New(Options{SpoolDir: t.TempDir(), Sinks: []Sink{s}, RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		l.Log(rec(i))
	}
	waitUntil(t, "first 100", func() bool { return len(srv.Messages()) == 100 })
	srv.Stop() // graceful close: the sink sees FIN on its open connection
	for i := 100; i < 300; i++ {
		l.Log(rec(i))
	}
	waitUntil(t, "records to wait in the spool", func() bool { return l.lanes[0].sp.Backlog() > 0 })
	time.Sleep(100 * time.Millisecond) // several failed retries
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	for i := 300; i < 400; i++ {
		l.Log(rec(i))
	}
	closeLogger(t, l)
	waitUntil(t, "all 400", func() bool { return len(srv.Messages()) >= 400 })
	srv.Stop()
	var got []string
	for _, m := range srv.Messages() {
		got = append(got, (*m.StructuredData)[SDID]["request_id"])
	}
	if !equal(got, wantIDs(0, 400)) {
		t.Fatalf("syslog received: %s", firstDiff(got, wantIDs(0, 400)))
	}
}

// switchable fails uploads while down.
type switchable struct {
	mu   sync.Mutex
	down bool
	c    Uploader
}

func (s *switchable) PutObject(ctx context.Context, in *awss3.PutObjectInput, opts ...func(*awss3.Options)) (*awss3.PutObjectOutput, error) {
	s.mu.Lock()
	down := s.down
	s.mu.Unlock()
	if down {
		return nil, errors.New("s3 unreachable")
	}
	return s.c.PutObject(ctx, in, opts...)
}

func listBatches(t *testing.T, bucket, prefix string) map[string][]string {
	t.Helper()
	ctx := context.Background()
	out, err := s3srv.Client().ListObjectsV2(ctx, &awss3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, o := range out.Contents {
		obj, err := s3srv.Client().GetObject(ctx, &awss3.GetObjectInput{Bucket: aws.String(bucket), Key: o.Key})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(obj.Body)
		obj.Body.Close()
		got[*o.Key] = strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	return got
}

func TestS3ExportBatchesAndSurvivesOutage(t *testing.T) {
	ctx := context.Background()
	if err := s3srv.CreateBucket(ctx, "audit-export"); err != nil {
		t.Fatal(err)
	}
	client := NewS3Client(s3srv.Region, s3srv.Endpoint, s3srv.AccessKey, s3srv.SecretKey)
	up := &switchable{c: client, down: true}
	dir := t.TempDir()
	now := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	sink, err := NewS3Sink(S3Options{Client: up, Bucket: "audit-export", PathPrefix: "gw/", Interval: 50 * time.Millisecond,
		MaxRecords: 1000, Dir: dir, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	l, err := New(Options{SpoolDir: filepath.Join(dir, "spool"), Sinks: []Sink{sink}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		l.Log(rec(i))
	}
	waitUntil(t, "a pending batch while S3 is down", func() bool { return len(sink.PendingBatches()) > 0 })
	time.Sleep(150 * time.Millisecond) // more ticks with failed uploads
	if got := listBatches(t, "audit-export", "gw/"); len(got) != 0 {
		t.Fatalf("uploaded while down: %v", got)
	}
	up.mu.Lock()
	up.down = false
	up.mu.Unlock()
	for i := 50; i < 60; i++ {
		l.Log(rec(i))
	}
	closeLogger(t, l)
	if p := sink.PendingBatches(); len(p) != 0 {
		t.Fatalf("pending after recovery and close: %v", p)
	}
	got := listBatches(t, "audit-export", "gw/")
	var all []string
	for key, lines := range got {
		name := strings.TrimPrefix(key, "gw/")
		if !strings.HasPrefix(name, "yatagarasu-audit-2026-05-06-07-08-") || !strings.HasSuffix(name, ".jsonl") {
			t.Errorf("batch name %q", key)
		}
		for _, line := range lines {
			var r Record
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("%s: bad line %q", key, line)
			}
			all = append(all, r.RequestID)
		}
	}
	if len(all) != 60 {
		t.Fatalf("S3 holds %d records in %d batches, want 60", len(all), len(got))
	}
	if BatchName(now) != "yatagarasu-audit-2026-05-06-07-08-09.jsonl" {
		t.Errorf("BatchName = %s", BatchName(now))
	}
}
