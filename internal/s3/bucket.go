// Package s3 is the origin's access to S3: one configured client per gateway bucket, GET/HEAD
// with conditional and Range headers passed through, and S3 failures classified into the HTTP
// status the gateway answers with.
package s3

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/yatagarasu/yatagarasu/internal/config"
)

// Bucket reads objects from the one S3 bucket a gateway bucket points at.
type Bucket struct {
	name    string // gateway bucket name from config
	bucket  string // S3 bucket name
	timeout time.Duration
	client  *awss3.Client
}

// Option customises NewBucket.
type Option func(*options)

type options struct {
	httpClient *http.Client
}

// WithHTTPClient replaces the pooled HTTP client NewBucket builds (tests count or fault requests
// with it); the pool size from config is then the caller's business.
func WithHTTPClient(c *http.Client) Option {
	return func(o *options) { o.httpClient = c }
}

// NewBucket builds the client for cfg. Credentials, region and endpoint come only from cfg, never
// from the process environment or ~/.aws, so what the config says is what the gateway does.
func NewBucket(cfg config.Bucket, opts ...Option) (*Bucket, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	s := cfg.S3
	if s.Bucket == "" {
		return nil, fmt.Errorf("s3 bucket for %q: s3.bucket is empty", cfg.Name)
	}
	region := s.Region
	if region == "" {
		region = config.DefaultRegion
	}
	timeout := s.Timeout.D()
	if timeout <= 0 {
		timeout = config.DefaultS3Timeout
	}
	pool := s.ConnectionPoolSize
	if pool <= 0 {
		pool = config.DefaultPoolSize
	}
	if (s.AccessKey == "") != (s.SecretKey == "") {
		return nil, fmt.Errorf("s3 bucket for %q: access_key and secret_key must be set together", cfg.Name)
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
		httpClient = &http.Client{Transport: tr}
	}

	var creds aws.CredentialsProvider = aws.AnonymousCredentials{}
	if s.AccessKey != "" {
		creds = credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, "")
	}
	awsOpts := awss3.Options{
		Region:      region,
		Credentials: creds,
		HTTPClient:  httpClient,
		// Retries come with the retry feature; until then one attempt, bounded by the timeout.
		RetryMaxAttempts: 1,
		// Validate checksums only when we ask for them: we never send ChecksumMode, so the body
		// is streamed through untouched (no x-amz-checksum-mode request header either).
		ResponseChecksumValidation:                aws.ResponseChecksumValidationWhenRequired,
		RequestChecksumCalculation:                aws.RequestChecksumCalculationWhenRequired,
		DisableLogOutputChecksumValidationSkipped: true,
	}
	if s.Endpoint != "" {
		awsOpts.BaseEndpoint = aws.String(s.Endpoint)
		awsOpts.UsePathStyle = true
	}
	return &Bucket{
		name:    cfg.Name,
		bucket:  s.Bucket,
		timeout: timeout,
		client:  awss3.New(awsOpts),
	}, nil
}

// Name returns the gateway bucket name (the config key, not the S3 bucket).
func (b *Bucket) Name() string { return b.name }

// Ping checks that the bucket is reachable with the configured credentials (HeadBucket), for the
// readiness probe.
func (b *Bucket) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	if _, err := b.client.HeadBucket(ctx, &awss3.HeadBucketInput{Bucket: aws.String(b.bucket)}); err != nil {
		return fmt.Errorf("ping s3 bucket %q for %q: %w", b.bucket, b.name, timeoutCause(ctx, err))
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
