// Package route maps a decoded request path to a bucket by the longest path prefix that ends on a
// segment boundary, in a few map probes and no allocations however many buckets are configured.
package route

import (
	"fmt"
	"strings"
)

// Entry is one bucket's prefix as written in the config ("/products", "/products/", "/").
type Entry struct {
	Prefix string
	Bucket int // caller's index for the bucket (e.g. its position in the config)
}

// Table is an immutable prefix index; safe for concurrent use.
type Table struct {
	byPrefix map[string]int // normalised prefix ("" for the root) → Bucket
	maxLen   int            // longest normalised prefix, bounds the scan
}

// Normalize drops a trailing "/" so "/a/" and "/a" are one prefix; the root "/" becomes "".
func Normalize(prefix string) string {
	return strings.TrimSuffix(prefix, "/")
}

// New builds a table; prefixes must start with "/" and be unique after Normalize.
func New(entries []Entry) (*Table, error) {
	t := &Table{byPrefix: make(map[string]int, len(entries))}
	for _, e := range entries {
		if !strings.HasPrefix(e.Prefix, "/") {
			return nil, fmt.Errorf("route prefix %q must start with /", e.Prefix)
		}
		p := Normalize(e.Prefix)
		if _, dup := t.byPrefix[p]; dup {
			return nil, fmt.Errorf("route prefix %q is listed twice", e.Prefix)
		}
		t.byPrefix[p] = e.Bucket
		t.maxLen = max(t.maxLen, len(p))
	}
	return t, nil
}

// Lookup returns the bucket whose prefix is the longest one matching path on a segment boundary,
// and the object key: the rest of the path after the prefix and one separating "/".
// path must be decoded and start with "/". "/assets" matches "/assets" and "/assets/x" but not
// "/assetsX/x".
func (t *Table) Lookup(path string) (bucket int, key string, ok bool) {
	i := min(len(path), t.maxLen)
	for ; i > 0; i-- {
		if i != len(path) && path[i] != '/' {
			continue
		}
		if b, found := t.byPrefix[path[:i]]; found {
			return b, trimOneSlash(path[i:]), true
		}
	}
	if b, found := t.byPrefix[""]; found {
		return b, trimOneSlash(path), true
	}
	return 0, "", false
}

// Len reports how many prefixes the table holds.
func (t *Table) Len() int { return len(t.byPrefix) }

func trimOneSlash(s string) string {
	if len(s) > 0 && s[0] == '/' {
		return s[1:]
	}
	return s
}
