package kv

import (
	"errors"
	"fmt"
	"net/http"
)

// Code is a stable, machine-readable error code. Codes are part of Fulcrum's
// public protocol (RESP error prefixes, HTTP JSON "code"); never rename one.
type Code string

// The error codes. docs/errors.md is the catalog; keep the two in step.
const (
	CodeInvalid      Code = "INVALID"      // malformed or unacceptable request
	CodeNotFound     Code = "NOT_FOUND"    // key or namespace does not exist
	CodeConflict     Code = "CONFLICT"     // a condition (version, NX/XX) did not hold
	CodeTooLarge     Code = "TOO_LARGE"    // key, value or frame over its limit
	CodeRateLimited  Code = "RATE_LIMITED" // too many clients or requests
	CodeUnavailable  Code = "UNAVAILABLE"  // cannot serve now (no quorum, shutting down)
	CodeTimeout      Code = "TIMEOUT"      // deadline passed; a write's outcome is unknown
	CodeNotLeader    Code = "NOT_LEADER"   // this replica cannot serve; a hint says where
	CodeReadOnly     Code = "READONLY"     // writes refused here
	CodeStaleEpoch   Code = "STALE_EPOCH"  // request carries an epoch older than current
	CodeWrongType    Code = "WRONGTYPE"    // operation does not fit the stored value
	CodeInternal     Code = "INTERNAL"     // a bug or a storage failure
	CodeDisabled     Code = "DISABLED"     // feature turned off in configuration
	CodeNotSupported Code = "NOT_SUPPORTED"
)

// HTTPStatus is the HTTP status code that goes with c.
func (c Code) HTTPStatus() int {
	switch c {
	case CodeInvalid, CodeWrongType:
		return http.StatusBadRequest
	case CodeNotFound:
		return http.StatusNotFound
	case CodeConflict:
		return http.StatusPreconditionFailed
	case CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case CodeRateLimited:
		return http.StatusTooManyRequests
	case CodeUnavailable, CodeNotLeader:
		return http.StatusServiceUnavailable
	case CodeTimeout:
		return http.StatusGatewayTimeout
	case CodeReadOnly, CodeDisabled:
		return http.StatusForbidden
	case CodeStaleEpoch:
		return http.StatusConflict
	case CodeNotSupported:
		return http.StatusNotImplemented
	}
	return http.StatusInternalServerError
}

// Error is a coded error. Message is for humans; Code is what callers and
// clients branch on.
type Error struct {
	Code    Code
	Message string
	Err     error // optional cause
}

func (e *Error) Error() string {
	if e.Message == "" {
		return string(e.Code)
	}
	return string(e.Code) + " " + e.Message
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, kv.ErrTooLarge) true for any Error with that code:
// the sentinels below carry no message and match by code alone.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Err == nil && t.Code == e.Code
}

// Errorf returns an Error with code c and a formatted message. A %w verb
// becomes the cause.
func Errorf(c Code, format string, args ...any) *Error {
	err := fmt.Errorf(format, args...)
	return &Error{Code: c, Message: err.Error(), Err: errors.Unwrap(err)}
}

// Sentinels for errors.Is. They match any Error with the same code.
var (
	ErrInvalid     = &Error{Code: CodeInvalid}
	ErrNotFound    = &Error{Code: CodeNotFound}
	ErrConflict    = &Error{Code: CodeConflict}
	ErrTooLarge    = &Error{Code: CodeTooLarge}
	ErrRateLimited = &Error{Code: CodeRateLimited}
	ErrUnavailable = &Error{Code: CodeUnavailable}
	ErrTimeout     = &Error{Code: CodeTimeout}
	ErrNotLeader   = &Error{Code: CodeNotLeader}
	ErrReadOnly    = &Error{Code: CodeReadOnly}
	ErrStaleEpoch  = &Error{Code: CodeStaleEpoch}
	ErrWrongType   = &Error{Code: CodeWrongType}
	ErrInternal    = &Error{Code: CodeInternal}
	ErrDisabled    = &Error{Code: CodeDisabled}
)

// ErrNotAdmitted marks a replicated write refused before it entered any
// log (a primary without its lease or without enough in-sync replicas):
// sending it again cannot apply it twice. It survives the trip between
// nodes (AppendError), so a forwarding node can retry.
var ErrNotAdmitted = errors.New("write not admitted to any log")

// NotAdmitted returns err marked with ErrNotAdmitted; its code and
// message stay err's. nil stays nil.
func NotAdmitted(err error) error {
	if err == nil {
		return nil
	}
	return notAdmitted{err}
}

type notAdmitted struct{ error }

func (e notAdmitted) Unwrap() []error { return []error{e.error, ErrNotAdmitted} }

// Errors of value arithmetic. Front ends map them to the exact wording that
// Redis uses, so clients that match on it keep working.
var (
	ErrNotInteger = errors.New("value is not an integer or out of range")
	ErrNotFloat   = errors.New("value is not a valid float")
	ErrOverflow   = errors.New("increment or decrement would overflow")
	ErrNaN        = errors.New("increment would produce NaN or Infinity")
)

// CodeOf returns the code of the first Error in err's chain, CodeTimeout for
// context deadlines, and CodeInternal for anything else.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	switch {
	case errors.Is(err, ErrNotInteger), errors.Is(err, ErrNotFloat),
		errors.Is(err, ErrOverflow), errors.Is(err, ErrNaN):
		return CodeInvalid
	case isDeadline(err):
		return CodeTimeout
	}
	return CodeInternal
}
