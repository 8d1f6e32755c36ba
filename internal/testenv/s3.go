package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/yatagarasu/yatagarasu/internal/config"
)

// VersityGWModule is the exact versitygw build the tests are written against.
const VersityGWModule = "github.com/versity/versitygw/cmd/versitygw@v1.8.0"

// Options configure StartS3; zero values get test defaults (a random secret key).
type Options struct {
	AccessKey string // default "YATAGARASUTEST"
	SecretKey string // default: 32 random hex characters
	Region    string // default config.DefaultRegion
	// Binary is the versitygw executable; default: found in PATH, $GOBIN or $(go env GOPATH)/bin,
	// installed with `go install` when missing.
	Binary string
}

// S3 is a running versitygw (posix backend) that verifies SigV4 like AWS does.
type S3 struct {
	Endpoint  string // http://127.0.0.1:<port>
	AccessKey string
	SecretKey string
	Region    string

	dir    string
	proc   *process
	client *s3.Client
}

// StartS3 starts versitygw on a free loopback port with a fresh temporary root directory and
// returns once it answers a signed ListBuckets. ctx bounds installation and start-up only.
func StartS3(ctx context.Context, opts Options) (*S3, error) {
	if opts.AccessKey == "" {
		opts.AccessKey = "YATAGARASUTEST"
	}
	if opts.SecretKey == "" {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		opts.SecretKey = hex.EncodeToString(b)
	}
	if opts.Region == "" {
		opts.Region = config.DefaultRegion
	}
	bin := opts.Binary
	if bin == "" {
		var err error
		if bin, err = versitygwBinary(ctx); err != nil {
			return nil, err
		}
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		s, err := startS3Once(ctx, bin, opts)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if !errors.Is(err, errStartRace) {
			break
		}
	}
	return nil, lastErr
}

func startS3Once(ctx context.Context, bin string, opts Options) (*S3, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "yatagarasu-versitygw-")
	if err != nil {
		return nil, fmt.Errorf("create versitygw root: %w", err)
	}
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o700); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("create versitygw root: %w", err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	proc, err := startProcess(dir, bin,
		"--port", addr, "--access", opts.AccessKey, "--secret", opts.SecretKey,
		"--region", opts.Region, "--keep-alive", "--quiet", "posix", root)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	s := &S3{
		Endpoint:  "http://" + addr,
		AccessKey: opts.AccessKey,
		SecretKey: opts.SecretKey,
		Region:    opts.Region,
		dir:       dir,
		proc:      proc,
	}
	s.client = s.newClient()
	if err := s.waitReady(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *S3) waitReady(ctx context.Context) error {
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	var lastErr error
	for {
		if s.proc.exited() {
			return fmt.Errorf("start versitygw on %s: %w: %s", s.Endpoint, errStartRace, s.proc.describe())
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := s.client.ListBuckets(pctx, &s3.ListBucketsInput{}, func(o *s3.Options) { o.RetryMaxAttempts = 1 })
		cancel()
		if err == nil {
			return nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for versitygw on %s: %w (last error: %v); %s", s.Endpoint, ctx.Err(), lastErr, s.proc.describe())
		case <-tick.C:
		}
	}
}

func (s *S3) newClient() *s3.Client {
	return s3.New(s3.Options{
		Region:       s.Region,
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
		HTTPClient:   &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}},
	})
}

// Client returns an SDK client (path-style, signed with the server's root credentials) for test
// set-up and assertions.
func (s *S3) Client() *s3.Client { return s.client }

// BucketConfig returns the config section that points a gateway bucket named name at the S3
// bucket s3Bucket on this server, with default timeout and pool size.
func (s *S3) BucketConfig(name, s3Bucket string) config.Bucket {
	return config.Bucket{
		Name:       name,
		PathPrefix: "/" + name,
		S3: config.S3{
			Bucket:             s3Bucket,
			Region:             s.Region,
			Endpoint:           s.Endpoint,
			AccessKey:          s.AccessKey,
			SecretKey:          s.SecretKey,
			Timeout:            config.Seconds(config.DefaultS3Timeout),
			ConnectionPoolSize: config.DefaultPoolSize,
		},
	}
}

// CreateBucket creates bucket name.
func (s *S3) CreateBucket(ctx context.Context, name string) error {
	if _, err := s.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		return fmt.Errorf("create bucket %q: %w; versitygw %s", name, err, s.proc.describe())
	}
	return nil
}

// PutObject stores body under bucket/key with contentType (empty → S3's default).
func (s *S3) PutObject(ctx context.Context, bucket, key string, body []byte, contentType string) error {
	in := &s3.PutObjectInput{
		Bucket:        aws.String(bucket),
		Key:           aws.String(key),
		Body:          bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))),
	}
	if contentType != "" {
		in.ContentType = aws.String(contentType)
	}
	if _, err := s.client.PutObject(ctx, in); err != nil {
		return fmt.Errorf("put object %q/%q: %w; versitygw %s", bucket, key, err, s.proc.describe())
	}
	return nil
}

// Pid returns the versitygw process id, so tests can check Close really ended it.
func (s *S3) Pid() int { return s.proc.pid() }

// Dir returns the temporary directory holding the posix backend's data.
func (s *S3) Dir() string { return s.dir }

// Output returns the tail of versitygw's stdout and stderr, for test failure messages.
func (s *S3) Output() string { return s.proc.output.String() }

// Close kills versitygw's process group and removes its data directory; safe to call twice.
func (s *S3) Close() {
	if s == nil {
		return
	}
	s.proc.kill()
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}

// versitygwBinary finds versitygw, installing it (once across parallel test binaries) if missing.
func versitygwBinary(ctx context.Context) (string, error) {
	goBin, _ := lookBinary("go", "/usr/local/go/bin")
	dirs := func() []string {
		d := []string{os.Getenv("GOBIN")}
		if goBin != "" {
			if out, err := exec.CommandContext(ctx, goBin, "env", "GOBIN", "GOPATH").Output(); err == nil {
				lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
				if len(lines) > 0 {
					d = append(d, strings.TrimSpace(lines[0]))
				}
				if len(lines) > 1 {
					for _, p := range filepath.SplitList(strings.TrimSpace(lines[1])) {
						d = append(d, filepath.Join(p, "bin"))
					}
				}
			}
		}
		if home, err := os.UserHomeDir(); err == nil {
			d = append(d, filepath.Join(home, "go", "bin"))
		}
		return d
	}()
	if p, ok := lookBinary("versitygw", dirs...); ok {
		return p, nil
	}
	if goBin == "" {
		return "", errors.New("versitygw not found and no go toolchain to install it")
	}
	var found string
	err := withFileLock("yatagarasu-versitygw-install.lock", func() error {
		if p, ok := lookBinary("versitygw", dirs...); ok { // another test binary installed it meanwhile
			found = p
			return nil
		}
		cmd := exec.CommandContext(ctx, goBin, "install", VersityGWModule)
		cmd.Dir = os.TempDir() // outside any module, so go.mod does not interfere
		cmd.Env = append(os.Environ(), "GOFLAGS=")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go install %s: %w\n%s", VersityGWModule, err, out)
		}
		p, ok := lookBinary("versitygw", dirs...)
		if !ok {
			return fmt.Errorf("go install %s succeeded but versitygw is not in %v", VersityGWModule, dirs)
		}
		found = p
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("install versitygw: %w", err)
	}
	return found, nil
}
