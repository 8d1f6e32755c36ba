package extproc

import (
	"context"
	"fmt"
	"reflect"

	"github.com/yatagarasu/yatagarasu/internal/cache"
	"github.com/yatagarasu/yatagarasu/internal/cache/tiers"
	"github.com/yatagarasu/yatagarasu/internal/config"
	"github.com/yatagarasu/yatagarasu/internal/origin"
)

// startCache opens the object cache the config describes. The cache belongs to the Service, not
// to a snapshot: it survives reloads, and per-bucket settings are read from the snapshot of
// the moment.
func (s *Service) startCache(ctx context.Context, cfg *config.Config) error {
	c, err := tiers.Open(ctx, cfg.Cache, tiers.Options{Logger: s.log.With("component", "cache"), Registry: s.Registry})
	if err != nil {
		return fmt.Errorf("open cache: %w", err)
	}
	s.Cache = c
	if c == nil {
		return nil
	}
	s.cacheResponder = cache.NewResponder(c, cache.ResponderOptions{
		Policy:   s.cachePolicy,
		Coalesce: func() bool { return s.Store.Load().Config.Server.Coalescing.Enabled },
		Logger:   s.log.With("component", "cache"),
	})
	return nil
}

// cachePolicy reads a bucket's cache settings from the current snapshot.
func (s *Service) cachePolicy(bucket string) cache.Policy {
	snap := s.Store.Load()
	if snap == nil {
		return cache.Policy{}
	}
	return cache.PolicyFor(snap.Config, bucket)
}

// withCache gives the origin handler the cache hook when a cache is configured.
func (s *Service) withCache(h *origin.Handler) *origin.Handler {
	if s.cacheResponder != nil {
		h.UseCache(s.cacheResponder)
	}
	return h
}

// registerCacheAdmin adds the /admin/cache/* endpoints (they answer 404 when no cache is on).
func (s *Service) registerCacheAdmin(ctx context.Context) {
	a := &cache.Admin{
		Cache:     s.Cache,
		Responder: s.cacheResponder,
		Bucket:    s.Store.S3Bucket,
		Concurrency: func() int {
			return s.Store.Load().Config.Cache.Warming.Concurrency
		},
		Logger: s.log.With("component", "cache"),
		Ctx:    context.WithoutCancel(ctx),
	}
	a.Register(s.Admin)
	s.CacheAdmin = a
}

// closeCache finishes background cache writes and closes the layers (the disk index is saved).
func (s *Service) closeCache() error {
	if s.Cache == nil {
		return nil
	}
	return s.Cache.Close()
}

// warnCacheReload logs global cache settings a reload cannot apply: the layers are opened once.
func (s *Service) warnCacheReload(old, next *config.Config) {
	a, b := old.Cache, next.Cache
	a.InlineMaxBytes, b.InlineMaxBytes = 0, 0 // read per request
	a.Warming, b.Warming = config.CacheWarming{}, config.CacheWarming{}
	if !reflect.DeepEqual(a, b) {
		s.log.Warn("cache layers and sizes change only with a restart; per-bucket cache settings, inline_max_bytes and warming apply now")
	}
}
