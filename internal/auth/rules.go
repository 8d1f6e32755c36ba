package auth

import (
	"fmt"
	"reflect"
	"regexp"
	"strings"

	"github.com/yatagarasu/yatagarasu/internal/config"
)

// Rule is one compiled claim condition: a claim path (registered claims and nested paths such as
// realm_access.roles included), an operator and the configured value.
type Rule struct {
	Path  string
	parts []string
	Op    string
	value any
	num   float64
	re    *regexp.Regexp
	list  []any
	want  bool // exists: true = must be present
}

// CompileRules compiles configured rules (validated by config.Load).
func CompileRules(cfg []config.ClaimRule) ([]Rule, error) {
	out := make([]Rule, 0, len(cfg))
	for _, c := range cfg {
		r := Rule{Path: c.Path(), parts: strings.Split(c.Path(), "."), Op: c.Operator, value: normalize(c.Value), want: true}
		switch r.Op {
		case "equals", "contains":
		case "in":
			l, ok := r.value.([]any)
			if !ok {
				return nil, fmt.Errorf("claim rule on %q: in needs a list", r.Path)
			}
			r.list = l
		case "gt", "lt", "gte", "lte":
			n, ok := config.AsNumber(r.value)
			if !ok {
				return nil, fmt.Errorf("claim rule on %q: %s needs a number", r.Path, r.Op)
			}
			r.num = n
		case "regex":
			s, _ := r.value.(string)
			re, err := regexp.Compile(s)
			if err != nil {
				return nil, fmt.Errorf("claim rule on %q: %w", r.Path, err)
			}
			r.re = re
		case "exists":
			if b, ok := r.value.(bool); ok {
				r.want = b
			}
		default:
			return nil, fmt.Errorf("claim rule on %q: unknown operator %q", r.Path, r.Op)
		}
		out = append(out, r)
	}
	return out, nil
}

// normalize turns YAML numbers into float64, as JSON claims are, so that equality compares values.
func normalize(v any) any {
	switch x := v.(type) {
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalize(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = normalize(e)
		}
		return out
	}
	if n, ok := config.AsNumber(v); ok {
		return n
	}
	return v
}

// Lookup finds a claim by dotted path. A key that itself contains dots (a URL-style claim name
// such as "https://example.com/roles") is found too: the literal key is tried first.
func Lookup(claims map[string]any, path string) (any, bool) {
	if v, ok := claims[path]; ok {
		return v, true
	}
	var cur any = claims
	for len(path) > 0 {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		seg, rest, _ := strings.Cut(path, ".")
		if v, ok := m[path]; ok && rest != "" {
			return v, true
		}
		if cur, ok = m[seg]; !ok {
			return nil, false
		}
		path = rest
	}
	return cur, true
}

// Holds reports whether the claims satisfy the rule.
func (r *Rule) Holds(claims map[string]any) bool {
	v, ok := Lookup(claims, r.Path)
	if r.Op == "exists" {
		return (ok && v != nil) == r.want
	}
	if !ok || v == nil {
		return false
	}
	switch r.Op {
	case "equals":
		return equal(v, r.value)
	case "in":
		if arr, isArr := v.([]any); isArr {
			for _, e := range arr {
				if r.inList(e) {
					return true
				}
			}
			return false
		}
		return r.inList(v)
	case "contains":
		switch c := v.(type) {
		case string:
			s, isStr := r.value.(string)
			return isStr && strings.Contains(c, s)
		case []any:
			for _, e := range c {
				if equal(e, r.value) {
					return true
				}
			}
		}
		return false
	case "gt", "lt", "gte", "lte":
		n, isNum := config.AsNumber(v)
		if !isNum {
			return false
		}
		switch r.Op {
		case "gt":
			return n > r.num
		case "lt":
			return n < r.num
		case "gte":
			return n >= r.num
		}
		return n <= r.num
	case "regex":
		switch c := v.(type) {
		case string:
			return r.re.MatchString(c)
		case []any:
			for _, e := range c {
				if s, isStr := e.(string); isStr && r.re.MatchString(s) {
					return true
				}
			}
		}
	}
	return false
}

func (r *Rule) inList(v any) bool {
	for _, e := range r.list {
		if equal(v, e) {
			return true
		}
	}
	return false
}

// equal compares a claim with a configured value; numbers compare by value.
func equal(a, b any) bool {
	if x, ok := config.AsNumber(a); ok {
		y, ok := config.AsNumber(b)
		return ok && x == y
	}
	return reflect.DeepEqual(normalize(a), b)
}

// FirstFailing returns the first rule the claims do not satisfy, or nil when all hold.
func FirstFailing(rules []Rule, claims map[string]any) *Rule {
	for i := range rules {
		if !rules[i].Holds(claims) {
			return &rules[i]
		}
	}
	return nil
}
