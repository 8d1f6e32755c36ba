//go:build !wasip1

package policy

import (
	"encoding/json"
	"strings"
	"time"
)

// Mock is a request for running a policy natively in tests (not built as wasm).
type Mock struct {
	Method   string
	URI      string
	Headers  map[string][]string // any case
	Bucket   string
	Key      string
	Subject  string
	ClientIP string
	Claims   map[string]any // as decoded from JSON
	Config   string         // the policy's config as JSON
	Now      time.Time
}

// Outcome is what a policy did with a Mock request.
type Outcome struct {
	Decision Decision
	Upstream map[string]string // request headers after SetHeader/RemoveHeader ("" = removed)
	Logs     []string
}

// Run evaluates h natively against m the way the gateway would.
func Run(m Mock, h Handler) Outcome {
	b := &mockBackend{m: m, out: Outcome{Upstream: map[string]string{}}}
	b.out.Decision = h(Request{b: b})
	return b.out
}

// Registered returns the handler passed to Handle, so an example's test can run its init-registered policy.
func Registered() Handler { return handler }

type mockBackend struct {
	m   Mock
	out Outcome
}

func (b *mockBackend) method() string      { return b.m.Method }
func (b *mockBackend) uri() string         { return b.m.URI }
func (b *mockBackend) bucket() string      { return b.m.Bucket }
func (b *mockBackend) key() string         { return b.m.Key }
func (b *mockBackend) subject() string     { return b.m.Subject }
func (b *mockBackend) clientIP() string    { return b.m.ClientIP }
func (b *mockBackend) config() []byte      { return []byte(b.m.Config) }
func (b *mockBackend) log(msg string)      { b.out.Logs = append(b.out.Logs, msg) }
func (b *mockBackend) nowUnixMilli() int64 { return b.m.Now.UnixMilli() }

func (b *mockBackend) headerValues(name string) []string {
	if v, ok := b.out.Upstream[name]; ok {
		if v == "" {
			return nil
		}
		return []string{v}
	}
	for k, v := range b.m.Headers {
		if strings.ToLower(k) == name {
			return v
		}
	}
	return nil
}

func (b *mockBackend) setHeader(name, value string) { b.out.Upstream[name] = value }
func (b *mockBackend) removeHeader(name string)     { b.out.Upstream[name] = "" }

func (b *mockBackend) lookup(path string) (any, bool) {
	var cur any = b.m.Claims
	for _, seg := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[seg]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func text(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	out, _ := json.Marshal(v)
	return string(out)
}

func (b *mockBackend) claim(path string) (string, bool) {
	v, ok := b.lookup(path)
	if !ok {
		return "", false
	}
	return text(v), true
}

func (b *mockBackend) claimValues(path string) ([]string, bool) {
	v, ok := b.lookup(path)
	if !ok {
		return nil, false
	}
	if arr, isArr := v.([]any); isArr {
		out := make([]string, len(arr))
		for i, e := range arr {
			out[i] = text(e)
		}
		return out, true
	}
	return []string{text(v)}, true
}
