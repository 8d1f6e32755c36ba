// Package validate checks generated Envoy config without an Envoy: PGV rules recursively
// through every Any (Deep) and the cross-resource rules PGV cannot express (Lint).
package validate

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// pgvValidator is implemented by every go-control-plane message (protoc-gen-validate).
type pgvValidator interface {
	ValidateAll() error
}

// pgvMultiError is the XxxMultiError type ValidateAll returns.
type pgvMultiError interface {
	AllErrors() []error
}

// pgvFieldError is one XxxValidationError; Cause is set when an embedded message failed.
type pgvFieldError interface {
	Field() string
	Reason() string
	Cause() error
}

// Deep validates msg and everything under it: ValidateAll on every message that has it, and
// every google.protobuf.Any unpacked (global registry) and validated too, which plain
// ValidateAll never does. Errors name the field path, with each Any's type in angle brackets.
func Deep(msg proto.Message) error {
	if msg == nil {
		return errors.New("nil message")
	}
	var errs []error
	walk(msg.ProtoReflect(), string(msg.ProtoReflect().Descriptor().Name()), &errs)
	return errors.Join(errs...)
}

func walk(m protoreflect.Message, path string, errs *[]error) {
	if !m.IsValid() {
		return
	}
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			*errs = append(*errs, fmt.Errorf("%s<%s>: unpack Any: %w", path, a.GetTypeUrl(), err))
			return
		}
		walk(inner.ProtoReflect(), fmt.Sprintf("%s<%s>", path, inner.ProtoReflect().Descriptor().FullName()), errs)
		return
	}
	if v, ok := m.Interface().(pgvValidator); ok {
		for _, err := range ownErrors(v.ValidateAll()) {
			*errs = append(*errs, fmt.Errorf("%s: %w", path, err))
		}
	}
	m.Range(func(fd protoreflect.FieldDescriptor, val protoreflect.Value) bool {
		if fd.Message() == nil {
			return true
		}
		name := path + "." + string(fd.Name())
		switch {
		case fd.IsList():
			list := val.List()
			for i := 0; i < list.Len(); i++ {
				walk(list.Get(i).Message(), fmt.Sprintf("%s[%d]", name, i), errs)
			}
		case fd.IsMap():
			if fd.MapValue().Message() == nil {
				return true
			}
			val.Map().Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
				walk(v.Message(), fmt.Sprintf("%s[%q]", name, k.String()), errs)
				return true
			})
		default:
			walk(val.Message(), name, errs)
		}
		return true
	})
}

// ownErrors drops the errors that only report an embedded message's failure: the walk visits
// that message itself and reports its errors with a precise path, so each problem appears once.
func ownErrors(err error) []error {
	if err == nil {
		return nil
	}
	multi, ok := err.(pgvMultiError)
	if !ok {
		return []error{err}
	}
	var out []error
	for _, e := range multi.AllErrors() {
		if fe, ok := e.(pgvFieldError); ok && fe.Cause() != nil {
			var inner pgvFieldError
			if errors.As(fe.Cause(), &inner) || isMulti(fe.Cause()) {
				continue
			}
		}
		out = append(out, e)
	}
	return out
}

func isMulti(err error) bool {
	_, ok := err.(pgvMultiError)
	return ok
}
