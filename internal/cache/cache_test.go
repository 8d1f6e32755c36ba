package cache

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func sampleEntry() *Entry {
	t0 := time.Unix(1_800_000_000, 123)
	return NewEntry(Meta{
		Key:         Key{Bucket: "products", Object: "dir/ü ../x.txt", Variant: "w=100"},
		ContentType: "text/plain", ContentEncoding: "gzip", ContentDisposition: "inline", CacheControl: "max-age=60",
		ETag: `"abc"`, LastModified: "Mon, 02 Jan 2006 15:04:05 GMT",
		StoredAt: t0, FreshUntil: t0.Add(time.Minute), KeepUntil: t0.Add(2 * time.Minute),
	}, []byte("hello, cache"))
}

func TestCodecRoundTrip(t *testing.T) {
	e := sampleEntry()
	got, err := Decode(Encode(e))
	if err != nil {
		t.Fatal(err)
	}
	if got.Meta != e.Meta || !bytes.Equal(got.Body, e.Body) {
		t.Fatalf("round trip differs:\n got %+v\nwant %+v", got, e)
	}
	empty := NewEntry(Meta{Key: Key{Bucket: "b", Object: "k"}}, nil)
	if got, err := Decode(Encode(empty)); err != nil || got.Size != 0 || got.Meta != empty.Meta {
		t.Fatalf("empty entry: %+v, %v", got, err)
	}
}

func TestCodecRejectsDamage(t *testing.T) {
	good := Encode(sampleEntry())
	cases := map[string][]byte{
		"truncated body":   good[:len(good)-1],
		"flipped body bit": append(append([]byte{}, good[:len(good)-1]...), good[len(good)-1]^1),
		"unknown version":  append([]byte("YGC\x02"), good[4:]...),
		"bad magic":        append([]byte("XGC"), good[3:]...),
		"short":            good[:5],
		"empty":            nil,
	}
	for name, b := range cases {
		if _, err := Decode(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err = %v, want ErrCorrupt", name, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode(sampleEntry()))
	f.Add([]byte("YGC\x01\x00\x00\x00\x00"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Decode(b)
		if err != nil {
			return
		}
		// Whatever decodes must verify and re-encode to the same bytes.
		if !e.Verify() {
			t.Fatalf("decoded entry does not verify")
		}
		if again := Encode(e); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs")
		}
	})
}

func TestKeyStringRoundTrip(t *testing.T) {
	k := Key{Bucket: "b", Object: "a/b c", Variant: "v"}
	if got, ok := ParseKey(k.String()); !ok || got != k {
		t.Fatalf("ParseKey(%q) = %+v, %v", k.String(), got, ok)
	}
	if (Key{Bucket: "a", Object: "b\x00c"}).String() == (Key{Bucket: "a", Object: "b", Variant: "c"}).String() {
		t.Log("keys with NUL collide with variants; S3 rejects NUL in keys, so they never reach the cache")
	}
}

func TestFreshness(t *testing.T) {
	def := time.Hour
	cases := []struct {
		cc    string
		fresh time.Duration
		store bool
	}{
		{"", def, true},
		{"max-age=60", time.Minute, true},
		{"public, max-age=60, s-maxage=10", 10 * time.Second, true},
		{"MAX-AGE=\"30\"", 30 * time.Second, true},
		{"no-store", 0, false},
		{"private, max-age=600", 0, false},
		{"no-cache", 0, true},
		{"max-age=abc", 0, true},
		{"max-age=99999999999999999999", maxFreshness, true},
		{"must-revalidate", def, true},
	}
	for _, c := range cases {
		fresh, store := Freshness(c.cc, def)
		if fresh != c.fresh || store != c.store {
			t.Errorf("Freshness(%q) = %s, %v; want %s, %v", c.cc, fresh, store, c.fresh, c.store)
		}
	}
	if r := Retention(0); r != time.Minute {
		t.Errorf("Retention(0) = %s", r)
	}
	if r := Retention(48 * time.Hour); r != 72*time.Hour {
		t.Errorf("Retention(48h) = %s", r)
	}
}

func FuzzParseCacheControl(f *testing.F) {
	for _, s := range []string{"max-age=60", "no-store, private", `s-maxage="5"`, "max-age=-1", ",,=,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d := ParseCacheControl(s)
		if d.MaxAge < -1 || d.MaxAge > maxFreshness || d.SMaxAge < -1 || d.SMaxAge > maxFreshness {
			t.Fatalf("out of range: %+v", d)
		}
		fresh, store := Freshness(s, time.Hour)
		if fresh < 0 || (!store && fresh != 0) {
			t.Fatalf("Freshness(%q) = %s, %v", s, fresh, store)
		}
	})
}
