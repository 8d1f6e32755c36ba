// Package runtime turns a validated config into the immutable snapshot every request reads
// through one atomic pointer; a reload builds a new snapshot and swaps it in.
package runtime

import (
	"fmt"
	"sync/atomic"

	"github.com/yatagarasu/yatagarasu/internal/config"
	"github.com/yatagarasu/yatagarasu/internal/originauth"
	"github.com/yatagarasu/yatagarasu/internal/policy"
	"github.com/yatagarasu/yatagarasu/internal/requestcheck"
	"github.com/yatagarasu/yatagarasu/internal/route"
	"github.com/yatagarasu/yatagarasu/internal/s3"
)

// Snapshot is everything a request needs, built once per config version and never mutated.
type Snapshot struct {
	Config  *config.Config
	Routes  *route.Table
	Buckets []config.Bucket // indexed by the route table's bucket index
	S3      map[string]*s3.Bucket
	Limits  requestcheck.Limits
	Signer  *originauth.Signer
	Access  Access // IP lists, rate limits, JWT (access.go)
	// Policies are the compiled wasm policies of this config version; extproc sets them after
	// Build (compiling needs the service's long-lived policy host).
	Policies *policy.Set
}

// Build compiles cfg (already validated by config.Load) into a Snapshot; opts reach every
// s3.NewBucket (the service passes its long-lived s3.Health so breakers survive reloads).
func Build(cfg *config.Config, opts ...s3.Option) (*Snapshot, error) {
	entries := make([]route.Entry, len(cfg.Buckets))
	clients := make(map[string]*s3.Bucket, len(cfg.Buckets))
	for i, b := range cfg.Buckets {
		entries[i] = route.Entry{Prefix: b.PathPrefix, Bucket: i}
		c, err := s3.NewBucket(b, opts...)
		if err != nil {
			return nil, fmt.Errorf("bucket %q: %w", b.Name, err)
		}
		clients[b.Name] = c
	}
	routes, err := route.New(entries)
	if err != nil {
		return nil, fmt.Errorf("build routes: %w", err)
	}
	access, err := buildAccess(cfg)
	if err != nil {
		return nil, err
	}
	lim := cfg.Server.SecurityLimits
	return &Snapshot{
		Access:  access,
		Config:  cfg,
		Routes:  routes,
		Buckets: cfg.Buckets,
		S3:      clients,
		Limits: requestcheck.Limits{
			MaxURILength:   lim.MaxURILength,
			MaxHeaderBytes: lim.MaxHeaderSize,
			MaxBodyBytes:   lim.MaxBodySize,
		},
		Signer: originauth.NewSigner(cfg.Origin.SharedSecret, cfg.Origin.MaxSkew.D()),
	}, nil
}

// Store holds the current Snapshot; the zero value is empty until Set.
type Store struct{ p atomic.Pointer[Snapshot] }

// Load returns the current snapshot, or nil before the first Set.
func (s *Store) Load() *Snapshot { return s.p.Load() }

// Set makes snap the snapshot every later request sees.
func (s *Store) Set(snap *Snapshot) { s.p.Store(snap) }

// S3Bucket finds the S3 client for a config bucket name in the current snapshot.
func (s *Store) S3Bucket(name string) (*s3.Bucket, bool) {
	snap := s.p.Load()
	if snap == nil {
		return nil, false
	}
	b, ok := snap.S3[name]
	return b, ok
}
