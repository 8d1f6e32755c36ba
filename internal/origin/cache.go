package origin

import (
	"net/http"

	"github.com/yatagarasu/yatagarasu/internal/originauth"
	"github.com/yatagarasu/yatagarasu/internal/s3"
)

// ObjectCache is the object cache's hook into the origin (internal/cache.Responder implements
// it): it answers a verified request from the cache or through it and reports true, or returns
// false to let the origin fetch from S3 itself.
type ObjectCache interface {
	ServeCached(w http.ResponseWriter, r *http.Request, b *s3.Bucket, c originauth.Claims) bool
}

// UseCache makes the handler consult c for every GET/HEAD before going to S3; call it before
// the handler serves.
func (h *Handler) UseCache(c ObjectCache) { h.cache = c }
