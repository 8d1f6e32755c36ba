package config

import (
	"strings"
	"testing"
	"time"
)

// withCacheDefaults fills want with the cache defaults Load applies, for the whole-config
// comparisons in config_test.go.
func withCacheDefaults(c *Config, enabled bool) {
	c.Cache = Cache{
		Enabled:        enabled,
		CacheLayers:    []string{LayerMemory},
		InlineMaxBytes: DefaultCacheInlineMaxBytes,
		Memory:         MemoryCache{MaxItemSizeMB: 10, MaxCacheSizeMB: 1024, DefaultTTLSeconds: Seconds(time.Hour)},
		Disk:           DiskCache{CacheDir: DefaultCacheDir, MaxDiskCacheSizeMB: DefaultDiskCacheSizeMB},
		Redis: RedisCache{RedisKeyPrefix: DefaultCacheRedisKeyPrefix, RedisTTL: Seconds(time.Hour),
			DialTimeout: Duration(time.Second), OperationTimeout: Duration(100 * time.Millisecond)},
		Warming: CacheWarming{Concurrency: DefaultWarmingConcurrency},
	}
	c.Server.Coalescing = Coalescing{Enabled: true, Strategy: "wait_for_complete"}
	for i := range c.Buckets {
		c.Buckets[i].Cache = BucketCache{Enabled: enabled, TTLSeconds: Seconds(time.Hour), MaxItemSizeMB: 10}
	}
}

func TestCacheSectionSeedExample(t *testing.T) {
	// The seed's Phase 26.1 example, with its documented key_prefix/ttl_seconds spellings.
	yaml := `cache:
  enabled: true
  inline_max_bytes: 1024
  memory:
    max_item_size_mb: 5
    max_cache_size_mb: 100
    default_ttl_seconds: 60
  disk:
    enabled: true
    cache_dir: ${CACHE_DIR}
    max_disk_cache_size_mb: 200
  redis:
    enabled: true
    redis_url: ${REDIS_URL}
    redis_password: ${REDIS_PASSWORD}
    redis_db: 2
    key_prefix: "yg:"
    ttl_seconds: 120
    operation_timeout: 50ms
  cache_layers: ["memory", "disk", "redis"]
server:
  coalescing: {strategy: streaming}
buckets:
  - name: a
    path_prefix: /a
    s3: {bucket: a, access_key: k, secret_key: s}
    cache: {ttl_seconds: 30}
  - name: b
    path_prefix: /b
    s3: {bucket: b, access_key: k, secret_key: s}
    cache: {enabled: false, max_item_size_mb: 1}
`
	cfg := mustParse(t, "cache.yaml", []byte(yaml), map[string]string{
		OriginSecretEnvDefault: testSecret, "CACHE_DIR": "/tmp/c", "REDIS_URL": "redis://r:6379", "REDIS_PASSWORD": "pw",
	})
	g := cfg.Cache
	if !g.Enabled || g.InlineMaxBytes != 1024 || len(g.CacheLayers) != 3 || !g.LayerEnabled(LayerRedis) {
		t.Errorf("cache = %+v", g)
	}
	if g.Memory.MaxItemSizeMB != 5 || g.Memory.DefaultTTLSeconds.D() != time.Minute || g.Disk.CacheDir != "/tmp/c" {
		t.Errorf("memory/disk = %+v %+v", g.Memory, g.Disk)
	}
	r := g.Redis
	if r.RedisKeyPrefix != "yg:" || r.RedisTTL.D() != 2*time.Minute || r.RedisDB != 2 || r.RedisPassword != "pw" ||
		r.OperationTimeout.D() != 50*time.Millisecond || r.DialTimeout.D() != time.Second {
		t.Errorf("redis = %+v", r)
	}
	if co := cfg.Server.Coalescing; !co.Enabled || co.Strategy != "streaming" {
		t.Errorf("coalescing = %+v", co)
	}
	a, b := cfg.Buckets[0].Cache, cfg.Buckets[1].Cache
	if !a.Enabled || a.TTLSeconds.D() != 30*time.Second || a.MaxItemSizeMB != 5 {
		t.Errorf("bucket a inherits enabled and item size, overrides ttl: %+v", a)
	}
	if b.Enabled || b.TTLSeconds.D() != time.Minute || b.MaxItemSizeMB != 1 {
		t.Errorf("bucket b = %+v", b)
	}
}

func TestCacheSectionErrors(t *testing.T) {
	cases := []struct {
		name, yaml, path, msg, fix string
	}{
		{"unknown layer", "cache:\n  enabled: true\n  cache_layers: [memroy] # <--\n", "cache.cache_layers[0]", `unknown cache layer "memroy"`, `did you mean "memory"?`},
		{"duplicate layer", "cache:\n  enabled: true\n  cache_layers: [memory, memory] # <--\n", "cache.cache_layers[1]", "listed twice", "once"},
		{"empty layers", "cache:\n  enabled: true\n  cache_layers: [] # <--\n", "cache.cache_layers", "no cache layers", "cache_layers"},
		{"disk not enabled", "cache:\n  enabled: true\n  cache_layers: [memory, disk] # <--\n", "cache.cache_layers[1]", "disk.enabled", "enabled: true"},
		{"redis not enabled", "cache:\n  enabled: true\n  cache_layers: [redis] # <--\n", "cache.cache_layers[0]", "redis.enabled", "enabled: true"},
		{"item larger than cache", "cache:\n  memory:\n    max_item_size_mb: 20 # <--\n    max_cache_size_mb: 10\n", "cache.memory.max_item_size_mb", "larger than max_cache_size_mb", "at most"},
		{"zero ttl", "cache:\n  memory:\n    default_ttl_seconds: 0 # <--\n", "cache.memory.default_ttl_seconds", "greater than 0", "3600"},
		{"inline too big", "cache:\n  inline_max_bytes: 2000000 # <--\n", "cache.inline_max_bytes", "outside 0..1048576", "65536"},
		{"empty cache dir", "cache:\n  disk:\n    enabled: true\n    cache_dir: \"\" # <--\n", "cache.disk.cache_dir", "empty", "cache_dir"},
		{"redis url scheme", "cache:\n  redis:\n    enabled: true\n    redis_url: http://x:6379 # <--\n", "cache.redis.redis_url", "not a redis://", "redis://"},
		{"redis url missing", "cache:\n  redis: # <--\n    enabled: true\n", "cache.redis.redis_url", "required", "redis_url"},
		{"both prefix spellings", "cache:\n  redis:\n    redis_key_prefix: a\n    key_prefix: b # <--\n", "cache.redis.key_prefix", "both", "redis_key_prefix"},
		{"bad strategy", "server:\n  coalescing:\n    strategy: eager # <--\n", "server.coalescing.strategy", "unknown strategy", "wait_for_complete"},
		{"unknown cache key", "cache:\n  memroy: {} # <--\n", "cache.memroy", `unknown key "memroy"`, `did you mean "memory"?`},
		{"duration without unit", "cache:\n  redis:\n    operation_timeout: 100 # <--\n", "cache.redis.operation_timeout", "no unit", "250ms"},
		{
			"bucket enables a disabled cache",
			"buckets:\n  - name: a\n    path_prefix: /a\n    s3: {bucket: a, access_key: k, secret_key: s}\n    cache:\n      enabled: true # <--\n",
			"buckets[0].cache.enabled", "top-level cache is disabled", "cache.enabled: true",
		},
		{
			"bucket item size",
			"buckets:\n  - name: a\n    path_prefix: /a\n    s3: {bucket: a, access_key: k, secret_key: s}\n    cache:\n      max_item_size_mb: 0 # <--\n",
			"buckets[0].cache.max_item_size_mb", "outside 1..512", "10",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			yaml := tc.yaml
			if !strings.Contains(yaml, "buckets:") {
				yaml = okBucket + yaml
			}
			_, err := Parse("c.yaml", []byte(yaml), envOf(map[string]string{OriginSecretEnvDefault: testSecret}))
			errs, ok := err.(Errors)
			if !ok || len(errs) != 1 {
				t.Fatalf("want one error, got %v", err)
			}
			e := errs[0]
			if e.Path != tc.path || !strings.Contains(e.Msg, tc.msg) || !strings.Contains(e.Fix, tc.fix) {
				t.Errorf("error = %v\nwant path %s, msg ~ %q, fix ~ %q", e, tc.path, tc.msg, tc.fix)
			}
			if line := markedLine(t, yaml); e.Line != line {
				t.Errorf("line = %d, want %d (%v)", e.Line, line, e)
			}
		})
	}
}

func TestCacheDisabledSkipsLayerChecks(t *testing.T) {
	// A disabled cache may list layers that are not set up; nothing is opened.
	yaml := okBucket + "cache:\n  enabled: false\n  cache_layers: [memory, disk]\n"
	cfg := mustParse(t, "c.yaml", []byte(yaml), map[string]string{OriginSecretEnvDefault: testSecret})
	if cfg.Cache.LayerEnabled(LayerMemory) || cfg.Buckets[0].Cache.Enabled {
		t.Errorf("disabled cache reports layers enabled: %+v", cfg.Cache)
	}
}
