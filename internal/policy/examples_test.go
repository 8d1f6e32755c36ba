package policy

import (
	"context"
	"testing"
	"time"

	"github.com/yatagarasu/yatagarasu/internal/testenv"
)

// buildExample compiles one SDK example to wasm for this test.
func buildExample(tb testing.TB, name string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	path, err := testenv.BuildPolicy(ctx, "./wasm-policies/examples/"+name, tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	return path
}

// TestGoExamplesThroughTheHost runs the SDK examples as wasm on the real host: the same
// decisions their native tests check, now through the ABI.
func TestGoExamplesThroughTheHost(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Go wasm modules")
	}
	h := newHost(t, nil)
	set, _, err := h.Apply(context.Background(), []Spec{
		{Name: "tenant", WasmPath: buildExample(t, "tenant"), Config: []byte(`{"claim":"tenant"}`)},
		{Name: "tier", WasmPath: buildExample(t, "tier"), Config: []byte(`{"claim":"tier","default":"free","tiers":{"gold":{"x-tier":"gold"},"free":{"x-tier":"free"}}}`)},
		{Name: "maintenance", WasmPath: buildExample(t, "maintenance"), Config: []byte(`{"windows":[{"start":"02:00","end":"03:00"}],"retry_after":60}`)},
		{Name: "hotlink", WasmPath: buildExample(t, "hotlink"), Config: []byte(`{"allowed_hosts":["example.com"]}`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	eval := func(name string, r *Request) Result {
		t.Helper()
		p, _ := set.Get(name)
		res, err := p.Evaluate(context.Background(), r)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return res
	}
	r := request() // tenant claim "tenant-a", key "tenant-a/file.txt"
	if res := eval("tenant", r); !res.Allow {
		t.Errorf("tenant: own tenant denied: %d %s", res.Status, res.Body)
	}
	r.Key = "tenant-b/file.txt"
	if res := eval("tenant", r); res.Allow || res.Status != 403 || string(res.Body) != "object belongs to another tenant" {
		t.Errorf("tenant: other tenant: %+v", res)
	}

	r = request()
	r.Claims["tier"] = "gold"
	if res := eval("tier", r); !res.Allow || len(res.SetUpstream) != 1 || res.SetUpstream[0] != [2]string{"x-tier", "gold"} {
		t.Errorf("tier: %+v", res)
	}

	r = request()
	r.Now = time.Date(2026, 11, 26, 2, 30, 0, 0, time.UTC)
	res := eval("maintenance", r)
	if res.Allow || res.Status != 503 || len(res.Headers) != 1 || res.Headers[0] != [2]string{"retry-after", "60"} {
		t.Errorf("maintenance in window: %+v", res)
	}
	r.Now = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	if res := eval("maintenance", r); !res.Allow {
		t.Errorf("maintenance outside window: %+v", res)
	}

	r = request()
	r.Headers = append(r.Headers, [2]string{"referer", "https://evil.test/x"})
	if res := eval("hotlink", r); res.Allow || res.Status != 403 {
		t.Errorf("hotlink foreign: %+v", res)
	}
	r.Headers[len(r.Headers)-1][1] = "https://example.com/page"
	if res := eval("hotlink", r); !res.Allow {
		t.Errorf("hotlink own site: %+v", res)
	}
}
