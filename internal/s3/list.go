package s3

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
)

// List calls fn for every object under prefix (ListObjectsV2, page by page), for cache
// prewarming. Without recursive, only the objects directly under prefix are listed ("/" as the
// delimiter). Listing stops when fn returns an error, which List returns.
func (b *Bucket) List(ctx context.Context, prefix string, recursive bool, fn func(key string, size int64) error) error {
	in := &awss3.ListObjectsV2Input{Bucket: aws.String(b.bucket), Prefix: aws.String(prefix)}
	if !recursive {
		in.Delimiter = aws.String("/")
	}
	p := awss3.NewListObjectsV2Paginator(b.client, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list %q in bucket %q: %w", prefix, b.bucket, err)
		}
		for _, o := range page.Contents {
			if err := fn(aws.ToString(o.Key), aws.ToInt64(o.Size)); err != nil {
				return err
			}
		}
	}
	return nil
}
