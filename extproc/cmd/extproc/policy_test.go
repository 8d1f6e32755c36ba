package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/yatagarasu/yatagarasu/internal/testenv"
)

func TestPolicyTestCommand(t *testing.T) {
	dir := t.TempDir()
	wat := func(name string) string {
		p, err := testenv.CompileWAT(context.Background(), filepath.Join("..", "..", "..", "internal", "policy", "testdata", name+".wat"), dir)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	req := filepath.Join(dir, "req.json")
	os.WriteFile(req, []byte(`{"method":"GET","uri":"/b/k","bucket":"b","key":"k","claims":{"tenant":"t"}}`), 0o600)

	var out bytes.Buffer
	if err := policyCommand([]string{"test", "--wasm", wat("deny"), "--request", req}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"decision: DENY 418", "header:   content-type: text/plain", "body:     no tea here", "budget:   1 of 5000000 fuel"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := policyCommand([]string{"test", "--wasm", wat("echo"), "--config", `{"a":1}`, "--request", req}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "decision: ALLOW") || !strings.Contains(out.String(), "upstream: x-claim: t") {
		t.Errorf("allow output:\n%s", out.String())
	}
	out.Reset()
	if err := policyCommand([]string{"test", "--wasm", wat("spin"), "--budget", "1000", "--request", req}, &out); err == nil || !strings.Contains(out.String(), "fuel budget") {
		t.Errorf("spin: err=%v\n%s", err, out.String())
	}
	err := policyCommand([]string{"test", "--wasm", wat("noexport"), "--request", req}, &out)
	if err == nil || !strings.Contains(err.Error(), "does not export handle_request") {
		t.Errorf("missing ABI: err=%v", err)
	}
}
