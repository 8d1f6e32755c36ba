package chaos

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/yatagarasu/yatagarasu/internal/devstack"
	"github.com/yatagarasu/yatagarasu/internal/httperr"
	"github.com/yatagarasu/yatagarasu/internal/testenv"
)

// The S3 bucket every test reads, and its objects by key: small ones (answered inline when
// cached) and 1 MiB ones (streamed by the origin).
const s3Bucket = "chaos"

var (
	objects   = map[string][]byte{}
	smallKeys []string
	bigKeys   []string
)

var (
	s3srv      *testenv.S3
	redisSrv   *testenv.Redis
	extprocBin string // bin/extproc built for this run, for the process-level tests
)

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos setup:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var err error
	if s3srv, err = testenv.StartS3(ctx, testenv.Options{}); err != nil {
		return 0, err
	}
	defer s3srv.Close()
	if redisSrv, err = testenv.StartRedis(ctx); err != nil {
		return 0, err
	}
	defer redisSrv.Close()
	if err := seed(ctx); err != nil {
		return 0, err
	}
	dir, err := os.MkdirTemp("", "yatagarasu-chaos-bin-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	extprocBin = filepath.Join(dir, "extproc")
	build := exec.CommandContext(ctx, "go", "build", "-o", extprocBin, "github.com/yatagarasu/yatagarasu/extproc/cmd/extproc")
	if out, err := build.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("go build extproc: %w\n%s", err, out)
	}
	return m.Run(), nil
}

func seed(ctx context.Context) error {
	if err := s3srv.CreateBucket(ctx, s3Bucket); err != nil {
		return err
	}
	for i := range 20 {
		k := fmt.Sprintf("s/%02d.txt", i)
		objects[k] = random(4 << 10)
		smallKeys = append(smallKeys, k)
	}
	for i := range 100 {
		k := fmt.Sprintf("m/%03d.bin", i)
		objects[k] = random(1 << 20)
		bigKeys = append(bigKeys, k)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(objects))
	sem := make(chan struct{}, 8)
	for k, v := range objects {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			errs <- s3srv.PutObject(ctx, s3Bucket, k, v, "application/octet-stream")
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func random(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// startStack starts a devstack for one test and stops it at the test's end.
func startStack(t *testing.T, opts devstack.Options) *devstack.Stack {
	t.Helper()
	opts.S3 = s3srv
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	st, err := devstack.Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

// outcome classifies one response as a client sees it.
type outcome int

const (
	// okBody: 200 with exactly the object's bytes.
	okBody outcome = iota
	// cleanError: a 5xx with the JSON error body, read to its end.
	cleanError
	// broken: the transfer failed visibly (connection error or a body that ended before its
	// length): the client knows it did not get the object.
	broken
	// gatewayError: a 5xx the gateway made itself (Envoy's plain-text local reply: ext_proc
	// unreachable → 503, upstream reset before headers → 503), read to its end.
	gatewayError
	// bad: anything else: a wrong or short body that looks complete, or an unexpected status.
	bad
)

func (o outcome) String() string {
	return [...]string{"ok", "clean 5xx", "broken transfer", "gateway 5xx", "BAD"}[o]
}

// result is one request's outcome with what the test needs to report it.
type result struct {
	kind   outcome
	status int
	cache  string
	detail string
}

// fetch GETs bucket/key through the gateway and classifies the answer against the object.
func fetch(ctx context.Context, client *http.Client, base, path, key string) result {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return result{kind: bad, detail: err.Error()}
	}
	res, err := client.Do(req)
	if err != nil {
		return result{kind: broken, detail: err.Error()}
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	r := result{status: res.StatusCode, cache: res.Header.Get("X-Cache")}
	switch {
	case err != nil:
		r.kind, r.detail = broken, fmt.Sprintf("status %d, read %d bytes: %v", res.StatusCode, len(body), err)
	case res.StatusCode == http.StatusOK && bytes.Equal(body, objects[key]):
		r.kind = okBody
	case res.StatusCode == http.StatusOK:
		r.kind, r.detail = bad, fmt.Sprintf("200 with %d bytes that differ from the object's %d", len(body), len(objects[key]))
	case res.StatusCode >= 500 && isJSONError(body, res.StatusCode) && res.Header.Get("Content-Type") == httperr.ContentType:
		r.kind, r.detail = cleanError, string(body)
	case res.StatusCode >= 500 && !bytes.Contains(body, []byte("{")):
		r.kind, r.detail = gatewayError, fmt.Sprintf("status %d, body %.200q", res.StatusCode, body)
	default:
		r.kind, r.detail = bad, fmt.Sprintf("status %d, content-type %q, body %.200q", res.StatusCode, res.Header.Get("Content-Type"), body)
	}
	return r
}

func isJSONError(body []byte, status int) bool {
	var b httperr.Body
	return json.Unmarshal(body, &b) == nil && b.Status == status && b.Error == http.StatusText(status) && b.Message != ""
}

// tally counts outcomes of concurrent requests and keeps the first few bad ones.
type tally struct {
	mu     sync.Mutex
	counts [5]int
	cache  map[string]int
	bads   []string
}

func (t *tally) add(path string, r result) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.counts[r.kind]++
	if t.cache == nil {
		t.cache = map[string]int{}
	}
	if r.kind == okBody {
		t.cache[r.cache]++
	}
	if r.kind == bad && len(t.bads) < 5 {
		t.bads = append(t.bads, path+": "+r.detail)
	}
}

func (t *tally) get(o outcome) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.counts[o]
}

func (t *tally) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return fmt.Sprintf("ok=%d clean5xx=%d gateway5xx=%d broken=%d bad=%d x-cache=%v",
		t.counts[okBody], t.counts[cleanError], t.counts[gatewayError], t.counts[broken], t.counts[bad], t.cache)
}

// requireNoBad fails the test if any response was a wrong or silently short body.
func (t *tally) requireNoBad(tb testing.TB) {
	tb.Helper()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.counts[bad] > 0 {
		tb.Fatalf("%d bad responses, first: %q", t.counts[bad], t.bads)
	}
}

// load runs workers that GET keys round robin until stop is closed or each has made maxPerWorker
// requests (a bound on count; the caller's stop is the bound on time).
type load struct {
	wg   sync.WaitGroup
	stop chan struct{}
	t    tally
}

func startLoad(ctx context.Context, base, prefix string, keys []string, workers, maxPerWorker int) *load {
	l := &load{stop: make(chan struct{})}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := range maxPerWorker {
				select {
				case <-l.stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				k := keys[(w*7+i)%len(keys)]
				l.t.add(k, fetch(ctx, client, base, prefix+k, k))
			}
		}()
	}
	return l
}

// finish stops the workers and waits for them.
func (l *load) finish() *tally {
	close(l.stop)
	l.wg.Wait()
	return &l.t
}

// eventually polls cond until it holds or 30 s pass (a liveness bound, not a timing claim).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitFor blocks until the load has completed at least n requests of any kind (bounded).
func (l *load) waitFor(t *testing.T, n int) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d requests under load", n), func() bool {
		l.t.mu.Lock()
		defer l.t.mu.Unlock()
		total := 0
		for _, c := range l.t.counts {
			total += c
		}
		return total >= n
	})
}

// extprocProcess is bin/extproc running as a child process on a devstack's config file.
type extprocProcess struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

// syncBuffer collects a child's output for failure messages.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startExtProc runs bin/extproc on st's config and waits until its /ready answers 200.
func startExtProc(t *testing.T, st *devstack.Stack) *extprocProcess {
	t.Helper()
	p := &extprocProcess{out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(extprocBin, "-config", st.ConfigPath, "-drain-timeout", "60s", "-drain-delay", "5s")
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start extproc: %v", err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("extproc output:\n%s", p.out.String())
		}
	})
	eventually(t, "extproc /ready", func() bool {
		select {
		case <-p.done:
			t.Fatalf("extproc exited during start-up: %v\n%s", p.err, p.out.String())
		default:
		}
		res, err := http.Get(st.AdminURL + "/ready")
		if err != nil {
			return false
		}
		_ = res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	return p
}

// signal sends sig to the process.
func (p *extprocProcess) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// wait waits (bounded) for the process to exit and returns its exit error.
func (p *extprocProcess) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(90 * time.Second):
		t.Fatalf("extproc did not exit; output:\n%s", p.out.String())
		return errors.New("unreachable")
	}
}
