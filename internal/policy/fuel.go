package policy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// FuelExport is the name of the mutable i64 global that InstrumentFuel adds and exports: the host
// sets it to the budget before each call and reads what is left afterwards.
const FuelExport = "__fuel"

// initFuel is the budget the instrumented module starts with, which bounds its start function
// (Go's _initialize needs about 1e5 units) until the host sets a budget per call.
const initFuel = 1 << 27

// errUnsupported marks wasm features the fuel pass cannot instrument (tail calls, exceptions).
var errUnsupported = errors.New("unsupported wasm feature")

// InstrumentFuel rewrites a wasm binary so that every function entry and every loop iteration
// costs one unit of fuel from an exported global (FuelExport) and traps with `unreachable` when
// the fuel runs out. wazero's own termination (WithCloseOnContextDone) costs 7–34× per call on
// loop-heavy guests (shared/reference/wasm.md §2.5); this costs 10–30 % and stops `loop {}` and
// runaway recursion within a budget. DWARF sections are dropped because their code offsets would
// be wrong; the name section is kept for stack traces.
func InstrumentFuel(wasm []byte) ([]byte, error) {
	if len(wasm) < 8 || !bytes.Equal(wasm[:4], []byte("\x00asm")) {
		return nil, errors.New("not a wasm binary (bad magic)")
	}
	if binary.LittleEndian.Uint32(wasm[4:8]) != 1 {
		return nil, fmt.Errorf("unsupported wasm binary version %d", binary.LittleEndian.Uint32(wasm[4:8]))
	}
	type section struct {
		id   byte
		body []byte
	}
	var secs []section
	r := &reader{b: wasm, off: 8}
	for r.off < len(r.b) {
		id, err := r.byte()
		if err != nil {
			return nil, err
		}
		n, err := r.u32()
		if err != nil {
			return nil, fmt.Errorf("section %d size: %w", id, err)
		}
		body, err := r.bytes(int(n))
		if err != nil {
			return nil, fmt.Errorf("section %d: %w", id, err)
		}
		secs = append(secs, section{id, body})
	}

	importedGlobals, definedGlobals := uint32(0), uint32(0)
	for _, s := range secs {
		switch s.id {
		case 2:
			n, err := countImportedGlobals(s.body)
			if err != nil {
				return nil, fmt.Errorf("import section: %w", err)
			}
			importedGlobals = n
		case 6:
			n, err := (&reader{b: s.body}).u32()
			if err != nil {
				return nil, fmt.Errorf("global section: %w", err)
			}
			definedGlobals = n
		}
	}
	fuel := importedGlobals + definedGlobals

	var out bytes.Buffer
	out.Write(wasm[:8])
	emit := func(id byte, body []byte) {
		out.WriteByte(id)
		out.Write(appendU32(nil, uint32(len(body))))
		out.Write(body)
	}
	// newGlobal is the fuel global's declaration: mutable i64 initialised to initFuel.
	newGlobal := append([]byte{0x7E, 0x01, 0x42}, appendS64(nil, initFuel)...)
	newGlobal = append(newGlobal, 0x0B)
	newExport := append(appendU32(nil, uint32(len(FuelExport))), FuelExport...)
	newExport = append(newExport, 0x03)
	newExport = appendU32(newExport, fuel)

	sawGlobal, sawExport := false, false
	// order is a section's place in the binary's required order, used to insert missing sections.
	order := func(id byte) int {
		switch id {
		case 12:
			return 95 // data count sits between element (9) and code (10)
		case 13:
			return 55 // tag sits between memory (5) and global (6)
		}
		return int(id) * 10
	}
	for _, s := range secs {
		if s.id != 0 {
			if !sawGlobal && order(s.id) > order(6) {
				emit(6, append(appendU32(nil, 1), newGlobal...))
				sawGlobal = true
			}
			if !sawExport && order(s.id) > order(7) {
				emit(7, append(appendU32(nil, 1), newExport...))
				sawExport = true
			}
		}
		switch s.id {
		case 0:
			name, _ := (&reader{b: s.body}).name()
			if strings.HasPrefix(name, ".debug_") {
				continue
			}
			emit(0, s.body)
		case 6:
			body, err := appendVecItem(s.body, newGlobal)
			if err != nil {
				return nil, fmt.Errorf("global section: %w", err)
			}
			emit(6, body)
			sawGlobal = true
		case 7:
			if err := checkNoExport(s.body, FuelExport); err != nil {
				return nil, err
			}
			body, err := appendVecItem(s.body, newExport)
			if err != nil {
				return nil, fmt.Errorf("export section: %w", err)
			}
			emit(7, body)
			sawExport = true
		case 10:
			body, err := instrumentCode(s.body, fuel)
			if err != nil {
				return nil, fmt.Errorf("code section: %w", err)
			}
			emit(10, body)
		default:
			emit(s.id, s.body)
		}
	}
	if !sawGlobal {
		emit(6, append(appendU32(nil, 1), newGlobal...))
	}
	if !sawExport {
		emit(7, append(appendU32(nil, 1), newExport...))
	}
	return out.Bytes(), nil
}

// fuelCheck returns the instructions that take one unit of fuel from global g and trap when it is spent.
func fuelCheck(g uint32) []byte {
	gi := appendU32(nil, g)
	var b []byte
	b = append(append(append(b, 0x23), gi...), 0x42, 0x01, 0x7D) // global.get g; i64.const 1; i64.sub
	b = append(append(b, 0x24), gi...)                           // global.set g
	b = append(append(b, 0x23), gi...)                           // global.get g
	b = append(b, 0x42, 0x00, 0x53, 0x04, 0x40, 0x00, 0x0B)      // i64.const 0; i64.lt_s; if unreachable end
	return b
}

// instrumentCode rewrites every function body in a code section.
func instrumentCode(sec []byte, g uint32) ([]byte, error) {
	r := &reader{b: sec}
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	check := fuelCheck(g)
	out := appendU32(make([]byte, 0, len(sec)+int(n)*len(check)*2), n)
	var body []byte
	for i := uint32(0); i < n; i++ {
		size, err := r.u32()
		if err != nil {
			return nil, fmt.Errorf("function %d: %w", i, err)
		}
		code, err := r.bytes(int(size))
		if err != nil {
			return nil, fmt.Errorf("function %d: %w", i, err)
		}
		body, err = instrumentBody(body[:0], code, check)
		if err != nil {
			return nil, fmt.Errorf("function %d: %w", i, err)
		}
		out = appendU32(out, uint32(len(body)))
		out = append(out, body...)
	}
	if r.off != len(r.b) {
		return nil, errors.New("trailing bytes after the last function")
	}
	return out, nil
}

// instrumentBody copies one function body into out with the fuel check at its entry and at the
// head of every loop.
func instrumentBody(out, code, check []byte) ([]byte, error) {
	r := &reader{b: code}
	groups, err := r.u32()
	if err != nil {
		return nil, fmt.Errorf("locals: %w", err)
	}
	for j := uint32(0); j < groups; j++ {
		if _, err := r.u32(); err != nil {
			return nil, fmt.Errorf("locals: %w", err)
		}
		if _, err := r.valtype(); err != nil {
			return nil, fmt.Errorf("locals: %w", err)
		}
	}
	out = append(out, code[:r.off]...)
	out = append(out, check...)
	start := r.off
	for r.off < len(r.b) {
		op := r.b[r.off]
		r.off++
		if err := r.skipImmediates(op); err != nil {
			return nil, fmt.Errorf("opcode 0x%02x at offset %d: %w", op, r.off-1, err)
		}
		if op == 0x03 { // loop: charge every iteration at the loop head
			out = append(out, code[start:r.off]...)
			out = append(out, check...)
			start = r.off
		}
	}
	return append(out, code[start:]...), nil
}

// skipImmediates advances past the immediates of op, which has already been read.
func (r *reader) skipImmediates(op byte) error {
	var err error
	switch {
	case op == 0x02 || op == 0x03 || op == 0x04: // block, loop, if
		err = r.blockType()
	case op == 0x0C || op == 0x0D || op == 0x10 || (op >= 0x20 && op <= 0x26) || op == 0xD2:
		_, err = r.u32()
	case op == 0x0E: // br_table
		var n uint32
		if n, err = r.u32(); err == nil {
			for i := uint32(0); i <= n && err == nil; i++ {
				_, err = r.u32()
			}
		}
	case op == 0x11: // call_indirect type table
		if _, err = r.u32(); err == nil {
			_, err = r.u32()
		}
	case op == 0x12 || op == 0x13:
		return fmt.Errorf("%w: tail calls", errUnsupported)
	case op == 0x06 || op == 0x07 || op == 0x08 || op == 0x09 || op == 0x18 || op == 0x19 || op == 0x1F:
		return fmt.Errorf("%w: exception handling", errUnsupported)
	case op == 0x1C: // select t*
		var n uint32
		if n, err = r.u32(); err == nil {
			_, err = r.bytes(int(n))
		}
	case op >= 0x28 && op <= 0x3E:
		err = r.memarg()
	case op == 0x3F || op == 0x40:
		_, err = r.u32()
	case op == 0x41:
		_, err = r.s64()
	case op == 0x42:
		_, err = r.s64()
	case op == 0x43:
		_, err = r.bytes(4)
	case op == 0x44:
		_, err = r.bytes(8)
	case op == 0xD0:
		_, err = r.byte()
	case op == 0xFC:
		err = r.skipFC()
	case op == 0xFD:
		err = r.skipSIMD()
	case op <= 0x01 || op == 0x05 || op == 0x0B || op == 0x0F || op == 0x1A || op == 0x1B || (op >= 0x45 && op <= 0xC4) || op == 0xD1:
	default:
		return fmt.Errorf("unknown opcode 0x%02x", op)
	}
	return err
}

func (r *reader) skipFC() error {
	sub, err := r.u32()
	if err != nil {
		return err
	}
	n := 0
	switch {
	case sub <= 7: // saturating truncations
	case sub == 8, sub == 10, sub == 12, sub == 14: // memory.init, memory.copy, table.init, table.copy
		n = 2
	case sub == 9, sub == 11, sub == 13, sub == 15, sub == 16, sub == 17:
		n = 1
	default:
		return fmt.Errorf("unknown 0xFC sub-opcode %d", sub)
	}
	for i := 0; i < n; i++ {
		if _, err := r.u32(); err != nil {
			return err
		}
	}
	return nil
}

func (r *reader) skipSIMD() error {
	sub, err := r.u32()
	if err != nil {
		return err
	}
	switch {
	case sub <= 11 || sub == 92 || sub == 93: // loads and stores
		return r.memarg()
	case sub == 12 || sub == 13: // v128.const, i8x16.shuffle
		_, err = r.bytes(16)
	case sub >= 21 && sub <= 34: // extract_lane / replace_lane
		_, err = r.byte()
	case sub >= 84 && sub <= 91: // load_lane / store_lane
		if err = r.memarg(); err == nil {
			_, err = r.byte()
		}
	case sub > 0xFF:
		return fmt.Errorf("unknown SIMD sub-opcode %d", sub)
	}
	return err
}

// countImportedGlobals counts the globals an import section brings in; they come first in the
// global index space.
func countImportedGlobals(sec []byte) (uint32, error) {
	r := &reader{b: sec}
	n, err := r.u32()
	if err != nil {
		return 0, err
	}
	var globals uint32
	for i := uint32(0); i < n; i++ {
		if _, err := r.name(); err != nil {
			return 0, err
		}
		if _, err := r.name(); err != nil {
			return 0, err
		}
		kind, err := r.byte()
		if err != nil {
			return 0, err
		}
		switch kind {
		case 0x00: // func: type index
			_, err = r.u32()
		case 0x01: // table: reftype + limits
			if _, err = r.byte(); err == nil {
				err = r.limits()
			}
		case 0x02: // memory: limits
			err = r.limits()
		case 0x03: // global: valtype + mut
			globals++
			if _, err = r.valtype(); err == nil {
				_, err = r.byte()
			}
		case 0x04: // tag
			if _, err = r.byte(); err == nil {
				_, err = r.u32()
			}
		default:
			return 0, fmt.Errorf("unknown import kind 0x%02x", kind)
		}
		if err != nil {
			return 0, err
		}
	}
	return globals, nil
}

// checkNoExport fails when the module already exports name.
func checkNoExport(sec []byte, name string) error {
	r := &reader{b: sec}
	n, err := r.u32()
	if err != nil {
		return fmt.Errorf("export section: %w", err)
	}
	for i := uint32(0); i < n; i++ {
		got, err := r.name()
		if err != nil {
			return fmt.Errorf("export section: %w", err)
		}
		if got == name {
			return fmt.Errorf("the module already exports %q, which the host reserves for the fuel budget", name)
		}
		if _, err := r.byte(); err != nil {
			return fmt.Errorf("export section: %w", err)
		}
		if _, err := r.u32(); err != nil {
			return fmt.Errorf("export section: %w", err)
		}
	}
	return nil
}

// appendVecItem adds one encoded item to a section that is a single vector.
func appendVecItem(sec, item []byte) ([]byte, error) {
	r := &reader{b: sec}
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	out := appendU32(make([]byte, 0, len(sec)+len(item)+5), n+1)
	out = append(out, sec[r.off:]...)
	return append(out, item...), nil
}

// reader decodes the parts of the wasm binary format the fuel pass needs.
type reader struct {
	b   []byte
	off int
}

var errEOF = errors.New("unexpected end of wasm binary")

func (r *reader) byte() (byte, error) {
	if r.off >= len(r.b) {
		return 0, errEOF
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

func (r *reader) bytes(n int) ([]byte, error) {
	if n < 0 || n > len(r.b)-r.off {
		return nil, errEOF
	}
	s := r.b[r.off : r.off+n]
	r.off += n
	return s, nil
}

func (r *reader) u32() (uint32, error) {
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 || n > 5 || v > 0xFFFFFFFF {
		return 0, errors.New("bad unsigned LEB128")
	}
	r.off += n
	return uint32(v), nil
}

// s64 skips a signed LEB128 of at most 10 bytes (s32 and s33 values are shorter).
func (r *reader) s64() (int64, error) {
	var v int64
	var shift uint
	for i := 0; i < 10; i++ {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		v |= int64(c&0x7F) << shift
		shift += 7
		if c&0x80 == 0 {
			if shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			return v, nil
		}
	}
	return 0, errors.New("bad signed LEB128")
}

func (r *reader) name() (string, error) {
	n, err := r.u32()
	if err != nil {
		return "", err
	}
	b, err := r.bytes(int(n))
	return string(b), err
}

func (r *reader) valtype() (byte, error) {
	t, err := r.byte()
	if err != nil {
		return 0, err
	}
	switch t {
	case 0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F:
		return t, nil
	}
	return 0, fmt.Errorf("unknown value type 0x%02x", t)
}

func (r *reader) blockType() error {
	if r.off >= len(r.b) {
		return errEOF
	}
	switch r.b[r.off] {
	case 0x40, 0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F:
		r.off++
		return nil
	}
	_, err := r.s64() // s33 type index
	return err
}

func (r *reader) memarg() error {
	if _, err := r.u32(); err != nil {
		return err
	}
	_, err := r.u32()
	return err
}

func (r *reader) limits() error {
	flag, err := r.byte()
	if err != nil {
		return err
	}
	if _, err := r.u32(); err != nil {
		return err
	}
	if flag&0x01 != 0 {
		_, err = r.u32()
	}
	return err
}

func appendU32(b []byte, v uint32) []byte { return binary.AppendUvarint(b, uint64(v)) }

func appendS64(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7F)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}
