package config

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// nodeBudget bounds how many nodes one Parse may visit, counting each alias expansion again,
// so that a small file of nested aliases cannot make loading take unbounded time or memory.
const nodeBudget = 1 << 20

// decoder turns a yaml.Node tree into the config structs, recording where every key was written
// and collecting every problem instead of stopping at the first.
type decoder struct {
	file    string
	env     func(string) (string, bool)
	errs    Errors
	failed  map[string]bool // key paths that already have an error; later checks on them stay quiet
	above   map[string]bool // ancestors of failed paths
	pos     positions
	budget  int
	overrun bool
	active  map[*yaml.Node]bool // anchors being expanded, to stop alias cycles
}

func newDecoder(file string, env func(string) (string, bool)) *decoder {
	return &decoder{file: file, env: env, pos: positions{}, budget: nodeBudget,
		active: map[*yaml.Node]bool{}, failed: map[string]bool{}, above: map[string]bool{}}
}

// failAt records a problem at an explicit place in the file.
func (d *decoder) failAt(line, col int, path, msg, fix string) {
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Column: col, Path: path, Msg: msg, Fix: fix})
	d.failed[path] = true
	for p := parentPath(path); p != "" && !d.above[p]; p = parentPath(p) {
		d.above[p] = true
	}
}

// fail records a problem at node n.
func (d *decoder) fail(n *yaml.Node, path, msg, fix string) {
	d.failAt(n.Line, n.Column, path, msg, fix)
}

// hasFailed reports whether path, or a key above or below it, already has an error.
func (d *decoder) hasFailed(path string) bool {
	if d.failed[""] || d.above[path] {
		return true
	}
	for p := path; p != ""; p = parentPath(p) {
		if d.failed[p] {
			return true
		}
	}
	return false
}

// spend takes one node from the budget; once it is exhausted it reports the problem once and
// every walk stops.
func (d *decoder) spend(n *yaml.Node, path string) bool {
	d.budget--
	if d.budget >= 0 {
		return true
	}
	if !d.overrun {
		d.overrun = true
		d.fail(n, path, fmt.Sprintf("the document expands to more than %d nodes through aliases", nodeBudget),
			"write the repeated sections out, or use fewer nested aliases")
	}
	return false
}

// enter resolves aliases to their anchored node and marks it as being expanded; leave undoes it.
// ok is false for an alias cycle, which has been reported.
func (d *decoder) enter(n *yaml.Node, path string) (target *yaml.Node, leave func(), ok bool) {
	var entered []*yaml.Node
	leave = func() {
		for _, e := range entered {
			delete(d.active, e)
		}
	}
	for n.Kind == yaml.AliasNode {
		if n.Alias == nil || d.active[n.Alias] {
			d.fail(n, path, fmt.Sprintf("alias *%s refers to a node that contains it", n.Value), "remove the recursive alias")
			leave()
			return nil, func() {}, false
		}
		d.active[n.Alias] = true
		entered = append(entered, n.Alias)
		n = n.Alias
	}
	if n.Anchor != "" && !d.active[n] {
		// Reached at its definition: an alias inside it back to it is a cycle.
		d.active[n] = true
		entered = append(entered, n)
	}
	return n, leave, true
}

// isNull reports whether n is an explicit or implicit null (`key:`, `key: ~`, `key: null`).
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// kindName describes a node's kind the way an operator would, for "expected X, got Y" messages.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return strconv.Quote(n.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return "a document"
}

var (
	secondsType  = reflect.TypeFor[Seconds]()
	durationType = reflect.TypeFor[Duration]()
)

// decode stores node n into v, which must be settable; path names n in errors.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if !d.spend(n, path) {
		return
	}
	n, leave, ok := d.enter(n, path)
	if !ok {
		return
	}
	defer leave()
	if isNull(n) {
		return // leave the zero value; defaults fill it later
	}
	t := v.Type()
	switch {
	case t == secondsType:
		d.decodeSeconds(n, v, path)
	case t == durationType:
		d.decodeDuration(n, v, path)
	case t.Kind() == reflect.Struct:
		d.decodeStruct(n, v, path)
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Interface,
		t.Kind() == reflect.Map && t.Key().Kind() == reflect.String && t.Elem().Kind() == reflect.Interface:
		d.decodeAny(n, v, path)
	case t.Kind() == reflect.Slice:
		d.decodeSlice(n, v, path)
	case t.Kind() == reflect.Interface:
		d.decodeValue(n, v, path) // free-form value (access.go)
	default:
		d.decodeScalar(n, v, path)
	}
}

// fieldsOf maps yaml key names to field indexes of struct type t, in declaration order.
func fieldsOf(t reflect.Type) (names []string, index map[string]int) {
	index = map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		names = append(names, name)
		index[name] = i
	}
	return names, index
}

// entry is one key/value pair of a mapping, after merge keys ("<<") are resolved.
type entry struct{ key, value *yaml.Node }

// entries lists the pairs of mapping n: explicit keys first (a repeated one is an error), then
// keys from "<<" merges that are not already set, earlier merge sources winning.
func (d *decoder) entries(n *yaml.Node, path string) []entry {
	var out, merges []entry
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merges = append(merges, entry{k, v})
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.fail(k, path, "a mapping key must be a plain string, got "+kindName(k), "write the key as a plain word")
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.fail(k, joinKey(path, k.Value),
				fmt.Sprintf("duplicate key %q (first set at line %d)", k.Value, first.Line),
				"keep only one of them")
			continue
		}
		seen[k.Value] = k
		out = append(out, entry{k, v})
	}
	for _, m := range merges {
		for _, e := range d.mergeSources(m.value, path) {
			if _, dup := seen[e.key.Value]; !dup && e.key.Kind == yaml.ScalarNode {
				seen[e.key.Value] = e.key
				out = append(out, e)
			}
		}
	}
	return out
}

// mergeSources returns the pairs a "<<" value contributes: one mapping or a list of mappings.
func (d *decoder) mergeSources(v *yaml.Node, path string) []entry {
	if !d.spend(v, path) {
		return nil
	}
	v, leave, ok := d.enter(v, path)
	if !ok {
		return nil
	}
	defer leave()
	switch v.Kind {
	case yaml.MappingNode:
		return d.entries(v, path)
	case yaml.SequenceNode:
		var out []entry
		for _, item := range v.Content {
			item, leaveItem, ok := d.enter(item, path)
			if !ok {
				continue
			}
			if item.Kind != yaml.MappingNode {
				d.fail(item, path, "a merge (<<) list must contain mappings, got "+kindName(item), "merge only mappings (<<: [*a, *b])")
			} else {
				out = append(out, d.entries(item, path)...)
			}
			leaveItem()
		}
		return out
	}
	d.fail(v, path, "a merge (<<) value must be a mapping or a list of mappings, got "+kindName(v), "merge an anchored mapping, e.g. <<: *defaults")
	return nil
}

// decodeStruct decodes a mapping into the struct v, rejecting keys the struct does not have.
func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	names, index := fieldsOf(v.Type())
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "expected a mapping, got "+kindName(n), "write keys such as "+strings.Join(firstN(names, 3), ", ")+" on indented lines below")
		return
	}
	for _, e := range d.entries(n, path) {
		key := e.key.Value
		child := joinKey(path, key)
		i, ok := index[key]
		if !ok {
			d.fail(e.key, child, fmt.Sprintf("unknown key %q", key), suggest(key, names, path))
			continue
		}
		d.pos[child] = position{
			line: e.key.Line, column: e.key.Column,
			valueLine: e.value.Line, valueColumn: e.value.Column,
			null: isNull(resolveAlias(e.value)),
		}
		d.decode(e.value, v.Field(i), child)
	}
}

// resolveAlias follows aliases without cycle tracking, bounded by a fixed number of hops.
func resolveAlias(n *yaml.Node) *yaml.Node {
	for i := 0; i < 64 && n.Kind == yaml.AliasNode && n.Alias != nil; i++ {
		n = n.Alias
	}
	return n
}

// decodeSlice decodes a list into a slice of typed elements.
func (d *decoder) decodeSlice(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.fail(n, path, "expected a list, got "+kindName(n), "write each item on its own line starting with \"- \"")
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		child := path + "[" + strconv.Itoa(i) + "]"
		d.pos[child] = position{line: item.Line, column: item.Column, valueLine: item.Line, valueColumn: item.Column}
		d.decode(item, s.Index(i), child)
	}
	v.Set(s)
}

// decodeAny decodes a section owned by a later feature: any content of the right shape is accepted,
// but duplicate keys are still errors and every key's place is recorded for that feature's checks.
func (d *decoder) decodeAny(n *yaml.Node, v reflect.Value, path string) {
	wantMap := v.Kind() == reflect.Map
	switch {
	case wantMap && n.Kind != yaml.MappingNode:
		d.fail(n, path, "expected a mapping, got "+kindName(n), "write the section's keys on indented lines below it")
		return
	case !wantMap && n.Kind != yaml.SequenceNode:
		d.fail(n, path, "expected a list, got "+kindName(n), "write each item on its own line starting with \"- \"")
		return
	}
	before := len(d.errs)
	d.scan(n, path)
	if len(d.errs) > before {
		return
	}
	if err := n.Decode(v.Addr().Interface()); err != nil {
		d.fail(n, path, "cannot read section: "+yamlMessage(err), "check the section's syntax")
	}
}

// scan walks a free-form section: it records positions, reports duplicate keys and spends budget.
func (d *decoder) scan(n *yaml.Node, path string) {
	if !d.spend(n, path) {
		return
	}
	n, leave, ok := d.enter(n, path)
	if !ok {
		return
	}
	defer leave()
	switch n.Kind {
	case yaml.MappingNode:
		for _, e := range d.entries(n, path) {
			child := joinKey(path, e.key.Value)
			if _, seen := d.pos[child]; !seen {
				d.pos[child] = position{
					line: e.key.Line, column: e.key.Column,
					valueLine: e.value.Line, valueColumn: e.value.Column,
					null: isNull(resolveAlias(e.value)),
				}
			}
			d.scan(e.value, child)
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			child := path + "[" + strconv.Itoa(i) + "]"
			if _, seen := d.pos[child]; !seen {
				d.pos[child] = position{line: item.Line, column: item.Column, valueLine: item.Line, valueColumn: item.Column}
			}
			d.scan(item, child)
		}
	}
}

// decodeScalar decodes strings, numbers and booleans with yaml.v3's own scalar rules.
func (d *decoder) decodeScalar(n *yaml.Node, v reflect.Value, path string) {
	want := typeName(v.Type())
	if n.Kind != yaml.ScalarNode {
		d.fail(n, path, fmt.Sprintf("expected %s, got %s", want, kindName(n)), "write a single value on the same line as the key")
		return
	}
	err := n.Decode(v.Addr().Interface())
	if err != nil && v.Kind() != reflect.String && n.ShortTag() == "!!str" {
		// A quoted number or boolean ("8080", typically port: "${PORT}") is read by its text.
		plain := *n
		plain.Tag, plain.Style = "", 0
		if plain.ShortTag() != "!!str" {
			err = plain.Decode(v.Addr().Interface())
		}
	}
	if err != nil {
		d.fail(n, path, fmt.Sprintf("expected %s, got %s", want, kindName(n)), exampleFor(v.Type()))
	}
}

// typeName names a Go type as a config author knows it.
func typeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean (true or false)"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return t.String()
}

// exampleFor suggests a well-formed value of type t.
func exampleFor(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "write true or false"
	case reflect.String:
		return "quote the value, e.g. \"value\""
	case reflect.Float32, reflect.Float64:
		return "write a number such as 1.5"
	}
	return "write a whole number such as 100, without quotes or units"
}

// decodeSeconds accepts whole seconds (the original product's convention) or a Go duration string.
func (d *decoder) decodeSeconds(n *yaml.Node, v reflect.Value, path string) {
	const fix = `write whole seconds (30) or a duration such as "1500ms"`
	if n.Kind != yaml.ScalarNode {
		d.fail(n, path, "expected seconds or a duration, got "+kindName(n), fix)
		return
	}
	if secs, err := strconv.ParseInt(n.Value, 10, 64); err == nil {
		if secs > math.MaxInt64/int64(time.Second) || secs < math.MinInt64/int64(time.Second) {
			d.fail(n, path, fmt.Sprintf("%d seconds is out of range", secs), fix)
			return
		}
		v.SetInt(secs * int64(time.Second))
		return
	}
	if n.ShortTag() == "!!float" {
		d.fail(n, path, fmt.Sprintf("fractional seconds %s are ambiguous", n.Value), fix)
		return
	}
	dur, err := time.ParseDuration(n.Value)
	if err != nil {
		d.fail(n, path, fmt.Sprintf("%q is neither whole seconds nor a duration", n.Value), fix)
		return
	}
	v.SetInt(int64(dur))
}

// decodeDuration accepts a Go duration string only: a bare number has no unit and is ambiguous.
func (d *decoder) decodeDuration(n *yaml.Node, v reflect.Value, path string) {
	const fix = `write a duration with a unit, e.g. "250ms" or "5s"`
	if n.Kind != yaml.ScalarNode {
		d.fail(n, path, "expected a duration, got "+kindName(n), fix)
		return
	}
	if tag := n.ShortTag(); tag == "!!int" || tag == "!!float" {
		d.fail(n, path, fmt.Sprintf("%s has no unit", n.Value), fix)
		return
	}
	dur, err := time.ParseDuration(n.Value)
	if err != nil {
		d.fail(n, path, fmt.Sprintf("%q is not a duration", n.Value), fix)
		return
	}
	v.SetInt(int64(dur))
}

// yamlMessage strips yaml.v3's "yaml: " prefix and folds multi-line messages onto one line.
func yamlMessage(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.TrimPrefix(msg, "unmarshal errors:\n")
	return strings.Join(strings.Fields(msg), " ")
}

func firstN(s []string, n int) []string {
	if len(s) < n {
		return s
	}
	return s[:n]
}
