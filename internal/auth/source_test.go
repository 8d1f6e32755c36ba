package auth

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/yatagarasu/yatagarasu/internal/config"
)

type headers map[string]string

func (h headers) Header(name string) string { return h[name] }

var allSources = Sources([]config.TokenSource{
	{Type: "bearer"}, {Type: "header", Name: "X-Auth-Token", Prefix: "Token "}, {SourceType: "query", Name: "token"},
})

func TestExtractInOrder(t *testing.T) {
	cases := []struct {
		h       headers
		path    string
		want    string
		src     int
		missing bool
	}{
		{headers{"authorization": "Bearer abc.def.ghi"}, "/b/k", "abc.def.ghi", 0, false},
		{headers{"authorization": "bearer   abc "}, "/b/k", "abc", 0, false},
		{headers{"authorization": "Basic dXNlcjpwYXNz"}, "/b/k?token=q", "q", 2, false},
		{headers{"x-auth-token": "Token xyz"}, "/b/k", "xyz", 1, false},
		{headers{"x-auth-token": "xyz"}, "/b/k", "", 0, true}, // prefix required
		{headers{}, "/b/k?a=1&token=a%2Bb&token=second", "a+b", 2, false},
		{headers{"authorization": "Bearer first"}, "/b/k?token=second", "first", 0, false},
		{headers{}, "/b/k", "", 0, true},
		{headers{"authorization": "Bearer "}, "/b/k?token=", "", 0, true},
	}
	for _, tc := range cases {
		tok, src, ok := Extract(allSources, tc.h, tc.path)
		if ok == tc.missing || tok != tc.want || (ok && src != tc.src) {
			t.Errorf("Extract(%v, %q) = %q, %d, %v; want %q from %d", tc.h, tc.path, tok, src, ok, tc.want, tc.src)
		}
	}
}

func TestCredentialsAreStripped(t *testing.T) {
	h := headers{"authorization": "Bearer x", "x-auth-token": "Token y"}
	names, path, changed := Credentials(allSources, h, "/b/k?v=1&token=z&w=%20&token=again")
	if strings.Join(names, ",") != "authorization,x-auth-token" || path != "/b/k?v=1&w=%20" || !changed {
		t.Fatalf("Credentials = %v %q %v", names, path, changed)
	}
	if p, ok := StripQuery("/b/k?token=z", "token"); p != "/b/k" || !ok {
		t.Errorf("only param: %q %v", p, ok)
	}
	if p, ok := StripQuery("/b/k?tokens=z", "token"); p != "/b/k?tokens=z" || ok {
		t.Errorf("similar name: %q %v", p, ok)
	}
	if p, ok := StripQuery("/b/k?%74oken=z", "token"); p != "/b/k" || !ok {
		t.Errorf("encoded name must be stripped too: %q %v", p, ok)
	}
}

// FuzzExtract: extraction never panics, finds only non-empty tokens, and after Credentials
// stripping no configured source yields a token any more.
func FuzzExtract(f *testing.F) {
	f.Add("Bearer abc", "Token xyz", "/b/k?token=q&x=1")
	f.Add("bearer", "", "/b?token=%zz")
	f.Add("", "Token ", "/?&&token&token=%41")
	f.Fuzz(func(t *testing.T, authz, custom, path string) {
		h := headers{"authorization": authz, "x-auth-token": custom}
		tok, src, ok := Extract(allSources, h, path)
		if ok && (tok == "" || src < 0 || strings.TrimSpace(tok) != tok) {
			t.Fatalf("Extract = %q from %d", tok, src)
		}
		names, stripped, _ := Credentials(allSources, h, path)
		rest := headers{}
		for k, v := range h {
			rest[k] = v
		}
		for _, n := range names {
			delete(rest, n)
		}
		if tok, _, ok := Extract(allSources, rest, stripped); ok {
			t.Fatalf("after stripping, %q still yields token %q (path %q)", path, tok, stripped)
		}
	})
}

func mustRules(t testing.TB, yamlRules string) []Rule {
	t.Helper()
	var raw []config.ClaimRule
	if err := json.Unmarshal([]byte(yamlRules), &raw); err != nil {
		t.Fatal(err)
	}
	rs, err := CompileRules(raw)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func TestRuleOperators(t *testing.T) {
	var claims map[string]any
	_ = json.Unmarshal([]byte(`{"sub":"alice","role":"admin","level":3,"email":"a@corp.example",
		"groups":["eng","ops"],"realm_access":{"roles":["reader","writer"]},"https://x.test/tenant":"t1","flag":false}`), &claims)
	cases := []struct {
		rule string
		want bool
	}{
		{`{"Claim":"role","Operator":"equals","Value":"admin"}`, true},
		{`{"Claim":"level","Operator":"equals","Value":3}`, true},
		{`{"Claim":"role","Operator":"in","Value":["user","admin"]}`, true},
		{`{"Claim":"groups","Operator":"in","Value":["ops"]}`, true},
		{`{"Claim":"groups","Operator":"in","Value":["hr"]}`, false},
		{`{"Claim":"email","Operator":"contains","Value":"@corp."}`, true},
		{`{"Claim":"realm_access.roles","Operator":"contains","Value":"writer"}`, true},
		{`{"Claim":"realm_access.roles","Operator":"contains","Value":"admin"}`, false},
		{`{"Claim":"level","Operator":"gt","Value":2}`, true},
		{`{"Claim":"level","Operator":"lt","Value":3}`, false},
		{`{"Claim":"level","Operator":"gte","Value":3}`, true},
		{`{"Claim":"level","Operator":"lte","Value":2.5}`, false},
		{`{"Claim":"role","Operator":"gt","Value":1}`, false},
		{`{"Claim":"sub","Operator":"regex","Value":"^al"}`, true},
		{`{"Claim":"groups","Operator":"regex","Value":"^op"}`, true},
		{`{"Claim":"missing","Operator":"exists"}`, false},
		{`{"Claim":"missing","Operator":"exists","Value":false}`, true},
		{`{"Claim":"flag","Operator":"exists"}`, true},
		{`{"Claim":"https://x.test/tenant","Operator":"equals","Value":"t1"}`, true},
		{`{"Claim":"realm_access.roles.x","Operator":"exists"}`, false},
		{`{"Name":"role","Operator":"equals","Value":"user"}`, false},
	}
	for _, tc := range cases {
		r := mustRules(t, "["+tc.rule+"]")
		if got := r[0].Holds(claims); got != tc.want {
			t.Errorf("%s = %v, want %v", tc.rule, got, tc.want)
		}
	}
}

// FuzzRuleEval: any claims document and any operator value evaluate without panicking, and a
// rule that holds names a claim that exists (except exists:false).
func FuzzRuleEval(f *testing.F) {
	f.Add(`{"a":{"b":[1,"x"]}}`, "a.b", "contains", `"x"`)
	f.Add(`{"a":1}`, "a", "gte", `1`)
	f.Add(`{"a":"zz"}`, "a", "regex", `"z+"`)
	f.Add(`{"a":null}`, "a", "in", `[null]`)
	f.Fuzz(func(t *testing.T, doc, path, op, value string) {
		var claims map[string]any
		if json.Unmarshal([]byte(doc), &claims) != nil {
			return
		}
		var v any
		if json.Unmarshal([]byte(value), &v) != nil {
			return
		}
		rs, err := CompileRules([]config.ClaimRule{{Claim: path, Operator: op, Value: v}})
		if err != nil {
			return
		}
		if rs[0].Holds(claims) && !(op == "exists" && v == false) {
			if got, ok := Lookup(claims, path); !ok || got == nil {
				t.Fatalf("rule %s %s %s holds on a missing claim in %s", path, op, value, doc)
			}
		}
	})
}
