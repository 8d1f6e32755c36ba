package config

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Cache is the top-level `cache:` section: which layers hold objects, in lookup order, and their
// bounds. It keeps the original product's keys (Phase 26.1) and adds inline_max_bytes, the
// largest hit extproc answers itself in one gRPC message.
type Cache struct {
	Enabled     bool     `yaml:"enabled"`      // default false
	CacheLayers []string `yaml:"cache_layers"` // default ["memory"]; lookup order
	// InlineMaxBytes is the largest hit answered by extproc as an ImmediateResponse; larger hits
	// are streamed by the origin (default 64 KiB, at most 1 MiB).
	InlineMaxBytes int64        `yaml:"inline_max_bytes"`
	Memory         MemoryCache  `yaml:"memory"`
	Disk           DiskCache    `yaml:"disk"`
	Redis          RedisCache   `yaml:"redis"`
	Warming        CacheWarming `yaml:"warming"`
}

// MemoryCache bounds the in-process layer; its item size and TTL are also every bucket's defaults.
type MemoryCache struct {
	MaxItemSizeMB     int64   `yaml:"max_item_size_mb"`    // default 10
	MaxCacheSizeMB    int64   `yaml:"max_cache_size_mb"`   // default 1024
	DefaultTTLSeconds Seconds `yaml:"default_ttl_seconds"` // default 3600; freshness without Cache-Control
}

// DiskCache is the local-disk layer that survives restarts and streams large hits.
type DiskCache struct {
	Enabled            bool   `yaml:"enabled"`                // default false
	CacheDir           string `yaml:"cache_dir"`              // default /var/cache/yatagarasu
	MaxDiskCacheSizeMB int64  `yaml:"max_disk_cache_size_mb"` // default 10240
	// Sendfile is accepted for compatibility with the original product; the origin lets Go's
	// net/http pick sendfile itself.
	Sendfile map[string]any `yaml:"sendfile"`
}

// RedisCache is the shared layer many extproc replicas read and fill.
type RedisCache struct {
	Enabled        bool    `yaml:"enabled"`           // default false
	RedisURL       string  `yaml:"redis_url"`         // redis:// or rediss://, required for the layer
	RedisPassword  string  `yaml:"redis_password"`    // overrides the URL's password when set
	RedisDB        int     `yaml:"redis_db"`          // default 0 (or the URL's /N)
	RedisKeyPrefix string  `yaml:"redis_key_prefix"`  // default "yatagarasu:"
	RedisTTL       Seconds `yaml:"redis_ttl_seconds"` // default 3600: upper bound of an entry's life
	// KeyPrefix and TTL are the documented spellings (key_prefix, ttl_seconds) of the two keys above.
	KeyPrefix string  `yaml:"key_prefix"`
	TTL       Seconds `yaml:"ttl_seconds"`
	// DialTimeout bounds connecting (default 1s); OperationTimeout bounds one command (default
	// 100ms), since lookups run inside extproc's message_timeout.
	DialTimeout      Duration `yaml:"dial_timeout"`
	OperationTimeout Duration `yaml:"operation_timeout"`
}

// CacheWarming configures prewarm tasks started through the admin API.
type CacheWarming struct {
	Concurrency int `yaml:"concurrency"` // default 10: objects fetched at once per task
	RateLimit   int `yaml:"rate_limit"`  // accepted for compatibility, unused
}

// BucketCache is a bucket's `cache:` override; after Load every field holds the effective value
// (the global default when the key is absent).
type BucketCache struct {
	Enabled       bool    `yaml:"enabled"`
	TTLSeconds    Seconds `yaml:"ttl_seconds"`
	MaxItemSizeMB int64   `yaml:"max_item_size_mb"`
}

// Coalescing is `server.coalescing`: whether concurrent misses for one object share one S3 GET.
type Coalescing struct {
	Enabled  bool   `yaml:"enabled"`  // default true
	Strategy string `yaml:"strategy"` // wait_for_complete (default) or streaming
}

// Cache defaults, in the original product's units.
const (
	DefaultCacheInlineMaxBytes   = 64 << 10
	MaxCacheInlineMaxBytes       = 1 << 20
	DefaultCacheMaxItemSizeMB    = 10
	DefaultCacheMaxSizeMB        = 1024
	DefaultCacheTTL              = time.Hour
	DefaultCacheDir              = "/var/cache/yatagarasu"
	DefaultDiskCacheSizeMB       = 10240
	DefaultCacheRedisKeyPrefix   = "yatagarasu:"
	DefaultCacheRedisTTL         = time.Hour
	DefaultCacheRedisDialTimeout = time.Second
	DefaultCacheRedisOpTimeout   = 100 * time.Millisecond
	DefaultWarmingConcurrency    = 10
	// MaxCacheItemSizeMB bounds max_item_size_mb: a miss is buffered in memory up to that size.
	MaxCacheItemSizeMB = 512
)

// Cache layer names accepted in cache_layers.
const (
	LayerMemory = "memory"
	LayerDisk   = "disk"
	LayerRedis  = "redis"
)

// MB converts a *_mb setting to bytes.
func MB(n int64) int64 { return n << 20 }

// cacheDefaults fills the cache keys the file leaves out; bucket overrides inherit the globals.
func (d *decoder) cacheDefaults(c *Config) {
	p := d.pos
	g := &c.Cache
	if !p.present("cache.cache_layers") {
		g.CacheLayers = []string{LayerMemory}
	}
	if !p.present("cache.inline_max_bytes") {
		g.InlineMaxBytes = DefaultCacheInlineMaxBytes
	}
	if !p.present("cache.memory.max_item_size_mb") {
		g.Memory.MaxItemSizeMB = DefaultCacheMaxItemSizeMB
	}
	if !p.present("cache.memory.max_cache_size_mb") {
		g.Memory.MaxCacheSizeMB = DefaultCacheMaxSizeMB
	}
	if !p.present("cache.memory.default_ttl_seconds") {
		g.Memory.DefaultTTLSeconds = Seconds(DefaultCacheTTL)
	}
	if !p.present("cache.disk.cache_dir") {
		g.Disk.CacheDir = DefaultCacheDir
	}
	if !p.present("cache.disk.max_disk_cache_size_mb") {
		g.Disk.MaxDiskCacheSizeMB = DefaultDiskCacheSizeMB
	}
	r := &g.Redis
	if !p.present("cache.redis.redis_key_prefix") {
		r.RedisKeyPrefix = DefaultCacheRedisKeyPrefix
		if p.present("cache.redis.key_prefix") {
			r.RedisKeyPrefix = r.KeyPrefix
		}
	}
	if !p.present("cache.redis.redis_ttl_seconds") {
		r.RedisTTL = Seconds(DefaultCacheRedisTTL)
		if p.present("cache.redis.ttl_seconds") {
			r.RedisTTL = r.TTL
		}
	}
	if !p.present("cache.redis.dial_timeout") {
		r.DialTimeout = Duration(DefaultCacheRedisDialTimeout)
	}
	if !p.present("cache.redis.operation_timeout") {
		r.OperationTimeout = Duration(DefaultCacheRedisOpTimeout)
	}
	if !p.present("cache.warming.concurrency") {
		g.Warming.Concurrency = DefaultWarmingConcurrency
	}
	co := &c.Server.Coalescing
	if !p.present("server.coalescing.enabled") {
		co.Enabled = true
	}
	if !p.present("server.coalescing.strategy") {
		co.Strategy = "wait_for_complete"
	}
	for i := range c.Buckets {
		b := &c.Buckets[i].Cache
		base := "buckets[" + strconv.Itoa(i) + "].cache."
		if !p.present(base + "enabled") {
			b.Enabled = g.Enabled
		}
		if !p.present(base + "ttl_seconds") {
			b.TTLSeconds = g.Memory.DefaultTTLSeconds
		}
		if !p.present(base + "max_item_size_mb") {
			b.MaxItemSizeMB = g.Memory.MaxItemSizeMB
		}
	}
}

// cache validates the cache section, server.coalescing and every bucket's cache override.
func (c *checker) cache() {
	g := c.cfg.Cache
	pos := c.cfg.pos
	if s := c.cfg.Server.Coalescing.Strategy; s != "wait_for_complete" && s != "streaming" {
		c.add("server.coalescing.strategy", fmt.Sprintf("unknown strategy %q", s), `use "wait_for_complete" or "streaming"`)
	}
	if g.Enabled && len(g.CacheLayers) == 0 {
		c.add("cache.cache_layers", "no cache layers are listed while the cache is enabled", `list at least one layer, e.g. cache_layers: ["memory"], or set enabled: false`)
	}
	seen := map[string]int{}
	for i, l := range g.CacheLayers {
		path := "cache.cache_layers[" + strconv.Itoa(i) + "]"
		switch l {
		case LayerMemory:
		case LayerDisk:
			if g.Enabled && !g.Disk.Enabled {
				c.add(path, "the disk layer is listed but cache.disk.enabled is not true", "set cache.disk.enabled: true, or remove \"disk\" from cache_layers")
			}
		case LayerRedis:
			if g.Enabled && !g.Redis.Enabled {
				c.add(path, "the redis layer is listed but cache.redis.enabled is not true", "set cache.redis.enabled: true, or remove \"redis\" from cache_layers")
			}
		default:
			c.add(path, fmt.Sprintf("unknown cache layer %q", l), suggest(l, []string{LayerMemory, LayerDisk, LayerRedis}, "cache.cache_layers"))
			continue
		}
		if first, dup := seen[l]; dup {
			c.add(path, fmt.Sprintf("cache layer %q is listed twice (first at cache_layers[%d])", l, first), "list each layer once")
			continue
		}
		seen[l] = i
	}
	if g.InlineMaxBytes < 0 || g.InlineMaxBytes > MaxCacheInlineMaxBytes {
		c.add("cache.inline_max_bytes", fmt.Sprintf("%d is outside 0..%d", g.InlineMaxBytes, MaxCacheInlineMaxBytes),
			"use e.g. inline_max_bytes: 65536 (larger hits are streamed by the origin)")
	}
	m := g.Memory
	c.itemSize("cache.memory.max_item_size_mb", m.MaxItemSizeMB)
	c.positive("cache.memory.max_cache_size_mb", m.MaxCacheSizeMB, "1024")
	if m.MaxItemSizeMB > 0 && m.MaxCacheSizeMB > 0 && m.MaxItemSizeMB > m.MaxCacheSizeMB {
		c.add("cache.memory.max_item_size_mb", fmt.Sprintf("max_item_size_mb %d is larger than max_cache_size_mb %d", m.MaxItemSizeMB, m.MaxCacheSizeMB),
			"make max_item_size_mb at most max_cache_size_mb")
	}
	c.ttl("cache.memory.default_ttl_seconds", m.DefaultTTLSeconds)
	if _, used := seen[LayerDisk]; used || g.Disk.Enabled {
		if strings.TrimSpace(g.Disk.CacheDir) == "" {
			c.add("cache.disk.cache_dir", "cache_dir is empty", `set e.g. cache_dir: "/var/cache/yatagarasu"`)
		}
		c.positive("cache.disk.max_disk_cache_size_mb", g.Disk.MaxDiskCacheSizeMB, "10240")
	}
	c.redisCache()
	if g.Warming.Concurrency <= 0 || g.Warming.Concurrency > 1000 {
		c.add("cache.warming.concurrency", fmt.Sprintf("%d is outside 1..1000", g.Warming.Concurrency), "use e.g. concurrency: 10")
	}
	for i, b := range c.cfg.Buckets {
		base := "buckets[" + strconv.Itoa(i) + "].cache"
		if b.Cache.Enabled && !g.Enabled {
			c.add(base+".enabled", fmt.Sprintf("bucket %q enables caching but the top-level cache is disabled", b.Name),
				"set cache.enabled: true at the top level (with its layers), or remove enabled from the bucket")
		}
		if pos.present(base + ".ttl_seconds") {
			c.ttl(base+".ttl_seconds", b.Cache.TTLSeconds)
		}
		if pos.present(base + ".max_item_size_mb") {
			c.itemSize(base+".max_item_size_mb", b.Cache.MaxItemSizeMB)
		}
	}
}

func (c *checker) redisCache() {
	r := c.cfg.Cache.Redis
	pos := c.cfg.pos
	for _, pair := range [][2]string{{"redis_key_prefix", "key_prefix"}, {"redis_ttl_seconds", "ttl_seconds"}} {
		if pos.present("cache.redis."+pair[0]) && pos.present("cache.redis."+pair[1]) {
			c.add("cache.redis."+pair[1], fmt.Sprintf("both %s and %s are set", pair[0], pair[1]), "keep only "+pair[0])
		}
	}
	if !r.Enabled {
		return // a listed but disabled layer is reported by cache()
	}
	switch u, err := url.Parse(r.RedisURL); {
	case r.RedisURL == "":
		c.add("cache.redis.redis_url", "redis_url is required for the redis layer", `set e.g. redis_url: "redis://127.0.0.1:6379"`)
	case err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "":
		c.add("cache.redis.redis_url", fmt.Sprintf("%q is not a redis:// or rediss:// URL with a host", r.RedisURL), `use e.g. redis_url: "redis://127.0.0.1:6379/0"`)
	}
	if r.RedisDB < 0 {
		c.add("cache.redis.redis_db", fmt.Sprintf("must not be negative, got %d", r.RedisDB), "use e.g. redis_db: 0")
	}
	c.ttl("cache.redis.redis_ttl_seconds", r.RedisTTL)
	if r.DialTimeout <= 0 {
		c.add("cache.redis.dial_timeout", fmt.Sprintf("must be greater than 0, got %s", r.DialTimeout.D()), `use e.g. dial_timeout: "1s"`)
	}
	if r.OperationTimeout <= 0 || r.OperationTimeout.D() > 10*time.Second {
		c.add("cache.redis.operation_timeout", fmt.Sprintf("%s is outside (0, 10s]", r.OperationTimeout.D()), `use e.g. operation_timeout: "100ms" (lookups run within extproc.message_timeout)`)
	}
}

func (c *checker) itemSize(path string, mb int64) {
	if mb <= 0 || mb > MaxCacheItemSizeMB {
		c.add(path, fmt.Sprintf("%d MB is outside 1..%d", mb, MaxCacheItemSizeMB), "use e.g. 10 (objects up to 10 MiB are cached)")
	}
}

func (c *checker) ttl(path string, s Seconds) {
	if s <= 0 {
		c.add(path, fmt.Sprintf("must be greater than 0, got %s", s.D()), "use e.g. 3600 (seconds)")
	}
}

// LayerEnabled reports whether the cache is on and lists layer.
func (g Cache) LayerEnabled(layer string) bool {
	return g.Enabled && slices.Contains(g.CacheLayers, layer)
}
