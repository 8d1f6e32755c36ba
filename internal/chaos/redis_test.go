package chaos

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/yatagarasu/yatagarasu/internal/devstack"
)

// TestRedisKilledAndRestarted runs the cache with only the Redis layer and the rate limiter on
// the Redis backend, then kills Redis: every request still serves the exact object (the cache
// misses to S3, the limiter falls back to its local buckets, nothing answers 429 or 5xx), and
// after Redis comes back (empty) objects are cached and served from it again.
func TestRedisKilledAndRestarted(t *testing.T) {
	redisURL := "redis://" + redisSrv.Addr()
	st := startStack(t, devstack.Options{
		Buckets: []devstack.Bucket{{Name: "r", S3Bucket: s3Bucket}},
		Extra: fmt.Sprintf("cache:\n  enabled: true\n  cache_layers: [redis]\n  redis:\n    enabled: true\n    redis_url: %q\n    redis_key_prefix: \"chaos:%s:\"\n",
			redisURL, t.Name()),
		ServerExtra: fmt.Sprintf("rate_limit:\n  backend: redis\n  redis:\n    url: %q\n  global:\n    requests_per_second: 100000\n", redisURL),
	})
	ctx := t.Context()
	client := &http.Client{}
	keys := append(append([]string{}, smallKeys[:5]...), bigKeys[:3]...)
	served := func(k string) result {
		r := fetch(ctx, client, st.GatewayURL, "/r/"+k, k)
		if r.kind != okBody {
			t.Fatalf("%s: %v (%d) %s", k, r.kind, r.status, r.detail)
		}
		return r
	}
	for _, k := range keys {
		served(k)
	}
	eventually(t, "a Redis cache hit", func() bool { return served(keys[0]).cache == "HIT" })

	redisSrv.Kill()
	l := startLoad(ctx, st.GatewayURL, "/r/", keys, 4, 50)
	l.wg.Wait()
	tl := l.finish()
	t.Logf("with Redis down: %s", tl)
	tl.requireNoBad(t)
	if n := tl.get(okBody); n != 200 {
		t.Fatalf("with Redis down %d of 200 requests served the object: %s", n, tl)
	}

	if err := redisSrv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Redis hits again after the restart", func() bool { return served(keys[1]).cache == "HIT" })
}
