package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/yatagarasu/yatagarasu/internal/devstack"
	"github.com/yatagarasu/yatagarasu/internal/testenv"
)

// policyModules builds the modules the policy tests use once per test binary: the hotlink SDK
// example (Go, wasip1) and WAT fixtures from internal/policy/testdata.
var policyModules = sync.OnceValues(func() (map[string]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "yatagarasu-e2e-policies-")
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	if out["hotlink"], err = testenv.BuildPolicy(ctx, "./wasm-policies/examples/hotlink", dir); err != nil {
		return nil, err
	}
	for _, name := range []string{"range", "spin", "allow", "deny"} {
		if out[name], err = testenv.CompileWAT(ctx, filepath.Join("..", "policy", "testdata", name+".wat"), dir); err != nil {
			return nil, err
		}
	}
	return out, nil
})

func modules(t *testing.T) map[string]string {
	t.Helper()
	m, err := policyModules()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func metricsText(t *testing.T, st *devstack.Stack) string {
	t.Helper()
	res, err := http.Get(st.AdminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

// TestPoliciesThroughTheGateway: a Go policy allows and denies, a policy's header reaches the
// origin, and a spinning policy is stopped within its budget (503) while other requests flow.
func TestPoliciesThroughTheGateway(t *testing.T) {
	mods := modules(t)
	extra := fmt.Sprintf(`policies:
  - name: hotlink
    wasm: %s
    config: {allowed_hosts: [example.com], allow_empty: true}
  - name: range
    wasm: %s
  - name: spin
    wasm: %s
    budget: 2000000
`, mods["hotlink"], mods["range"], mods["spin"])
	st, err := devstack.Start(t.Context(), devstack.Options{
		S3: s3srv, Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler), Extra: extra,
		Buckets: []devstack.Bucket{
			{Name: "hot", S3Bucket: "products", Extra: "policies: [hotlink]"},
			{Name: "ranged", S3Bucket: "products", Extra: "policies: [hotlink, range]"},
			{Name: "spin", S3Bucket: "products", Extra: "policies: [spin]"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	t.Run("allowed", func(t *testing.T) {
		res, body := do(t, http.MethodGet, st.GatewayURL, "/hot/a.txt", "Referer", "https://example.com/page")
		if res.StatusCode != http.StatusOK || string(body) != string(objects["a.txt"]) {
			t.Fatalf("status %d, %d bytes", res.StatusCode, len(body))
		}
	})
	t.Run("denied", func(t *testing.T) {
		res, body := do(t, http.MethodGet, st.GatewayURL, "/hot/a.txt", "Referer", "https://evil.test/", "X-Request-Id", "req-1")
		if res.StatusCode != http.StatusForbidden {
			t.Fatalf("status %d: %s", res.StatusCode, body)
		}
		var eb struct {
			Message   string `json:"message"`
			RequestID string `json:"request_id"`
			Status    int    `json:"status"`
		}
		if err := json.Unmarshal(body, &eb); err != nil {
			t.Fatalf("body %s: %v", body, err)
		}
		if eb.Message != "hotlinking is not allowed from this site" || eb.Status != 403 || eb.RequestID != "req-1" || res.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("body %s, content-type %q", body, res.Header.Get("Content-Type"))
		}
	})
	t.Run("header added upstream", func(t *testing.T) {
		res, body := do(t, http.MethodGet, st.GatewayURL, "/ranged/a.txt")
		if res.StatusCode != http.StatusPartialContent || string(body) != string(objects["a.txt"][:4]) {
			t.Fatalf("status %d, %d bytes: the range header set by the policy did not reach the origin", res.StatusCode, len(body))
		}
	})
	t.Run("spinning policy stopped while others flow", func(t *testing.T) {
		var wg sync.WaitGroup
		var spinOK atomic.Int32
		for i := 0; i < 2; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := 0; j < 5; j++ {
					res, body := do(t, http.MethodGet, st.GatewayURL, "/spin/a.txt")
					if res.StatusCode != http.StatusServiceUnavailable || strings.Contains(string(body), "fuel") {
						t.Errorf("spin: status %d body %s (want a generic 503)", res.StatusCode, body)
						return
					}
					spinOK.Add(1)
				}
			}()
		}
		for i := 0; i < 20; i++ {
			if res, _ := do(t, http.MethodGet, st.GatewayURL, "/hot/a.txt"); res.StatusCode != http.StatusOK {
				t.Fatalf("request next to the spinning policy: %d", res.StatusCode)
			}
		}
		wg.Wait()
		if spinOK.Load() != 10 {
			t.Fatalf("%d of 10 spin requests answered 503", spinOK.Load())
		}
		if m := metricsText(t, st); !strings.Contains(m, `yatagarasu_policy_failures_total{kind="budget",policy="spin"} 10`) {
			t.Errorf("budget metric missing:\n%s", grepLines(m, "yatagarasu_policy_failures_total"))
		}
	})
}

// TestPolicyHotSwapUnderLoad replaces a policy's .wasm while requests run: every request gets
// either the old or the new decision, none fails, and a broken module keeps the last good one.
func TestPolicyHotSwapUnderLoad(t *testing.T) {
	mods := modules(t)
	dir := t.TempDir()
	wasm := filepath.Join(dir, "swap.wasm")
	copyTo(t, mods["allow"], wasm)
	st, err := devstack.Start(t.Context(), devstack.Options{
		S3: s3srv, Dir: dir, Logger: slog.New(slog.DiscardHandler),
		Extra:   "policies:\n  - name: swap\n    wasm: swap.wasm\n",
		Buckets: []devstack.Bucket{{Name: "swap", S3Bucket: "products", Extra: "policies: [swap]"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if res, _ := do(t, http.MethodGet, st.GatewayURL, "/swap/a.txt"); res.StatusCode != http.StatusOK {
		t.Fatalf("before the swap: %d", res.StatusCode)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var teapots, oks, total atomic.Int64
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				res, body := do(t, http.MethodGet, st.GatewayURL, "/swap/a.txt")
				total.Add(1)
				switch res.StatusCode {
				case http.StatusOK:
					oks.Add(1)
				case http.StatusTeapot:
					teapots.Add(1)
				default:
					t.Errorf("request failed during the swap: %d %s", res.StatusCode, body)
					return
				}
			}
		}()
	}
	eventually(t, "some requests before the swap", func() bool { return oks.Load() > 20 })
	replace(t, mods["deny"], wasm)
	eventually(t, "the new module to answer", func() bool { return teapots.Load() > 20 })
	before := teapots.Load()
	// A module that does not compile is reported and the last good one keeps serving.
	if err := os.WriteFile(wasm+".tmp", []byte("\x00asm\x01\x00\x00\x00garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(wasm+".tmp", wasm); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the failed load to be reported", func() bool {
		return strings.Contains(metricsText(t, st), `yatagarasu_policy_load_failures_total{policy="swap"} 1`)
	})
	eventually(t, "more requests after the failed load", func() bool { return teapots.Load() > before+20 })
	stop.Store(true)
	wg.Wait()
	t.Logf("%d requests: %d allowed by v1, %d denied by v2", total.Load(), oks.Load(), teapots.Load())
}

func copyTo(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// replace swaps a file in with a rename, the way deploy tools do.
func replace(t *testing.T, from, to string) {
	t.Helper()
	copyTo(t, from, to+".tmp")
	if err := os.Rename(to+".tmp", to); err != nil {
		t.Fatal(err)
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
