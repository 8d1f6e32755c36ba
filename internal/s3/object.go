package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Conditions are the client's Range and conditional headers, forwarded to S3 verbatim so S3
// decides 206/304/412/416 exactly as it would for a direct request.
type Conditions struct {
	Range             string
	IfNoneMatch       string
	IfModifiedSince   string
	IfMatch           string
	IfUnmodifiedSince string
}

// Object is S3's answer in HTTP terms: the status to relay, the headers worth relaying, and the
// body to stream (nil for HEAD and 304). The caller must Close Body.
type Object struct {
	Status             int // 200, 206 or 304
	ContentLength      int64
	ContentType        string
	ETag               string
	LastModified       string // HTTP date
	ContentRange       string
	CacheControl       string
	ContentEncoding    string
	ContentDisposition string
	Expires            string
	AcceptRanges       string
	Body               io.ReadCloser
}

// Get fetches key, retrying and failing over between backends before any byte is returned
// (protect.go). The timeouts bound only the wait for response headers: once GetObject returns,
// the body may take as long as the client needs (a large download on a slow link), and it is
// still cancelled with ctx.
func (b *Bucket) Get(ctx context.Context, key string, cond Conditions) (*Object, error) {
	return b.protected(ctx, "get", func(ctx context.Context, be *backend, wait time.Duration) (*Object, error) {
		return be.getOnce(ctx, key, cond, wait)
	})
}

// getOnce is one GetObject attempt against one backend; wait bounds the wait for headers.
func (be *backend) getOnce(ctx context.Context, key string, cond Conditions, wait time.Duration) (*Object, error) {
	ctx, cancel := context.WithCancel(ctx)
	var (
		mu       sync.Mutex
		answered bool
		timedOut bool
	)
	timer := time.AfterFunc(wait, func() {
		mu.Lock()
		defer mu.Unlock()
		if !answered {
			timedOut = true
			cancel()
		}
	})
	in := &awss3.GetObjectInput{Bucket: aws.String(be.bucket), Key: aws.String(key)}
	setConditions(cond, &in.Range, &in.IfNoneMatch, &in.IfMatch, &in.IfModifiedSince, &in.IfUnmodifiedSince)
	out, err := be.client.GetObject(ctx, in)
	timer.Stop()
	mu.Lock()
	answered = true
	late := timedOut
	mu.Unlock()

	if err != nil {
		cancel()
		if late {
			err = fmt.Errorf("%w after %s: %w", ErrTimeout, wait, err)
		}
		if obj, ok := notModified(err, cond); ok {
			return obj, nil
		}
		return nil, fmt.Errorf("s3 get %q from bucket %q (%s): %w", key, be.bucket, be.name, err)
	}
	obj := objectHeaders{out.ContentLength, out.ContentType, out.ETag, out.LastModified, out.ContentRange,
		out.CacheControl, out.ContentEncoding, out.ContentDisposition, out.ExpiresString, out.AcceptRanges}.object()
	obj.Body = &cancelOnClose{ReadCloser: out.Body, cancel: cancel}
	return obj, nil
}

// Head fetches key's metadata, bounded by the timeouts and retried like Get; Body is nil.
func (b *Bucket) Head(ctx context.Context, key string, cond Conditions) (*Object, error) {
	return b.protected(ctx, "head", func(ctx context.Context, be *backend, wait time.Duration) (*Object, error) {
		return be.headOnce(ctx, key, cond, wait)
	})
}

// headOnce is one HeadObject attempt against one backend.
func (be *backend) headOnce(ctx context.Context, key string, cond Conditions, wait time.Duration) (*Object, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	in := &awss3.HeadObjectInput{Bucket: aws.String(be.bucket), Key: aws.String(key)}
	setConditions(cond, &in.Range, &in.IfNoneMatch, &in.IfMatch, &in.IfModifiedSince, &in.IfUnmodifiedSince)
	out, err := be.client.HeadObject(ctx, in)
	if err != nil {
		err = timeoutCause(ctx, err)
		if obj, ok := notModified(err, cond); ok {
			return obj, nil
		}
		return nil, fmt.Errorf("s3 head %q from bucket %q (%s): %w", key, be.bucket, be.name, err)
	}
	return objectHeaders{out.ContentLength, out.ContentType, out.ETag, out.LastModified, out.ContentRange,
		out.CacheControl, out.ContentEncoding, out.ContentDisposition, out.ExpiresString, out.AcceptRanges}.object(), nil
}

// setConditions copies cond into the SDK input fields. The SDK types the two dates as time.Time,
// so they are parsed and re-rendered; HTTP dates have whole-second precision, so a valid date
// reaches S3 with the same meaning.
func setConditions(cond Conditions, rng, inm, im **string, ims, ius **time.Time) {
	if cond.Range != "" {
		*rng = aws.String(cond.Range)
	}
	if cond.IfNoneMatch != "" {
		*inm = aws.String(cond.IfNoneMatch)
	}
	if cond.IfMatch != "" {
		*im = aws.String(cond.IfMatch)
	}
	if t, ok := parseHTTPDate(cond.IfModifiedSince); ok {
		*ims = &t
	}
	if t, ok := parseHTTPDate(cond.IfUnmodifiedSince); ok {
		*ius = &t
	}
}

// parseHTTPDate accepts the three date formats RFC 9110 requires recipients to parse. An
// unparseable date is dropped, as RFC 9110 §13.1.3 says a recipient must ignore it.
func parseHTTPDate(v string) (time.Time, bool) {
	if v == "" {
		return time.Time{}, false
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}

func httpDate(t *time.Time) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return t.UTC().Format(http.TimeFormat)
}

// notModified turns the SDK's 304 "error" into the Object a client should receive. RFC 9110
// wants the ETag on a 304; some S3 implementations (versitygw) omit it, and when the client asked
// with exactly one entity tag that tag is the one that matched, so it is used instead.
func notModified(err error, cond Conditions) (*Object, bool) {
	var re *smithyhttp.ResponseError
	if !errors.As(err, &re) || re.Response == nil || re.Response.StatusCode != http.StatusNotModified {
		return nil, false
	}
	h := re.Response.Header
	etag := h.Get("ETag")
	if tag := strings.TrimSpace(cond.IfNoneMatch); etag == "" && tag != "*" && !strings.Contains(tag, ",") {
		etag = tag
	}
	return &Object{
		Status:        http.StatusNotModified,
		ContentLength: -1,
		ETag:          etag,
		LastModified:  h.Get("Last-Modified"),
		CacheControl:  h.Get("Cache-Control"),
		Expires:       h.Get("Expires"),
	}, true
}

// cancelOnClose releases the request context when the caller is done with the body.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// objectHeaders are the response fields GetObject and HeadObject share, so both build an Object
// the same way.
type objectHeaders struct {
	contentLength                                                                    *int64
	contentType, etag                                                                *string
	lastModified                                                                     *time.Time
	contentRange, cacheControl, contentEncoding, contentDisposition, expires, ranges *string
}

func (h objectHeaders) object() *Object {
	status := http.StatusOK
	if aws.ToString(h.contentRange) != "" {
		status = http.StatusPartialContent
	}
	obj := &Object{
		Status:             status,
		ContentLength:      aws.ToInt64(h.contentLength),
		ContentType:        aws.ToString(h.contentType),
		ETag:               aws.ToString(h.etag),
		LastModified:       httpDate(h.lastModified),
		ContentRange:       aws.ToString(h.contentRange),
		CacheControl:       aws.ToString(h.cacheControl),
		ContentEncoding:    aws.ToString(h.contentEncoding),
		ContentDisposition: aws.ToString(h.contentDisposition),
		Expires:            aws.ToString(h.expires),
		AcceptRanges:       aws.ToString(h.ranges),
	}
	if h.contentLength == nil {
		obj.ContentLength = -1
	}
	return obj
}
