package policy

import (
	"context"
	goruntime "runtime"
	"strings"
	"testing"
)

// nativeTenant is the tenant-isolation example's logic written directly in Go, the baseline the
// wasm policy is compared with: the claim must equal the key's first segment.
func nativeTenant(r *Request, claimPath string) Result {
	v, ok := claim(r.Claims, claimPath)
	tenant, _ := v.(string)
	if !ok || tenant == "" {
		return Result{Status: 403, Body: []byte("no tenant in the token")}
	}
	first, _, _ := strings.Cut(r.Key, "/")
	if first != tenant {
		return Result{Status: 403, Body: []byte("object belongs to another tenant")}
	}
	return Result{Allow: true}
}

func benchPolicy(b *testing.B, opts Options, wasm string) *Policy {
	b.Helper()
	h, err := NewHost(opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = h.Close(context.Background()) })
	set, _, err := h.Apply(context.Background(), []Spec{{Name: "tenant", WasmPath: wasm, Config: []byte(`{"claim":"tenant"}`), MaxInstances: 2}})
	if err != nil {
		b.Fatal(err)
	}
	p, _ := set.Get("tenant")
	return p
}

// BenchmarkTenant compares one tenant-isolation decision: the Go SDK example as wasm on a pooled
// instance with fuel metering (the production path) against the same logic in native Go.
func BenchmarkTenant(b *testing.B) {
	wasm := buildExample(b, "tenant")
	req := request()
	req.Claims = map[string]any{"tenant": "tenant-a"}
	b.Run("impl=native", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if res := nativeTenant(req, "tenant"); !res.Allow {
				b.Fatal("denied")
			}
		}
	})
	for _, c := range []struct {
		name      string
		unmetered bool
	}{{"impl=wasm-metered", false}, {"impl=wasm-unmetered", true}} {
		b.Run(c.name, func(b *testing.B) {
			p := benchPolicy(b, Options{unmetered: c.unmetered}, wasm)
			b.ReportAllocs()
			for b.Loop() {
				res, err := p.Evaluate(context.Background(), req)
				if err != nil || !res.Allow {
					b.Fatal(res, err)
				}
			}
		})
	}
}

// BenchmarkInstantiate measures creating one instance of the Go tenant policy (off the hot path:
// the pool pre-warms and only replaces discarded instances) and reports the host memory one
// pooled instance holds.
func BenchmarkInstantiate(b *testing.B) {
	p := benchPolicy(b, Options{}, buildExample(b, "tenant"))
	ctx := context.Background()
	var before, after goruntime.MemStats
	instances := make([]*instance, 0, 64)
	goruntime.GC()
	goruntime.ReadMemStats(&before)
	for b.Loop() {
		in, err := p.newInstance(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if len(instances) < cap(instances) {
			instances = append(instances, in)
		} else {
			_ = in.mod.Close(ctx)
		}
	}
	b.StopTimer()
	goruntime.GC()
	goruntime.ReadMemStats(&after)
	if n := len(instances); n > 0 {
		b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/float64(n)/(1<<20), "MiB-heap/instance")
		b.ReportMetric(float64(instances[0].mod.Memory().Size())/(1<<20), "MiB-linear/instance")
	}
	for _, in := range instances {
		_ = in.mod.Close(ctx)
	}
}
