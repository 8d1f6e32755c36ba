package envoyemu

import (
	"reflect"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestApplyHeaderMutationAppendSemantics(t *testing.T) {
	limits := mutationLimits{maxHeadersCount: 100, maxHeadersKB: 60}
	opt := func(k, v string, action corev3.HeaderValueOption_HeaderAppendAction, appendFlag *wrapperspb.BoolValue) *corev3.HeaderValueOption {
		//lint:ignore SA1019 the legacy flag is what this test exercises
		return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, RawValue: []byte(v)}, AppendAction: action, Append: appendFlag}
	}
	h := &headerMap{entries: []header{{":path", "/a"}, {"a", "1"}, {"a", "2"}, {"b", "1"}, {"d", "1"}}}
	_, err := applyHeaderMutation(h, &extprocv3.HeaderMutation{
		RemoveHeaders: []string{"d", ":path", "Host"},
		SetHeaders: []*corev3.HeaderValueOption{
			opt("A", "x", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD, nil),                   // zero value: overwrite
			opt("b", "2", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD, wrapperspb.Bool(true)), // legacy append
			opt("c", "1", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS, nil),                       // absent: nothing
			opt("b", "3", corev3.HeaderValueOption_ADD_IF_ABSENT, nil),                             // present: nothing
			opt("e", "1", corev3.HeaderValueOption_ADD_IF_ABSENT, nil),
			opt(":path", "/z", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD, wrapperspb.Bool(true)), // append to ':' ignored
			opt("x-envoy-original-path", "/q", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD, nil),
		},
	}, limits, false)
	if err != nil {
		t.Fatal(err)
	}
	want := []header{{":path", "/a"}, {"a", "x"}, {"b", "1"}, {"b", "2"}, {"e", "1"}}
	if !reflect.DeepEqual(h.entries, want) {
		t.Fatalf("entries = %v\nwant      %v", h.entries, want)
	}
}

func TestApplyHeaderMutationMethodOnlyWhenReplacing(t *testing.T) {
	limits := mutationLimits{maxHeadersCount: 100, maxHeadersKB: 60}
	m := &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: ":method", RawValue: []byte("POST")}}}}
	h := &headerMap{entries: []header{{":method", "GET"}}}
	if _, err := applyHeaderMutation(h, m, limits, false); err != nil {
		t.Fatal(err)
	}
	if v, _ := h.get(":method"); v != "GET" {
		t.Fatalf(":method changed to %s without CONTINUE_AND_REPLACE", v)
	}
	if _, err := applyHeaderMutation(h, m, limits, true); err != nil {
		t.Fatal(err)
	}
	if v, _ := h.get(":method"); v != "POST" {
		t.Fatalf(":method = %s, want POST with CONTINUE_AND_REPLACE", v)
	}
}

func TestApplyHeaderMutationResultLimits(t *testing.T) {
	h := &headerMap{}
	var set []*corev3.HeaderValueOption
	for i := 0; i < 3; i++ {
		set = append(set, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: string(rune('a' + i)), RawValue: []byte("v")}})
	}
	if _, err := applyHeaderMutation(h, &extprocv3.HeaderMutation{SetHeaders: set}, mutationLimits{maxHeadersCount: 2, maxHeadersKB: 60}, false); err == nil {
		t.Fatal("a result above max_headers_count must be rejected")
	}
}
