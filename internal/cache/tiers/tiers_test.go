package tiers

import (
	"context"
	"testing"

	"github.com/yatagarasu/yatagarasu/internal/config"
)

func TestOpenBuildsTheListedLayersInOrder(t *testing.T) {
	cfg := config.Cache{
		Enabled: true, CacheLayers: []string{"redis", "memory", "disk"},
		Memory: config.MemoryCache{MaxItemSizeMB: 1, MaxCacheSizeMB: 8},
		Disk:   config.DiskCache{Enabled: true, CacheDir: t.TempDir(), MaxDiskCacheSizeMB: 8},
		Redis:  config.RedisCache{Enabled: true, RedisURL: "redis://127.0.0.1:1/0", RedisKeyPrefix: "t:"},
	}
	c, err := Open(context.Background(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var names []string
	for _, l := range c.Layers() {
		names = append(names, l.Name())
	}
	if len(names) != 3 || names[0] != "redis" || names[1] != "memory" || names[2] != "disk" {
		t.Fatalf("layers = %v", names)
	}
	if c, err := Open(context.Background(), config.Cache{CacheLayers: []string{"memory"}}, Options{}); c != nil || err != nil {
		t.Fatalf("disabled cache = %v, %v", c, err)
	}
	bad := cfg
	bad.Redis.RedisURL = "http://x"
	if _, err := Open(context.Background(), bad, Options{}); err == nil {
		t.Fatal("a bad redis URL must fail")
	}
}
