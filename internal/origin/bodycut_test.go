package origin_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/yatagarasu/yatagarasu/internal/cache"
	"github.com/yatagarasu/yatagarasu/internal/cache/memory"
	"github.com/yatagarasu/yatagarasu/internal/config"
	"github.com/yatagarasu/yatagarasu/internal/httperr"
	"github.com/yatagarasu/yatagarasu/internal/origin"
	"github.com/yatagarasu/yatagarasu/internal/originauth"
	"github.com/yatagarasu/yatagarasu/internal/s3"
)

// cutS3 is a fake S3 that announces each object's full Content-Length and, while cut is set,
// drops the connection after half of the body.
type cutS3 struct {
	mu      sync.Mutex
	objects map[string][]byte
	cc      string // Cache-Control sent with every object
	cut     atomic.Bool
	gets    atomic.Int64
}

func (f *cutS3) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.gets.Add(1)
	f.mu.Lock()
	var body []byte
	for k, v := range f.objects {
		if strings.HasSuffix(r.URL.Path, "/"+k) {
			body = v
		}
	}
	f.mu.Unlock()
	if body == nil {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>no</Message></Error>`)
		return
	}
	h := w.Header()
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Content-Type", "application/octet-stream")
	h.Set("ETag", `"etag-1"`)
	h.Set("Last-Modified", "Mon, 02 Jan 2006 15:04:05 GMT")
	if f.cc != "" {
		h.Set("Cache-Control", f.cc)
	}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	if !f.cut.Load() {
		_, _ = w.Write(body)
		return
	}
	_, _ = w.Write(body[:len(body)/2])
	w.(http.Flusher).Flush()
	panic(http.ErrAbortHandler) // the connection drops mid-body
}

// cutRig is an origin (optionally with a memory cache) in front of a cutS3.
type cutRig struct {
	s3     *cutS3
	signer *originauth.Signer
	url    string
	tiered *cache.Tiered
}

const cutSecret = "0123456789abcdef0123456789abcdef-cut-test"

func newCutRig(t *testing.T, cached bool, cc string) *cutRig {
	t.Helper()
	fake := &cutS3{objects: map[string][]byte{
		"small.bin": bytes.Repeat([]byte("s"), 4<<10),
		"big.bin":   bytes.Repeat([]byte("b"), 512<<10),
	}, cc: cc}
	s3srv := httptest.NewServer(fake)
	t.Cleanup(s3srv.Close)
	bucket, err := s3.NewBucket(config.Bucket{Name: "media", PathPrefix: "/media", S3: config.S3{
		Bucket: "fake", Region: "us-east-1", Endpoint: s3srv.URL, AccessKey: "AK", SecretKey: "SK",
		Timeout: config.Seconds(10 * time.Second), ConnectionPoolSize: 4,
	}})
	if err != nil {
		t.Fatal(err)
	}
	rig := &cutRig{s3: fake, signer: originauth.NewSigner(cutSecret, 30*time.Second)}
	h := origin.New(rig.signer, func(name string) (*s3.Bucket, bool) { return bucket, name == "media" }, nil, nil, nil)
	if cached {
		mem, err := memory.New(memory.Options{MaxBytes: 8 << 20, MaxItemBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		rig.tiered = cache.NewTiered([]cache.Layer{mem}, cache.Options{})
		t.Cleanup(func() { rig.tiered.Close() })
		h.UseCache(cache.NewResponder(rig.tiered, cache.ResponderOptions{Policy: func(string) cache.Policy {
			return cache.Policy{Enabled: true, TTL: time.Minute, MaxItemBytes: 1 << 20}
		}}))
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	rig.url = srv.URL
	return rig
}

// get sends a signed GET for key and returns the response with whatever body could be read and
// the read error (a broken transfer).
func (r *cutRig) get(t *testing.T, key, rid string, hdr ...string) (*http.Response, []byte, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, r.url+"/media/"+key, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range r.signer.Headers(originauth.Claims{Method: http.MethodGet, Bucket: "media", Key: key, RequestID: rid, Time: time.Now()}) {
		req.Header.Set(kv[0], kv[1])
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("request failed before a response: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

// TestSmallBodyCutBeforeResponseIs502 cuts a small object's S3 body mid-transfer: nothing had
// gone to the client yet, so the origin must answer a clean 502 JSON with the request id (not a
// dropped connection, which Envoy turns into a plain-text 503), and must not cache the half body.
func TestSmallBodyCutBeforeResponseIs502(t *testing.T) {
	cases := []struct {
		name   string
		cached bool
		cc     string
		hdr    []string
	}{
		{name: "cache off"},
		{name: "cache on, filling", cached: true},
		{name: "cache on, not cacheable", cached: true, cc: "no-store"},
		{name: "cache on, conditional miss", cached: true, hdr: []string{"If-None-Match", `"other"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rig := newCutRig(t, tc.cached, tc.cc)
			rig.s3.cut.Store(true)
			rid := "rid-" + strings.ReplaceAll(tc.name, " ", "-")
			resp, body, err := rig.get(t, "small.bin", rid, tc.hdr...)
			if err != nil {
				t.Fatalf("broken transfer (%v) where a clean 502 was possible; status %d", err, resp.StatusCode)
			}
			if resp.StatusCode != http.StatusBadGateway {
				t.Fatalf("status = %d, want 502; body %.200q", resp.StatusCode, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != httperr.ContentType {
				t.Errorf("Content-Type = %q", ct)
			}
			if got := resp.Header.Get("X-Request-Id"); got != rid {
				t.Errorf("X-Request-Id = %q, want %q", got, rid)
			}
			var e httperr.Body
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("body %q is not the JSON error: %v", body, err)
			}
			if e.Status != http.StatusBadGateway || e.RequestID != rid || e.Message != origin.MsgBodyCut {
				t.Errorf("error body = %+v", e)
			}
			if etag := resp.Header.Get("ETag"); etag != "" {
				t.Errorf("the 502 carries the object's ETag %q", etag)
			}
			// Not cached: once S3 is healthy the next request goes to S3 and gets the whole object.
			rig.s3.cut.Store(false)
			before := rig.s3.gets.Load()
			resp, body, err = rig.get(t, "small.bin", rid+"-again")
			if err != nil || resp.StatusCode != http.StatusOK || len(body) != 4<<10 {
				t.Fatalf("after the fault: status %d, %d bytes, err %v", resp.StatusCode, len(body), err)
			}
			if rig.s3.gets.Load() == before {
				t.Fatalf("served from the cache (X-Cache %q) after a cut fill", resp.Header.Get("X-Cache"))
			}
		})
	}
}

// TestLargeBodyCutAfterResponseAborts cuts a large object's body after the origin has started
// the response: the client must see a broken transfer, never a short body that looks complete,
// and nothing is cached.
func TestLargeBodyCutAfterResponseAborts(t *testing.T) {
	for _, cached := range []bool{false, true} {
		t.Run(fmt.Sprintf("cached=%v", cached), func(t *testing.T) {
			rig := newCutRig(t, cached, "")
			rig.s3.cut.Store(true)
			resp, body, err := rig.get(t, "big.bin", "rid-big")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status = %d, want 200 then a broken body", resp.StatusCode)
			}
			if err == nil {
				t.Fatalf("a cut body was read as complete (%d bytes)", len(body))
			}
			if len(body) >= 512<<10 {
				t.Fatalf("read %d bytes of a cut 512 KiB body", len(body))
			}
			rig.s3.cut.Store(false)
			before := rig.s3.gets.Load()
			resp, body, err = rig.get(t, "big.bin", "rid-big-again")
			if err != nil || resp.StatusCode != http.StatusOK || len(body) != 512<<10 {
				t.Fatalf("after the fault: status %d, %d bytes, err %v", resp.StatusCode, len(body), err)
			}
			if rig.s3.gets.Load() == before {
				t.Fatal("a cut body was cached")
			}
		})
	}
}
