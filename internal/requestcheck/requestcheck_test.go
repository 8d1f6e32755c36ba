package requestcheck

import (
	"net/http"
	"strings"
	"testing"
)

func TestMethod(t *testing.T) {
	for _, m := range []string{"GET", "HEAD", "OPTIONS"} {
		if r := Method(m); r != nil {
			t.Errorf("%s refused: %v", m, r)
		}
	}
	for _, m := range []string{"PUT", "POST", "DELETE", "PATCH", "get", "CONNECT", ""} {
		if r := Method(m); r == nil || r.Status != http.StatusMethodNotAllowed {
			t.Errorf("%q allowed", m)
		}
	}
}

func TestSize(t *testing.T) {
	l := Limits{MaxURILength: 10, MaxHeaderBytes: 100, MaxBodyBytes: 5}
	cases := []struct {
		path    string
		headers int
		body    int64
		want    *Rejection
	}{
		{"/short", 50, -1, nil},
		{"/exactly10", 100, 5, nil},
		{"/elevenchars", 10, 0, ErrURITooLong},
		{"/a", 101, 0, ErrHeadersTooBig},
		{"/a", 1, 6, ErrBodyTooBig},
	}
	for _, c := range cases {
		if got := Size(l, c.path, c.headers, c.body); got != c.want {
			t.Errorf("Size(%q,%d,%d) = %v, want %v", c.path, c.headers, c.body, got, c.want)
		}
	}
}

func TestDecodePath(t *testing.T) {
	ok := map[string]string{
		"/products/a.txt":            "/products/a.txt",
		"/products/with%20space.txt": "/products/with space.txt",
		"/products/a+b.txt":          "/products/a+b.txt",
		"/products/a%2Fb.txt":        "/products/a/b.txt",
		"/products/a%252Fb.txt":      "/products/a%2Fb.txt",
		"/products/%E6%97%A5.txt":    "/products/日.txt",
		"/products/a//b///c":         "/products/a//b///c",
		"/products/..hidden":         "/products/..hidden",
		"/products/a..b":             "/products/a..b",
		"/products/user's_doc.txt":   "/products/user's_doc.txt",
	}
	for in, want := range ok {
		got, rej := DecodePath(in)
		if rej != nil || got != want {
			t.Errorf("DecodePath(%q) = %q,%v; want %q", in, got, rej, want)
		}
	}
	bad := map[string]*Rejection{
		"":                              ErrBadPath,
		"products/a":                    ErrBadPath,
		"/products/../secret/x":         ErrTraversal,
		"/products/..":                  ErrTraversal,
		"/products/./a":                 ErrTraversal,
		"/products/%2e%2e/secret/x":     ErrTraversal,
		"/products/%2E%2E/secret/x":     ErrTraversal,
		"/products/.%2e/secret":         ErrTraversal,
		"/products/%252e%252e/secret/x": ErrTraversal,
		"/products/..%2fsecret":         ErrTraversal,
		"/products/..%5csecret":         ErrTraversal,
		"/products/..\\secret":          ErrTraversal,
		"/products/%2e%2e%2fsecret":     ErrTraversal,
		"/products/a%00b":               ErrControlChar,
		"/products/a%0ab":               ErrControlChar,
		"/products/%zz":                 ErrBadEncoding,
		"/products/%":                   ErrBadEncoding,
	}
	for in, want := range bad {
		if _, rej := DecodePath(in); rej != want {
			t.Errorf("DecodePath(%q) = %v, want %v", in, rej, want)
		}
	}
}

func TestSplitQuery(t *testing.T) {
	if got := SplitQuery("/a/b?x=1?y"); got != "/a/b" {
		t.Fatal(got)
	}
	if got := SplitQuery("/a"); got != "/a" {
		t.Fatal(got)
	}
}

// FuzzDecodePath checks the invariant routing relies on: an accepted path has no dot segment
// and no control character, even after one more decode.
func FuzzDecodePath(f *testing.F) {
	for _, s := range []string{"/a/b", "/a/%2e%2e/b", "/%252e%252e/", "/a%00", "/a/..\\b", "/%E6%97%A5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		p, rej := DecodePath(raw)
		if rej != nil {
			return
		}
		if hasDotSegment(p) || strings.ContainsAny(p, "\x00\n\r") {
			t.Fatalf("DecodePath(%q) accepted %q", raw, p)
		}
		if !strings.HasPrefix(p, "/") {
			t.Fatalf("DecodePath(%q) = %q, not absolute", raw, p)
		}
	})
}
