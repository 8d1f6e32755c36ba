package chaos

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/yatagarasu/yatagarasu/internal/devstack"
)

// TestKill9DuringCacheWritesThenRestart runs extproc as its own process with the memory and
// disk cache, SIGKILLs it while misses are being written to disk, and starts it again on the
// same cache directory: start-up must drop whatever the crash left half-written, and every
// object, read back twice (the second time from the cache), is byte for byte the original.
func TestKill9DuringCacheWritesThenRestart(t *testing.T) {
	cacheDir := t.TempDir()
	st := startStack(t, devstack.Options{
		NoExtProc: true,
		Buckets:   []devstack.Bucket{{Name: "k", S3Bucket: s3Bucket}},
		Extra: fmt.Sprintf("cache:\n  enabled: true\n  cache_layers: [memory, disk]\n  inline_max_bytes: 1024\n  disk:\n    enabled: true\n    cache_dir: %q\n",
			cacheDir),
	})
	ctx := t.Context()
	p := startExtProc(t, st)
	keys := append(append([]string{}, bigKeys...), smallKeys...)
	l := startLoad(ctx, st.GatewayURL, "/k/", keys, 8, 200)
	l.waitFor(t, 40) // index.json is written every second: some entries are indexed, many in flight
	time.Sleep(1500 * time.Millisecond)
	p.signal(t, syscall.SIGKILL)
	_ = p.wait(t)
	tl := l.finish()
	t.Logf("load across the kill: %s", tl)
	tl.requireNoBad(t)

	startExtProc(t, st)
	client := &http.Client{}
	// The gateway's ext_proc connection may need a moment to reconnect to the new process.
	eventually(t, "a response from the restarted extproc", func() bool {
		return fetch(ctx, client, st.GatewayURL, "/k/"+smallKeys[0], smallKeys[0]).kind == okBody
	})
	var hits int
	for round := range 2 {
		for _, k := range keys {
			r := fetch(ctx, client, st.GatewayURL, "/k/"+k, k)
			if r.kind != okBody {
				t.Fatalf("after restart (round %d) %s: %v (%d) %s", round, k, r.kind, r.status, r.detail)
			}
			if r.cache == "HIT" {
				hits++
			}
		}
	}
	if hits < len(keys) {
		t.Fatalf("only %d cache hits over two rounds of %d objects: the cache did not refill after the restart", hits, len(keys))
	}
}

// TestSIGTERMDuring500Downloads starts 500 downloads of 1 MiB objects through a separate extproc
// process, sends it SIGTERM while all of them are in flight, and requires every one to complete
// byte for byte, /ready to say "draining" meanwhile, and the process to exit cleanly.
func TestSIGTERMDuring500Downloads(t *testing.T) {
	st := startStack(t, devstack.Options{NoExtProc: true, Buckets: []devstack.Bucket{{Name: "t", S3Bucket: s3Bucket}}})
	p := startExtProc(t, st)
	const n = 500
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var started, wg sync.WaitGroup
	proceed := make(chan struct{}) // readers stall after their first 64 KiB until the drain is visible
	started.Add(n)
	wg.Add(n)
	errs := make(chan string, n)
	for i := range n {
		k := bigKeys[i%len(bigKeys)]
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, st.GatewayURL+"/t/"+k, nil)
			res, err := client.Do(req)
			if err != nil {
				started.Done()
				errs <- k + ": " + err.Error()
				return
			}
			defer res.Body.Close()
			h := sha256.New()
			_, err = io.CopyN(h, res.Body, 64<<10)
			started.Done()
			<-proceed
			if err == nil {
				_, err = io.Copy(h, res.Body)
			}
			want := sha256.Sum256(objects[k])
			switch {
			case err != nil:
				errs <- fmt.Sprintf("%s: truncated (status %d): %v", k, res.StatusCode, err)
			case res.StatusCode != http.StatusOK || !bytes.Equal(h.Sum(nil), want[:]):
				errs <- fmt.Sprintf("%s: status %d, wrong body", k, res.StatusCode)
			}
		}()
	}
	started.Wait()
	p.signal(t, syscall.SIGTERM)
	eventually(t, "/ready to report draining", func() bool {
		res, err := http.Get(st.AdminURL + "/ready")
		if err != nil {
			return false
		}
		body, _ := io.ReadAll(res.Body)
		_ = res.Body.Close()
		return res.StatusCode == http.StatusServiceUnavailable && bytes.Contains(body, []byte("draining"))
	})
	close(proceed)
	wg.Wait()
	close(errs)
	var failed []string
	for e := range errs {
		failed = append(failed, e)
	}
	if len(failed) > 0 {
		t.Fatalf("%d of %d downloads failed during the drain, first: %q", len(failed), n, failed[:min(5, len(failed))])
	}
	if err := p.wait(t); err != nil {
		t.Fatalf("extproc exit after SIGTERM: %v", err)
	}
	// New work after the exit is refused by the gateway (ext_proc unreachable → status_on_error
	// 503, Envoy's own empty local reply), never served.
	if r := fetch(ctx, &http.Client{}, st.GatewayURL, "/t/"+smallKeys[0], smallKeys[0]); r.status < 500 || r.kind == okBody {
		t.Fatalf("after exit: %v (%d) %s", r.kind, r.status, r.detail)
	}
}
