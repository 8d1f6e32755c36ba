package chaos

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/yatagarasu/yatagarasu/internal/devstack"
)

// TestS3KilledAndRestarted kills the S3 server under load and starts it again on the same port:
// while it is down every request gets a clean 5xx JSON error (no retry can succeed against a
// dead server), no response is ever a wrong or silently short body, and once it is back every
// request serves the exact object again.
func TestS3KilledAndRestarted(t *testing.T) {
	st := startStack(t, devstack.Options{Buckets: []devstack.Bucket{{Name: "b", S3Bucket: s3Bucket, Timeout: 3}}})
	ctx := t.Context()
	keys := append(append([]string{}, smallKeys...), bigKeys[:10]...)
	l := startLoad(ctx, st.GatewayURL, "/b/", keys, 4, 2000)
	l.waitFor(t, 20)
	s3srv.Kill()
	// Sequential probes while it is down: each must be a clean error.
	client := &http.Client{}
	for _, k := range smallKeys[:5] {
		if r := fetch(ctx, client, st.GatewayURL, "/b/"+k, k); r.kind != cleanError {
			t.Errorf("with S3 down %s: %v (%d) %s", k, r.kind, r.status, r.detail)
		}
	}
	if err := s3srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "requests to succeed after the restart", func() bool {
		return fetch(ctx, client, st.GatewayURL, "/b/"+smallKeys[0], smallKeys[0]).kind == okBody
	})
	tl := l.finish()
	t.Logf("under load across the outage: %s", tl)
	tl.requireNoBad(t)
	// Recovered: every object, byte for byte.
	for _, k := range keys {
		if r := fetch(ctx, client, st.GatewayURL, "/b/"+k, k); r.kind != okBody {
			t.Fatalf("after recovery %s: %v (%d) %s", k, r.kind, r.status, r.detail)
		}
	}
}

// TestS3Slowed puts a proxy that holds every new connection for 2 s in front of S3: a bucket
// whose timeout is shorter answers a clean 504 JSON, a bucket with a longer timeout serves the
// exact object, and the short one recovers when the delay is lifted.
func TestS3Slowed(t *testing.T) {
	u, err := url.Parse(s3srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	px, err := NewDelayProxy(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	px.SetDelay(2 * time.Second)
	ep := "http://" + px.Addr()
	st := startStack(t, devstack.Options{Buckets: []devstack.Bucket{
		{Name: "hasty", S3Bucket: s3Bucket, Endpoint: ep, Timeout: 1},
		{Name: "patient", S3Bucket: s3Bucket, Endpoint: ep, Timeout: 10},
	}})
	ctx := t.Context()
	client := &http.Client{}
	k := bigKeys[0]
	if r := fetch(ctx, client, st.GatewayURL, "/hasty/"+k, k); r.kind != cleanError || r.status != http.StatusGatewayTimeout {
		t.Fatalf("hasty bucket behind a 2 s delay: %v (%d) %s, want clean 504", r.kind, r.status, r.detail)
	}
	if r := fetch(ctx, client, st.GatewayURL, "/patient/"+k, k); r.kind != okBody {
		t.Fatalf("patient bucket behind a 2 s delay: %v (%d) %s", r.kind, r.status, r.detail)
	}
	px.SetDelay(0)
	eventually(t, "the hasty bucket to serve once S3 is fast again", func() bool {
		return fetch(ctx, client, st.GatewayURL, "/hasty/"+k, k).kind == okBody
	})
}

// TestS3HalfFailing puts a proxy in front of S3 that answers 500 to every second request and
// cuts every fifth forwarded body in half, with the memory cache on. Without retries (being
// added separately) many requests fail; what must hold regardless: each response is the exact
// object, a clean 5xx JSON error, or a visibly broken transfer — never a short or wrong body
// that looks complete — and no cut body is ever cached: once the faults stop, every object is
// served whole. The gateway itself stays up, so Envoy's plain-text 503 ("reset before headers")
// must never appear: a body cut before the origin started its answer (every small object here)
// is a clean 502 JSON, and one cut later is a broken transfer.
func TestS3HalfFailing(t *testing.T) {
	px, err := NewFlakyProxy(s3srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	st := startStack(t, devstack.Options{
		Buckets: []devstack.Bucket{{Name: "flaky", S3Bucket: s3Bucket, Endpoint: px.URL(), Timeout: 5}},
		Extra:   "cache:\n  enabled: true\n  cache_layers: [memory]\n",
	})
	ctx := t.Context()
	client := &http.Client{}
	// Every body cut, nothing cached yet: a small object fails before the origin answers, so it
	// is a clean 502 (however often Envoy's connection pool retries it); a big one fails after.
	px.SetFaults(0, 1)
	for _, k := range smallKeys[:3] {
		if r := fetch(ctx, client, st.GatewayURL, "/flaky/"+k, k); r.kind != cleanError || r.status != http.StatusBadGateway {
			t.Fatalf("small object %s with its body cut: %v (%d) %s, want clean 502", k, r.kind, r.status, r.detail)
		}
	}
	if r := fetch(ctx, client, st.GatewayURL, "/flaky/"+bigKeys[0], bigKeys[0]); r.kind != broken {
		t.Fatalf("big object %s with its body cut: %v (%d) %s, want a broken transfer", bigKeys[0], r.kind, r.status, r.detail)
	}
	px.SetFaults(2, 5)
	keys := append(append([]string{}, smallKeys...), bigKeys[:30]...)
	l := startLoad(ctx, st.GatewayURL, "/flaky/", keys, 4, 60)
	l.wg.Wait()
	tl := l.finish()
	t.Logf("with faults: %s", tl)
	tl.requireNoBad(t)
	if tl.get(okBody) == 0 {
		t.Fatal("no request succeeded through the flaky proxy")
	}
	if n := tl.get(gatewayError); n > 0 {
		t.Fatalf("%d plain-text gateway 5xx: the origin dropped a connection before its headers instead of answering 502 JSON", n)
	}
	px.SetFaults(0, 0)
	// A circuit breaker in front of S3 may be open after so many failures: wait it out.
	eventually(t, "the bucket to serve once the faults stop", func() bool {
		return fetch(ctx, client, st.GatewayURL, "/flaky/"+keys[0], keys[0]).kind == okBody
	})
	for _, k := range keys {
		if r := fetch(ctx, client, st.GatewayURL, "/flaky/"+k, k); r.kind != okBody {
			t.Fatalf("after the faults %s: %v (%d) %s", k, r.kind, r.status, r.detail)
		}
	}
}
