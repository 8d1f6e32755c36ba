package envoyemu

import (
	"strings"
)

// header is one entry of an Envoy-style header map: lower-case key, raw value.
type header struct {
	key   string
	value string
}

// headerMap is an ordered multi-map like Envoy's HeaderMapImpl: keys are lower-case, duplicate
// keys are separate entries, pseudo-headers (:method, :path, ...) live in the same map.
type headerMap struct {
	entries []header
}

// get returns the first value for key.
func (h *headerMap) get(key string) (string, bool) {
	for _, e := range h.entries {
		if e.key == key {
			return e.value, true
		}
	}
	return "", false
}

// getJoined returns all values for key joined with "," (Envoy's getAllOfHeaderAsString, used by
// route header matchers).
func (h *headerMap) getJoined(key string) (string, bool) {
	var vals []string
	for _, e := range h.entries {
		if e.key == key {
			vals = append(vals, e.value)
		}
	}
	if len(vals) == 0 {
		return "", false
	}
	return strings.Join(vals, ","), true
}

// count returns how many entries have key.
func (h *headerMap) count(key string) int {
	n := 0
	for _, e := range h.entries {
		if e.key == key {
			n++
		}
	}
	return n
}

// add appends an entry (Envoy addCopy).
func (h *headerMap) add(key, value string) {
	h.entries = append(h.entries, header{key: key, value: value})
}

// set replaces every entry for key with a single one at the position of the first (Envoy
// setCopy), or appends when absent.
func (h *headerMap) set(key, value string) {
	out := h.entries[:0]
	done := false
	for _, e := range h.entries {
		if e.key != key {
			out = append(out, e)
			continue
		}
		if !done {
			out = append(out, header{key: key, value: value})
			done = true
		}
	}
	h.entries = out
	if !done {
		h.add(key, value)
	}
}

// remove deletes every entry for key.
func (h *headerMap) remove(key string) {
	out := h.entries[:0]
	for _, e := range h.entries {
		if e.key != key {
			out = append(out, e)
		}
	}
	h.entries = out
}

// byteSize is the sum of key and value lengths (Envoy HeaderMap::byteSize).
func (h *headerMap) byteSize() int {
	n := 0
	for _, e := range h.entries {
		n += len(e.key) + len(e.value)
	}
	return n
}

// headerNameIsValid follows Envoy's HeaderUtility::headerNameIsValid: pseudo-headers use the
// HTTP/2 (lower-case token) rule, other names the HTTP/1 token rule (upper case allowed).
func headerNameIsValid(name string) bool {
	if name == "" {
		// Envoy would accept an empty name here and produce a broken map; the harness rejects it.
		return false
	}
	pseudo := false
	if name[0] == ':' {
		pseudo = true
		name = name[1:]
		if name == "" {
			return false
		}
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if pseudo && c >= 'A' && c <= 'Z' {
			return false
		}
		if !isTokenChar(c) {
			return false
		}
	}
	return true
}

// isTokenChar reports whether c is an RFC 9110 tchar.
func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// headerValueIsValid follows nghttp2_check_header_value as used by Envoy: no NUL, CR or LF.
func headerValueIsValid(v string) bool {
	return !strings.ContainsAny(v, "\x00\r\n")
}
