package config

import (
	"fmt"
	"math"
	"net/netip"
	"net/url"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/yatagarasu/yatagarasu/internal/jwtkey"
)

// JWT is a `jwt` section: the top-level default every bucket with auth uses, or a bucket's own
// override (buckets[].jwt or buckets[].auth.jwt). It accepts the original product's keys and the
// spellings its documentation used.
type JWT struct {
	// Set is true when the section is written in the file (filled by Load).
	Set bool `yaml:"-"`

	Enabled            bool          `yaml:"enabled"` // default true when the section is written
	Algorithm          string        `yaml:"algorithm"`
	Secret             string        `yaml:"secret"`
	RSAPublicKeyPath   string        `yaml:"rsa_public_key_path"`
	ECDSAPublicKeyPath string        `yaml:"ecdsa_public_key_path"`
	PublicKeyPath      string        `yaml:"public_key_path"` // documented dialect: any key type
	TokenSources       []TokenSource `yaml:"token_sources"`   // default: bearer
	Claims             []ClaimRule   `yaml:"claims"`
	ClaimsVerification []ClaimRule   `yaml:"claims_verification"` // documented dialect of claims
	AdminClaims        []ClaimRule   `yaml:"admin_claims"`
	Keys               []JWTKey      `yaml:"keys"`
	JWKSURL            string        `yaml:"jwks_url"`
	// JWKSRefreshInterval is how often the JWKS is fetched again (default 1h). The three keys are
	// the spellings of the original parser, the seed plan and the website.
	JWKSRefreshInterval        Seconds `yaml:"jwks_refresh_interval_secs"`
	JWKSRefreshIntervalSeconds Seconds `yaml:"jwks_refresh_interval_seconds"`
	JWKSCacheTTLSeconds        Seconds `yaml:"jwks_cache_ttl_seconds"`

	Issuer   string  `yaml:"issuer"`   // required `iss`, when set
	Audience string  `yaml:"audience"` // required member of `aud`, when set
	Leeway   Seconds `yaml:"leeway"`   // clock skew allowed on exp/nbf (default 60s, as the original's library)
	// CacheSize bounds the verified-token cache (entries; default 10000; 0 turns it off).
	CacheSize int `yaml:"cache_size"`
}

// TokenSource is one place a token is looked for; sources are tried in order.
type TokenSource struct {
	Type       string `yaml:"type"`        // bearer | header | query ("bearer_header" = bearer)
	SourceType string `yaml:"source_type"` // load-test dialect of type
	Name       string `yaml:"name"`        // header or query parameter name
	Prefix     string `yaml:"prefix"`      // header only: stripped; a value without it is no token
}

// Kind returns the normalised source type (bearer, header or query).
func (s TokenSource) Kind() string {
	t := s.Type
	if t == "" {
		t = s.SourceType
	}
	if t == "bearer_header" {
		return "bearer"
	}
	return t
}

// ClaimRule is one condition on the verified claims; all rules of a list must hold.
type ClaimRule struct {
	Claim    string `yaml:"claim"` // dotted path into the claims: realm_access.roles
	Name     string `yaml:"name"`  // documented dialect of claim
	Operator string `yaml:"operator"`
	Value    any    `yaml:"value"`
}

// Path returns the claim path, whichever spelling the file used.
func (r ClaimRule) Path() string {
	if r.Claim != "" {
		return r.Claim
	}
	return r.Name
}

// ClaimOperators lists the rule operators.
var ClaimOperators = []string{"equals", "in", "contains", "gt", "lt", "gte", "lte", "regex", "exists"}

// JWTKey is one entry of jwt.keys: a key with an id (kid) so that tokens name the key they use
// and keys rotate by adding the new one before removing the old one.
type JWTKey struct {
	ID                 string `yaml:"id"`
	Algorithm          string `yaml:"algorithm"`
	Secret             string `yaml:"secret"`
	Path               string `yaml:"path"`
	RSAPublicKeyPath   string `yaml:"rsa_public_key_path"`
	ECDSAPublicKeyPath string `yaml:"ecdsa_public_key_path"`
	PublicKeyPath      string `yaml:"public_key_path"`
}

// KeyPath returns the PEM path, whichever key the file used.
func (k JWTKey) KeyPath() string {
	for _, p := range []string{k.Path, k.RSAPublicKeyPath, k.ECDSAPublicKeyPath, k.PublicKeyPath} {
		if p != "" {
			return p
		}
	}
	return ""
}

// BucketAuth is buckets[].auth: whether the bucket needs a token, and optionally its own JWT settings.
type BucketAuth struct {
	Enabled bool `yaml:"enabled"` // default true when auth.jwt is written, else false
	JWT     JWT  `yaml:"jwt"`
}

// IPFilter is an allow/block list of IPs and CIDRs (IPv4 and IPv6). A non-empty allowlist wins:
// only listed clients pass and the blocklist is not consulted.
type IPFilter struct {
	Allowlist []string `yaml:"allowlist"`
	Blocklist []string `yaml:"blocklist"`
}

// Empty reports whether the filter lets every client through.
func (f IPFilter) Empty() bool { return len(f.Allowlist) == 0 && len(f.Blocklist) == 0 }

// RateLimit is server.rate_limit: the gateway-wide limits and where their state lives.
type RateLimit struct {
	Set     bool `yaml:"-"`       // the section is written (filled by Load)
	Enabled bool `yaml:"enabled"` // default true when the section is written; false turns every limit off

	Global  Rate     `yaml:"global"`
	PerIP   Rate     `yaml:"per_ip"`
	PerUser UserRate `yaml:"per_user"`

	Backend string     `yaml:"backend"` // local (default) | redis
	Redis   RedisLimit `yaml:"redis"`
	// MaxKeys bounds how many per-IP/per-user limiters one process keeps (default 100000).
	MaxKeys int `yaml:"max_keys"`
}

// Rate is a token bucket: RequestsPerSecond refill and Burst capacity (default ceil(rate)).
type Rate struct {
	RequestsPerSecond float64 `yaml:"requests_per_second"`
	Burst             int     `yaml:"burst"`
}

// On reports whether the limit is configured.
func (r Rate) On() bool { return r.RequestsPerSecond > 0 }

// UserRate is the per-user limit, keyed by a verified claim (default sub).
type UserRate struct {
	RequestsPerSecond float64 `yaml:"requests_per_second"`
	Burst             int     `yaml:"burst"`
	Claim             string  `yaml:"claim"`
}

// Rate returns the limit part.
func (u UserRate) Rate() Rate { return Rate{RequestsPerSecond: u.RequestsPerSecond, Burst: u.Burst} }

// RedisLimit is where distributed limits live, shared by every extproc replica.
type RedisLimit struct {
	URL        string   `yaml:"url"`         // redis://[user:pass@]host:port/db (single node)
	Addresses  []string `yaml:"addresses"`   // cluster seeds, or sentinels with master_name
	MasterName string   `yaml:"master_name"` // sentinel
	Username   string   `yaml:"username"`
	Password   string   `yaml:"password"`
	DB         int      `yaml:"db"`
	KeyPrefix  string   `yaml:"key_prefix"` // default "yatagarasu:ratelimit:"
	Timeout    Duration `yaml:"timeout"`    // per call, default 50ms; then the local limiter decides
	// RetryInterval is how long the local limiter stands in after a Redis failure before Redis is
	// tried again (default 1s), so a dead Redis costs one timeout per interval, not per request.
	RetryInterval Duration `yaml:"retry_interval"`
}

// Access defaults.
const (
	DefaultJWTLeeway        = 60 * time.Second
	DefaultJWKSRefresh      = time.Hour
	DefaultTokenCacheSize   = 10000
	DefaultRateLimitMaxKeys = 100000
	DefaultRedisKeyPrefix   = "yatagarasu:ratelimit:"
	DefaultRedisTimeout     = 50 * time.Millisecond
	DefaultRedisRetry       = time.Second
)

// RefreshInterval returns the JWKS refresh interval, whichever key set it.
func (j *JWT) RefreshInterval() time.Duration {
	for _, s := range []Seconds{j.JWKSRefreshInterval, j.JWKSRefreshIntervalSeconds, j.JWKSCacheTTLSeconds} {
		if s > 0 {
			return s.D()
		}
	}
	return DefaultJWKSRefresh
}

// Rules returns the claim rules, whichever key set them.
func (j *JWT) Rules() []ClaimRule {
	if len(j.Claims) > 0 {
		return j.Claims
	}
	return j.ClaimsVerification
}

// EffectiveJWT returns the JWT settings that protect bucket b, and where they are in the file;
// nil when the bucket is public.
func (c *Config) EffectiveJWT(i int) (*JWT, string) {
	b := &c.Buckets[i]
	base := "buckets[" + strconv.Itoa(i) + "]"
	switch {
	case b.Auth.JWT.Set:
		if !b.Auth.Enabled {
			return nil, ""
		}
		return &b.Auth.JWT, base + ".auth.jwt"
	case b.JWT.Set:
		if !b.JWT.Enabled || (c.Written(base+".auth.enabled") && !b.Auth.Enabled) {
			return nil, ""
		}
		return &b.JWT, base + ".jwt"
	case b.Auth.Enabled:
		return &c.JWT, "jwt"
	}
	return nil, ""
}

// accessDefaults fills the access-control sections' defaults (called from applyDefaults).
func (d *decoder) accessDefaults(c *Config) {
	p := d.pos
	jwtDefaults := func(j *JWT, base string) {
		j.Set = p.present(base)
		if !j.Set {
			return
		}
		if !p.present(base + ".enabled") {
			j.Enabled = true
		}
		if !p.present(base + ".leeway") {
			j.Leeway = Seconds(DefaultJWTLeeway)
		}
		if !p.present(base + ".cache_size") {
			j.CacheSize = DefaultTokenCacheSize
		}
		if len(j.TokenSources) == 0 && !p.present(base+".token_sources") {
			j.TokenSources = []TokenSource{{Type: "bearer"}}
		}
	}
	jwtDefaults(&c.JWT, "jwt")
	for i := range c.Buckets {
		b := &c.Buckets[i]
		base := "buckets[" + strconv.Itoa(i) + "]"
		jwtDefaults(&b.JWT, base+".jwt")
		jwtDefaults(&b.Auth.JWT, base+".auth.jwt")
		if b.Auth.JWT.Set && !p.present(base+".auth.enabled") {
			b.Auth.Enabled = true
		}
		rateDefaults(&b.S3.RateLimit, p.present(base+".s3.rate_limit.burst"))
	}
	rl := &c.Server.RateLimit
	rl.Set = p.present("server.rate_limit")
	if !p.present("server.rate_limit.enabled") {
		rl.Enabled = rl.Set
	}
	rateDefaults(&rl.Global, p.present("server.rate_limit.global.burst"))
	rateDefaults(&rl.PerIP, p.present("server.rate_limit.per_ip.burst"))
	ur := rl.PerUser.Rate()
	rateDefaults(&ur, p.present("server.rate_limit.per_user.burst"))
	rl.PerUser.Burst = ur.Burst
	if rl.PerUser.Claim == "" {
		rl.PerUser.Claim = "sub"
	}
	if rl.Backend == "" {
		rl.Backend = "local"
	}
	if !p.present("server.rate_limit.max_keys") {
		rl.MaxKeys = DefaultRateLimitMaxKeys
	}
	r := &rl.Redis
	if r.KeyPrefix == "" {
		r.KeyPrefix = DefaultRedisKeyPrefix
	}
	if !p.present("server.rate_limit.redis.timeout") {
		r.Timeout = Duration(DefaultRedisTimeout)
	}
	if !p.present("server.rate_limit.redis.retry_interval") {
		r.RetryInterval = Duration(DefaultRedisRetry)
	}
}

// rateDefaults sets an absent burst to the rate rounded up, as the original product's limiter did.
func rateDefaults(r *Rate, burstWritten bool) {
	if !burstWritten && r.Burst == 0 && r.RequestsPerSecond > 0 {
		r.Burst = int(math.Ceil(r.RequestsPerSecond))
	}
}

// decodeValue decodes a free-form value (a claim rule's value: a scalar, list or mapping).
func (d *decoder) decodeValue(n *yaml.Node, v reflect.Value, path string) {
	before := len(d.errs)
	d.scan(n, path)
	if len(d.errs) > before {
		return
	}
	if err := n.Decode(v.Addr().Interface()); err != nil {
		d.fail(n, path, "cannot read value: "+yamlMessage(err), "check the value's syntax")
	}
}

// access validates the JWT, IP filter and rate-limit sections.
func (c *checker) access() {
	cfg := c.cfg
	if cfg.JWT.Set {
		c.jwt("jwt", &cfg.JWT, true)
	}
	for i := range cfg.Buckets {
		b := &cfg.Buckets[i]
		base := "buckets[" + strconv.Itoa(i) + "]"
		if b.JWT.Set && b.Auth.JWT.Set {
			c.add(base+".auth.jwt", "the bucket has both jwt and auth.jwt", "keep one of them (auth.jwt is the documented spelling)")
		}
		if b.Auth.JWT.Set {
			c.jwt(base+".auth.jwt", &b.Auth.JWT, false)
		}
		if b.JWT.Set {
			c.jwt(base+".jwt", &b.JWT, false)
			if b.JWT.Enabled && cfg.Written(base+".auth.enabled") && !b.Auth.Enabled {
				c.add(base+".auth.enabled", "auth.enabled is false but the bucket's jwt section is enabled",
					"remove one of them: auth.enabled: false makes the bucket public, jwt.enabled: true protects it")
			}
		}
		if b.Auth.Enabled && !b.Auth.JWT.Set && !b.JWT.Set {
			switch {
			case !cfg.JWT.Set:
				c.add(base+".auth.enabled", fmt.Sprintf("bucket %q requires auth but no jwt section is configured", b.Name),
					"add a top-level jwt section with a key (secret, rsa_public_key_path, keys or jwks_url), or a bucket-level auth.jwt")
			case !cfg.JWT.Enabled:
				c.add(base+".auth.enabled", fmt.Sprintf("bucket %q requires auth but jwt.enabled is false", b.Name),
					"set jwt.enabled: true, or auth.enabled: false to make the bucket public")
			}
		}
		c.ipFilter(base+".ip_filter", b.IPFilter)
		if cfg.Written(base + ".s3.rate_limit") {
			c.rate(base+".s3.rate_limit", b.S3.RateLimit, true)
		}
	}
	if len(cfg.JWT.AdminClaims) > 0 && !cfg.JWT.Enabled {
		c.add("jwt.admin_claims", "admin_claims are set but jwt.enabled is false", "set jwt.enabled: true to turn on the admin API")
	}
	c.ipFilter("server.ip_filter", cfg.Server.IPFilter)
	if cfg.Server.TrustedHops < 0 {
		c.add("server.trusted_hops", fmt.Sprintf("must not be negative, got %d", cfg.Server.TrustedHops), "use 0 when clients reach Envoy directly, or the number of proxies in front of it")
	}
	c.rateLimit()
}

// jwt checks one JWT section; top is the top-level one, which buckets fall back to.
func (c *checker) jwt(base string, j *JWT, top bool) {
	if !j.Enabled {
		return
	}
	if j.Algorithm != "" && !jwtkey.Known(j.Algorithm) {
		c.add(base+".algorithm", fmt.Sprintf("unknown algorithm %q", j.Algorithm), "use one of "+strings.Join(jwtkey.Algorithms, ", "))
	}
	usable := 0
	if j.Secret != "" || j.RSAPublicKeyPath != "" || j.ECDSAPublicKeyPath != "" || j.PublicKeyPath != "" ||
		(j.Algorithm != "" && len(j.Keys) == 0 && j.JWKSURL == "") {
		usable += c.singleKey(base, j)
	}
	seen := map[string]int{}
	for i, k := range j.Keys {
		kb := base + ".keys[" + strconv.Itoa(i) + "]"
		if k.ID == "" && len(j.Keys) > 1 {
			c.add(kb+".id", "a key in a list of several needs an id (the kid tokens name it by)", `add e.g. id: "2026-11"`)
		}
		if first, dup := seen[k.ID]; dup && k.ID != "" {
			c.add(kb+".id", fmt.Sprintf("key id %q is already used by keys[%d]", k.ID, first), "give every key a unique id")
		}
		seen[k.ID] = i
		if c.listKey(kb, k) {
			usable++
		}
	}
	if j.JWKSURL != "" {
		if u, err := url.Parse(j.JWKSURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			c.add(base+".jwks_url", fmt.Sprintf("%q is not an http(s) URL", j.JWKSURL), "use e.g. https://auth.example.com/.well-known/jwks.json")
		} else {
			usable++
		}
		if j.Algorithm != "" {
			if f, _ := jwtkey.FamilyOf(j.Algorithm); f == jwtkey.HMAC {
				c.add(base+".algorithm", "a JWKS publishes public keys; "+j.Algorithm+" needs a shared secret", "use an asymmetric algorithm (RS256, ES256, ...) or remove algorithm")
			}
		}
	}
	for _, k := range []string{".jwks_refresh_interval_secs", ".jwks_refresh_interval_seconds", ".jwks_cache_ttl_seconds"} {
		if c.cfg.Written(base+k) && j.RefreshInterval() <= 0 {
			c.add(base+k, "must be greater than 0", "use e.g. 3600 (seconds)")
		}
	}
	if usable == 0 && !c.hasErrorUnder(base) {
		where := "buckets using it"
		if !top {
			where = "this bucket"
		}
		c.add(base, "jwt is enabled but has no usable key, so "+where+" could never authenticate anyone",
			"set secret (HS256), rsa_public_key_path or ecdsa_public_key_path with algorithm, keys: [...], or jwks_url")
	}
	if len(j.TokenSources) == 0 {
		c.add(base+".token_sources", "the list is empty, so no token could ever be found", `add e.g. - type: "bearer"`)
	}
	for i, s := range j.TokenSources {
		sb := base + ".token_sources[" + strconv.Itoa(i) + "]"
		switch s.Kind() {
		case "bearer":
		case "header", "query":
			if s.Name == "" {
				c.add(sb+".name", fmt.Sprintf("a %s token source needs a name", s.Kind()), `add e.g. name: "X-Auth-Token"`)
			}
		default:
			c.add(sb+".type", fmt.Sprintf("unknown token source type %q", s.Kind()), "use bearer, header or query")
		}
		if s.Prefix != "" && s.Kind() != "header" {
			c.add(sb+".prefix", "prefix applies to header sources only", "remove prefix (bearer strips \"Bearer \" itself)")
		}
	}
	if j.Leeway < 0 {
		c.add(base+".leeway", "must not be negative", "use e.g. leeway: 60 (seconds)")
	}
	if j.CacheSize < 0 {
		c.add(base+".cache_size", "must not be negative", "use e.g. cache_size: 10000, or 0 to turn the cache off")
	}
	c.claimRules(base+".claims", j.Claims)
	c.claimRules(base+".claims_verification", j.ClaimsVerification)
	c.claimRules(base+".admin_claims", j.AdminClaims)
	if !top && len(j.AdminClaims) > 0 {
		c.add(base+".admin_claims", "admin_claims apply to the admin API and belong in the top-level jwt section", "move them to jwt.admin_claims")
	}
}

// hasErrorUnder reports whether a problem was already reported at or below path.
func (c *checker) hasErrorUnder(path string) bool {
	for _, e := range c.errs {
		if e.Path == path || strings.HasPrefix(e.Path, path+".") {
			return true
		}
	}
	return false
}

// singleKey checks the section's own key (secret or PEM path) and returns 1 when it is usable.
func (c *checker) singleKey(base string, j *JWT) int {
	alg := j.Algorithm
	if alg != "" && !jwtkey.Known(alg) {
		return 0 // reported by jwt()
	}
	paths := 0
	path, pathKey := "", ""
	for _, p := range []struct{ key, val string }{{"rsa_public_key_path", j.RSAPublicKeyPath}, {"ecdsa_public_key_path", j.ECDSAPublicKeyPath}, {"public_key_path", j.PublicKeyPath}} {
		if p.val != "" {
			paths++
			if path == "" {
				path, pathKey = p.val, p.key
			}
		}
	}
	fam, _ := jwtkey.FamilyOf(alg)
	switch {
	case alg == "" && j.Secret != "" && paths == 0:
		alg, fam = "HS256", jwtkey.HMAC
	case alg == "" && paths > 0 && j.Secret == "":
	case alg == "":
		c.add(base+".algorithm", "algorithm is required when both a secret and a public key are set", "add e.g. algorithm: RS256")
		return 0
	}
	if fam == jwtkey.HMAC {
		if j.Secret == "" {
			c.add(base+".secret", fmt.Sprintf("%s needs a secret", alg), `set secret: "${JWT_SECRET}" (at least 32 bytes, e.g. openssl rand -hex 32)`)
			return 0
		}
		if _, err := jwtkey.FromSecret("", alg, j.Secret); err != nil {
			c.add(base+".secret", err.Error(), "use a longer secret, e.g. $(openssl rand -hex 32)")
			return 0
		}
		return 1
	}
	if path == "" {
		c.add(base+".algorithm", fmt.Sprintf("%s needs a public key", alg), "set rsa_public_key_path (RS*/PS*), ecdsa_public_key_path (ES*) or public_key_path")
		return 0
	}
	if _, err := jwtkey.FromPEMFile("", alg, path); err != nil {
		c.add(base+"."+pathKey, fmt.Sprintf("%q: %v", path, err), "point it at the PEM public key that matches algorithm")
		return 0
	}
	return 1
}

// listKey checks one jwt.keys entry and reports whether it is usable.
func (c *checker) listKey(kb string, k JWTKey) bool {
	if k.Algorithm == "" {
		c.add(kb+".algorithm", "every key needs an algorithm", "add e.g. algorithm: RS256")
		return false
	}
	fam, ok := jwtkey.FamilyOf(k.Algorithm)
	if !ok {
		c.add(kb+".algorithm", fmt.Sprintf("unknown algorithm %q", k.Algorithm), "use one of "+strings.Join(jwtkey.Algorithms, ", "))
		return false
	}
	if fam == jwtkey.HMAC {
		if _, err := jwtkey.FromSecret(k.ID, k.Algorithm, k.Secret); err != nil {
			c.add(kb+".secret", err.Error(), `set secret: "${JWT_SECRET_2}" (at least 32 bytes)`)
			return false
		}
		return true
	}
	p := k.KeyPath()
	if p == "" {
		c.add(kb+".path", fmt.Sprintf("%s needs a public key file", k.Algorithm), "set path: /etc/yatagarasu/key.pem")
		return false
	}
	if _, err := jwtkey.FromPEMFile(k.ID, k.Algorithm, p); err != nil {
		c.add(kb+".path", fmt.Sprintf("%q: %v", p, err), "point it at the PEM public key that matches algorithm")
		return false
	}
	return true
}

// claimRules checks each rule's claim, operator and value shape.
func (c *checker) claimRules(base string, rules []ClaimRule) {
	for i, r := range rules {
		rb := base + "[" + strconv.Itoa(i) + "]"
		if r.Path() == "" || strings.HasPrefix(r.Path(), ".") || strings.HasSuffix(r.Path(), ".") || strings.Contains(r.Path(), "..") {
			c.add(rb+".claim", fmt.Sprintf("claim path %q is not a dotted claim name", r.Path()), `use e.g. claim: "role" or claim: "realm_access.roles"`)
		}
		switch r.Operator {
		case "equals", "contains":
		case "in":
			if _, ok := r.Value.([]any); !ok {
				c.add(rb+".value", "the in operator needs a list of values", `write e.g. value: ["user", "admin"]`)
			}
		case "gt", "lt", "gte", "lte":
			if _, ok := AsNumber(r.Value); !ok {
				c.add(rb+".value", fmt.Sprintf("the %s operator needs a number, got %v", r.Operator, r.Value), "write e.g. value: 1")
			}
		case "regex":
			s, ok := r.Value.(string)
			if !ok {
				c.add(rb+".value", "the regex operator needs a string pattern", `write e.g. value: "^team-"`)
			} else if _, err := regexp.Compile(s); err != nil {
				c.add(rb+".value", fmt.Sprintf("invalid regular expression: %v", err), "fix the pattern (Go RE2 syntax)")
			}
		case "exists":
			if _, ok := r.Value.(bool); r.Value != nil && !ok {
				c.add(rb+".value", "the exists operator takes true, false or no value", "write value: true, or remove value")
			}
		default:
			c.add(rb+".operator", fmt.Sprintf("unknown operator %q", r.Operator), "use one of "+strings.Join(ClaimOperators, ", "))
		}
		if r.Value == nil && r.Operator != "exists" && r.Operator != "" {
			c.add(rb+".value", "the rule has no value", "add value: ...")
		}
	}
}

// AsNumber converts a YAML or JSON number to float64.
func AsNumber(v any) (float64, bool) {
	switch n := v.(type) {
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case uint64:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}

// ipFilter checks that every entry is an IP or a CIDR.
func (c *checker) ipFilter(base string, f IPFilter) {
	for _, l := range []struct {
		key  string
		list []string
	}{{"allowlist", f.Allowlist}, {"blocklist", f.Blocklist}} {
		for i, e := range l.list {
			if _, err := ParseIPOrCIDR(e); err != nil {
				c.add(base+"."+l.key+"["+strconv.Itoa(i)+"]", fmt.Sprintf("%q is not an IP address or CIDR", e), `write e.g. "10.0.0.0/8", "192.168.1.7" or "2001:db8::/32"`)
			}
		}
	}
}

// ParseIPOrCIDR parses "10.0.0.0/8", "10.1.2.3" or "2001:db8::/32" into a prefix (a single IP is
// a /32 or /128). A CIDR with host bits set is an error: it usually hides a typo.
func ParseIPOrCIDR(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if p.Masked() != p {
			return netip.Prefix{}, fmt.Errorf("%s has host bits set (did you mean %s?)", s, p.Masked())
		}
		if p.Addr().Is4In6() {
			return netip.Prefix{}, fmt.Errorf("%s is an IPv4-mapped IPv6 prefix; write the IPv4 form", s)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// rateLimit checks server.rate_limit.
func (c *checker) rateLimit() {
	rl := c.cfg.Server.RateLimit
	if !rl.Set {
		return
	}
	for _, r := range []struct {
		key  string
		rate Rate
	}{{"global", rl.Global}, {"per_ip", rl.PerIP}, {"per_user", rl.PerUser.Rate()}} {
		if c.cfg.Written("server.rate_limit." + r.key) {
			c.rate("server.rate_limit."+r.key, r.rate, true)
		}
	}
	if rl.PerUser.Claim == "" || strings.Contains(rl.PerUser.Claim, "..") {
		c.add("server.rate_limit.per_user.claim", "claim must be a claim name", `use e.g. claim: "sub"`)
	}
	if rl.MaxKeys <= 0 {
		c.add("server.rate_limit.max_keys", fmt.Sprintf("must be greater than 0, got %d", rl.MaxKeys), "use e.g. max_keys: 100000")
	}
	switch rl.Backend {
	case "local":
		if c.cfg.Written("server.rate_limit.redis") {
			c.add("server.rate_limit.redis", "redis settings are given but backend is local", `set backend: "redis", or remove the redis section`)
		}
	case "redis":
		c.redis(rl.Redis)
	default:
		c.add("server.rate_limit.backend", fmt.Sprintf("unknown backend %q", rl.Backend), `use "local" (per process) or "redis" (shared by every extproc replica)`)
	}
}

func (c *checker) rate(base string, r Rate, required bool) {
	if required && r.RequestsPerSecond <= 0 {
		c.add(base+".requests_per_second", fmt.Sprintf("must be greater than 0, got %v", r.RequestsPerSecond), "use e.g. requests_per_second: 100, or remove the limit")
	}
	if r.Burst < 0 || (c.cfg.Written(base+".burst") && r.Burst == 0) {
		c.add(base+".burst", fmt.Sprintf("must be at least 1, got %d", r.Burst), "use e.g. burst: 100, or remove it for the default (the rate rounded up)")
	}
}

func (c *checker) redis(r RedisLimit) {
	const base = "server.rate_limit.redis"
	switch {
	case r.URL == "" && len(r.Addresses) == 0:
		c.add(base, "the redis backend needs url or addresses", `add url: "redis://127.0.0.1:6379/0"`)
	case r.URL != "" && len(r.Addresses) > 0:
		c.add(base+".addresses", "url and addresses are both set", "use url for one server, addresses for a cluster or sentinels")
	case r.URL != "":
		u, err := url.Parse(r.URL)
		if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			c.add(base+".url", fmt.Sprintf("%q is not a redis:// or rediss:// URL", redactURL(r.URL)), `use e.g. "redis://127.0.0.1:6379/0"`)
		}
	}
	for i, a := range r.Addresses {
		if _, port, err := splitHostPort(a); err != nil || port == "" {
			c.add(base+".addresses["+strconv.Itoa(i)+"]", fmt.Sprintf("%q is not host:port", a), `use e.g. "10.0.0.5:6379"`)
		}
	}
	if r.Timeout <= 0 {
		c.add(base+".timeout", "must be greater than 0", `use e.g. timeout: "50ms"`)
	}
	if r.RetryInterval <= 0 {
		c.add(base+".retry_interval", "must be greater than 0", `use e.g. retry_interval: "1s"`)
	}
}

// redactURL hides a password in a URL before it goes into an error message.
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		return u.Redacted()
	}
	return s
}

func splitHostPort(a string) (string, string, error) {
	i := strings.LastIndex(a, ":")
	if i <= 0 || i == len(a)-1 {
		return "", "", fmt.Errorf("missing port in %q", a)
	}
	if _, err := strconv.Atoi(a[i+1:]); err != nil {
		return "", "", err
	}
	return a[:i], a[i+1:], nil
}
