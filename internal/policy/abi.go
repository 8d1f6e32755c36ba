package policy

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// Import module names of policy ABI v1 (wasm-policies/ABI.md).
const (
	ModuleHTTPHandler = "http_handler" // the http-wasm handler ABI subset
	ModuleYatagarasu  = "yatagarasu"   // gateway facts http-wasm lacks
	moduleWASI        = "wasi_snapshot_preview1"
)

// http-wasm header kinds.
const (
	kindRequest  = 0
	kindResponse = 1
)

// Limits on what a guest may hand back, so a policy cannot make the host allocate without bound.
const (
	maxHeaders     = 64
	maxHeaderBytes = 8 << 10
	maxBodyBytes   = 64 << 10
	maxLogBytes    = 1 << 10
)

// abiError is a guest's misuse of the ABI; host functions panic with it, which traps the call.
type abiError struct{ msg string }

func (e *abiError) Error() string { return "policy ABI misuse: " + e.msg }

func abiFail(format string, args ...any) { panic(&abiError{fmt.Sprintf(format, args...)}) }

type stateKey struct{}

// callState is one evaluation's request and the decision the guest builds through host calls.
type callState struct {
	req      *Request
	config   string
	log      *slog.Logger
	policy   string
	status   uint32
	respHdrs [][2]string
	body     []byte
	upSet    [][2]string // request headers set or added by the guest, in order
	upRemove []string
}

func stateFrom(ctx context.Context) *callState {
	st, _ := ctx.Value(stateKey{}).(*callState)
	if st == nil {
		abiFail("host function called outside handle_request")
	}
	return st
}

type hostFunc struct {
	name    string
	fn      api.GoModuleFunc
	params  []api.ValueType
	results []api.ValueType
}

var (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

// hostFuncs lists every import a policy may use, per module; anything else is refused at load.
func hostFuncs() map[string][]hostFunc {
	return map[string][]hostFunc{
		ModuleHTTPHandler: {
			{"log", hLog, []api.ValueType{i32, i32, i32}, nil},
			{"log_enabled", hLogEnabled, []api.ValueType{i32}, []api.ValueType{i32}},
			{"get_config", strGetter(func(st *callState) string { return st.config }), []api.ValueType{i32, i32}, []api.ValueType{i32}},
			{"enable_features", hEnableFeatures, []api.ValueType{i32}, []api.ValueType{i32}},
			{"get_method", strGetter(func(st *callState) string { return st.req.Method }), []api.ValueType{i32, i32}, []api.ValueType{i32}},
			{"get_uri", strGetter(func(st *callState) string { return st.req.URI }), []api.ValueType{i32, i32}, []api.ValueType{i32}},
			{"get_source_addr", strGetter(func(st *callState) string { return st.req.ClientIP }), []api.ValueType{i32, i32}, []api.ValueType{i32}},
			{"get_header_names", hGetHeaderNames, []api.ValueType{i32, i32, i32}, []api.ValueType{i64}},
			{"get_header_values", hGetHeaderValues, []api.ValueType{i32, i32, i32, i32, i32}, []api.ValueType{i64}},
			{"set_header_value", hSetHeader(false), []api.ValueType{i32, i32, i32, i32, i32}, nil},
			{"add_header_value", hSetHeader(true), []api.ValueType{i32, i32, i32, i32, i32}, nil},
			{"remove_header", hRemoveHeader, []api.ValueType{i32, i32, i32}, nil},
			{"read_body", hReadBody, []api.ValueType{i32, i32, i32}, []api.ValueType{i64}},
			{"write_body", hWriteBody, []api.ValueType{i32, i32, i32}, nil},
			{"get_status_code", hGetStatus, nil, []api.ValueType{i32}},
			{"set_status_code", hSetStatus, []api.ValueType{i32}, nil},
		},
		ModuleYatagarasu: {
			{"get_bucket", strGetter(func(st *callState) string { return st.req.Bucket }), []api.ValueType{i32, i32}, []api.ValueType{i32}},
			{"get_object_key", strGetter(func(st *callState) string { return st.req.Key }), []api.ValueType{i32, i32}, []api.ValueType{i32}},
			{"get_subject", strGetter(func(st *callState) string { return st.req.Subject }), []api.ValueType{i32, i32}, []api.ValueType{i32}},
			{"get_client_ip", strGetter(func(st *callState) string { return st.req.ClientIP }), []api.ValueType{i32, i32}, []api.ValueType{i32}},
			{"get_claim", hGetClaim, []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i64}},
			{"get_claim_values", hGetClaimValues, []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i64}},
			{"now_unix_ms", hNow, nil, []api.ValueType{i64}},
		},
	}
}

// wasiAllowed lists the WASI imports a policy may have: what the standard Go runtime imports to
// start. The functions are wazero's sandboxed ones (no files, env, args or sockets; a fake clock
// and a deterministic random source), so even these grant nothing outside the instance.
var wasiAllowed = map[string]bool{
	"sched_yield": true, "proc_exit": true, "args_get": true, "args_sizes_get": true,
	"environ_get": true, "environ_sizes_get": true, "clock_time_get": true, "clock_res_get": true,
	"random_get": true, "poll_oneoff": true, "fd_write": true, "fd_close": true, "fd_fdstat_get": true,
	"fd_fdstat_set_flags": true, "fd_prestat_get": true, "fd_prestat_dir_name": true, "fd_read": true,
	"fd_seek": true, "fd_filestat_get": true, "fd_sync": true,
}

// instantiateHostModules adds the ABI's host modules to rt.
func instantiateHostModules(ctx context.Context, rt wazero.Runtime) error {
	for mod, fns := range hostFuncs() {
		b := rt.NewHostModuleBuilder(mod)
		for _, f := range fns {
			b.NewFunctionBuilder().WithGoModuleFunction(f.fn, f.params, f.results).Export(f.name)
		}
		if _, err := b.Instantiate(ctx); err != nil {
			return fmt.Errorf("instantiate host module %s: %w", mod, err)
		}
	}
	return nil
}

// checkImports refuses a module that imports anything the host does not offer, naming the import.
func checkImports(m wazero.CompiledModule) error {
	offered := map[string]bool{}
	for mod, fns := range hostFuncs() {
		for _, f := range fns {
			offered[mod+"."+f.name] = true
		}
	}
	for _, def := range m.ImportedFunctions() {
		mod, name, _ := def.Import()
		switch {
		case mod == moduleWASI && wasiAllowed[name]:
		case mod == moduleWASI:
			return fmt.Errorf("imports %s.%s: only the WASI functions the Go runtime needs to start are available to policies (no files, sockets or environment)", mod, name)
		case !offered[mod+"."+name]:
			return fmt.Errorf("imports %s.%s, which the policy host does not provide (see wasm-policies/ABI.md)", mod, name)
		}
	}
	for _, def := range m.ImportedMemories() {
		mod, name, _ := def.Import()
		return fmt.Errorf("imports memory %s.%s: a policy must define and export its own memory", mod, name)
	}
	return nil
}

// checkExports makes sure the guest implements the ABI before it is ever called.
func checkExports(m wazero.CompiledModule) error {
	fn, ok := m.ExportedFunctions()["handle_request"]
	if !ok {
		return fmt.Errorf("does not export handle_request: it is not a policy ABI v1 module (build Go policies with -buildmode=c-shared and the wasm-policies SDK)")
	}
	if len(fn.ParamTypes()) != 0 || len(fn.ResultTypes()) != 1 || fn.ResultTypes()[0] != api.ValueTypeI64 {
		return fmt.Errorf("exports handle_request with the wrong signature: want () -> i64, got %v -> %v",
			typeNames(fn.ParamTypes()), typeNames(fn.ResultTypes()))
	}
	if _, ok := m.ExportedMemories()["memory"]; !ok {
		return fmt.Errorf("does not export its memory as \"memory\"")
	}
	return nil
}

func typeNames(ts []api.ValueType) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = api.ValueTypeName(t)
	}
	return out
}

// read returns a view of guest memory, trapping on an out-of-range pointer.
func read(mod api.Module, ptr, n uint32) []byte {
	b, ok := mod.Memory().Read(ptr, n)
	if !ok {
		abiFail("read of %d bytes at %d is outside memory", n, ptr)
	}
	return b
}

// writeIfFits copies v into the guest's buffer when it fits (http-wasm buf/buf_limit convention).
func writeIfFits(mod api.Module, buf, limit uint32, v []byte) {
	if uint32(len(v)) <= limit && len(v) > 0 {
		if !mod.Memory().Write(buf, v) {
			abiFail("write of %d bytes at %d is outside memory", len(v), buf)
		}
	}
}

// strGetter builds a (buf, buf_limit) -> len host function returning one value of the request.
func strGetter(get func(*callState) string) api.GoModuleFunc {
	return func(ctx context.Context, mod api.Module, stack []uint64) {
		v := get(stateFrom(ctx))
		writeStringIfFits(mod, uint32(stack[0]), uint32(stack[1]), v)
		stack[0] = uint64(len(v))
	}
}

// writeStringIfFits is writeIfFits without converting v to bytes.
func writeStringIfFits(mod api.Module, buf, limit uint32, v string) {
	if uint32(len(v)) <= limit && len(v) > 0 {
		if !mod.Memory().WriteString(buf, v) {
			abiFail("write of %d bytes at %d is outside memory", len(v), buf)
		}
	}
}

func hLog(ctx context.Context, mod api.Module, stack []uint64) {
	st := stateFrom(ctx)
	msg := read(mod, uint32(stack[1]), uint32(stack[2]))
	if len(msg) > maxLogBytes {
		msg = msg[:maxLogBytes]
	}
	level := slog.LevelInfo
	switch int32(stack[0]) {
	case -1:
		level = slog.LevelDebug
	case 1:
		level = slog.LevelWarn
	case 2:
		level = slog.LevelError
	}
	st.log.Log(ctx, level, "policy log", "policy", st.policy, "message", string(msg))
}

func hLogEnabled(ctx context.Context, _ api.Module, stack []uint64) {
	st := stateFrom(ctx)
	level := slog.LevelInfo
	if int32(stack[0]) < 0 {
		level = slog.LevelDebug
	}
	stack[0] = 0
	if st.log.Enabled(ctx, level) {
		stack[0] = 1
	}
}

// hEnableFeatures grants no http-wasm features: bodies are never buffered (ext_proc sees headers only).
func hEnableFeatures(_ context.Context, _ api.Module, stack []uint64) { stack[0] = 0 }

// requestValues returns the current values of request header name, after the guest's own changes.
func (st *callState) requestValues(name string) []string {
	var vals []string
	for _, h := range st.upSet {
		if h[0] == name {
			vals = append(vals, h[1])
		}
	}
	if vals != nil {
		return vals
	}
	for _, r := range st.upRemove {
		if r == name {
			return nil
		}
	}
	for _, h := range st.req.Headers {
		if h[0] == name {
			vals = append(vals, h[1])
		}
	}
	return vals
}

// visibleHeader hides pseudo-headers and the gateway's internal headers from guests.
func visibleHeader(name string) bool {
	return !strings.HasPrefix(name, ":") && !strings.HasPrefix(name, "x-yatagarasu-")
}

func packList(mod api.Module, buf, limit uint32, items []string) uint64 {
	n := 0
	for _, s := range items {
		n += len(s) + 1
	}
	if uint32(n) <= limit && n > 0 {
		out := make([]byte, 0, n)
		for _, s := range items {
			out = append(append(out, s...), 0)
		}
		writeIfFits(mod, buf, limit, out)
	}
	return uint64(len(items))<<32 | uint64(n)
}

func hGetHeaderNames(ctx context.Context, mod api.Module, stack []uint64) {
	st := stateFrom(ctx)
	var names []string
	add := func(n string) {
		for _, have := range names {
			if have == n {
				return
			}
		}
		names = append(names, n)
	}
	switch uint32(stack[0]) {
	case kindRequest:
		for _, h := range st.req.Headers {
			if visibleHeader(h[0]) && len(st.requestValues(h[0])) > 0 {
				add(h[0])
			}
		}
		for _, h := range st.upSet {
			add(h[0])
		}
	case kindResponse:
		for _, h := range st.respHdrs {
			add(h[0])
		}
	}
	stack[0] = packList(mod, uint32(stack[1]), uint32(stack[2]), names)
}

func hGetHeaderValues(ctx context.Context, mod api.Module, stack []uint64) {
	st := stateFrom(ctx)
	name := strings.ToLower(string(read(mod, uint32(stack[1]), uint32(stack[2]))))
	var vals []string
	switch uint32(stack[0]) {
	case kindRequest:
		if visibleHeader(name) {
			vals = st.requestValues(name)
		}
	case kindResponse:
		for _, h := range st.respHdrs {
			if h[0] == name {
				vals = append(vals, h[1])
			}
		}
	}
	stack[0] = packList(mod, uint32(stack[3]), uint32(stack[4]), vals)
}

// checkHeader refuses names a policy must not set: pseudo-headers, hop-by-hop headers and the
// gateway's signed internal headers (a policy must not be able to forge them).
func checkHeader(name, value string) {
	switch {
	case name == "" || len(name)+len(value) > maxHeaderBytes:
		abiFail("header %q is empty or longer than %d bytes", name, maxHeaderBytes)
	case strings.HasPrefix(name, ":") || strings.HasPrefix(name, "x-yatagarasu-"):
		abiFail("header %q is reserved for the gateway", name)
	case name == "host" || name == "connection" || name == "transfer-encoding" || name == "content-length":
		abiFail("header %q cannot be changed by a policy", name)
	case strings.ContainsAny(name, " \t\r\n:\x00") || strings.ContainsAny(value, "\r\n\x00"):
		abiFail("header %q has characters not allowed in HTTP headers", name)
	}
}

func hSetHeader(add bool) api.GoModuleFunc {
	return func(ctx context.Context, mod api.Module, stack []uint64) {
		st := stateFrom(ctx)
		name := strings.ToLower(string(read(mod, uint32(stack[1]), uint32(stack[2]))))
		value := string(read(mod, uint32(stack[3]), uint32(stack[4])))
		checkHeader(name, value)
		var list *[][2]string
		switch uint32(stack[0]) {
		case kindRequest:
			list = &st.upSet
		case kindResponse:
			list = &st.respHdrs
		default:
			abiFail("header kind %d is not available (request headers only)", uint32(stack[0]))
		}
		if !add {
			*list = deleteHeader(*list, name)
		}
		if len(*list) >= maxHeaders {
			abiFail("more than %d headers set", maxHeaders)
		}
		*list = append(*list, [2]string{name, value})
	}
}

func deleteHeader(list [][2]string, name string) [][2]string {
	out := list[:0]
	for _, h := range list {
		if h[0] != name {
			out = append(out, h)
		}
	}
	return out
}

func hRemoveHeader(ctx context.Context, mod api.Module, stack []uint64) {
	st := stateFrom(ctx)
	name := strings.ToLower(string(read(mod, uint32(stack[1]), uint32(stack[2]))))
	checkHeader(name, "")
	switch uint32(stack[0]) {
	case kindRequest:
		st.upSet = deleteHeader(st.upSet, name)
		if len(st.upRemove) >= maxHeaders {
			abiFail("more than %d headers removed", maxHeaders)
		}
		st.upRemove = append(st.upRemove, name)
	case kindResponse:
		st.respHdrs = deleteHeader(st.respHdrs, name)
	}
}

// hReadBody reports an empty, finished body: ext_proc hands the gateway headers only.
func hReadBody(ctx context.Context, _ api.Module, stack []uint64) {
	stateFrom(ctx)
	stack[0] = 1 << 32
}

func hWriteBody(ctx context.Context, mod api.Module, stack []uint64) {
	st := stateFrom(ctx)
	if uint32(stack[0]) != kindResponse {
		abiFail("write_body: only the response body (kind 1) can be written")
	}
	b := read(mod, uint32(stack[1]), uint32(stack[2]))
	if len(st.body)+len(b) > maxBodyBytes {
		abiFail("response body longer than %d bytes", maxBodyBytes)
	}
	st.body = append(st.body, b...)
}

func hGetStatus(ctx context.Context, _ api.Module, stack []uint64) {
	st := stateFrom(ctx)
	stack[0] = 200
	if st.status != 0 {
		stack[0] = uint64(st.status)
	}
}

func hSetStatus(ctx context.Context, _ api.Module, stack []uint64) {
	st := stateFrom(ctx)
	code := uint32(stack[0])
	if code < 200 || code > 599 {
		abiFail("status code %d is outside 200..599", code)
	}
	st.status = code
}

func hNow(ctx context.Context, _ api.Module, stack []uint64) {
	stack[0] = uint64(stateFrom(ctx).req.Now.UnixMilli())
}

// claim walks a dotted path ("realm_access.roles") through nested claim objects.
func claim(claims map[string]any, path string) (any, bool) {
	var cur any = claims
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

// claimText renders a claim value: strings as they are, anything else as JSON.
func claimText(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}

func hGetClaim(ctx context.Context, mod api.Module, stack []uint64) {
	st := stateFrom(ctx)
	v, ok := claim(st.req.Claims, string(read(mod, uint32(stack[0]), uint32(stack[1]))))
	if !ok {
		stack[0] = ^uint64(0) // -1: absent
		return
	}
	s := claimText(v)
	writeStringIfFits(mod, uint32(stack[2]), uint32(stack[3]), s)
	stack[0] = uint64(len(s))
}

func hGetClaimValues(ctx context.Context, mod api.Module, stack []uint64) {
	st := stateFrom(ctx)
	v, ok := claim(st.req.Claims, string(read(mod, uint32(stack[0]), uint32(stack[1]))))
	if !ok {
		stack[0] = ^uint64(0)
		return
	}
	var vals []string
	switch arr := v.(type) {
	case []any:
		for _, e := range arr {
			vals = append(vals, claimText(e))
		}
	case []string:
		vals = arr
	default:
		vals = []string{claimText(v)}
	}
	stack[0] = packList(mod, uint32(stack[2]), uint32(stack[3]), vals)
}
