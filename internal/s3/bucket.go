// Package s3 is the origin's access to S3: one configured client per gateway bucket, GET/HEAD
// with conditional and Range headers passed through, and S3 failures classified into the HTTP
// status the gateway answers with.
package s3

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/yatagarasu/yatagarasu/internal/config"
)

// Bucket reads objects from the S3 bucket a gateway bucket points at: one backend in legacy
// mode, or its replicas in priority order, each guarded by a circuit breaker (protect.go).
type Bucket struct {
	name     string        // gateway bucket name from config
	bucket   string        // S3 bucket name of the primary backend
	client   *awss3.Client // the primary backend's client (listing for cache prewarming)
	timeout  time.Duration // total budget for getting response headers, retries included
	backends []*backend    // priority order
	retry    config.Retry
	health   *Health
	sleep    func(ctx context.Context, d time.Duration) error
	jitter   func(n int64) int64
}

// Option customises NewBucket.
type Option func(*options)

type options struct {
	httpClient *http.Client
	health     *Health
	sleep      func(ctx context.Context, d time.Duration) error
	jitter     func(n int64) int64
}

// WithHTTPClient replaces the pooled HTTP client NewBucket builds (tests count or fault requests
// with it); the pool size and connect timeout from config are then the caller's business.
func WithHTTPClient(c *http.Client) Option {
	return func(o *options) { o.httpClient = c }
}

// WithHealth attaches the process's long-lived backend health (breakers, probe state), so that
// a config reload keeps each backend's breaker; without it the Bucket keeps private state.
func WithHealth(h *Health) Option {
	return func(o *options) { o.health = h }
}

// WithSleep replaces the wait between retries (tests record backoffs instead of sleeping).
func WithSleep(sleep func(ctx context.Context, d time.Duration) error) Option {
	return func(o *options) { o.sleep = sleep }
}

// WithJitter replaces the random draw in [0, n) used for backoff jitter (tests make it fixed).
func WithJitter(jitter func(n int64) int64) Option {
	return func(o *options) { o.jitter = jitter }
}

// NewBucket builds the clients for cfg. Credentials, region and endpoint come only from cfg, never
// from the process environment or ~/.aws, so what the config says is what the gateway does.
func NewBucket(cfg config.Bucket, opts ...Option) (*Bucket, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	s := cfg.S3
	timeout := s.Timeout.D()
	if timeout <= 0 {
		timeout = config.DefaultS3Timeout
	}
	firstByte := s.FirstByteTimeout.D()
	if firstByte <= 0 || firstByte > timeout {
		firstByte = timeout
	}
	connect := s.ConnectTimeout.D()
	if connect <= 0 {
		connect = min(config.DefaultConnectTimeout, timeout)
	}
	pool := s.ConnectionPoolSize
	if pool <= 0 {
		pool = config.DefaultPoolSize
	}
	httpClient := o.httpClient
	if httpClient == nil {
		base, ok := http.DefaultTransport.(*http.Transport)
		if !ok {
			return nil, errors.New("http.DefaultTransport is not an *http.Transport")
		}
		tr := base.Clone()
		tr.MaxIdleConnsPerHost = pool
		tr.MaxIdleConns = 0 // no global cap; the per-host cap is the pool size
		tr.DialContext = (&net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second}).DialContext
		httpClient = &http.Client{Transport: tr}
	}
	health := o.health
	if health == nil {
		health = NewHealth(nil)
	}
	b := &Bucket{
		name:    cfg.Name,
		timeout: timeout,
		retry:   s.Retry,
		health:  health,
		sleep:   o.sleep,
		jitter:  o.jitter,
	}
	if b.sleep == nil {
		b.sleep = sleepCtx
	}
	if b.jitter == nil {
		b.jitter = rand.Int64N
	}
	for _, r := range s.Backends() {
		be, err := newBackend(cfg.Name, r, httpClient, min(firstByte, positiveOr(r.Timeout.D(), firstByte)))
		if err != nil {
			return nil, err
		}
		be.state = health.state(cfg.Name, r, s.CircuitBreaker)
		b.backends = append(b.backends, be)
	}
	b.bucket, b.client = b.backends[0].bucket, b.backends[0].client
	return b, nil
}

// backend is one S3 endpoint+bucket with its client and its long-lived health state.
type backend struct {
	name   string // replica name ("default" in legacy mode)
	bucket string
	client *awss3.Client
	wait   time.Duration // first-byte bound per attempt
	state  *backendState
}

func newBackend(gateway string, r config.Replica, httpClient *http.Client, wait time.Duration) (*backend, error) {
	if r.Bucket == "" {
		return nil, fmt.Errorf("s3 bucket for %q: s3.bucket is empty", gateway)
	}
	if (r.AccessKey == "") != (r.SecretKey == "") {
		return nil, fmt.Errorf("s3 bucket for %q: access_key and secret_key must be set together", gateway)
	}
	region := r.Region
	if region == "" {
		region = config.DefaultRegion
	}
	var creds aws.CredentialsProvider = aws.AnonymousCredentials{}
	if r.AccessKey != "" {
		creds = credentials.NewStaticCredentialsProvider(r.AccessKey, r.SecretKey, "")
	}
	awsOpts := awss3.Options{
		Region:      region,
		Credentials: creds,
		HTTPClient:  httpClient,
		// Retries are ours (protect.go): only before any byte went out, with failover and breakers.
		RetryMaxAttempts: 1,
		// Validate checksums only when we ask for them: we never send ChecksumMode, so the body
		// is streamed through untouched (no x-amz-checksum-mode request header either).
		ResponseChecksumValidation:                aws.ResponseChecksumValidationWhenRequired,
		RequestChecksumCalculation:                aws.RequestChecksumCalculationWhenRequired,
		DisableLogOutputChecksumValidationSkipped: true,
	}
	if r.Endpoint != "" {
		awsOpts.BaseEndpoint = aws.String(r.Endpoint)
		awsOpts.UsePathStyle = true
	}
	return &backend{name: r.Name, bucket: r.Bucket, client: awss3.New(awsOpts), wait: wait}, nil
}

func positiveOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Name returns the gateway bucket name (the config key, not the S3 bucket).
func (b *Bucket) Name() string { return b.name }

// Ping checks that some backend of the bucket is reachable with its credentials (HeadBucket),
// for the readiness probe.
func (b *Bucket) Ping(ctx context.Context) error {
	var errs []error
	for _, be := range b.backends {
		err := be.ping(ctx, b.timeout)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("ping s3 for %q: %w", b.name, errors.Join(errs...))
}

func (be *backend) ping(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := be.client.HeadBucket(ctx, &awss3.HeadBucketInput{Bucket: aws.String(be.bucket)}); err != nil {
		return fmt.Errorf("ping s3 bucket %q (%s): %w", be.bucket, be.name, timeoutCause(ctx, err))
	}
	return nil
}

// timeoutCause marks err as a timeout when ctx's deadline is what ended the call, since the
// transport sometimes reports it as a plain cancellation or a closed connection.
func timeoutCause(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	return err
}
