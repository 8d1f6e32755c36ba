package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// bucketNamePattern keeps bucket names safe as Envoy route names and as header values.
var bucketNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// maxMessageTimeout is the largest ext_proc message_timeout Envoy accepts.
const maxMessageTimeout = time.Hour

// secretFix tells the operator how to produce a strong origin secret.
const secretFix = "set origin.shared_secret, or export " + OriginSecretEnvDefault + "=$(openssl rand -hex 32)"

// checker gathers validation problems, placing each at the line where its key was written.
type checker struct {
	cfg  *Config
	errs Errors
}

func (c *checker) add(path, msg, fix string) { c.errs = append(c.errs, c.cfg.ErrorAt(path, msg, fix)) }

// validate checks a decoded, defaulted config and returns every problem it finds.
func validate(cfg *Config) Errors {
	c := &checker{cfg: cfg}
	c.server()
	c.buckets()
	c.origin()
	c.extProc()
	c.listenAddresses()
	c.access()
	c.cache()
	c.observability()
	c.policies()
	return c.errs
}

func (c *checker) positive(path string, v int64, example string) {
	if v <= 0 {
		c.add(path, fmt.Sprintf("must be greater than 0, got %d", v), "set it to a positive value, e.g. "+example+", or remove it for the default")
	}
}

func (c *checker) server() {
	s := c.cfg.Server
	if net.ParseIP(s.Address) == nil {
		fix := `use an IP address such as "0.0.0.0" (all interfaces) or "127.0.0.1"`
		if host, port, err := net.SplitHostPort(s.Address); err == nil {
			fix = fmt.Sprintf("write the host and port separately: address: %q and port: %s", host, port)
		}
		c.add("server.address", fmt.Sprintf("%q is not an IP address (Envoy listeners bind IPs, not host names)", s.Address), fix)
	}
	if s.Port < 1 || s.Port > 65535 {
		c.add("server.port", fmt.Sprintf("port %d is out of range 1..65535", s.Port), "use e.g. port: 8080")
	}
	if s.Threads < 0 {
		c.add("server.threads", fmt.Sprintf("must not be negative, got %d", s.Threads), "remove it (Envoy manages its own threads)")
	}
	if s.RequestTimeout <= 0 {
		c.add("server.request_timeout", fmt.Sprintf("must be greater than 0, got %s", s.RequestTimeout.D()), "use e.g. request_timeout: 30 (seconds), or remove it for the default")
	}
	c.positive("server.max_concurrent_requests", int64(s.MaxConcurrentRequests), "1000")
	c.positive("server.security_limits.max_body_size", s.SecurityLimits.MaxBodySize, "10485760")
	c.positive("server.security_limits.max_header_size", int64(s.SecurityLimits.MaxHeaderSize), "65536")
	c.positive("server.security_limits.max_uri_length", int64(s.SecurityLimits.MaxURILength), "8192")
}

func (c *checker) buckets() {
	if len(c.cfg.Buckets) == 0 {
		c.add("buckets", "no buckets are configured", "add at least one bucket with name, path_prefix and s3 settings; see docs/CONFIG.md")
		return
	}
	type seen struct {
		index int
		line  int
	}
	names := map[string]seen{}
	prefixes := map[string]seen{}
	for i, b := range c.cfg.Buckets {
		base := "buckets[" + strconv.Itoa(i) + "]"
		c.bucketName(base, b)
		if b.Name != "" {
			if first, dup := names[b.Name]; dup {
				c.add(base+".name", fmt.Sprintf("bucket name %q is already used by buckets[%d] (line %d)", b.Name, first.index, first.line),
					"give every bucket a unique name")
			} else {
				line, _ := c.cfg.pos.locate(base + ".name")
				names[b.Name] = seen{i, line}
			}
		}
		if c.pathPrefix(base, b) {
			norm := b.NormalizedPrefix()
			line, _ := c.cfg.pos.locate(base + ".path_prefix")
			if first, dup := prefixes[norm]; dup {
				other := c.cfg.Buckets[first.index]
				c.add(base+".path_prefix",
					fmt.Sprintf("path_prefix %q of bucket %q (line %d) is the same route as path_prefix %q of bucket %q (buckets[%d], line %d)",
						b.PathPrefix, b.Name, line, other.PathPrefix, other.Name, first.index, first.line),
					"give each bucket a distinct path_prefix (a trailing \"/\" does not make prefixes different)")
			} else {
				prefixes[norm] = seen{i, line}
			}
		}
		c.s3(base+".s3", b)
	}
}

func (c *checker) bucketName(base string, b Bucket) {
	switch {
	case b.Name == "":
		c.add(base+".name", "bucket name is required", `add e.g. name: "assets" (it names the Envoy route and appears in headers)`)
	case !bucketNamePattern.MatchString(b.Name):
		c.add(base+".name", fmt.Sprintf("bucket name %q may contain only letters, digits, '.', '_' and '-', starting with a letter or digit", b.Name),
			fmt.Sprintf("rename it, e.g. name: %q", sanitizeName(b.Name)))
	}
}

// sanitizeName proposes a valid bucket name close to an invalid one.
func sanitizeName(name string) string {
	out := []byte{}
	for i := 0; i < len(name); i++ {
		ch := name[i]
		ok := ch == '.' || ch == '_' || ch == '-' || (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')
		switch {
		case !ok:
			out = append(out, '-')
		case len(out) == 0 && (ch == '.' || ch == '_' || ch == '-'):
			// drop leading punctuation
		default:
			out = append(out, ch)
		}
	}
	s := strings.Trim(string(out), "-")
	if s == "" {
		return "bucket-1"
	}
	return s
}

// pathPrefix checks one bucket's path_prefix and reports whether it is usable for the duplicate check.
func (c *checker) pathPrefix(base string, b Bucket) bool {
	path := base + ".path_prefix"
	p := b.PathPrefix
	if p == "" {
		c.add(path, "path_prefix is required", `add e.g. path_prefix: "/assets" (requests under it go to this bucket)`)
		return false
	}
	if !strings.HasPrefix(p, "/") {
		c.add(path, fmt.Sprintf("path_prefix %q must start with \"/\"", p), fmt.Sprintf("write path_prefix: %q", "/"+p))
		return false
	}
	if i := strings.IndexFunc(p, func(r rune) bool {
		return r == '?' || r == '#' || r == '%' || r == '\\' || r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\v' || r == '\f' || r < 0x20 || r == 0x7f || r == 0x85 || r == 0xa0 || (r >= 0x2000 && r <= 0x200a) || r == 0x2028 || r == 0x2029 || r == 0x3000
	}); i >= 0 {
		c.add(path, fmt.Sprintf("path_prefix %q contains %q, which cannot appear in a route prefix", p, p[i:i+1]),
			"use only plain path characters (letters, digits, '-', '_', '.', '/'), unencoded")
		return false
	}
	segs := strings.Split(strings.TrimSuffix(p[1:], "/"), "/")
	if p == "/" {
		segs = nil
	}
	for _, seg := range segs {
		switch seg {
		case ".", "..":
			c.add(path, fmt.Sprintf("path_prefix %q contains a %q segment", p, seg), "write the path without dot segments, e.g. \"/assets\"")
			return false
		case "":
			c.add(path, fmt.Sprintf("path_prefix %q contains an empty segment (\"//\")", p), "use single slashes between segments")
			return false
		}
	}
	return true
}

func (c *checker) s3(base string, b Bucket) {
	s := b.S3
	c.s3Protection(base, b) // backend.go
	if c.s3Replicas(base, b) {
		// Replicas mode (backend.go): the legacy single-backend keys are absent by design.
	} else if s.Bucket == "" {
		c.add(base+".bucket", fmt.Sprintf("s3.bucket is required for bucket %q", b.Name), `add e.g. bucket: "my-s3-bucket" under s3`)
	}
	if s.Endpoint != "" {
		if msg := checkEndpoint(s.Endpoint); msg != "" {
			c.add(base+".endpoint", fmt.Sprintf("%q %s", s.Endpoint, msg), "use e.g. http://127.0.0.1:9000, or remove endpoint for AWS S3")
		}
	}
	if len(s.Replicas) == 0 && (s.AccessKey == "" || s.SecretKey == "") {
		missing := base + ".access_key"
		if s.AccessKey != "" {
			missing = base + ".secret_key"
		}
		c.add(missing, fmt.Sprintf("missing credentials for bucket %q", b.Name),
			`set s3.access_key and s3.secret_key, e.g. access_key: "${AWS_ACCESS_KEY_ID}"`)
	}
	if s.Timeout <= 0 {
		c.add(base+".timeout", fmt.Sprintf("must be greater than 0, got %s", s.Timeout.D()), "use e.g. timeout: 20 (seconds), or remove it for the default")
	}
	if s.ConnectionPoolSize <= 0 {
		c.add(base+".connection_pool_size", fmt.Sprintf("must be greater than 0, got %d", s.ConnectionPoolSize), "use e.g. connection_pool_size: 50, or remove it for the default")
	}
}

// checkEndpoint returns why endpoint is not an absolute http(s) URL of a host, or "" when it is.
func checkEndpoint(endpoint string) string {
	u, err := url.Parse(endpoint)
	switch {
	case err != nil:
		return "is not a valid URL"
	case u.Scheme != "http" && u.Scheme != "https":
		return "is not an http(s) URL"
	case u.Opaque != "" || u.Host == "" || u.Hostname() == "":
		return "has no host"
	case u.User != nil:
		return "must not contain user info (credentials go in access_key and secret_key)"
	case u.Path != "" && u.Path != "/":
		return "must not have a path (the bucket is set with s3.bucket)"
	case u.RawQuery != "" || u.ForceQuery:
		return "must not have a query"
	case u.Fragment != "":
		return "must not have a fragment"
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "has an invalid port"
		}
	}
	return ""
}

func (c *checker) origin() {
	o := c.cfg.Origin
	switch {
	case o.SharedSecret == "":
		c.add("origin.shared_secret", "the origin shared secret is not set (extproc signs requests to the origin with it)", secretFix)
	case len(o.SharedSecret) < MinSharedSecretLength:
		c.add("origin.shared_secret", fmt.Sprintf("the origin shared secret is %d bytes, at least %d are required", len(o.SharedSecret), MinSharedSecretLength), secretFix)
	}
	if o.MaxSkew <= 0 {
		c.add("origin.max_skew", fmt.Sprintf("must be greater than 0, got %s", o.MaxSkew.D()), `use e.g. max_skew: "30s"`)
	}
	if c.cfg.XDS.Debounce < 0 {
		c.add("xds.debounce", fmt.Sprintf("must not be negative, got %s", c.cfg.XDS.Debounce.D()), `use e.g. debounce: "300ms"`)
	}
}

func (c *checker) extProc() {
	t := c.cfg.ExtProc.MessageTimeout.D()
	if t <= 0 || t > maxMessageTimeout {
		c.add("extproc.message_timeout", fmt.Sprintf("%s is outside Envoy's range (0, 1h]", t), `use e.g. message_timeout: "250ms"`)
	}
}

// listen is one address the product binds, with the key it came from.
type listen struct {
	path       string
	host, port string
}

// listenAddresses checks the four host:port keys and that no two listeners collide.
func (c *checker) listenAddresses() {
	all := []listen{{path: "server.port", host: c.cfg.Server.Address, port: strconv.Itoa(c.cfg.Server.Port)}}
	for _, a := range []struct {
		path, value, def string
	}{
		{"extproc.grpc_address", c.cfg.ExtProc.GRPCAddress, DefaultExtProcAddress},
		{"origin.address", c.cfg.Origin.Address, DefaultOriginAddress},
		{"admin.address", c.cfg.Admin.Address, DefaultAdminAddress},
		{"xds.address", c.cfg.XDS.Address, DefaultXDSAddress},
	} {
		host, port, err := net.SplitHostPort(a.value)
		if err != nil {
			c.add(a.path, fmt.Sprintf("%q is not a host:port address", a.value), fmt.Sprintf("use e.g. %q", a.def))
			continue
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			c.add(a.path, fmt.Sprintf("port %q in %q is not a number in 1..65535", port, a.value), fmt.Sprintf("use e.g. %q", a.def))
			continue
		}
		all = append(all, listen{path: a.path, host: host, port: port})
	}
	for i := 1; i < len(all); i++ {
		for j := 0; j < i; j++ {
			if all[i].port == all[j].port && sameHost(all[i].host, all[j].host) {
				line, _ := c.cfg.pos.locate(all[j].path)
				where := "its default"
				if c.cfg.pos.present(all[j].path) {
					where = fmt.Sprintf("line %d", line)
				}
				c.add(all[i].path, fmt.Sprintf("%s listens on %s, the same address as %s (%s)",
					all[i].path, net.JoinHostPort(all[i].host, all[i].port), all[j].path, where),
					"give every listener its own port")
				break
			}
		}
	}
}

// sameHost reports whether two listen hosts can collide; a wildcard host collides with any host.
func sameHost(a, b string) bool {
	wild := func(h string) bool {
		ip := net.ParseIP(h)
		return h == "" || (ip != nil && ip.IsUnspecified())
	}
	if wild(a) || wild(b) || strings.EqualFold(a, b) {
		return true
	}
	ipA, ipB := net.ParseIP(a), net.ParseIP(b)
	return ipA != nil && ipB != nil && ipA.Equal(ipB)
}
