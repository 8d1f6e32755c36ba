package config_test

import (
	"errors"
	"fmt"

	"github.com/yatagarasu/yatagarasu/internal/config"
)

func ExampleParse() {
	yaml := []byte(`
server:
  address: "0.0.0.0:8080"   # the original product's dialect: host and port in one key
buckets:
  - name: assets
    path_prefix: /assets/
    s3:
      bucket: assets
      endpoint: http://127.0.0.1:9000
      access_key: "${S3_ACCESS_KEY}"
      secret_key: "${S3_SECRET_KEY:-dev-secret}"
`)
	env := map[string]string{
		"S3_ACCESS_KEY":            "AKIAEXAMPLE",
		"YATAGARASU_ORIGIN_SECRET": "0123456789abcdef0123456789abcdef",
	}
	cfg, err := config.Parse("config.yaml", yaml, func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	b, _ := cfg.BucketByName("assets")
	fmt.Println(cfg.Server.Address, cfg.Server.Port)
	fmt.Println(b.NormalizedPrefix(), b.S3.Region, b.S3.SecretKey, b.S3.Timeout.D())
	fmt.Println(cfg.ExtProc.GRPCAddress, cfg.ExtProc.MessageTimeout.D())
	// Output:
	// 0.0.0.0 8080
	// /assets us-east-1 dev-secret 20s
	// 127.0.0.1:9001 250ms
}

func ExampleErrors() {
	yaml := []byte(`buckets:
  - name: assets
    path_prefix: /assets
    s3:
      bucket: assets
      endpoint: ftp://x
      acess_key: AKIAEXAMPLE
      secret_key: s
`)
	_, err := config.Parse("config.yaml", yaml, func(string) (string, bool) { return "", false })
	var errs config.Errors
	if errors.As(err, &errs) {
		for _, e := range errs {
			fmt.Println(e)
		}
	}
	// Output:
	// config.yaml:4:5: buckets[0].s3.access_key: missing credentials for bucket "assets"; fix: set s3.access_key and s3.secret_key, e.g. access_key: "${AWS_ACCESS_KEY_ID}"
	// config.yaml:6:7: buckets[0].s3.endpoint: "ftp://x" is not an http(s) URL; fix: use e.g. http://127.0.0.1:9000, or remove endpoint for AWS S3
	// config.yaml:7:7: buckets[0].s3.acess_key: unknown key "acess_key"; fix: did you mean "access_key"?
	// config.yaml: origin.shared_secret: the origin shared secret is not set (extproc signs requests to the origin with it); fix: set origin.shared_secret, or export YATAGARASU_ORIGIN_SECRET=$(openssl rand -hex 32)
}
