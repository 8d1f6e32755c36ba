// Package tiers builds the tiered cache that the `cache:` config section describes, opening
// each listed layer in order (it sits apart from package cache because the layers import it).
package tiers

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/yatagarasu/yatagarasu/internal/cache"
	"github.com/yatagarasu/yatagarasu/internal/cache/disk"
	"github.com/yatagarasu/yatagarasu/internal/cache/memory"
	"github.com/yatagarasu/yatagarasu/internal/cache/rediscache"
	"github.com/yatagarasu/yatagarasu/internal/config"
)

// Options are the process-wide dependencies of the cache.
type Options struct {
	Logger   *slog.Logger
	Registry prometheus.Registerer
	Now      func() time.Time
}

// Open opens the layers cfg lists and returns the tiered cache, or nil when the cache is
// disabled. Redis is connected lazily: an unreachable Redis at start-up only makes that layer
// miss until it answers.
func Open(ctx context.Context, cfg config.Cache, o Options) (*cache.Tiered, error) {
	if !cfg.Enabled {
		return nil, nil
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	var layers []cache.Layer
	fail := func(err error) (*cache.Tiered, error) {
		for _, l := range layers {
			_ = l.Close()
		}
		return nil, err
	}
	for _, name := range cfg.CacheLayers {
		switch name {
		case config.LayerMemory:
			l, err := memory.New(memory.Options{
				MaxBytes: config.MB(cfg.Memory.MaxCacheSizeMB), MaxItemBytes: config.MB(cfg.Memory.MaxItemSizeMB), Now: o.Now,
			})
			if err != nil {
				return fail(err)
			}
			layers = append(layers, l)
		case config.LayerDisk:
			l, err := disk.Open(disk.Options{
				Dir: cfg.Disk.CacheDir, MaxBytes: config.MB(cfg.Disk.MaxDiskCacheSizeMB), Now: o.Now,
				Logger: o.Logger.With("layer", "disk"),
			})
			if err != nil {
				return fail(err)
			}
			layers = append(layers, l)
		case config.LayerRedis:
			r := cfg.Redis
			client, err := rediscache.NewClient(r.RedisURL, r.RedisPassword, r.RedisDB, r.DialTimeout.D(), r.OperationTimeout.D())
			if err != nil {
				return fail(err)
			}
			l, err := rediscache.New(rediscache.Options{
				Client: client, Prefix: r.RedisKeyPrefix, MaxTTL: r.RedisTTL.D(), Timeout: r.OperationTimeout.D(),
				Now: o.Now, Logger: o.Logger.With("layer", "redis"),
			})
			if err != nil {
				_ = client.Close()
				return fail(err)
			}
			layers = append(layers, l)
		default:
			return fail(fmt.Errorf("cache: unknown layer %q", name))
		}
	}
	return cache.NewTiered(layers, cache.Options{Now: o.Now, Logger: o.Logger, Registry: o.Registry}), nil
}
