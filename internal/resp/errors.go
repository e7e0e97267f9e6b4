package resp

import (
	"context"
	"errors"
	"strings"

	"github.com/fulcrumdb/fulcrum/internal/kv"
)

// Redis's error texts that several commands share.
const (
	errSyntax        = "ERR syntax error"
	errNotInteger    = "ERR value is not an integer or out of range"
	errNotFloat      = "ERR value is not a valid float"
	errOverflow      = "ERR increment or decrement would overflow"
	errNaN           = "ERR increment would produce NaN or Infinity"
	errOffsetRange   = "ERR offset is out of range"
	errStringTooLong = "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
	errInvalidCursor = "ERR invalid cursor"
)

// errorReply maps an error to the RESP error line that reports it: Redis's
// exact texts for arithmetic errors, the kv code as prefix for coded
// errors ("TOO_LARGE value is 2000000 bytes, limit is 1048576").
func errorReply(err error) string {
	switch {
	case errors.Is(err, kv.ErrNotInteger):
		return errNotInteger
	case errors.Is(err, kv.ErrNotFloat):
		return errNotFloat
	case errors.Is(err, kv.ErrOverflow):
		return errOverflow
	case errors.Is(err, kv.ErrNaN):
		return errNaN
	}
	var ke *kv.Error
	if errors.As(err, &ke) {
		return ke.Error()
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return string(kv.CodeTimeout) + " " + err.Error()
	case errors.Is(err, context.Canceled):
		return string(kv.CodeUnavailable) + " server is shutting down"
	}
	return string(kv.CodeInternal) + " " + err.Error()
}

// errorCode is the code of an error line: its first word.
func errorCode(msg string) string {
	if i := strings.IndexByte(msg, ' '); i >= 0 {
		return msg[:i]
	}
	return msg
}

// unknownCommand formats Redis's reply to an unknown command, including its
// quirks: the name and the arguments are cut at 128 bytes in total, each
// argument is quoted and followed by a space, and C string semantics end
// each at a NUL byte.
func unknownCommand(args [][]byte) string {
	var list []byte
	for i := 1; i < len(args) && len(list) < 128; i++ {
		list = append(list, '\'')
		list = append(list, cString(args[i], 128-len(list)+1)...)
		list = append(list, '\'', ' ')
	}
	return "ERR unknown command '" + string(cString(args[0], 128)) + "', with args beginning with: " + string(list)
}

// unknownSubcommand formats Redis's reply to an unknown subcommand.
func unknownSubcommand(sub []byte, cmd string) string {
	return "ERR unknown subcommand '" + string(cString(sub, 128)) + "'. Try " + strings.ToUpper(cmd) + " HELP."
}

// cString is b as C's "%.*s" prints it: up to the first NUL, at most n bytes.
func cString(b []byte, n int) []byte {
	for i, c := range b {
		if c == 0 {
			b = b[:i]
			break
		}
	}
	if len(b) > n {
		b = b[:n]
	}
	return b
}
