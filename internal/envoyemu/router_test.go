package envoyemu

import (
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// toPhotos is the usual extproc decision: route to bucket photos.
func toPhotos() func(*extprocv3.ProcessingRequest, extprocv3.ExternalProcessor_ProcessServer) error {
	return continueWith(&extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setRaw("x-yatagarasu-bucket", "photos")}}, true)
}

func TestRequestHeadersOverLimitGet431(t *testing.T) {
	ep := startExtProc(t, toPhotos())
	up := startUpstream(t)
	e, _ := startEnvoy(t, contract{extProcAddr: ep.addr, originAddr: up.Listener.Addr().String(), maxHeadersKB: 1}.resources(t))
	code, _, body := get(t, "GET", e.URL()+"/photos/k", map[string]string{"X-Big": strings.Repeat("a", 1100)})
	if code != 431 || string(body) != "Request Header Fields Too Large" {
		t.Fatalf("got %d %q, want 431", code, body)
	}
	if len(ep.reqs) != 0 {
		t.Error("a request rejected by the codec must not reach ext_proc")
	}
	if code, _, _ := get(t, "GET", e.URL()+"/photos/k", map[string]string{"X-Small": "a"}); code != 200 {
		t.Fatalf("small headers: status %d", code)
	}
}

func TestRouteTimeoutGives504(t *testing.T) {
	ep := startExtProc(t, toPhotos())
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })
	e, _ := startEnvoy(t, contract{extProcAddr: ep.addr, originAddr: slow.Listener.Addr().String(), routeTimeout: 30 * time.Millisecond}.resources(t))
	code, hdr, body := get(t, "GET", e.URL()+"/photos/k", nil)
	if code != 504 || string(body) != "upstream request timeout" || hdr.Get("Content-Type") != "text/plain" {
		t.Fatalf("got %d %q %q, want 504 upstream request timeout text/plain", code, body, hdr.Get("Content-Type"))
	}
}

func TestUpstreamConnectFailureGives503(t *testing.T) {
	ep := startExtProc(t, toPhotos())
	e, _ := startEnvoy(t, contract{extProcAddr: ep.addr, originAddr: "127.0.0.1:1"}.resources(t))
	code, _, body := get(t, "GET", e.URL()+"/photos/k", nil)
	if code != 503 || !strings.HasPrefix(string(body), "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure") {
		t.Fatalf("got %d %q", code, body)
	}
}

func TestNoRouteGives404(t *testing.T) {
	ep := startExtProc(t, toPhotos())
	up := startUpstream(t)
	res := contract{extProcAddr: ep.addr, originAddr: up.Listener.Addr().String()}.resources(t)
	res.Routes[0].VirtualHosts[0].Domains = []string{"only.example"}
	e, _ := startEnvoy(t, res)
	if code, _, _ := get(t, "GET", e.URL()+"/photos/k", nil); code != 404 {
		t.Fatalf("status %d, want 404", code)
	}
}

// patternReader yields a deterministic pseudo-random stream without holding it in memory.
type patternReader struct {
	rng       *rand.ChaCha8
	remaining int64
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.remaining <= 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.remaining {
		b = b[:p.remaining]
	}
	n, _ := p.rng.Read(b)
	p.remaining -= int64(n)
	return n, nil
}

func TestLargeBodyIsStreamedNotBuffered(t *testing.T) {
	const size = 64 << 20
	seed := [32]byte{1, 2, 3}
	ep := startExtProc(t, toPhotos())
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.Header().Set("Content-Type", "application/octet-stream")
		buf := make([]byte, 32<<10)
		_, _ = io.CopyBuffer(w, &patternReader{rng: rand.NewChaCha8(seed), remaining: size}, buf)
	}))
	t.Cleanup(up.Close)
	e, _ := startEnvoy(t, contract{extProcAddr: ep.addr, originAddr: up.Listener.Addr().String()}.resources(t))

	wantHash := sha256.New()
	if _, err := io.Copy(wantHash, &patternReader{rng: rand.NewChaCha8(seed), remaining: size}); err != nil {
		t.Fatal(err)
	}

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, DisableCompression: true}}
	resp, err := client.Get(e.URL() + "/photos/big")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != size {
		t.Fatalf("status %d content-length %d", resp.StatusCode, resp.ContentLength)
	}
	h := sha256.New()
	if _, err := io.CopyN(h, resp.Body, 16<<20); err != nil {
		t.Fatal(err)
	}
	// Body in flight: the upstream is blocked on backpressure, 48 MiB are still to come.
	runtime.GC()
	var during runtime.MemStats
	runtime.ReadMemStats(&during)
	delta := int64(during.HeapInuse) - int64(before.HeapInuse)
	if delta > 8<<20 {
		t.Errorf("HeapInuse grew by %d bytes while a %d byte body was in flight: the harness buffers", delta, size)
	}
	if _, err := io.Copy(h, resp.Body); err != nil {
		t.Fatal(err)
	}
	if string(h.Sum(nil)) != string(wantHash.Sum(nil)) {
		t.Fatal("body hash mismatch")
	}
}
