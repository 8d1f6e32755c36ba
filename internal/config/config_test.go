package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// envOf builds an injected environment from a map.
func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

const testSecret = "0123456789abcdef0123456789abcdef"

func mustParse(t *testing.T, name string, data []byte, env map[string]string) *Config {
	t.Helper()
	cfg, err := Parse(name, data, envOf(env))
	if err != nil {
		t.Fatalf("Parse(%s) failed:\n%v", name, err)
	}
	return cfg
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestParseFullConfig(t *testing.T) {
	env := map[string]string{
		"S3_ACCESS_KEY": "AKIA123",
		"S3_SECRET_KEY": "pa#ss: word ${x}",
		"ORIGIN_SECRET": testSecret,
	}
	cfg := mustParse(t, "full.yaml", readTestdata(t, "full.yaml"), env)

	want := Config{
		Source: "full.yaml",
		Server: Server{
			Address: "127.0.0.1", Port: 8443, Threads: 2,
			RequestTimeout:        Seconds(1500 * time.Millisecond),
			MaxConcurrentRequests: 500,
			SecurityLimits:        SecurityLimits{MaxBodySize: 1048576, MaxHeaderSize: 32768, MaxURILength: 4096},
			RateLimit:             RateLimit{Set: true, Enabled: true, Global: Rate{RequestsPerSecond: 100}}, // access_test.go fills defaults
		},
		Buckets: []Bucket{
			{
				Name: "public-assets", PathPrefix: "/assets/",
				S3: S3{
					Bucket: "public-assets", Region: "eu-west-1", Endpoint: "http://127.0.0.1:9000",
					AccessKey: "AKIA123", SecretKey: "pa#ss: word ${x}",
					Timeout: Seconds(5 * time.Second), ConnectionPoolSize: 10,
					ConnectTimeout: Seconds(5 * time.Second), FirstByteTimeout: Seconds(5 * time.Second),
					Retry: Retry{MaxAttempts: 2, InitialBackoffMs: 100, MaxBackoffMs: 1000}, CircuitBreaker: defaultBreaker,
				},
			},
			{
				Name: "archive.v2", PathPrefix: "/",
				S3: S3{
					Bucket: "archive", Region: DefaultRegion, AccessKey: "AKIAEXAMPLE",
					SecretKey: "literal ${NOT_A_VAR}", Timeout: Seconds(DefaultS3Timeout), ConnectionPoolSize: DefaultPoolSize,
					ConnectTimeout: Seconds(DefaultConnectTimeout), FirstByteTimeout: Seconds(DefaultS3Timeout),
					Retry: defaultRetry, CircuitBreaker: defaultBreaker,
				},
				Auth:     BucketAuth{Enabled: false},
				Policies: []string{},
			},
		},
		ExtProc:  ExtProc{GRPCAddress: "127.0.0.1:19001", MessageTimeout: Duration(500 * time.Millisecond)},
		Origin:   Origin{Address: "127.0.0.1:19002", SharedSecret: testSecret, MaxSkew: Duration(10 * time.Second)},
		Admin:    Admin{Address: "127.0.0.1:19090"},
		XDS:      XDS{Address: "127.0.0.1:28000", Debounce: Duration(time.Second)},
		Policies: []Policy{},
	}
	withCacheDefaults(&want, true)   // cache_test.go
	withAccessDefaults(&want)        // access_test.go
	withObservabilityDefaults(&want) // observability_test.go
	got := *cfg
	got.pos = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoded config differs\n got: %#v\nwant: %#v", got, want)
	}
	if p := cfg.Buckets[0].NormalizedPrefix(); p != "/assets" {
		t.Errorf("NormalizedPrefix = %q, want /assets", p)
	}
	if p := cfg.Buckets[1].NormalizedPrefix(); p != "" {
		t.Errorf("NormalizedPrefix of root = %q, want empty", p)
	}
	b, ok := cfg.BucketByName("archive.v2")
	if !ok || b.S3.Bucket != "archive" {
		t.Errorf("BucketByName(archive.v2) = %v, %v", b, ok)
	}
	if _, ok := cfg.BucketByName("nope"); ok {
		t.Error("BucketByName(nope) found a bucket")
	}
}

func TestLoadMinimalAppliesDefaults(t *testing.T) {
	t.Setenv("S3_ACCESS_KEY", "ak")
	t.Setenv("S3_SECRET_KEY", "sk")
	t.Setenv(OriginSecretEnvDefault, testSecret)
	cfg, err := Load(filepath.Join("testdata", "minimal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Source: filepath.Join("testdata", "minimal.yaml"),
		Server: Server{
			Address: "0.0.0.0", Port: 8080,
			RequestTimeout:        Seconds(DefaultRequestTimeout),
			MaxConcurrentRequests: DefaultMaxConcurrent,
			SecurityLimits:        SecurityLimits{MaxBodySize: DefaultMaxBodySize, MaxHeaderSize: DefaultMaxHeaderSize, MaxURILength: DefaultMaxURILength},
		},
		Buckets: []Bucket{{
			Name: "assets", PathPrefix: "/assets",
			S3: S3{
				Bucket: "assets", Region: DefaultRegion, Endpoint: "http://127.0.0.1:9000", AccessKey: "ak", SecretKey: "sk",
				Timeout: Seconds(DefaultS3Timeout), ConnectionPoolSize: DefaultPoolSize,
				ConnectTimeout: Seconds(DefaultConnectTimeout), FirstByteTimeout: Seconds(DefaultS3Timeout),
				Retry: defaultRetry, CircuitBreaker: defaultBreaker,
			},
		}},
		ExtProc: ExtProc{GRPCAddress: DefaultExtProcAddress, MessageTimeout: Duration(DefaultMessageTimeout)},
		Origin:  Origin{Address: DefaultOriginAddress, SharedSecret: testSecret, MaxSkew: Duration(DefaultMaxSkew)},
		Admin:   Admin{Address: DefaultAdminAddress},
		XDS:     XDS{Address: DefaultXDSAddress, Debounce: Duration(DefaultDebounce)},
	}
	withCacheDefaults(&want, false)  // cache_test.go
	withAccessDefaults(&want)        // access_test.go
	withObservabilityDefaults(&want) // observability_test.go
	got := *cfg
	got.pos = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("defaults differ\n got: %#v\nwant: %#v", got, want)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "absent.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load(absent) error = %v, want fs.ErrNotExist", err)
	}
	if !strings.Contains(err.Error(), "absent.yaml") {
		t.Errorf("error %q does not name the file", err)
	}
}

func TestOriginalProductFullExampleLoads(t *testing.T) {
	env := map[string]string{
		"JWT_SECRET":             "jwt-secret-of-at-least-32-bytes!",
		"AWS_ACCESS_KEY_PUBLIC":  "AKPUB",
		"AWS_SECRET_KEY_PUBLIC":  "SKPUB",
		"AWS_ACCESS_KEY_PRIVATE": "AKPRIV",
		"AWS_SECRET_KEY_PRIVATE": "SKPRIV",
		"OPENFGA_STORE_ID":       "store-1",
		"REDIS_PASSWORD":         "redis#pass",
		"AWS_ACCESS_KEY_PRIMARY": "AKPRIM",
		"AWS_SECRET_KEY_PRIMARY": "SKPRIM",
		"MINIO_ACCESS_KEY":       "AKMINIO",
		"MINIO_SECRET_KEY":       "SKMINIO",
		OriginSecretEnvDefault:   testSecret,
	}
	cfg := mustParse(t, "original_full.yaml", readTestdata(t, "original_full.yaml"), env)
	if cfg.Server.Address != "0.0.0.0" || cfg.Server.Port != 8080 || cfg.Server.Threads != 4 {
		t.Errorf("server = %+v", cfg.Server)
	}
	if cfg.Server.RequestTimeout.D() != 30*time.Second {
		t.Errorf("request_timeout = %v, want 30s", cfg.Server.RequestTimeout.D())
	}
	var names []string
	for _, b := range cfg.Buckets {
		names = append(names, b.Name)
	}
	if got := strings.Join(names, ","); got != "public-assets,private-data,documents,products-ha,previews" {
		t.Errorf("buckets = %s", got)
	}
	ha, _ := cfg.BucketByName("products-ha")
	if backends := ha.S3.Backends(); len(backends) != 2 || backends[0].Name != "primary-us-west" || backends[1].Endpoint != "https://minio.example.com:9000" {
		t.Errorf("products-ha backends = %+v", backends)
	}
	pub, _ := cfg.BucketByName("public-assets")
	if pub.S3.AccessKey != "AKPUB" || pub.S3.Endpoint != "http://minio:9000" || !pub.S3.PathStyle() {
		t.Errorf("public-assets s3 = %+v", pub.S3)
	}
	if cb := pub.S3.CircuitBreaker.FailureThreshold; cb != 5 {
		t.Errorf("circuit_breaker.failure_threshold = %v", cb)
	}
	docs, _ := cfg.BucketByName("documents")
	if docs.Authorization["openfga_store_id"] != "store-1" {
		t.Errorf("documents authorization = %v", docs.Authorization)
	}
	if cfg.JWT.Secret != "jwt-secret-of-at-least-32-bytes!" || cfg.JWT.Algorithm != "HS256" {
		t.Errorf("jwt = %v", cfg.JWT)
	}
	if redis := cfg.Cache.Redis; redis.RedisPassword != "redis#pass" {
		t.Errorf("cache.redis = %+v", redis)
	}
	if cfg.Origin.SharedSecret != testSecret {
		t.Errorf("shared secret not taken from %s", OriginSecretEnvDefault)
	}
	// Positions inside free-form sections are recorded for the features that own them.
	e := cfg.ErrorAt("jwt.token_sources[1].name", "bad", "fix it")
	if e.Line != 34 || e.File != "original_full.yaml" {
		t.Errorf("ErrorAt(jwt.token_sources[1].name) = %v, want line 34", e)
	}
	if !cfg.Written("server.port") || cfg.Written("extproc.grpc_address") {
		t.Error("Written does not tell written keys from defaulted ones")
	}
}

func TestAddressWithPortDialect(t *testing.T) {
	cfg := mustParse(t, "dialect.yaml", readTestdata(t, "dialect.yaml"), nil)
	if cfg.Server.Address != "0.0.0.0" || cfg.Server.Port != 9080 {
		t.Errorf("server = %q port %d, want 0.0.0.0 port 9080", cfg.Server.Address, cfg.Server.Port)
	}
	cfg = mustParse(t, "v6.yaml", []byte("server:\n  address: \"[::]:8081\"\n"+okBucket), map[string]string{OriginSecretEnvDefault: testSecret})
	if cfg.Server.Address != "::" || cfg.Server.Port != 8081 {
		t.Errorf("server = %q port %d, want :: port 8081", cfg.Server.Address, cfg.Server.Port)
	}
}

// okBucket is a valid buckets section for cases that test something else.
const okBucket = `buckets:
  - name: a
    path_prefix: /a
    s3: {bucket: a, access_key: k, secret_key: s}
`

func TestEnvSubstitution(t *testing.T) {
	env := map[string]string{
		OriginSecretEnvDefault: testSecret,
		"HOST":                 "minio.local",
		"EMPTY":                "",
		"PORT":                 "9443",
		"TRICKY":               "a#b: c\n- d",
	}
	yaml := `# ${UNSET_IN_COMMENT} is never looked at
server:
  port: ${PORT}   # ${ALSO_UNSET}
  address: "${BIND:-127.0.0.1}"
buckets:
  - name: a
    path_prefix: /a
    s3:
      bucket: "${EMPTY:-fallback}"
      endpoint: http://${HOST}:9000
      access_key: "${TRICKY}"
      secret_key: "$${LITERAL} and $$ and $x"
      region: "${EMPTY}"
image_optimization:
  "${HOST}": "${HOST}"
`
	cfg := mustParse(t, "env.yaml", []byte(yaml), env)
	s3 := cfg.Buckets[0].S3
	checks := []struct{ name, got, want string }{
		{"default for unset", cfg.Server.Address, "127.0.0.1"},
		{"default for empty", s3.Bucket, "fallback"},
		{"inside a longer value", s3.Endpoint, "http://minio.local:9000"},
		{"YAML-significant characters stay data", s3.AccessKey, "a#b: c\n- d"},
		{"escape", s3.SecretKey, "${LITERAL} and $$ and $x"},
		{"set but empty without default", s3.Region, DefaultRegion},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, c.got, c.want)
		}
	}
	if cfg.Server.Port != 9443 {
		t.Errorf("port from ${PORT} = %d, want 9443", cfg.Server.Port)
	}
	if v, ok := cfg.ImageOptimization["${HOST}"]; !ok || v != "minio.local" {
		t.Errorf("keys must not be substituted, values must: image_optimization = %v", cfg.ImageOptimization)
	}

	// A quoted reference to a number still feeds an integer field.
	cfg = mustParse(t, "q.yaml", []byte("server:\n  port: \"${PORT}\"\n"+okBucket), env)
	if cfg.Server.Port != 9443 {
		t.Errorf("port from quoted ${PORT} = %d", cfg.Server.Port)
	}
}

// marker flags the line an error must point at in the table below.
const marker = "# <--"

func markedLine(t *testing.T, yaml string) int {
	t.Helper()
	for i, l := range strings.Split(yaml, "\n") {
		if strings.Contains(l, marker) {
			return i + 1
		}
	}
	return 0
}

func TestErrors(t *testing.T) {
	cases := []struct {
		name     string
		yaml     string
		env      map[string]string // added to the default env (which has the origin secret)
		noSecret bool              // drop the origin secret from the env
		path     string
		msg      string // substring of Msg
		fix      string // substring of Fix
		count    int    // expected number of errors, 1 when zero
	}{
		{name: "empty file", yaml: "", msg: "the file is empty", fix: "buckets"},
		{name: "only comments", yaml: "# nothing\n\n", msg: "empty", fix: "buckets"},
		{name: "null document", yaml: "--- # <--\n", msg: "empty", fix: "buckets"},
		{name: "top level list", yaml: "- a # <--\n", msg: "must be a mapping", fix: "server:"},
		{name: "two documents", yaml: okBucket + "--- # <--\nserver: {}\n", msg: "more than one YAML document", fix: "single document"},
		{name: "mapping value in a plain scalar", yaml: okBucket + "admin:\n  address: a: b # <--\n", msg: "mapping values are not allowed", fix: "quoting"},
		{name: "syntax error", yaml: okBucket + "server:\n\tport: 1 # <--\n", msg: "invalid YAML: found character that cannot start any token", fix: "indentation"},
		{
			name: "unknown key close to a valid one",
			yaml: okBucket + "server:\n  adress: 0.0.0.0 # <--\n",
			path: "server.adress", msg: `unknown key "adress"`, fix: `did you mean "address"?`,
		},
		{
			name: "unknown key with swapped letters",
			yaml: okBucket + "server:\n  prot: 80 # <--\n",
			path: "server.prot", msg: `unknown key "prot"`, fix: `did you mean "port"?`,
		},
		{
			name: "unknown key far from any",
			yaml: okBucket + "admin:\n  zzzzzzzz: 1 # <--\n",
			path: "admin.zzzzzzzz", fix: "valid keys under admin are: address",
		},
		{
			name: "unknown key in a bucket's s3",
			yaml: "buckets:\n  - name: a\n    path_prefix: /a\n    s3:\n      bucket: a\n      access_key: k\n      secret_key: s\n      endpont: http://x # <--\n",
			path: "buckets[0].s3.endpont", fix: `did you mean "endpoint"?`,
		},
		{
			name: "duplicate key",
			yaml: okBucket + "server:\n  port: 80\n  port: 81 # <--\n",
			path: "server.port", msg: "duplicate key \"port\" (first set at line 6)", fix: "keep only one",
		},
		{
			name: "duplicate key in a free-form section",
			yaml: okBucket + "cache:\n  enabled: true\n  enabled: false # <--\n",
			path: "cache.enabled", msg: "duplicate key", fix: "keep only one",
		},
		{
			name: "list where a mapping is expected",
			yaml: okBucket + "server:\n  - port # <--\n",
			path: "server", msg: "expected a mapping, got a list", fix: "address, port",
		},
		{
			name: "string for an int",
			yaml: okBucket + "server:\n  port: abc # <--\n",
			path: "server.port", msg: `expected an integer, got "abc"`, fix: "whole number",
		},
		{
			name: "mapping for a string",
			yaml: "buckets:\n  - name: {x: 1} # <--\n    path_prefix: /a\n    s3: {bucket: a, access_key: k, secret_key: s}\n",
			path: "buckets[0].name", msg: "expected a string, got a mapping",
		},
		{
			name: "scalar for a free-form mapping",
			yaml: okBucket + "jwt: yes # <--\n",
			path: "jwt", msg: "expected a mapping", fix: "indented lines",
		},
		{
			name: "mapping for a free-form list",
			yaml: okBucket + "policies: {a: 1} # <--\n",
			path: "policies", msg: "expected a list", fix: "- ",
		},
		{
			name: "fractional seconds",
			yaml: okBucket + "server:\n  request_timeout: 1.5 # <--\n",
			path: "server.request_timeout", msg: "fractional", fix: `"1500ms"`,
		},
		{
			name: "bad seconds string",
			yaml: okBucket + "server:\n  request_timeout: soon # <--\n",
			path: "server.request_timeout", msg: "neither whole seconds nor a duration", fix: "whole seconds",
		},
		{
			name: "duration as bare integer",
			yaml: okBucket + "extproc:\n  message_timeout: 250 # <--\n",
			path: "extproc.message_timeout", msg: "250 has no unit", fix: `"250ms"`,
		},
		{
			name: "duration not parseable",
			yaml: okBucket + "origin:\n  max_skew: later # <--\n",
			path: "origin.max_skew", msg: `"later" is not a duration`, fix: `"250ms"`,
		},
		{
			name: "unset variable",
			yaml: "buckets:\n  - name: a\n    path_prefix: /a\n    s3:\n      bucket: a\n      access_key: ${NOPE} # <--\n      secret_key: s\n",
			path: "buckets[0].s3.access_key", msg: "environment variable NOPE is not set", fix: "export NOPE=... or write ${NOPE:-default}",
		},
		{
			name: "invalid variable name",
			yaml: okBucket + "admin:\n  address: ${1BAD} # <--\n",
			path: "admin.address", msg: "invalid variable reference ${1BAD}", fix: "[A-Za-z_]",
		},
		{
			name: "unterminated variable",
			yaml: okBucket + "admin:\n  address: ${HOST # <--\n",
			path: "admin.address", msg: "unterminated", fix: `"$${"`,
		},
		{name: "no buckets key", yaml: "server: {port: 8080}\n", path: "buckets", msg: "no buckets", fix: "add at least one bucket"},
		{name: "empty buckets", yaml: "buckets: [] # <--\n", path: "buckets", msg: "no buckets", fix: "add at least one bucket"},
		{
			name: "bucket name missing",
			yaml: "buckets:\n  - path_prefix: /a # <--\n    s3: {bucket: a, access_key: k, secret_key: s}\n",
			path: "buckets[0].name", msg: "bucket name is required", fix: `name: "assets"`,
		},
		{
			name: "bucket name invalid",
			yaml: "buckets:\n  - name: \"my bucket\" # <--\n    path_prefix: /a\n    s3: {bucket: a, access_key: k, secret_key: s}\n",
			path: "buckets[0].name", msg: "may contain only", fix: `name: "my-bucket"`,
		},
		{
			name: "bucket name duplicate",
			yaml: okBucket + "  - name: a # <--\n    path_prefix: /b\n    s3: {bucket: b, access_key: k, secret_key: s}\n",
			path: "buckets[1].name", msg: `"a" is already used by buckets[0] (line 2)`, fix: "unique name",
		},
		{
			name: "path_prefix missing",
			yaml: "buckets:\n  - name: a # <--\n    s3: {bucket: a, access_key: k, secret_key: s}\n",
			path: "buckets[0].path_prefix", msg: "path_prefix is required", fix: `path_prefix: "/assets"`,
		},
		{
			name: "path_prefix without slash",
			yaml: "buckets:\n  - name: a\n    path_prefix: assets # <--\n    s3: {bucket: a, access_key: k, secret_key: s}\n",
			path: "buckets[0].path_prefix", msg: `must start with "/"`, fix: `path_prefix: "/assets"`,
		},
		{
			name: "path_prefix with query",
			yaml: "buckets:\n  - name: a\n    path_prefix: /a?x # <--\n    s3: {bucket: a, access_key: k, secret_key: s}\n",
			path: "buckets[0].path_prefix", msg: `contains "?"`, fix: "plain path characters",
		},
		{
			name: "path_prefix with space",
			yaml: "buckets:\n  - name: a\n    path_prefix: \"/a b\" # <--\n    s3: {bucket: a, access_key: k, secret_key: s}\n",
			path: "buckets[0].path_prefix", msg: `contains " "`, fix: "plain path characters",
		},
		{
			name: "path_prefix with percent",
			yaml: "buckets:\n  - name: a\n    path_prefix: /a%2F # <--\n    s3: {bucket: a, access_key: k, secret_key: s}\n",
			path: "buckets[0].path_prefix", msg: `contains "%"`, fix: "unencoded",
		},
		{
			name: "path_prefix with backslash",
			yaml: "buckets:\n  - name: a\n    path_prefix: '/a\\b' # <--\n    s3: {bucket: a, access_key: k, secret_key: s}\n",
			path: "buckets[0].path_prefix", msg: `contains "\\"`, fix: "plain path characters",
		},
		{
			name: "path_prefix with hash",
			yaml: "buckets:\n  - name: a\n    path_prefix: \"/a#b\" # <--\n    s3: {bucket: a, access_key: k, secret_key: s}\n",
			path: "buckets[0].path_prefix", msg: `contains "#"`, fix: "plain path characters",
		},
		{
			name: "path_prefix with dot-dot",
			yaml: "buckets:\n  - name: a\n    path_prefix: /a/../b # <--\n    s3: {bucket: a, access_key: k, secret_key: s}\n",
			path: "buckets[0].path_prefix", msg: `a ".." segment`, fix: "without dot segments",
		},
		{
			name: "path_prefix with dot",
			yaml: "buckets:\n  - name: a\n    path_prefix: /a/./ # <--\n    s3: {bucket: a, access_key: k, secret_key: s}\n",
			path: "buckets[0].path_prefix", msg: `a "." segment`, fix: "without dot segments",
		},
		{
			name: "path_prefix with empty segment",
			yaml: "buckets:\n  - name: a\n    path_prefix: /a//b # <--\n    s3: {bucket: a, access_key: k, secret_key: s}\n",
			path: "buckets[0].path_prefix", msg: "empty segment", fix: "single slashes",
		},
		{
			name: "path_prefix duplicate after normalising",
			yaml: okBucket + "  - name: b\n    path_prefix: /a/ # <--\n    s3: {bucket: b, access_key: k, secret_key: s}\n",
			path: "buckets[1].path_prefix",
			msg:  `path_prefix "/a/" of bucket "b" (line 6) is the same route as path_prefix "/a" of bucket "a" (buckets[0], line 3)`,
			fix:  "distinct path_prefix",
		},
		{
			name: "s3 bucket missing",
			yaml: "buckets:\n  - name: a\n    path_prefix: /a\n    s3: {access_key: k, secret_key: s} # <--\n",
			path: "buckets[0].s3.bucket", msg: `s3.bucket is required for bucket "a"`, fix: `bucket: "my-s3-bucket"`,
		},
		{
			name: "s3 section missing",
			yaml: "buckets:\n  - name: a # <--\n    path_prefix: /a\n",
			path: "buckets[0].s3.bucket", msg: "s3.bucket is required", count: 2,
		},
		{
			name: "endpoint not http",
			yaml: "buckets:\n  - name: a\n    path_prefix: /a\n    s3:\n      bucket: a\n      endpoint: ftp://x # <--\n      access_key: k\n      secret_key: s\n",
			path: "buckets[0].s3.endpoint", msg: `"ftp://x" is not an http(s) URL`, fix: "use e.g. http://127.0.0.1:9000",
		},
		{
			name: "endpoint with path",
			yaml: "buckets:\n  - name: a\n    path_prefix: /a\n    s3:\n      bucket: a\n      endpoint: http://x:9000/bucket # <--\n      access_key: k\n      secret_key: s\n",
			path: "buckets[0].s3.endpoint", msg: "must not have a path", fix: "http://127.0.0.1:9000",
		},
		{
			name: "endpoint with query",
			yaml: "buckets:\n  - name: a\n    path_prefix: /a\n    s3:\n      bucket: a\n      endpoint: http://x/?a=b # <--\n      access_key: k\n      secret_key: s\n",
			path: "buckets[0].s3.endpoint", msg: "must not have a query", fix: "http://127.0.0.1:9000",
		},
		{
			name: "endpoint with user info",
			yaml: "buckets:\n  - name: a\n    path_prefix: /a\n    s3:\n      bucket: a\n      endpoint: http://u:p@x # <--\n      access_key: k\n      secret_key: s\n",
			path: "buckets[0].s3.endpoint", msg: "must not contain user info", fix: "http://127.0.0.1:9000",
		},
		{
			name: "endpoint without host",
			yaml: "buckets:\n  - name: a\n    path_prefix: /a\n    s3:\n      bucket: a\n      endpoint: http:/x # <--\n      access_key: k\n      secret_key: s\n",
			path: "buckets[0].s3.endpoint", msg: "has no host", fix: "http://127.0.0.1:9000",
		},
		{
			name: "missing both credentials",
			yaml: "buckets:\n  - name: a\n    path_prefix: /a\n    s3: {bucket: a} # <--\n",
			path: "buckets[0].s3.access_key", msg: `missing credentials for bucket "a"`,
			fix: `set s3.access_key and s3.secret_key, e.g. access_key: "${AWS_ACCESS_KEY_ID}"`,
		},
		{
			name: "missing secret key",
			yaml: "buckets:\n  - name: a\n    path_prefix: /a\n    s3:\n      bucket: a\n      access_key: k\n      secret_key: \"\" # <--\n",
			path: "buckets[0].s3.secret_key", msg: `missing credentials for bucket "a"`, fix: "s3.secret_key",
		},
		{
			name: "zero s3 timeout",
			yaml: "buckets:\n  - name: a\n    path_prefix: /a\n    s3:\n      bucket: a\n      access_key: k\n      secret_key: s\n      timeout: 0 # <--\n",
			path: "buckets[0].s3.timeout", msg: "must be greater than 0", fix: "timeout: 20",
		},
		{
			name: "zero pool size",
			yaml: "buckets:\n  - name: a\n    path_prefix: /a\n    s3:\n      bucket: a\n      access_key: k\n      secret_key: s\n      connection_pool_size: 0 # <--\n",
			path: "buckets[0].s3.connection_pool_size", msg: "must be greater than 0", fix: "connection_pool_size: 50",
		},
		{
			name: "replicas",
			yaml: "buckets:\n  - name: a\n    path_prefix: /a\n    s3:\n      bucket: a\n      replicas: # <--\n        - {name: r1, bucket: b, access_key: k, secret_key: s, priority: 1}\n",
			path: "buckets[0].s3.replicas", msg: "s3.replicas and s3.bucket are both set", fix: "not both",
		},
		{
			name: "shared secret missing", yaml: okBucket, noSecret: true,
			path: "origin.shared_secret", msg: "not set", fix: "export YATAGARASU_ORIGIN_SECRET=$(openssl rand -hex 32)",
		},
		{
			name: "shared secret too short", yaml: okBucket + "origin:\n  shared_secret: short # <--\n",
			path: "origin.shared_secret", msg: "is 5 bytes, at least 32", fix: "export YATAGARASU_ORIGIN_SECRET=$(openssl rand -hex 32)",
		},
		{
			name: "short secret from env", yaml: okBucket, noSecret: true, env: map[string]string{OriginSecretEnvDefault: "x"},
			path: "origin.shared_secret", msg: "is 1 bytes", fix: "openssl rand -hex 32",
		},
		{
			name: "address without port", yaml: okBucket + "extproc:\n  grpc_address: localhost # <--\n",
			path: "extproc.grpc_address", msg: `"localhost" is not a host:port address`, fix: `"127.0.0.1:9001"`,
		},
		{
			name: "address port zero", yaml: okBucket + "origin:\n  address: 127.0.0.1:0 # <--\n",
			path: "origin.address", msg: "not a number in 1..65535", fix: `"127.0.0.1:9002"`,
		},
		{
			name: "address port too big", yaml: okBucket + "xds:\n  address: 127.0.0.1:70000 # <--\n",
			path: "xds.address", msg: "not a number in 1..65535", fix: `"127.0.0.1:18000"`,
		},
		{
			name: "server port out of range", yaml: okBucket + "server:\n  port: 70000 # <--\n",
			path: "server.port", msg: "out of range 1..65535", fix: "port: 8080",
		},
		{
			name: "server address with port and port key",
			yaml: okBucket + "server:\n  address: 0.0.0.0:8080 # <--\n  port: 8080\n",
			path: "server.address", msg: "not an IP address", fix: `address: "0.0.0.0" and port: 8080`,
		},
		{
			name: "server address host name", yaml: okBucket + "server:\n  address: localhost # <--\n",
			path: "server.address", msg: "not an IP address", fix: `"0.0.0.0"`,
		},
		{
			name: "listen addresses collide", yaml: okBucket + "admin:\n  address: 127.0.0.1:9001 # <--\n",
			path: "admin.address", msg: "same address as extproc.grpc_address (its default)", fix: "its own port",
		},
		{
			name: "wildcard listener collides", yaml: okBucket + "server:\n  port: 9090\nadmin:\n  address: 127.0.0.1:9090 # <--\n",
			path: "admin.address", msg: "same address as server.port (line 6)", fix: "its own port",
		},
		{
			name: "zero concurrency", yaml: okBucket + "server:\n  max_concurrent_requests: 0 # <--\n",
			path: "server.max_concurrent_requests", msg: "greater than 0, got 0", fix: "1000",
		},
		{
			name: "negative uri limit", yaml: okBucket + "server:\n  security_limits:\n    max_uri_length: -1 # <--\n",
			path: "server.security_limits.max_uri_length", msg: "greater than 0, got -1", fix: "8192",
		},
		{
			name: "zero request timeout", yaml: okBucket + "server:\n  request_timeout: 0 # <--\n",
			path: "server.request_timeout", msg: "greater than 0", fix: "request_timeout: 30",
		},
		{
			name: "message timeout too long", yaml: okBucket + "extproc:\n  message_timeout: 2h # <--\n",
			path: "extproc.message_timeout", msg: "outside Envoy's range (0, 1h]", fix: `"250ms"`,
		},
		{
			name: "message timeout zero", yaml: okBucket + "extproc:\n  message_timeout: 0s # <--\n",
			path: "extproc.message_timeout", msg: "outside Envoy's range", fix: `"250ms"`,
		},
		{
			name: "zero max skew", yaml: okBucket + "origin:\n  max_skew: 0s # <--\n",
			path: "origin.max_skew", msg: "greater than 0", fix: `"30s"`,
		},
		{
			name: "alias cycle", yaml: okBucket + "image_optimization: &c\n  inner: *c # <--\n",
			path: "image_optimization.inner", msg: "contains it", fix: "recursive alias",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{}
			if !tc.noSecret {
				env[OriginSecretEnvDefault] = testSecret
			}
			for k, v := range tc.env {
				env[k] = v
			}
			cfg, err := Parse("test.yaml", []byte(tc.yaml), envOf(env))
			if err == nil {
				t.Fatalf("Parse succeeded, want an error at %s (config %+v)", tc.path, cfg)
			}
			if cfg != nil {
				t.Error("Parse returned a config together with an error")
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error %T is not Errors: %v", err, err)
			}
			want := tc.count
			if want == 0 {
				want = 1
			}
			if len(errs) != want {
				t.Errorf("got %d errors, want %d:\n%v", len(errs), want, err)
			}
			var e *Error
			for _, c := range errs {
				if c.Path == tc.path {
					e = c
					break
				}
			}
			if e == nil {
				t.Fatalf("no error with path %q in:\n%v", tc.path, err)
			}
			if e.File != "test.yaml" {
				t.Errorf("File = %q, want test.yaml", e.File)
			}
			if line := markedLine(t, tc.yaml); e.Line != line {
				t.Errorf("Line = %d, want %d (%v)", e.Line, line, e)
			}
			if !strings.Contains(e.Msg, tc.msg) {
				t.Errorf("Msg = %q, want it to contain %q", e.Msg, tc.msg)
			}
			if !strings.Contains(e.Fix, tc.fix) {
				t.Errorf("Fix = %q, want it to contain %q", e.Fix, tc.fix)
			}
			if !strings.Contains(err.Error(), e.Error()) {
				t.Errorf("Errors text %q does not include %q", err, e)
			}
		})
	}
}

func TestErrorFormat(t *testing.T) {
	yaml := "buckets:\n  - name: a\n    path_prefix: /a\n    s3:\n      bucket: a\n      endpoint: \"ftp://x\"\n      access_key: k\n      secret_key: s\n"
	_, err := Parse("config.yaml", []byte(yaml), envOf(map[string]string{OriginSecretEnvDefault: testSecret}))
	want := `config.yaml:6:7: buckets[0].s3.endpoint: "ftp://x" is not an http(s) URL; fix: use e.g. http://127.0.0.1:9000, or remove endpoint for AWS S3`
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v\nwant   %s", err, want)
	}
	var e *Error
	if !errors.As(err, &e) || e.Column != 7 {
		t.Fatalf("errors.As(*Error) = %v", e)
	}
	noPlace := (&Error{File: "c.yaml", Msg: "empty"}).Error()
	if noPlace != "c.yaml: empty" {
		t.Errorf("error without line = %q", noPlace)
	}
}

func TestAllProblemsReportedAtOnce(t *testing.T) {
	yaml := `server:
  port: abc
  adress: x
buckets:
  - name: a
    path_prefix: a
    s3: {bucket: a, access_key: "${MISSING}", secret_key: s}
origin:
  shared_secret: short
`
	_, err := Parse("multi.yaml", []byte(yaml), envOf(nil))
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error %v is not Errors", err)
	}
	var got []string
	for _, e := range errs {
		got = append(got, e.Path)
	}
	want := []string{"server.port", "server.adress", "buckets[0].path_prefix", "buckets[0].s3.access_key", "origin.shared_secret"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("paths = %q\nwant    %q\nerrors:\n%v", got, want, err)
	}
	if lines := strings.Count(err.Error(), "\n") + 1; lines != len(want) {
		t.Errorf("Error() has %d lines, want one per problem", lines)
	}
}

func TestAliasesAndMergeKeys(t *testing.T) {
	// The anchor must sit under a key the schema knows; a free-form section serves.
	yaml := `image_optimization: &creds
  access_key: k
  secret_key: s
buckets:
  - name: a
    path_prefix: /a
    s3:
      <<: *creds
      bucket: a
  - name: b
    path_prefix: /b
    s3:
      <<: *creds
      bucket: b
      secret_key: override
`
	cfg, err := Parse("alias.yaml", []byte(yaml), envOf(map[string]string{OriginSecretEnvDefault: testSecret}))
	if err != nil {
		t.Fatal(err)
	}
	if a := cfg.Buckets[0].S3; a.AccessKey != "k" || a.SecretKey != "s" {
		t.Errorf("bucket a s3 = %+v", a)
	}
	if b := cfg.Buckets[1].S3; b.AccessKey != "k" || b.SecretKey != "override" {
		t.Errorf("explicit key must win over merged one: %+v", b)
	}
}

func TestAliasBombIsBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString(okBucket)
	// image_optimization is still an untyped section, so the expansion reaches the decoder's budget.
	b.WriteString("image_optimization:\n  k0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 12; i++ {
		b.WriteString("  k" + string(rune('a'+i)) + ": &a" + string(rune('a'+i)) + " [")
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			if i == 1 {
				b.WriteString("*a0")
			} else {
				b.WriteString("*a" + string(rune('a'+i-1)))
			}
		}
		b.WriteString("]\n")
	}
	_, err := Parse("bomb.yaml", []byte(b.String()), envOf(map[string]string{OriginSecretEnvDefault: testSecret}))
	if err == nil || !strings.Contains(err.Error(), "aliases") {
		t.Fatalf("alias bomb error = %v, want one about aliases", err)
	}
}

func TestSuggestion(t *testing.T) {
	valid := []string{"address", "port", "threads", "request_timeout"}
	for key, want := range map[string]string{
		"adress":         `did you mean "address"?`,
		"Port":           `did you mean "port"?`,
		"request_timout": `did you mean "request_timeout"?`,
		"listen":         "valid keys under server are: address, port, threads, request_timeout",
	} {
		if got := suggest(key, valid, "server"); got != want {
			t.Errorf("suggest(%q) = %q, want %q", key, got, want)
		}
	}
}

func TestManyProblemsAreCapped(t *testing.T) {
	yaml := "buckets: [" + strings.Repeat("1, ", 5000) + "1]\n"
	_, err := Parse("many.yaml", []byte(yaml), envOf(map[string]string{OriginSecretEnvDefault: testSecret}))
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error %v is not Errors", err)
	}
	if len(errs) != maxReported+1 {
		t.Fatalf("got %d errors, want %d", len(errs), maxReported+1)
	}
	last := errs[len(errs)-1]
	if last.Msg != "4951 more problems not shown" {
		t.Errorf("last error = %v", last)
	}
	// Validation problems of items that failed to decode are not reported twice.
	for _, e := range errs[:maxReported] {
		if !strings.Contains(e.Msg, "expected a mapping") {
			t.Errorf("unexpected follow-on error %v", e)
		}
	}
}
