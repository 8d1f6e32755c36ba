package route

import (
	"fmt"
	"testing"
)

func mustTable(t testing.TB, prefixes ...string) *Table {
	t.Helper()
	var es []Entry
	for i, p := range prefixes {
		es = append(es, Entry{Prefix: p, Bucket: i})
	}
	tb, err := New(es)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func TestLookup(t *testing.T) {
	tb := mustTable(t, "/products", "/products/images/", "/assets", "/a/b/c")
	cases := []struct {
		path   string
		bucket int
		key    string
		ok     bool
	}{
		{"/products/a.txt", 0, "a.txt", true},
		{"/products", 0, "", true},
		{"/products/", 0, "", true},
		{"/products/images/x.png", 1, "x.png", true},
		{"/products/images", 1, "", true},
		{"/products/imagesX/x.png", 0, "imagesX/x.png", true},
		{"/productsX/a.txt", 0, "", false},
		{"/assetsX/file", 0, "", false},
		{"/assets/dir//file", 2, "dir//file", true},
		{"/assets//file", 2, "/file", true},
		{"/a/b/c/d", 3, "d", true},
		{"/a/b", 0, "", false},
		{"/", 0, "", false},
		{"/other/x", 0, "", false},
	}
	for _, c := range cases {
		b, k, ok := tb.Lookup(c.path)
		if ok != c.ok || (ok && (b != c.bucket || k != c.key)) {
			t.Errorf("Lookup(%q) = %d,%q,%v; want %d,%q,%v", c.path, b, k, ok, c.bucket, c.key, c.ok)
		}
	}
}

func TestRootPrefixIsFallback(t *testing.T) {
	tb := mustTable(t, "/", "/special")
	if b, k, ok := tb.Lookup("/special/x"); !ok || b != 1 || k != "x" {
		t.Fatalf("special: %d %q %v", b, k, ok)
	}
	if b, k, ok := tb.Lookup("/anything/else"); !ok || b != 0 || k != "anything/else" {
		t.Fatalf("root: %d %q %v", b, k, ok)
	}
}

func TestNewRejectsDuplicatesAfterNormalising(t *testing.T) {
	if _, err := New([]Entry{{Prefix: "/a"}, {Prefix: "/a/"}}); err == nil {
		t.Fatal("want duplicate error")
	}
	if _, err := New([]Entry{{Prefix: "a"}}); err == nil {
		t.Fatal("want missing-slash error")
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	tb := thousandBuckets(t)
	allocs := testing.AllocsPerRun(100, func() {
		if _, _, ok := tb.Lookup("/bucket-0777/some/deep/key/file.txt"); !ok {
			t.Fatal("no match")
		}
	})
	if allocs != 0 {
		t.Fatalf("Lookup allocates %v times per call", allocs)
	}
}

func thousandBuckets(t testing.TB) *Table {
	var ps []string
	for i := range 1000 {
		ps = append(ps, fmt.Sprintf("/bucket-%04d", i))
	}
	return mustTable(t, ps...)
}

func BenchmarkLookup1000Buckets(b *testing.B) {
	tb := thousandBuckets(b)
	paths := []string{"/bucket-0001/a.txt", "/bucket-0999/dir/sub/file.bin", "/bucket-0500", "/missing/x"}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		tb.Lookup(paths[i%len(paths)])
	}
}

func FuzzLookup(f *testing.F) {
	tb := mustTable(f, "/products", "/a/b", "/")
	for _, s := range []string{"/products/x", "/a/b/c", "", "/", "//", "/a/bc"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		b, key, ok := tb.Lookup(path)
		if !ok {
			return
		}
		if len(key) > len(path) {
			t.Fatalf("key %q longer than path %q (bucket %d)", key, path, b)
		}
	})
}
