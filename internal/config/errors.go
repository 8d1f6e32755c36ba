package config

import (
	"fmt"
	"sort"
	"strings"
)

// Error is one problem in a config file, located precisely enough that an operator can fix it without guessing.
type Error struct {
	File   string // file name as given to Load or Parse
	Line   int    // 1-based line, 0 when the problem has no place in the file (e.g. a missing section)
	Column int    // 1-based column, 0 when unknown
	Path   string // dotted key path, e.g. buckets[1].s3.endpoint
	Msg    string // what is wrong
	Fix    string // a concrete way to make it right
}

// Error renders "file:line:col: path: msg; fix: fix", leaving out the parts that are unknown.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Fix != "" {
		b.WriteString("; fix: ")
		b.WriteString(e.Fix)
	}
	return b.String()
}

// Errors collects every problem found in one file so that they are all reported at once.
type Errors []*Error

// Error renders one problem per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes the individual problems to errors.As and errors.Is.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// sortErrors orders problems by their place in the file; problems without a line go last.
func sortErrors(es Errors) {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i], es[j]
		if (a.Line == 0) != (b.Line == 0) {
			return b.Line == 0
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
}
