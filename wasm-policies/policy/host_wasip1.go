//go:build wasip1

package policy

import (
	"strings"
	"unsafe"
)

// The imports of policy ABI v1 (wasm-policies/ABI.md).

//go:wasmimport http_handler get_method
func hGetMethod(buf unsafe.Pointer, limit uint32) uint32

//go:wasmimport http_handler get_uri
func hGetURI(buf unsafe.Pointer, limit uint32) uint32

//go:wasmimport http_handler get_config
func hGetConfig(buf unsafe.Pointer, limit uint32) uint32

//go:wasmimport http_handler get_header_values
func hGetHeaderValues(kind uint32, name unsafe.Pointer, nameLen uint32, buf unsafe.Pointer, limit uint32) uint64

//go:wasmimport http_handler set_header_value
func hSetHeaderValue(kind uint32, name unsafe.Pointer, nameLen uint32, value unsafe.Pointer, valueLen uint32)

//go:wasmimport http_handler remove_header
func hRemoveHeader(kind uint32, name unsafe.Pointer, nameLen uint32)

//go:wasmimport http_handler set_status_code
func hSetStatusCode(code uint32)

//go:wasmimport http_handler write_body
func hWriteBody(kind uint32, buf unsafe.Pointer, n uint32)

//go:wasmimport http_handler log
func hLog(level int32, buf unsafe.Pointer, n uint32)

//go:wasmimport yatagarasu get_bucket
func yGetBucket(buf unsafe.Pointer, limit uint32) uint32

//go:wasmimport yatagarasu get_object_key
func yGetObjectKey(buf unsafe.Pointer, limit uint32) uint32

//go:wasmimport yatagarasu get_subject
func yGetSubject(buf unsafe.Pointer, limit uint32) uint32

//go:wasmimport yatagarasu get_client_ip
func yGetClientIP(buf unsafe.Pointer, limit uint32) uint32

//go:wasmimport yatagarasu get_claim
func yGetClaim(path unsafe.Pointer, pathLen uint32, buf unsafe.Pointer, limit uint32) int64

//go:wasmimport yatagarasu get_claim_values
func yGetClaimValues(path unsafe.Pointer, pathLen uint32, buf unsafe.Pointer, limit uint32) int64

//go:wasmimport yatagarasu now_unix_ms
func yNowUnixMs() int64

// buf is the instance's scratch buffer for host calls; an instance runs one call at a time.
var buf = make([]byte, 2048)

func bufPtr() unsafe.Pointer { return unsafe.Pointer(&buf[0]) }

// strPtr points at s's bytes (a one-byte dummy for "" so the pointer is valid).
func strPtr(s string) unsafe.Pointer {
	if s == "" {
		return unsafe.Pointer(&buf[0])
	}
	return unsafe.Pointer(unsafe.StringData(s))
}

// get calls a (buf, limit) -> len host function, growing buf when the value does not fit.
func get(f func(unsafe.Pointer, uint32) uint32) string {
	for {
		n := f(bufPtr(), uint32(len(buf)))
		if int(n) <= len(buf) {
			return string(buf[:n])
		}
		buf = make([]byte, n)
	}
}

// split turns a NUL-terminated list into strings.
func split(b []byte) []string {
	s := strings.Split(string(b), "\x00")
	return s[:len(s)-1]
}

type wasmBackend struct{}

func (wasmBackend) method() string   { return get(hGetMethod) }
func (wasmBackend) uri() string      { return get(hGetURI) }
func (wasmBackend) bucket() string   { return get(yGetBucket) }
func (wasmBackend) key() string      { return get(yGetObjectKey) }
func (wasmBackend) subject() string  { return get(yGetSubject) }
func (wasmBackend) clientIP() string { return get(yGetClientIP) }
func (wasmBackend) config() []byte   { return []byte(get(hGetConfig)) }
func (wasmBackend) nowUnixMilli() int64 {
	return yNowUnixMs()
}

func (wasmBackend) headerValues(name string) []string {
	for {
		r := hGetHeaderValues(0, strPtr(name), uint32(len(name)), bufPtr(), uint32(len(buf)))
		count, n := uint32(r>>32), uint32(r)
		if count == 0 {
			return nil
		}
		if int(n) <= len(buf) {
			return split(buf[:n])
		}
		buf = make([]byte, n)
	}
}

func (wasmBackend) setHeader(name, value string) {
	hSetHeaderValue(0, strPtr(name), uint32(len(name)), strPtr(value), uint32(len(value)))
}

func (wasmBackend) removeHeader(name string) { hRemoveHeader(0, strPtr(name), uint32(len(name))) }

func (wasmBackend) claim(path string) (string, bool) {
	for {
		r := yGetClaim(strPtr(path), uint32(len(path)), bufPtr(), uint32(len(buf)))
		if r < 0 {
			return "", false
		}
		if int(r) <= len(buf) {
			return string(buf[:r]), true
		}
		buf = make([]byte, r)
	}
}

func (wasmBackend) claimValues(path string) ([]string, bool) {
	for {
		r := yGetClaimValues(strPtr(path), uint32(len(path)), bufPtr(), uint32(len(buf)))
		if r < 0 {
			return nil, false
		}
		n := uint32(r)
		if int(n) <= len(buf) {
			return split(buf[:n]), true
		}
		buf = make([]byte, n)
	}
}

func (wasmBackend) log(msg string) { hLog(0, strPtr(msg), uint32(len(msg))) }

// handleRequest is the http-wasm entry point: it runs the registered handler and turns its
// Decision into host calls. The result's low 32 bits are next (1 = continue).
//
//go:wasmexport handle_request
func handleRequest() int64 {
	if handler == nil {
		hSetStatusCode(500)
		return 0
	}
	d := handler(Request{b: wasmBackend{}})
	if !d.deny {
		return 1
	}
	hSetStatusCode(uint32(d.status))
	for _, h := range d.headers {
		hSetHeaderValue(1, strPtr(h[0]), uint32(len(h[0])), strPtr(h[1]), uint32(len(h[1])))
	}
	if d.message != "" {
		hWriteBody(1, strPtr(d.message), uint32(len(d.message)))
	}
	return 0
}
