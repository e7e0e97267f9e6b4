package lincheck

import (
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/anishathalye/porcupine"
)

// OpKind names an operation of the key-value model.
type OpKind uint8

// The operations.
const (
	Get OpKind = iota + 1
	Put
	Delete
	CAS
)

func (k OpKind) String() string {
	switch k {
	case Get:
		return "get"
	case Put:
		return "put"
	case Delete:
		return "delete"
	case CAS:
		return "cas"
	}
	return "op(" + strconv.Itoa(int(k)) + ")"
}

// Input is an operation as a client invoked it.
type Input struct {
	Kind  OpKind
	Key   string
	Value string // Put and CAS: the value to store
	// IfVersion is CAS's condition: apply only if the key exists at
	// exactly this version.
	IfVersion uint64
}

// Output is what an operation returned.
type Output struct {
	// Exists and Value are Get's answer.
	Exists bool
	Value  string
	// Version is, for Get, the version of the value read (when Exists);
	// for Put and an applied CAS, the version of the new value.
	Version uint64
	// OK says for CAS whether it applied, for Delete whether the key
	// existed.
	OK bool
}

// outcome is an operation's output as the model sees it: Unknown marks an
// indeterminate operation, whose Output means nothing.
type outcome struct {
	Output
	Unknown bool
}

// state is one key's state. When exact is false the key exists with a
// version unknown but greater than version (an indeterminate write set it).
// Otherwise version is the current value's version or, when the key does not
// exist, the last version it had. Either way every later write's version
// must exceed version. Absent keys keep value "" and exact true, so equal
// situations are equal states.
type state struct {
	exists  bool
	value   string
	version uint64
	exact   bool
}

func initState() state { return state{exact: true} }

// step is the sequential specification: whether op could return out in
// state s, and the state after it.
func step(s state, in Input, out outcome) (bool, state) {
	switch in.Kind {
	case Get:
		switch {
		case out.Unknown:
			return true, s
		case !s.exists:
			return !out.Exists, s
		case !out.Exists || out.Value != s.value:
			return false, s
		case s.exact:
			return out.Version == s.version, s
		case out.Version <= s.version:
			return false, s
		}
		// The first read of an indeterminate write's value tells its
		// version; from here on it must not change.
		s.version, s.exact = out.Version, true
		return true, s

	case Put:
		if out.Unknown {
			return true, state{exists: true, value: in.Value, version: s.version}
		}
		return out.Version > s.version, state{exists: true, value: in.Value, version: out.Version, exact: true}

	case Delete:
		next := state{version: s.version, exact: true}
		return out.Unknown || out.OK == s.exists, next

	case CAS:
		// Whether the condition can hold: certainly, when the version is
		// known; possibly, when it is only known to exceed a bound.
		possible := s.exists && (s.exact && s.version == in.IfVersion || !s.exact && in.IfVersion > s.version)
		switch {
		case out.Unknown:
			// Applying whenever it is possible loses nothing: an
			// indeterminate CAS that did not apply had no effect, which the
			// checker explains by ordering it after everything else.
			if !possible {
				return true, s
			}
			return true, state{exists: true, value: in.Value, version: in.IfVersion}
		case !out.OK:
			certain := s.exists && s.exact && s.version == in.IfVersion
			return !certain, s
		}
		return possible && out.Version > in.IfVersion, state{exists: true, value: in.Value, version: out.Version, exact: true}
	}
	return false, s
}

// model is the porcupine model: per-key states, histories partitioned by
// key in key order.
func model() porcupine.Model {
	return porcupine.Model{
		Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
			return partition(history)
		},
		Init: func() any { return initState() },
		Step: func(s, in, out any) (bool, any) {
			return step(s.(state), in.(Input), out.(outcome))
		},
		Equal: func(a, b any) bool { return a.(state) == b.(state) },
		Hash:  func(s any) uint64 { return hashState(s.(state)) },
		DescribeOperation: func(in, out any) string {
			return describeOp(in.(Input), out.(outcome))
		},
		DescribeState: func(s any) string { return describeState(s.(state)) },
	}
}

// partition splits a history by key. The order is the keys' order, so
// Check can tell which key a partition of porcupine's answer is.
func partition(history []porcupine.Operation) [][]porcupine.Operation {
	byKey := make(map[string][]porcupine.Operation)
	for _, op := range history {
		k := op.Input.(Input).Key
		byKey[k] = append(byKey[k], op)
	}
	parts := make([][]porcupine.Operation, 0, len(byKey))
	for _, k := range slices.Sorted(maps.Keys(byKey)) {
		parts = append(parts, byKey[k])
	}
	return parts
}

// hashState is FNV-1a over the state's fields.
func hashState(s state) uint64 {
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	for i := 0; i < len(s.value); i++ {
		h = (h ^ uint64(s.value[i])) * prime
	}
	h = (h ^ s.version) * prime
	if s.exists {
		h = (h ^ 1) * prime
	}
	if s.exact {
		h = (h ^ 2) * prime
	}
	return h
}

func describeState(s state) string {
	switch {
	case !s.exists:
		return fmt.Sprintf("absent (next version > %d)", s.version)
	case s.exact:
		return fmt.Sprintf("%s@%d", quote(s.value), s.version)
	}
	return fmt.Sprintf("%s@>%d", quote(s.value), s.version)
}

func describeOp(in Input, out outcome) string {
	var call string
	switch in.Kind {
	case Put:
		call = fmt.Sprintf("put(%s, %s)", quote(in.Key), quote(in.Value))
	case CAS:
		call = fmt.Sprintf("cas(%s, if @%d, %s)", quote(in.Key), in.IfVersion, quote(in.Value))
	default:
		call = fmt.Sprintf("%s(%s)", in.Kind, quote(in.Key))
	}
	var ret string
	switch {
	case out.Unknown:
		ret = "? (indeterminate)"
	case in.Kind == Get && out.Exists:
		ret = fmt.Sprintf("%s@%d", quote(out.Value), out.Version)
	case in.Kind == Get:
		ret = "absent"
	case in.Kind == Put:
		ret = fmt.Sprintf("@%d", out.Version)
	case in.Kind == Delete && out.OK:
		ret = "existed"
	case in.Kind == Delete:
		ret = "was absent"
	case in.Kind == CAS && out.OK:
		ret = fmt.Sprintf("ok @%d", out.Version)
	case in.Kind == CAS:
		ret = "not applied"
	}
	return call + " -> " + ret
}

// quote quotes s, cut so long values keep descriptions readable.
func quote(s string) string {
	const max = 40
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}
