package policy

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/tetratelabs/wazero"
)

// FuzzInstrumentFuel: the fuel pass never panics, and whenever it accepts a module that wazero
// accepts, the instrumented module is valid too. (The pass runs before wazero in production, so
// it is also the first gate against malformed input: wazero v1.12.0 spends ~10 s rejecting the
// 14-byte corpus entry c3e6be91bb68960e, which the pass refuses at once.)
func FuzzInstrumentFuel(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join(wasmDir, "*.wasm"))
	for _, s := range seeds {
		if b, err := os.ReadFile(s); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("\x00asm\x01\x00\x00\x00"))
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	f.Fuzz(func(t *testing.T, wasm []byte) {
		out, err := InstrumentFuel(wasm)
		if err != nil {
			return // refused: the policy fails to load with this error
		}
		orig, origErr := rt.CompileModule(ctx, wasm)
		if origErr != nil {
			return
		}
		orig.Close(ctx)
		m, err := rt.CompileModule(ctx, out)
		if err != nil {
			t.Fatalf("instrumented module invalid: %v", err)
		}
		m.Close(ctx)
	})
}
