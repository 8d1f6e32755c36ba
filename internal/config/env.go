package config

import (
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// substituteTree replaces ${VAR} and ${VAR:-default} in every scalar value under n, in place.
// It runs on parsed nodes, never on the raw text, so comments are left alone, line numbers stay
// exact and a substituted secret containing '#' or ':' cannot change the YAML structure. Mapping
// keys are not substituted. Aliases are not followed: the anchored node is handled where it is
// defined, exactly once, so "$${" escapes cannot be expanded twice.
func (d *decoder) substituteTree(n *yaml.Node, path string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			d.substituteTree(c, path)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			d.substituteTree(n.Content[i+1], joinKey(path, n.Content[i].Value))
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			d.substituteTree(c, path+"["+strconv.Itoa(i)+"]")
		}
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "${") {
			return
		}
		out, err := expand(n.Value, d.env)
		if err != nil {
			d.failAt(n.Line, n.Column, path, err.msg, err.fix)
			return
		}
		n.Value = out
		if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) == 0 {
			// A plain scalar is typed by its text, so retype it from the substituted text:
			// `port: ${PORT}` becomes an integer when PORT=8080.
			n.Tag = ""
		}
	}
}

// expandError is a substitution problem with the fix to suggest.
type expandError struct{ msg, fix string }

// expand substitutes ${VAR} and ${VAR:-default} in s; "$${" is a literal "${". As in the shell,
// the default applies when VAR is unset or empty. A default cannot contain "}".
func expand(s string, env func(string) (string, bool)) (string, *expandError) {
	var b strings.Builder
	for i := 0; i < len(s); {
		switch {
		case strings.HasPrefix(s[i:], "$${"):
			b.WriteString("${")
			i += 3
		case strings.HasPrefix(s[i:], "${"):
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", &expandError{
					msg: fmt.Sprintf("unterminated variable reference in %q", s),
					fix: `close it with "}", or write "$${" for a literal "${"`,
				}
			}
			ref := s[i+2 : i+2+end]
			name, def, hasDef := strings.Cut(ref, ":-")
			if !validVarName(name) {
				return "", &expandError{
					msg: fmt.Sprintf("invalid variable reference ${%s}", ref),
					fix: `write ${NAME} or ${NAME:-default} with NAME matching [A-Za-z_][A-Za-z0-9_]*, or "$${" for a literal "${"`,
				}
			}
			val, ok := env(name)
			switch {
			case ok && (val != "" || !hasDef):
				b.WriteString(val)
			case hasDef:
				b.WriteString(def)
			default:
				return "", &expandError{
					msg: fmt.Sprintf("environment variable %s is not set", name),
					fix: fmt.Sprintf("export %s=... or write ${%s:-default}", name, name),
				}
			}
			i += 2 + end + 1
		default:
			b.WriteByte(s[i])
			i++
		}
	}
	return b.String(), nil
}

// validVarName reports whether name matches [A-Za-z_][A-Za-z0-9_]*.
func validVarName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		letter := c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}
