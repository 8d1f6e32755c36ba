package config

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Policy is one named wasm access policy (ARCHITECTURE.md §2 step 8), attached to buckets by name.
type Policy struct {
	Name string `yaml:"name"`
	// Wasm is the module's path; a relative path is relative to the config file's directory.
	Wasm string `yaml:"wasm"`
	// Config is handed to the guest as JSON (http_handler.get_config).
	Config map[string]any `yaml:"config"`
	// FailMode is what a failing policy (trap, budget, pool timeout) does: "closed" (default, 503) or "open".
	FailMode      string `yaml:"fail_mode"`
	MemoryLimitMB int    `yaml:"memory_limit_mb"` // default 32
	// Budget is the fuel per request: function calls plus loop iterations (default 5,000,000).
	Budget       int64    `yaml:"budget"`
	MaxInstances int      `yaml:"max_instances"` // pool bound; default 2×GOMAXPROCS
	MinInstances int      `yaml:"min_instances"` // created at load; default 1
	QueueTimeout Duration `yaml:"queue_timeout"` // wait for a free instance; default 100ms
}

// Policy defaults (the host applies the GOMAXPROCS-based max_instances itself).
const (
	DefaultPolicyMemoryMB     = 32
	DefaultPolicyBudget       = 5_000_000
	DefaultPolicyMinInstances = 1
	DefaultPolicyQueueTimeout = 100_000_000 // 100ms in nanoseconds
	maxPolicyMemoryMB         = 4096
)

// policyNamePattern keeps names usable as metric labels.
var policyNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// WasmPath is the module path resolved against the config file's directory.
func (p Policy) WasmPath(source string) string {
	if p.Wasm == "" || filepath.IsAbs(p.Wasm) || source == "" {
		return p.Wasm
	}
	return filepath.Join(filepath.Dir(source), p.Wasm)
}

// FailOpen reports whether the policy lets requests through when it fails.
func (p Policy) FailOpen() bool { return p.FailMode == "open" }

// PolicyByName finds a policy of the top-level list.
func (c *Config) PolicyByName(name string) (*Policy, bool) {
	for i := range c.Policies {
		if c.Policies[i].Name == name {
			return &c.Policies[i], true
		}
	}
	return nil, false
}

func (d *decoder) policyDefaults(c *Config) {
	for i := range c.Policies {
		p := &c.Policies[i]
		base := "policies[" + strconv.Itoa(i) + "]."
		if !d.pos.present(base + "fail_mode") {
			p.FailMode = "closed"
		}
		if !d.pos.present(base + "memory_limit_mb") {
			p.MemoryLimitMB = DefaultPolicyMemoryMB
		}
		if !d.pos.present(base + "budget") {
			p.Budget = DefaultPolicyBudget
		}
		if !d.pos.present(base + "min_instances") {
			p.MinInstances = DefaultPolicyMinInstances
		}
		if !d.pos.present(base + "queue_timeout") {
			p.QueueTimeout = Duration(DefaultPolicyQueueTimeout)
		}
	}
}

func (c *checker) policies() {
	seen := map[string]int{}
	for i, p := range c.cfg.Policies {
		base := "policies[" + strconv.Itoa(i) + "]"
		switch {
		case p.Name == "":
			c.add(base+".name", "a policy needs a name", "add name: my-policy; buckets attach policies by this name")
		case !policyNamePattern.MatchString(p.Name):
			c.add(base+".name", fmt.Sprintf("%q is not a valid policy name", p.Name), "use letters, digits, '.', '_' and '-', starting with a letter or digit")
		default:
			if j, dup := seen[p.Name]; dup {
				c.add(base+".name", fmt.Sprintf("policy %q is already defined at policies[%d]", p.Name, j), "give each policy a unique name")
			}
			seen[p.Name] = i
		}
		c.policyWasm(base, p)
		if p.FailMode != "closed" && p.FailMode != "open" {
			c.add(base+".fail_mode", fmt.Sprintf("%q is not a fail mode", p.FailMode), `use "closed" (deny with 503 when the policy fails; the default) or "open" (let the request through)`)
		}
		if p.MemoryLimitMB < 1 || p.MemoryLimitMB > maxPolicyMemoryMB {
			c.add(base+".memory_limit_mb", fmt.Sprintf("%d is outside 1..%d", p.MemoryLimitMB, maxPolicyMemoryMB), "Go policies need at least 8; 32 (the default) suits most")
		}
		c.positive(base+".budget", p.Budget, "5000000")
		if p.MaxInstances < 0 {
			c.add(base+".max_instances", fmt.Sprintf("must not be negative, got %d", p.MaxInstances), "remove it for 2×GOMAXPROCS, or set e.g. 4")
		}
		if p.MinInstances < 0 || (p.MaxInstances > 0 && p.MinInstances > p.MaxInstances) {
			c.add(base+".min_instances", fmt.Sprintf("%d must be between 0 and max_instances", p.MinInstances), "use e.g. min_instances: 1")
		}
		c.positive(base+".queue_timeout", int64(p.QueueTimeout), `"100ms"`)
	}
	for i, b := range c.cfg.Buckets {
		for j, name := range b.Policies {
			if _, ok := seen[name]; !ok {
				fix := "define it in the top-level policies: list, or remove it from the bucket"
				if len(seen) > 0 {
					fix = "use one of: " + strings.Join(policyNames(c.cfg), ", ")
				}
				c.add(fmt.Sprintf("buckets[%d].policies[%d]", i, j), fmt.Sprintf("unknown policy %q", name), fix)
			}
		}
	}
}

func (c *checker) policyWasm(base string, p Policy) {
	if p.Wasm == "" {
		c.add(base+".wasm", "a policy needs the path of its .wasm module", "add wasm: policies/my-policy.wasm (relative to this file), built with `make policies`")
		return
	}
	path := p.WasmPath(c.cfg.Source)
	st, err := os.Stat(path)
	switch {
	case err != nil:
		c.add(base+".wasm", fmt.Sprintf("cannot read %s: %v", path, err), "build the policy (make policies) or correct the path; relative paths start at the config file's directory")
	case st.IsDir():
		c.add(base+".wasm", path+" is a directory", "point wasm at the .wasm file")
	}
}

func policyNames(cfg *Config) []string {
	out := make([]string, 0, len(cfg.Policies))
	for _, p := range cfg.Policies {
		out = append(out, p.Name)
	}
	return out
}
