package envoyemu

import (
	"fmt"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// checkOp is the operation a mutation performs, as in Envoy's mutation_rules Checker.
type checkOp int

const (
	opSet checkOp = iota
	opAppend
	opRemove
)

// defaultRulesAllow implements Envoy's default HeaderMutationRules (no mutation_rules configured,
// disallow_is_error false): a disallowed mutation is silently ignored, never an error.
func defaultRulesAllow(op checkOp, name string) bool {
	system := strings.HasPrefix(name, ":") || name == "host"
	if op == opRemove && system {
		return false // removing any ':'-header or host is never allowed
	}
	switch name {
	case "host", ":authority", ":method", ":scheme":
		return false // routing headers need allow_all_routing
	}
	if strings.HasPrefix(name, "x-envoy") {
		return false // bootstrap header_prefix needs allow_envoy
	}
	if op == opAppend && system {
		return false
	}
	return true
}

// mutationLimits carries the HCM limits a mutated header map must respect.
type mutationLimits struct {
	maxHeadersCount int
	maxHeadersKB    int
}

// mutationResult reports what applyHeaderMutation did, for logs and tests.
type mutationResult struct {
	ignored []string // names whose mutation the rules silently dropped
}

// applyHeaderMutation applies an ext_proc HeaderMutation to h the way Envoy's
// MutationUtils::applyHeaderMutations does: count check, removals first, then sets; invalid
// names/values or value+raw_value reject the whole mutation (the returned error), disallowed
// headers are ignored. replacing is true for CONTINUE_AND_REPLACE, which may change :method.
// Entries before a failing one stay applied, as in Envoy.
func applyHeaderMutation(h *headerMap, m *extprocv3.HeaderMutation, limits mutationLimits, replacing bool) (mutationResult, error) {
	var res mutationResult
	if m == nil {
		return res, nil
	}
	if len(m.GetRemoveHeaders()) > limits.maxHeadersCount || len(m.GetSetHeaders()) > limits.maxHeadersCount {
		return res, fmt.Errorf("header mutation remove header count %d or set header count %d exceed the HCM header count limit %d",
			len(m.GetRemoveHeaders()), len(m.GetSetHeaders()), limits.maxHeadersCount)
	}
	for _, name := range m.GetRemoveHeaders() {
		if !headerNameIsValid(name) {
			return res, fmt.Errorf("invalid character in remove_headers mutation %q", name)
		}
		key := strings.ToLower(name)
		if !defaultRulesAllow(opRemove, key) {
			res.ignored = append(res.ignored, key)
			continue
		}
		h.remove(key)
	}
	for _, sh := range m.GetSetHeaders() {
		hv := sh.GetHeader()
		if hv == nil {
			continue
		}
		if hv.GetValue() != "" && len(hv.GetRawValue()) != 0 {
			return res, fmt.Errorf("header %q: only one of value or raw_value in the HeaderValue message should be set", hv.GetKey())
		}
		// Envoy reads raw_value (runtime send_header_raw_value, default on); a server that only
		// fills the deprecated value field is accepted too, documented in doc.go.
		value := string(hv.GetRawValue())
		if len(hv.GetRawValue()) == 0 {
			value = hv.GetValue()
		}
		if !headerNameIsValid(hv.GetKey()) || !headerValueIsValid(value) {
			return res, fmt.Errorf("invalid character in set_headers mutation %q", hv.GetKey())
		}
		key := strings.ToLower(hv.GetKey())
		action := effectiveAppendAction(sh)
		exists := h.count(key) > 0
		op := opSet
		if action == corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD && exists {
			op = opAppend
		}
		allowed := defaultRulesAllow(op, key)
		if replacing && key == ":method" {
			allowed = true // CONTINUE_AND_REPLACE may change :method
		}
		if !allowed {
			res.ignored = append(res.ignored, key)
			continue
		}
		switch action {
		case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
			h.add(key, value)
		case corev3.HeaderValueOption_ADD_IF_ABSENT:
			if !exists {
				h.add(key, value)
			}
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
			h.set(key, value)
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
			if exists {
				h.set(key, value)
			}
		}
	}
	if h.byteSize() > limits.maxHeadersKB*1024 || len(h.entries) > limits.maxHeadersCount {
		return res, fmt.Errorf("header mutation causes end result header count %d or header size %d bytes, exceeding the count limit %d or the size limit %d kilobytes",
			len(h.entries), h.byteSize(), limits.maxHeadersCount, limits.maxHeadersKB)
	}
	return res, nil
}

// effectiveAppendAction resolves the legacy `append` BoolValue and `append_action`. Envoy's
// ext_proc treats an entry with neither set as overwrite (append defaults to false). Because
// APPEND_IF_EXISTS_OR_ADD is the proto3 zero value it cannot be told apart from "unset", so it
// also means overwrite unless `append: true` is given.
func effectiveAppendAction(sh *corev3.HeaderValueOption) corev3.HeaderValueOption_HeaderAppendAction {
	//lint:ignore SA1019 Envoy still honours the legacy append flag, so the harness must too.
	if sh.GetAppend() != nil {
		//lint:ignore SA1019 as above
		if sh.GetAppend().GetValue() {
			return corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
		}
		return corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
	}
	if sh.GetAppendAction() == corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD {
		return corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
	}
	return sh.GetAppendAction()
}
