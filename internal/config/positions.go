package config

import "strings"

// position is where a key (or a sequence item) and its value were written in the file.
type position struct {
	line, column           int // the key, or the item for sequence elements
	valueLine, valueColumn int
	null                   bool // the value was written as null or left empty
}

// positions maps dotted key paths (buckets[1].s3.endpoint) to where they were written.
type positions map[string]position

// present reports whether path was written with a non-null value, which is when defaults must not apply.
func (p positions) present(path string) bool {
	pos, ok := p[path]
	return ok && !pos.null
}

// locate returns where path, or failing that its closest written ancestor, appears in the file.
func (p positions) locate(path string) (line, column int) {
	for path != "" {
		if pos, ok := p[path]; ok {
			return pos.line, pos.column
		}
		path = parentPath(path)
	}
	return 0, 0
}

// parentPath drops the last segment of a key path: a.b[2].c → a.b[2] → a.b → a.
func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// joinKey appends a mapping key to a key path.
func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// ErrorAt builds an *Error for the key at path, placed at the line where that key (or its closest
// written ancestor) appears; packages that own a section of the file use it to report their own problems.
func (c *Config) ErrorAt(path, msg, fix string) *Error {
	line, col := c.pos.locate(path)
	return &Error{File: c.Source, Line: line, Column: col, Path: path, Msg: msg, Fix: fix}
}

// Written reports whether the key at path appears in the file with a non-null value, so later
// features can tell an explicit zero from an absent key.
func (c *Config) Written(path string) bool { return c.pos.present(path) }
