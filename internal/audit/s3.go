package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
)

// Uploader is the one S3 call the export needs (satisfied by *s3.Client).
type Uploader interface {
	PutObject(ctx context.Context, in *awss3.PutObjectInput, opts ...func(*awss3.Options)) (*awss3.PutObjectOutput, error)
}

// S3Options configure the S3 batch export.
type S3Options struct {
	Client     Uploader
	Bucket     string
	PathPrefix string
	Interval   time.Duration // a batch is cut and uploaded this often
	MaxRecords int           // ...or as soon as it holds this many records
	Dir        string        // local batch and pending directory (kept until the upload succeeds)
	Now        func() time.Time
	Log        *slog.Logger
	Metrics    *Metrics
}

// BatchName is the object name of a batch cut at t: yatagarasu-audit-YYYY-MM-DD-HH-MM-SS.jsonl (UTC).
func BatchName(t time.Time) string {
	return "yatagarasu-audit-" + t.UTC().Format("2006-01-02-15-04-05") + ".jsonl"
}

// S3Sink collects records into a local batch file, cuts it every interval into a named pending
// batch and uploads pending batches in order; a batch file is deleted only after S3 accepted it,
// so an S3 outage keeps the batches on disk (across restarts) until an upload succeeds.
type S3Sink struct {
	opts    S3Options
	mu      sync.Mutex
	cur     *os.File
	count   int
	last    time.Time // name time of the last cut
	upMu    sync.Mutex
	stop    chan struct{}
	done    chan struct{}
	cutNow  chan struct{}
	curPath string
	pending string
}

// NewS3Client builds the export's S3 client from explicit settings (no ambient AWS config).
func NewS3Client(region, endpoint, accessKey, secretKey string) *awss3.Client {
	var creds aws.CredentialsProvider = aws.AnonymousCredentials{}
	if accessKey != "" {
		creds = credentials.NewStaticCredentialsProvider(accessKey, secretKey, "")
	}
	o := awss3.Options{Region: region, Credentials: creds, RetryMaxAttempts: 3}
	if endpoint != "" {
		o.BaseEndpoint = aws.String(endpoint)
		o.UsePathStyle = true
	}
	return awss3.New(o)
}

// NewS3Sink prepares the local directories (cutting a batch a previous run left open) and
// starts the export loop.
func NewS3Sink(o S3Options) (*S3Sink, error) {
	if o.Client == nil || o.Bucket == "" || o.Dir == "" {
		return nil, errors.New("audit s3 sink: client, bucket and dir are required")
	}
	if o.Interval <= 0 {
		o.Interval = time.Minute
	}
	if o.MaxRecords <= 0 {
		o.MaxRecords = 100000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	s := &S3Sink{opts: o, stop: make(chan struct{}), done: make(chan struct{}), cutNow: make(chan struct{}, 1),
		curPath: filepath.Join(o.Dir, "current.jsonl"), pending: filepath.Join(o.Dir, "pending")}
	if err := os.MkdirAll(s.pending, 0o750); err != nil {
		return nil, fmt.Errorf("audit s3 sink: %w", err)
	}
	if st, err := os.Stat(s.curPath); err == nil && st.Size() > 0 {
		if err := s.cut(); err != nil {
			return nil, err
		}
	}
	go s.loop()
	return s, nil
}

// Name implements Sink.
func (s *S3Sink) Name() string { return "s3" }

// Write implements Sink: the lines are appended to the open local batch.
func (s *S3Sink) Write(_ context.Context, lines [][]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		f, err := os.OpenFile(s.curPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			return fmt.Errorf("audit s3 sink: open batch: %w", err)
		}
		s.cur = f
	}
	if _, err := s.cur.Write(bytes.Join(lines, nil)); err != nil {
		return fmt.Errorf("audit s3 sink: write batch: %w", err)
	}
	s.count += len(lines)
	if s.count >= s.opts.MaxRecords {
		select {
		case s.cutNow <- struct{}{}:
		default:
		}
	}
	return nil
}

// Flush implements Sink; the batch file is written without user-space buffering.
func (s *S3Sink) Flush(context.Context) error { return nil }

// cut closes the open batch and moves it into pending under its object name.
func (s *S3Sink) cut() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil {
		if err := s.cur.Close(); err != nil {
			return fmt.Errorf("audit s3 sink: close batch: %w", err)
		}
		s.cur = nil
	}
	if st, err := os.Stat(s.curPath); err != nil || st.Size() == 0 {
		return nil
	}
	t := s.opts.Now().UTC().Truncate(time.Second)
	if !t.After(s.last) {
		t = s.last.Add(time.Second) // names are unique and sort in cut order
	}
	for {
		if _, err := os.Stat(filepath.Join(s.pending, BatchName(t))); errors.Is(err, os.ErrNotExist) {
			break
		}
		t = t.Add(time.Second)
	}
	if err := os.Rename(s.curPath, filepath.Join(s.pending, BatchName(t))); err != nil {
		return fmt.Errorf("audit s3 sink: cut batch: %w", err)
	}
	s.last, s.count = t, 0
	return nil
}

// upload sends pending batches oldest first and stops at the first failure.
func (s *S3Sink) upload(ctx context.Context) error {
	s.upMu.Lock()
	defer s.upMu.Unlock()
	entries, err := os.ReadDir(s.pending)
	if err != nil {
		return fmt.Errorf("audit s3 sink: list pending: %w", err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".jsonl") {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	for _, n := range names {
		path := filepath.Join(s.pending, n)
		body, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("audit s3 sink: read batch %s: %w", n, err)
		}
		_, err = s.opts.Client.PutObject(ctx, &awss3.PutObjectInput{
			Bucket:      aws.String(s.opts.Bucket),
			Key:         aws.String(s.opts.PathPrefix + n),
			Body:        bytes.NewReader(body),
			ContentType: aws.String("application/x-ndjson"),
		})
		if err != nil {
			s.opts.Metrics.failed("s3")
			return fmt.Errorf("audit s3 sink: upload %s to bucket %s: %w", n, s.opts.Bucket, err)
		}
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("audit s3 sink: remove uploaded batch: %w", err)
		}
	}
	return nil
}

// PendingBatches lists the batch files waiting for upload, oldest first.
func (s *S3Sink) PendingBatches() []string {
	entries, _ := os.ReadDir(s.pending)
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	slices.Sort(out)
	return out
}

func (s *S3Sink) loop() {
	defer close(s.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.stop
		cancel()
	}()
	retry := min(s.opts.Interval, 5*time.Second)
	tick := time.NewTicker(s.opts.Interval)
	defer tick.Stop()
	failing := false
	for {
		var wait <-chan time.Time
		if failing {
			wait = time.After(retry)
		}
		select {
		case <-s.stop:
			return
		case <-tick.C:
			if err := s.cut(); err != nil {
				s.opts.Log.Error("audit s3 export: cut failed", "err", err)
			}
		case <-s.cutNow:
			if err := s.cut(); err != nil {
				s.opts.Log.Error("audit s3 export: cut failed", "err", err)
			}
		case <-wait:
		}
		err := s.upload(ctx)
		if err != nil && ctx.Err() == nil {
			s.opts.Log.Warn("audit s3 export failed; batches stay in the local spool", "dir", s.pending, "err", err)
		}
		failing = err != nil
	}
}

// Close implements Sink: it cuts the open batch and tries one last upload within ctx; batches
// that fail stay on disk and are uploaded after the next start.
func (s *S3Sink) Close(ctx context.Context) error {
	close(s.stop)
	<-s.done
	if err := s.cut(); err != nil {
		return err
	}
	return s.upload(ctx)
}
