package config

import (
	"strings"
	"time"
)

// Config is the whole YAML file, shared by extproc and xds; Load fills defaults and validates it.
//
// Sections that later features own (jwt, cache, audit_log, observability, policies, ...) are
// accepted here so that a config written for the original product loads, and are validated by
// the packages that implement them.
type Config struct {
	// Source is the file the config was read from, used in error messages.
	Source string `yaml:"-"`

	// pos records where each key was written, so errors found after decoding still name a line.
	pos positions

	Server  Server   `yaml:"server"`
	Buckets []Bucket `yaml:"buckets"`

	ExtProc ExtProc `yaml:"extproc"`
	Origin  Origin  `yaml:"origin"`
	Admin   Admin   `yaml:"admin"`
	XDS     XDS     `yaml:"xds"`

	// Sections parsed for compatibility with the original product; owned by later features.
	JWT               JWT            `yaml:"jwt"`           // internal/config/access.go
	Cache             Cache          `yaml:"cache"`         // internal/config/cache.go
	AuditLog          AuditLog       `yaml:"audit_log"`     // internal/config/observability.go
	Observability     Observability  `yaml:"observability"` // internal/config/observability.go
	Logging           Logging        `yaml:"logging"`       // internal/config/observability.go
	ImageOptimization map[string]any `yaml:"image_optimization"`
	Policies          []Policy       `yaml:"policies"` // internal/config/policies.go
}

// Server is where Envoy listens for clients and the request limits every request must pass.
type Server struct {
	// Address is the host Envoy's listener binds (host only, as in the original product).
	Address string `yaml:"address"`
	Port    int    `yaml:"port"`

	Threads               int            `yaml:"threads"`                 // accepted, unused (Envoy owns threading)
	RequestTimeout        Seconds        `yaml:"request_timeout"`         // default 30s, the Envoy route timeout
	MaxConcurrentRequests int            `yaml:"max_concurrent_requests"` // default 1000
	SecurityLimits        SecurityLimits `yaml:"security_limits"`

	RateLimit RateLimit `yaml:"rate_limit"` // internal/config/access.go
	IPFilter  IPFilter  `yaml:"ip_filter"`  // gateway-wide allow/block list (access.go)
	// TrustedHops counts the proxies in front of Envoy: the client IP is the x-forwarded-for entry
	// that many places left of the one Envoy appended (access.go).
	TrustedHops int        `yaml:"trusted_hops"`
	Coalescing  Coalescing `yaml:"coalescing"` // internal/config/cache.go
}

// SecurityLimits bound what a single request may carry before any bucket logic runs.
type SecurityLimits struct {
	MaxBodySize   int64 `yaml:"max_body_size"`   // default 10 MiB → 413
	MaxHeaderSize int   `yaml:"max_header_size"` // default 64 KiB → 431 (sum of name+value lengths)
	MaxURILength  int   `yaml:"max_uri_length"`  // default 8 KiB → 414 (raw :path incl. query)
}

// Bucket maps a path prefix to one S3 bucket with its own credentials.
type Bucket struct {
	Name       string `yaml:"name"`
	PathPrefix string `yaml:"path_prefix"`
	S3         S3     `yaml:"s3"`

	// Sections owned by later features, accepted for compatibility.
	Auth          BucketAuth     `yaml:"auth"`  // internal/config/access.go
	JWT           JWT            `yaml:"jwt"`   // access.go: the seed dialect of auth.jwt
	Cache         BucketCache    `yaml:"cache"` // internal/config/cache.go
	Authorization map[string]any `yaml:"authorization"`
	IPFilter      IPFilter       `yaml:"ip_filter"` // internal/config/access.go
	Watermark     map[string]any `yaml:"watermark"`
	Policies      []string       `yaml:"policies"` // names from the top-level policies list, in order
}

// S3 is how the origin reaches a bucket: path-style on a custom endpoint, virtual-hosted on AWS.
type S3 struct {
	Bucket    string `yaml:"bucket"`
	Region    string `yaml:"region"`
	Endpoint  string `yaml:"endpoint"` // empty → AWS virtual-hosted style
	AccessKey string `yaml:"access_key"`
	SecretKey string `yaml:"secret_key"`
	// Timeout bounds one S3 call (seconds in YAML, default 20).
	Timeout Seconds `yaml:"timeout"`
	// ConnectTimeout bounds a TCP/TLS connect, FirstByteTimeout one attempt's wait for response
	// headers (internal/config/backend.go).
	ConnectTimeout     Seconds `yaml:"connect_timeout"`
	FirstByteTimeout   Seconds `yaml:"first_byte_timeout"`
	ConnectionPoolSize int     `yaml:"connection_pool_size"` // default 50: max idle conns per host

	// Sections owned by later features, accepted for compatibility.
	RateLimit      Rate           `yaml:"rate_limit"`      // per-bucket limit, internal/config/access.go
	Retry          Retry          `yaml:"retry"`           // internal/config/backend.go
	CircuitBreaker CircuitBreaker `yaml:"circuit_breaker"` // internal/config/backend.go
	Replicas       []Replica      `yaml:"replicas"`        // internal/config/backend.go
}

// NormalizedPrefix is the path prefix without its trailing slash ("" for the root prefix "/"),
// the form routing and duplicate detection compare.
func (b Bucket) NormalizedPrefix() string { return strings.TrimRight(b.PathPrefix, "/") }

// PathStyle reports whether requests use /bucket/key addressing (true for any custom endpoint).
func (s S3) PathStyle() bool { return s.Endpoint != "" }

// ExtProc is where the ext_proc gRPC service listens for Envoy.
type ExtProc struct {
	GRPCAddress string `yaml:"grpc_address"` // default 127.0.0.1:9001
	// MessageTimeout is Envoy's per-message ext_proc timeout (default 250ms; Envoy's own is 200ms).
	MessageTimeout Duration `yaml:"message_timeout"`
}

// Origin is the internal HTTP server that Envoy routes allowed requests to; only signed requests pass.
type Origin struct {
	Address      string `yaml:"address"`       // default 127.0.0.1:9002
	SharedSecret string `yaml:"shared_secret"` // required, ≥ 32 bytes; HMAC key between extproc and origin
	// MaxSkew is how old (or how far in the future) a signature may be (default 30s).
	MaxSkew Duration `yaml:"max_skew"`
}

// Admin serves /health, /ready and /metrics.
type Admin struct {
	Address string `yaml:"address"` // default 127.0.0.1:9090
}

// XDS is where the control plane serves ADS to Envoy.
type XDS struct {
	Address string `yaml:"address"` // default 127.0.0.1:18000
	// Debounce is how long the watcher waits after the last file event before reloading (default 300ms).
	Debounce Duration `yaml:"debounce"`
}

// Seconds is a duration written in YAML as whole seconds (the original product's convention) or as a Go duration string.
type Seconds time.Duration

// Duration is a duration written in YAML as a Go duration string ("250ms", "5s").
type Duration time.Duration

// D returns the value as a time.Duration.
func (s Seconds) D() time.Duration { return time.Duration(s) }

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Default values, one place for all of them.
const (
	DefaultExtProcAddress  = "127.0.0.1:9001"
	DefaultOriginAddress   = "127.0.0.1:9002"
	DefaultAdminAddress    = "127.0.0.1:9090"
	DefaultXDSAddress      = "127.0.0.1:18000"
	DefaultMessageTimeout  = 250 * time.Millisecond
	DefaultMaxSkew         = 30 * time.Second
	DefaultDebounce        = 300 * time.Millisecond
	DefaultS3Timeout       = 20 * time.Second
	DefaultRequestTimeout  = 30 * time.Second
	DefaultMaxConcurrent   = 1000
	DefaultMaxBodySize     = 10 << 20
	DefaultMaxHeaderSize   = 64 << 10
	DefaultMaxURILength    = 8 << 10
	DefaultPoolSize        = 50
	DefaultRegion          = "us-east-1"
	MinSharedSecretLength  = 32
	OriginSecretEnvDefault = "YATAGARASU_ORIGIN_SECRET"
)
