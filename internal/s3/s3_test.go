package s3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/yatagarasu/yatagarasu/internal/config"
	"github.com/yatagarasu/yatagarasu/internal/testenv"
)

const testBucket = "s3-pkg-test"

var (
	// env is the versitygw shared by every test in this package, set once in TestMain.
	env *testenv.S3
	// small and large are the objects TestMain stores.
	small = randomBytes(1, 1024)
	large = randomBytes(2, 8<<20+123)
	// oldTime is old.bin's modification time.
	oldTime = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var err error
	env, err = testenv.StartS3(ctx, testenv.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start versitygw:", err)
		return 1
	}
	defer env.Close()
	if err := env.CreateBucket(ctx, testBucket); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for key, body := range map[string][]byte{"small.bin": small, "dir/large.bin": large, "old.bin": small} {
		if err := env.PutObject(ctx, testBucket, key, body, "application/x-test"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	// versitygw ignores If-Modified-Since dates in the future and compares with sub-second
	// precision, so a conditional test needs an object last modified in the past on a whole second:
	// set the posix backend file's mtime directly.
	if err := os.Chtimes(filepath.Join(env.Dir(), "root", testBucket, "old.bin"), oldTime, oldTime); err != nil {
		fmt.Fprintln(os.Stderr, "backdate old.bin:", err)
		return 1
	}
	return m.Run()
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func newBucket(t *testing.T, mutate func(*config.Bucket), opts ...Option) *Bucket {
	t.Helper()
	cfg := env.BucketConfig("media", testBucket)
	if mutate != nil {
		mutate(&cfg)
	}
	b, err := NewBucket(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readAll(t *testing.T, obj *Object) []byte {
	t.Helper()
	defer obj.Body.Close()
	b, err := io.ReadAll(obj.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return b
}

func TestGetSmallAndLarge(t *testing.T) {
	b := newBucket(t, nil)
	for key, want := range map[string][]byte{"small.bin": small, "dir/large.bin": large} {
		t.Run(key, func(t *testing.T) {
			obj, err := b.Get(context.Background(), key, Conditions{})
			if err != nil {
				t.Fatal(err)
			}
			if obj.Status != http.StatusOK {
				t.Errorf("status = %d, want 200", obj.Status)
			}
			if obj.ContentLength != int64(len(want)) {
				t.Errorf("content length = %d, want %d", obj.ContentLength, len(want))
			}
			if obj.ContentType != "application/x-test" {
				t.Errorf("content type = %q", obj.ContentType)
			}
			if obj.ETag == "" || obj.LastModified == "" {
				t.Errorf("etag %q / last-modified %q missing", obj.ETag, obj.LastModified)
			}
			if _, err := http.ParseTime(obj.LastModified); err != nil {
				t.Errorf("last-modified %q is not an HTTP date: %v", obj.LastModified, err)
			}
			got := readAll(t, obj)
			if sha256.Sum256(got) != sha256.Sum256(want) {
				t.Fatalf("body differs: got %d bytes, want %d", len(got), len(want))
			}
		})
	}
}

func TestGetRange(t *testing.T) {
	b := newBucket(t, nil)
	obj, err := b.Get(context.Background(), "small.bin", Conditions{Range: "bytes=10-19"})
	if err != nil {
		t.Fatal(err)
	}
	if obj.Status != http.StatusPartialContent {
		t.Errorf("status = %d, want 206", obj.Status)
	}
	if obj.ContentRange != "bytes 10-19/1024" {
		t.Errorf("content-range = %q", obj.ContentRange)
	}
	if obj.ContentLength != 10 {
		t.Errorf("content-length = %d, want 10", obj.ContentLength)
	}
	if got := readAll(t, obj); !bytes.Equal(got, small[10:20]) {
		t.Fatalf("range body = %x, want %x", got, small[10:20])
	}
}

func TestConditionals(t *testing.T) {
	b := newBucket(t, nil)
	ctx := context.Background()
	head, err := b.Head(ctx, "small.bin", Conditions{})
	if err != nil {
		t.Fatal(err)
	}
	if head.Body != nil || head.Status != http.StatusOK || head.ContentLength != 1024 {
		t.Fatalf("head = %+v", head)
	}

	old := oldTime.Format(http.TimeFormat)
	for _, tc := range []struct {
		name, key string
		cond      Conditions
		wantETag  string // versitygw sends no ETag on 304; Get fills it from If-None-Match
	}{
		{"if-none-match", "small.bin", Conditions{IfNoneMatch: head.ETag}, head.ETag},
		{"if-modified-since", "old.bin", Conditions{IfModifiedSince: old}, ""},
	} {
		t.Run("get "+tc.name, func(t *testing.T) {
			obj, err := b.Get(ctx, tc.key, tc.cond)
			if err != nil {
				t.Fatal(err)
			}
			if obj.Status != http.StatusNotModified || obj.Body != nil {
				t.Fatalf("status = %d body = %v, want 304 without body", obj.Status, obj.Body)
			}
			if obj.ETag != tc.wantETag {
				t.Errorf("304 etag = %q, want %q", obj.ETag, tc.wantETag)
			}
		})
		t.Run("head "+tc.name, func(t *testing.T) {
			obj, err := b.Head(ctx, tc.key, tc.cond)
			if err != nil {
				t.Fatal(err)
			}
			if obj.Status != http.StatusNotModified {
				t.Fatalf("status = %d, want 304", obj.Status)
			}
		})
	}

	obj, err := b.Get(ctx, "old.bin", Conditions{IfModifiedSince: oldTime.Add(-time.Hour).Format(http.TimeFormat)})
	if err != nil {
		t.Fatal(err)
	}
	if obj.Status != http.StatusOK || obj.LastModified != old {
		t.Fatalf("If-Modified-Since before the last change: status %d last-modified %q, want 200 %q", obj.Status, obj.LastModified, old)
	}
	obj.Body.Close()

	obj, err = b.Get(ctx, "small.bin", Conditions{IfNoneMatch: `"some-other-etag"`})
	if err != nil {
		t.Fatal(err)
	}
	if obj.Status != http.StatusOK || len(readAll(t, obj)) != 1024 {
		t.Fatalf("non-matching If-None-Match: status %d, want 200 with body", obj.Status)
	}

	_, err = b.Get(ctx, "small.bin", Conditions{IfMatch: `"some-other-etag"`})
	if e := Classify(err); e == nil || e.Status != http.StatusPreconditionFailed {
		t.Fatalf("If-Match mismatch classified as %v, want 412 (err %v)", e, err)
	}
}

func TestClassifiedFailures(t *testing.T) {
	ctx := context.Background()
	b := newBucket(t, nil)

	_, err := b.Get(ctx, "small.bin", Conditions{Range: "bytes=5000-6000"})
	if e := Classify(err); e == nil || e.Status != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("range past end classified as %v, want 416 (err %v)", e, err)
	}

	_, err = b.Get(ctx, "no/such/key", Conditions{})
	if e := Classify(err); e == nil || e.Status != http.StatusNotFound || e.Message != msgNotFound {
		t.Errorf("missing key (GET) classified as %v, want 404 (err %v)", e, err)
	}
	_, err = b.Head(ctx, "no/such/key", Conditions{})
	if e := Classify(err); e == nil || e.Status != http.StatusNotFound {
		t.Errorf("missing key (HEAD) classified as %v, want 404 (err %v)", e, err)
	}

	const wrongSecret = "wrong-secret-0123456789abcdef"
	bad := newBucket(t, func(c *config.Bucket) { c.S3.SecretKey = wrongSecret })
	_, err = bad.Get(ctx, "small.bin", Conditions{})
	e := Classify(err)
	if e == nil || e.Status != http.StatusBadGateway || e.Message != msgCredentials {
		t.Fatalf("wrong secret classified as %v, want 502 %q (err %v)", e, msgCredentials, err)
	}
	for _, secret := range []string{wrongSecret, env.SecretKey, env.AccessKey} {
		if strings.Contains(e.Message, secret) || strings.Contains(e.Error(), secret) {
			t.Errorf("error leaks a credential: %v", e)
		}
	}
	if err := bad.Ping(ctx); Classify(err).Status != http.StatusBadGateway {
		t.Errorf("ping with wrong secret = %v, want a 502 class error", err)
	}
}

func TestPing(t *testing.T) {
	if err := newBucket(t, nil).Ping(context.Background()); err != nil {
		t.Fatalf("ping: %v", err)
	}
	missing := newBucket(t, func(c *config.Bucket) { c.S3.Bucket = "no-such-bucket" })
	if err := missing.Ping(context.Background()); err == nil {
		t.Fatal("ping of a missing bucket succeeded")
	}
}

func TestTimeout(t *testing.T) {
	endpoint := testenv.BlackHole(t)
	b := newBucket(t, func(c *config.Bucket) {
		c.S3.Endpoint = endpoint
		c.S3.Timeout = config.Seconds(100 * time.Millisecond)
	})
	ctx := context.Background()
	_, err := b.Get(ctx, "small.bin", Conditions{})
	if e := Classify(err); e == nil || e.Status != http.StatusGatewayTimeout {
		t.Errorf("GET against a silent server classified as %v, want 504 (err %v)", e, err)
	}
	if !errors.Is(err, ErrTimeout) {
		t.Errorf("GET error %v does not wrap ErrTimeout", err)
	}
	_, err = b.Head(ctx, "small.bin", Conditions{})
	if e := Classify(err); e == nil || e.Status != http.StatusGatewayTimeout {
		t.Errorf("HEAD against a silent server classified as %v, want 504 (err %v)", e, err)
	}
	if e := Classify(b.Ping(ctx)); e == nil || e.Status != http.StatusGatewayTimeout {
		t.Errorf("Ping against a silent server classified as %v, want 504", e)
	}
}

// The timeout bounds the wait for headers only: a body read after it has passed must still work.
func TestBodyNotCutByTimeout(t *testing.T) {
	const timeout = 50 * time.Millisecond
	b := newBucket(t, func(c *config.Bucket) { c.S3.Timeout = config.Seconds(timeout) })
	obj, err := b.Get(context.Background(), "dir/large.bin", Conditions{})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * timeout) // well past the timeout; a context-bound body would now fail
	if got := readAll(t, obj); sha256.Sum256(got) != sha256.Sum256(large) {
		t.Fatalf("body differs after the timeout passed: %d bytes", len(got))
	}
}

// Cancelling the caller's context still stops the body (the client went away).
func TestBodyStopsWithContext(t *testing.T) {
	b := newBucket(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	obj, err := b.Get(ctx, "dir/large.bin", Conditions{})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Body.Close()
	cancel()
	if _, err := io.Copy(io.Discard, obj.Body); err == nil {
		t.Fatal("body read completed after the context was cancelled")
	}
}

// recorder captures outgoing requests and answers them itself (or passes them on).
type recorder struct {
	mu   sync.Mutex
	reqs []*http.Request
	next http.RoundTripper // nil: answer 500 without network
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.reqs = append(r.reqs, req.Clone(context.Background()))
	r.mu.Unlock()
	if r.next != nil {
		return r.next.RoundTrip(req)
	}
	return &http.Response{StatusCode: 500, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("")), Request: req}, nil
}

func (r *recorder) last(t *testing.T) *http.Request {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.reqs) == 0 {
		t.Fatal("no request recorded")
	}
	return r.reqs[len(r.reqs)-1]
}

func TestRequestShape(t *testing.T) {
	rec := &recorder{next: http.DefaultTransport}
	b := newBucket(t, nil, WithHTTPClient(&http.Client{Transport: rec}))
	lm := "Wed, 21 Oct 2015 07:28:00 GMT"
	obj, err := b.Get(context.Background(), "dir/large.bin", Conditions{Range: "bytes=0-99", IfUnmodifiedSince: "Wed, 21 Oct 2099 07:28:00 GMT", IfModifiedSince: lm})
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, obj)
	req := rec.last(t)
	if req.URL.Path != "/"+testBucket+"/dir/large.bin" {
		t.Errorf("path = %q, want path-style /%s/dir/large.bin", req.URL.Path, testBucket)
	}
	if got := req.Header.Get("Range"); got != "bytes=0-99" {
		t.Errorf("Range = %q", got)
	}
	if got := req.Header.Get("If-Modified-Since"); got != lm {
		t.Errorf("If-Modified-Since = %q, want %q", got, lm)
	}
	if got := req.Header.Get("X-Amz-Checksum-Mode"); got != "" {
		t.Errorf("x-amz-checksum-mode = %q: response checksum validation would be forced", got)
	}
	if !strings.HasPrefix(req.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential="+env.AccessKey+"/") {
		t.Errorf("request not SigV4-signed with the configured key: %q", req.Header.Get("Authorization"))
	}

	// Without an endpoint the bucket is addressed virtual-hosted style on AWS.
	aws := &recorder{}
	vb := newBucket(t, func(c *config.Bucket) { c.S3.Endpoint = ""; c.S3.Region = "eu-west-1" }, WithHTTPClient(&http.Client{Transport: aws}))
	_, _ = vb.Head(context.Background(), "a/b.txt", Conditions{})
	req = aws.last(t)
	if want := testBucket + ".s3.eu-west-1.amazonaws.com"; req.URL.Host != want || req.URL.Path != "/a/b.txt" {
		t.Errorf("virtual-hosted request = %s %s, want host %s path /a/b.txt", req.URL.Host, req.URL.Path, want)
	}
}

func TestSDKOptions(t *testing.T) {
	b := newBucket(t, func(c *config.Bucket) { c.S3.ConnectionPoolSize = 7 })
	o := b.client.Options()
	hc, ok := o.HTTPClient.(*http.Client)
	if !ok {
		t.Fatalf("HTTP client is %T", o.HTTPClient)
	}
	tr, ok := hc.Transport.(*http.Transport)
	if !ok || tr.MaxIdleConnsPerHost != 7 {
		t.Fatalf("transport %T MaxIdleConnsPerHost = %v, want 7", hc.Transport, tr)
	}
	if o.Retryer.MaxAttempts() != 1 {
		t.Errorf("retryer max attempts = %d, want 1", o.Retryer.MaxAttempts())
	}
	if !o.UsePathStyle {
		t.Error("custom endpoint without path style")
	}
	if _, err := NewBucket(config.Bucket{Name: "x", S3: config.S3{Bucket: "b", AccessKey: "only-access"}}); err == nil {
		t.Error("access key without secret key accepted")
	}
	if _, err := NewBucket(config.Bucket{Name: "x"}); err == nil {
		t.Error("empty S3 bucket name accepted")
	}
}

func TestClassifyTable(t *testing.T) {
	resp := func(status int, code string) error {
		return &smithy.OperationError{ServiceID: "S3", OperationName: "GetObject", Err: &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
			Err:      &smithy.GenericAPIError{Code: code, Message: "server text"},
		}}
	}
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"NoSuchKey", resp(404, "NoSuchKey"), 404},
		{"head 404", resp(404, "NotFound"), 404},
		{"InvalidRange", resp(416, "InvalidRange"), 416},
		{"PreconditionFailed", resp(412, "PreconditionFailed"), 412},
		{"AccessDenied", resp(403, "AccessDenied"), 502},
		{"InvalidAccessKeyId", resp(403, "InvalidAccessKeyId"), 502},
		{"SignatureDoesNotMatch", resp(403, "SignatureDoesNotMatch"), 502},
		{"InternalError", resp(500, "InternalError"), 502},
		{"SlowDown", resp(503, "SlowDown"), 502},
		{"deadline", fmt.Errorf("get: %w", context.DeadlineExceeded), 504},
		{"timeout", fmt.Errorf("get: %w", ErrTimeout), 504},
		{"net timeout", &net.OpError{Op: "read", Err: timeoutErr{}}, 504},
		{"connection refused", errors.New("dial tcp: connection refused"), 502},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := Classify(tc.err)
			if e == nil || e.Status != tc.want {
				t.Fatalf("Classify = %v, want status %d", e, tc.want)
			}
			if strings.Contains(e.Message, "server text") {
				t.Errorf("client message %q carries S3's own text", e.Message)
			}
			if !errors.Is(e, tc.err) {
				t.Error("classified error does not unwrap to the original")
			}
			if again := Classify(fmt.Errorf("wrapped: %w", e)); again != e {
				t.Error("classifying an already classified error changed it")
			}
		})
	}
	if Classify(nil) != nil {
		t.Error("Classify(nil) != nil")
	}
	if e := Classify(resp(403, "AccessDenied")); e.Message != msgCredentials || e.Code != "AccessDenied" {
		t.Errorf("403 = %+v", e)
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }
