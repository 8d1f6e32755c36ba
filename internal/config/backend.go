package config

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Retry is how often and how patiently the origin retries a GET/HEAD whose S3 call failed with a
// connection error, a timeout or a 5xx before any byte reached the client (original shape).
type Retry struct {
	MaxAttempts      int `yaml:"max_attempts"`       // default 3, including the first attempt
	InitialBackoffMs int `yaml:"initial_backoff_ms"` // default 100; doubles per retry, full jitter
	MaxBackoffMs     int `yaml:"max_backoff_ms"`     // default 1000
}

// CircuitBreaker stops calling a failing S3 backend for a while (original shape); one breaker
// runs per backend (per replica) and answers 503 with Retry-After while every backend is open.
type CircuitBreaker struct {
	FailureThreshold    int     `yaml:"failure_threshold"`      // default 5 consecutive failures → open
	SuccessThreshold    int     `yaml:"success_threshold"`      // default 2 successes in half-open → closed
	TimeoutSeconds      Seconds `yaml:"timeout_seconds"`        // default 60: open → half-open
	HalfOpenMaxRequests int     `yaml:"half_open_max_requests"` // default 3 trial requests
}

// Replica is one S3 backend of a bucket in replicas mode (original shape); the lowest priority
// number that is healthy serves.
type Replica struct {
	Name      string  `yaml:"name"`
	Bucket    string  `yaml:"bucket"`
	Region    string  `yaml:"region"`
	AccessKey string  `yaml:"access_key"`
	SecretKey string  `yaml:"secret_key"`
	Endpoint  string  `yaml:"endpoint"` // empty → AWS virtual-hosted style
	Priority  int     `yaml:"priority"` // ≥ 1, unique per bucket
	Timeout   Seconds `yaml:"timeout"`  // default: the bucket's s3.timeout
}

// Backend defaults (the original product's values).
const (
	DefaultRetryAttempts       = 3
	DefaultRetryInitialBackoff = 100 * time.Millisecond
	DefaultRetryMaxBackoff     = time.Second
	DefaultBreakerFailures     = 5
	DefaultBreakerSuccesses    = 2
	DefaultBreakerTimeout      = 60 * time.Second
	DefaultBreakerHalfOpen     = 3
	DefaultConnectTimeout      = 5 * time.Second
	DefaultReplicaName         = "default"
	maxRetryAttempts           = 10
)

// Backends returns the bucket's S3 backends in priority order: its replicas, or in legacy mode one
// replica named "default" built from the legacy keys.
func (s S3) Backends() []Replica {
	if len(s.Replicas) == 0 {
		return []Replica{{
			Name: DefaultReplicaName, Bucket: s.Bucket, Region: s.Region, AccessKey: s.AccessKey,
			SecretKey: s.SecretKey, Endpoint: s.Endpoint, Priority: 1, Timeout: s.Timeout,
		}}
	}
	out := slices.Clone(s.Replicas)
	slices.SortStableFunc(out, func(a, b Replica) int { return cmp.Compare(a.Priority, b.Priority) })
	for i := range out {
		if out[i].Timeout <= 0 {
			out[i].Timeout = s.Timeout
		}
	}
	return out
}

// backendDefaults fills retry, circuit-breaker and replica defaults (called from applyDefaults).
func (d *decoder) backendDefaults(c *Config) {
	p := d.pos
	for i := range c.Buckets {
		s := &c.Buckets[i].S3
		base := "buckets[" + strconv.Itoa(i) + "].s3."
		setInt := func(path string, v *int, def int) {
			if !p.present(base + path) {
				*v = def
			}
		}
		setSec := func(path string, v *Seconds, def time.Duration) {
			if !p.present(base + path) {
				*v = Seconds(def)
			}
		}
		setInt("retry.max_attempts", &s.Retry.MaxAttempts, DefaultRetryAttempts)
		setInt("retry.initial_backoff_ms", &s.Retry.InitialBackoffMs, int(DefaultRetryInitialBackoff/time.Millisecond))
		setInt("retry.max_backoff_ms", &s.Retry.MaxBackoffMs, int(DefaultRetryMaxBackoff/time.Millisecond))
		setInt("circuit_breaker.failure_threshold", &s.CircuitBreaker.FailureThreshold, DefaultBreakerFailures)
		setInt("circuit_breaker.success_threshold", &s.CircuitBreaker.SuccessThreshold, DefaultBreakerSuccesses)
		setSec("circuit_breaker.timeout_seconds", &s.CircuitBreaker.TimeoutSeconds, DefaultBreakerTimeout)
		setInt("circuit_breaker.half_open_max_requests", &s.CircuitBreaker.HalfOpenMaxRequests, DefaultBreakerHalfOpen)
		total := s.Timeout.D()
		if total <= 0 { // reported on s3.timeout; keep the derived keys quiet
			total = DefaultS3Timeout
		}
		setSec("connect_timeout", &s.ConnectTimeout, min(DefaultConnectTimeout, total))
		setSec("first_byte_timeout", &s.FirstByteTimeout, total)
		for j := range s.Replicas {
			r := &s.Replicas[j]
			rb := base + "replicas[" + strconv.Itoa(j) + "]."
			if !p.present(rb+"region") || r.Region == "" {
				r.Region = DefaultRegion
			}
			if !p.present(rb + "timeout") {
				r.Timeout = s.Timeout
			}
		}
	}
}

// legacyS3Keys are the single-backend keys that replicas replace.
var legacyS3Keys = []string{"bucket", "access_key", "secret_key", "endpoint", "region"}

// s3Replicas validates replicas mode; it reports whether the bucket uses it, in which case the
// legacy single-backend checks do not apply.
func (c *checker) s3Replicas(base string, b Bucket) bool {
	if !c.cfg.pos.present(base + ".replicas") {
		return false
	}
	var both []string
	for _, k := range legacyS3Keys {
		if c.cfg.pos.present(base + "." + k) {
			both = append(both, "s3."+k)
		}
	}
	if len(both) > 0 {
		c.add(base+".replicas", fmt.Sprintf("s3.replicas and %s are both set for bucket %q", strings.Join(both, ", "), b.Name),
			"use either the single-backend keys (bucket, region, endpoint, access_key, secret_key) or replicas[], not both; move them into a replica")
	}
	if len(b.S3.Replicas) == 0 {
		c.add(base+".replicas", "replicas is empty", "list at least one replica with name, bucket, region, access_key, secret_key and priority")
	}
	names := map[string]int{}
	prios := map[int]int{}
	for i, r := range b.S3.Replicas {
		rb := base + ".replicas[" + strconv.Itoa(i) + "]"
		if r.Name == "" {
			c.add(rb+".name", "replica name is required", `add e.g. name: "primary"`)
		} else if first, dup := names[r.Name]; dup {
			c.add(rb+".name", fmt.Sprintf("replica name %q is already used by replicas[%d]", r.Name, first), "give every replica a unique name")
		} else {
			names[r.Name] = i
		}
		if r.Bucket == "" {
			c.add(rb+".bucket", "replica bucket is required", `add e.g. bucket: "my-s3-bucket"`)
		}
		if r.AccessKey == "" || r.SecretKey == "" {
			missing := rb + ".access_key"
			if r.AccessKey != "" {
				missing = rb + ".secret_key"
			}
			c.add(missing, fmt.Sprintf("missing credentials for replica %q", r.Name), `set access_key and secret_key, e.g. access_key: "${AWS_ACCESS_KEY_ID}"`)
		}
		if r.Endpoint != "" {
			if msg := checkEndpoint(r.Endpoint); msg != "" {
				c.add(rb+".endpoint", fmt.Sprintf("%q %s", r.Endpoint, msg), "use e.g. http://127.0.0.1:9000, or remove endpoint for AWS S3")
			}
		}
		if r.Priority < 1 {
			c.add(rb+".priority", fmt.Sprintf("priority must be at least 1, got %d", r.Priority), "use priority: 1 for the primary, 2 for the first fallback, ...")
		} else if first, dup := prios[r.Priority]; dup {
			c.add(rb+".priority", fmt.Sprintf("priority %d is already used by replicas[%d]", r.Priority, first), "give every replica a distinct priority")
		} else {
			prios[r.Priority] = i
		}
		if r.Timeout <= 0 {
			c.add(rb+".timeout", fmt.Sprintf("must be greater than 0, got %s", r.Timeout.D()), "use e.g. timeout: 20 (seconds), or remove it for the bucket's s3.timeout")
		}
	}
	return true
}

// s3Protection validates the retry, circuit-breaker and timeout keys of one bucket.
func (c *checker) s3Protection(base string, b Bucket) {
	s := b.S3
	if s.Retry.MaxAttempts < 1 || s.Retry.MaxAttempts > maxRetryAttempts {
		c.add(base+".retry.max_attempts", fmt.Sprintf("must be between 1 and %d, got %d", maxRetryAttempts, s.Retry.MaxAttempts),
			"use e.g. max_attempts: 3 (1 disables retries)")
	}
	if s.Retry.InitialBackoffMs < 0 {
		c.add(base+".retry.initial_backoff_ms", fmt.Sprintf("must not be negative, got %d", s.Retry.InitialBackoffMs), "use e.g. initial_backoff_ms: 100")
	}
	if s.Retry.MaxBackoffMs < s.Retry.InitialBackoffMs {
		c.add(base+".retry.max_backoff_ms", fmt.Sprintf("max_backoff_ms %d is below initial_backoff_ms %d", s.Retry.MaxBackoffMs, s.Retry.InitialBackoffMs),
			"set max_backoff_ms at least as large as initial_backoff_ms, e.g. 1000")
	}
	cb := s.CircuitBreaker
	c.positive(base+".circuit_breaker.failure_threshold", int64(cb.FailureThreshold), "5")
	c.positive(base+".circuit_breaker.success_threshold", int64(cb.SuccessThreshold), "2")
	c.positive(base+".circuit_breaker.half_open_max_requests", int64(cb.HalfOpenMaxRequests), "3")
	if cb.TimeoutSeconds <= 0 {
		c.add(base+".circuit_breaker.timeout_seconds", fmt.Sprintf("must be greater than 0, got %s", cb.TimeoutSeconds.D()), "use e.g. timeout_seconds: 60")
	}
	if s.ConnectTimeout <= 0 {
		c.add(base+".connect_timeout", fmt.Sprintf("must be greater than 0, got %s", s.ConnectTimeout.D()), "use e.g. connect_timeout: 5 (seconds), or remove it for the default")
	}
	if s.FirstByteTimeout <= 0 {
		c.add(base+".first_byte_timeout", fmt.Sprintf("must be greater than 0, got %s", s.FirstByteTimeout.D()), "use e.g. first_byte_timeout: 10 (seconds), or remove it for s3.timeout")
	} else if s.Timeout > 0 && s.FirstByteTimeout > s.Timeout {
		c.add(base+".first_byte_timeout", fmt.Sprintf("first_byte_timeout %s exceeds the total s3.timeout %s", s.FirstByteTimeout.D(), s.Timeout.D()),
			"make first_byte_timeout at most s3.timeout")
	}
}
