package config

import (
	"os"
	"path/filepath"
	"testing"
)

func FuzzParse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed files in testdata: %v", err)
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"",
		"---\n",
		"- a\n",
		"server: [\n",
		"server:\n\tport: 1\n",
		"server: {port: ${PORT}}\n",
		"a: &a [*a]\n",
		"cache: &c {x: *c}\n",
		"buckets:\n  - &b {name: a, path_prefix: /a, s3: {<<: *b}}\n",
		"buckets:\n  - <<: [*x]\n",
		"server:\n  address: \"[::1]:0\"\n",
		"buckets: [{name: a, path_prefix: '/a/../b', s3: {bucket: b, endpoint: 'http://[::1', access_key: '${A:-}', secret_key: '$${B}'}}]\n",
		"origin: {shared_secret: ${S:-x}, max_skew: 9223372036854775807}\nserver: {request_timeout: 9223372036854775807}\n",
		"? [a]\n: b\n",
		"server: !!binary aGVsbG8=\n",
	} {
		f.Add([]byte(s))
	}
	env := envOf(map[string]string{
		"S3_ACCESS_KEY": "a", "S3_SECRET_KEY": "b", "ORIGIN_SECRET": testSecret, "PORT": "8080",
		OriginSecretEnvDefault: testSecret,
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data, env)
		switch {
		case err == nil && cfg == nil:
			t.Fatal("Parse returned neither a config nor an error")
		case err != nil && cfg != nil:
			t.Fatal("Parse returned both a config and an error")
		case err != nil && err.Error() == "":
			t.Fatal("Parse returned an error with an empty message")
		}
		if errs, ok := err.(Errors); ok {
			if len(errs) == 0 {
				t.Fatal("Parse returned an empty Errors")
			}
			for _, e := range errs {
				if e.Msg == "" || e.File != "fuzz.yaml" {
					t.Fatalf("malformed error %#v", e)
				}
			}
		}
	})
}
