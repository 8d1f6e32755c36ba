package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"
)

// Load reads, substitutes, strictly decodes, defaults and validates the file at path, taking
// ${VAR} values from the process environment. Problems in the file come back as Errors.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	return Parse(path, data, os.LookupEnv)
}

// Parse does what Load does on bytes already read; name is the file name used in error messages
// and env looks up ${VAR} references (and YATAGARASU_ORIGIN_SECRET), so callers and tests
// control the environment. Every problem in the file is reported at once, as Errors sorted by line.
func Parse(name string, data []byte, env func(string) (string, bool)) (*Config, error) {
	d := newDecoder(name, env)
	root := d.parseDocument(data)
	if root == nil {
		return nil, d.report()
	}
	d.substituteTree(root, "")
	cfg := &Config{Source: name}
	d.decode(root, reflect.ValueOf(cfg).Elem(), "")
	cfg.pos = d.pos
	d.applyDefaults(cfg)
	for _, e := range validate(cfg) {
		if !d.hasFailed(e.Path) {
			d.errs = append(d.errs, e)
		}
	}
	if len(d.errs) > 0 {
		return nil, d.report()
	}
	return cfg, nil
}

// maxReported caps how many problems one load reports; past that, more lines only bury the first.
const maxReported = 50

// report sorts the problems by line and cuts the list at maxReported.
func (d *decoder) report() Errors {
	sortErrors(d.errs)
	if len(d.errs) <= maxReported {
		return d.errs
	}
	more := len(d.errs) - maxReported
	errs := append(d.errs[:maxReported:maxReported], &Error{
		File: d.file,
		Msg:  fmt.Sprintf("%d more problems not shown", more),
		Fix:  "fix the problems above and load the file again",
	})
	return errs
}

// BucketByName finds a bucket by its unique name.
func (c *Config) BucketByName(name string) (*Bucket, bool) {
	for i := range c.Buckets {
		if c.Buckets[i].Name == name {
			return &c.Buckets[i], true
		}
	}
	return nil, false
}

// yamlLine pulls the line number out of yaml.v3's syntax errors ("yaml: line 3: ...").
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseDocument parses data into the top-level mapping node, or records why it cannot and returns nil.
func (d *decoder) parseDocument(data []byte) *yaml.Node {
	const emptyFix = "write at least a buckets section and origin.shared_secret; see docs/CONFIG.md"
	if len(bytes.TrimSpace(data)) == 0 {
		d.failAt(0, 0, "", "the file is empty", emptyFix)
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.failAt(0, 0, "", "the file is empty (it holds only comments)", emptyFix)
		} else {
			d.syntaxError(err)
		}
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		d.failAt(next.Line, next.Column, "", "the file holds more than one YAML document", `keep a single document (remove the "---" separator)`)
		return nil
	case !errors.Is(err, io.EOF):
		d.syntaxError(err)
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || isNull(doc.Content[0]) {
		d.failAt(doc.Line, doc.Column, "", "the file is empty (the document has no settings)", emptyFix)
		return nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		d.fail(root, "", "the top level must be a mapping of sections, got "+kindName(root), "start with keys such as server:, buckets: and origin:")
		return nil
	}
	return root
}

// syntaxError reports a YAML syntax error at the line yaml.v3 names.
func (d *decoder) syntaxError(err error) {
	line, msg := 0, yamlMessage(err)
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	d.failAt(line, 0, "", "invalid YAML: "+msg, "check indentation (spaces only) and quoting around this line")
}

// applyDefaults fills every key the file leaves out. An explicit zero is kept, so validation can
// reject it rather than silently replacing it.
func (d *decoder) applyDefaults(c *Config) {
	p := d.pos
	setStr := func(path string, v *string, def string) {
		if !p.present(path) || *v == "" {
			*v = def
		}
	}
	setInt := func(path string, v *int, def int) {
		if !p.present(path) {
			*v = def
		}
	}
	setDur := func(path string, v *Duration, def time.Duration) {
		if !p.present(path) {
			*v = Duration(def)
		}
	}

	s := &c.Server
	portSet := p.present("server.port")
	if !portSet && p.present("server.address") {
		// The original product's documented dialect: address "0.0.0.0:8080" with no port key.
		if host, port, err := net.SplitHostPort(s.Address); err == nil {
			if n, err := strconv.Atoi(port); err == nil {
				s.Address, s.Port, portSet = host, n, true
			}
		}
	}
	setStr("server.address", &s.Address, "0.0.0.0")
	if !portSet {
		s.Port = 8080
	}
	if !p.present("server.request_timeout") {
		s.RequestTimeout = Seconds(DefaultRequestTimeout)
	}
	setInt("server.max_concurrent_requests", &s.MaxConcurrentRequests, DefaultMaxConcurrent)
	if !p.present("server.security_limits.max_body_size") {
		s.SecurityLimits.MaxBodySize = DefaultMaxBodySize
	}
	setInt("server.security_limits.max_header_size", &s.SecurityLimits.MaxHeaderSize, DefaultMaxHeaderSize)
	setInt("server.security_limits.max_uri_length", &s.SecurityLimits.MaxURILength, DefaultMaxURILength)

	for i := range c.Buckets {
		b := &c.Buckets[i].S3
		base := "buckets[" + strconv.Itoa(i) + "].s3."
		setStr(base+"region", &b.Region, DefaultRegion)
		if !p.present(base + "timeout") {
			b.Timeout = Seconds(DefaultS3Timeout)
		}
		setInt(base+"connection_pool_size", &b.ConnectionPoolSize, DefaultPoolSize)
	}

	setStr("extproc.grpc_address", &c.ExtProc.GRPCAddress, DefaultExtProcAddress)
	setDur("extproc.message_timeout", &c.ExtProc.MessageTimeout, DefaultMessageTimeout)
	setStr("origin.address", &c.Origin.Address, DefaultOriginAddress)
	setDur("origin.max_skew", &c.Origin.MaxSkew, DefaultMaxSkew)
	if c.Origin.SharedSecret == "" {
		if v, ok := d.env(OriginSecretEnvDefault); ok {
			c.Origin.SharedSecret = v
		}
	}
	setStr("admin.address", &c.Admin.Address, DefaultAdminAddress)
	setStr("xds.address", &c.XDS.Address, DefaultXDSAddress)
	setDur("xds.debounce", &c.XDS.Debounce, DefaultDebounce)
	d.accessDefaults(c)
	d.cacheDefaults(c)
	d.observabilityDefaults(c)
	d.policyDefaults(c)
	d.backendDefaults(c) // backend.go
}
