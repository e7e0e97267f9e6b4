package resp

import (
	"bufio"
	"bytes"
	"io"
	"math"
	"strconv"
)

// ProtocolError is a request the Reader cannot parse or refuses because it
// is over a limit. Reply is the RESP error line to send (without "-" and
// CRLF). The stream cannot be resynchronised after one, so the server sends
// Reply and closes the connection.
type ProtocolError struct {
	Reply string
}

func (e *ProtocolError) Error() string { return e.Reply }

func protoErr(msg string) error { return &ProtocolError{Reply: "ERR Protocol error: " + msg} }

// Protocol errors with Redis's exact wording.
var (
	errInvalidMultibulk = protoErr("invalid multibulk length")
	errInvalidBulk      = protoErr("invalid bulk length")
	errTooBigMultibulk  = protoErr("too big mbulk count string")
	errTooBigBulkCount  = protoErr("too big bulk count string")
	errTooBigInline     = protoErr("too big inline request")
	errUnbalancedQuotes = protoErr("unbalanced quotes in request")
	errMissingBulkCRLF  = protoErr("expected CRLF after bulk data")
	errBulkLineNotCRLF  = errInvalidBulk
	errMultibulkNotCRLF = errInvalidMultibulk
)

// ReaderLimits bound what one request may make the Reader allocate. Every
// limit is checked against the declared size before any memory is reserved.
type ReaderLimits struct {
	// MaxBulk is the largest bulk string (one argument) in bytes.
	MaxBulk int
	// MaxArgs is the largest number of multibulk elements.
	MaxArgs int
	// MaxInline is the longest inline command line in bytes.
	MaxInline int
	// MaxRequest is the largest total size of one command's arguments.
	MaxRequest int
}

// Default reader limits.
const (
	DefaultMaxFrameSize   = 4 << 20
	DefaultMaxMultiBulk   = 1 << 20
	DefaultMaxInline      = 64 << 10
	DefaultMaxRequestSize = 64 << 20
)

// eagerBulk is the bulk size up to which the Reader reserves the whole
// argument at once; larger ones grow as their bytes arrive, so a client
// that declares a large bulk and sends nothing costs little memory.
const eagerBulk = 64 << 10

// Reader parses client requests: multibulk arrays and inline commands.
//
// Arguments are returned as slices of an arena the Reader reuses. They stay
// valid until Release is called, across any number of ReadCommand calls;
// this lets the server queue several pipelined writes without copying.
type Reader struct {
	br     *bufio.Reader
	lim    ReaderLimits
	args   [][]byte
	arena  []byte
	inline []byte // accumulates an inline line longer than br's buffer
}

// NewReader returns a Reader over br. Zero limits take the defaults.
func NewReader(br *bufio.Reader, lim ReaderLimits) *Reader {
	if lim.MaxBulk <= 0 {
		lim.MaxBulk = DefaultMaxFrameSize
	}
	if lim.MaxArgs <= 0 {
		lim.MaxArgs = DefaultMaxMultiBulk
	}
	if lim.MaxInline <= 0 {
		lim.MaxInline = DefaultMaxInline
	}
	if lim.MaxRequest <= 0 {
		lim.MaxRequest = DefaultMaxRequestSize
	}
	// An inline line is one argument at most as long as itself.
	lim.MaxInline = min(lim.MaxInline, lim.MaxBulk, lim.MaxRequest)
	return &Reader{br: br, lim: lim}
}

// Release lets the Reader reuse the memory behind every argument it has
// returned so far.
func (r *Reader) Release() {
	// Do not keep a buffer that one large request blew up.
	if cap(r.arena) > 1<<20 {
		r.arena = nil
	} else {
		r.arena = r.arena[:0]
	}
	if cap(r.args) > 4096 {
		r.args = nil
	}
	if cap(r.inline) > 1<<20 {
		r.inline = nil
	}
}

// ReadCommand reads one request and returns its arguments. It returns
// (nil, nil) for an empty request (an empty inline line, "*0" or "*-1"),
// which the caller ignores as Redis does. A *ProtocolError means the stream
// is unusable; other errors come from the underlying reader.
//
// The returned [][]byte is reused by the next call; the byte slices in it
// live until Release.
func (r *Reader) ReadCommand() ([][]byte, error) {
	b, err := r.br.Peek(1)
	if err != nil {
		return nil, err
	}
	r.args = r.args[:0]
	if b[0] == '*' {
		return r.readMultibulk()
	}
	return r.readInline()
}

// Buffered reports whether a whole request (or a malformed one, whose error
// can be reported without more input) is already buffered, so that reading
// it will not block. The server uses it to decide when to flush replies.
func (r *Reader) Buffered() bool {
	n := r.br.Buffered()
	if n == 0 {
		return false
	}
	b, _ := r.br.Peek(n)
	return commandComplete(b, r.lim)
}

// readLine returns the next line including its "\r\n", or tooBig when the
// line does not fit the buffer (header lines are short; only a broken or
// hostile client sends a longer one).
func (r *Reader) readLine(tooBig error) ([]byte, error) {
	line, err := r.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return nil, tooBig
	}
	if err == io.EOF {
		return nil, io.ErrUnexpectedEOF
	}
	return line, err
}

func (r *Reader) readMultibulk() ([][]byte, error) {
	line, err := r.readLine(errTooBigMultibulk)
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return nil, errMultibulkNotCRLF
	}
	n, ok := parseInt(line[1 : len(line)-2])
	if !ok || n > math.MaxInt32 || n < -1 {
		return nil, errInvalidMultibulk
	}
	if n > int64(r.lim.MaxArgs) {
		return nil, errInvalidMultibulk
	}
	if n <= 0 {
		return nil, nil
	}
	total := 0
	for i := int64(0); i < n; i++ {
		// Check the prefix before looking for the line's end, so a stray
		// byte is reported without waiting for more input.
		b, err := r.br.Peek(1)
		if err != nil {
			return nil, noEOF(err)
		}
		if b[0] != '$' {
			return nil, &ProtocolError{Reply: "ERR Protocol error: expected '$', got '" + string(b[:1]) + "'"}
		}
		line, err := r.readLine(errTooBigBulkCount)
		if err != nil {
			return nil, err
		}
		if len(line) < 3 || line[len(line)-2] != '\r' {
			return nil, errBulkLineNotCRLF
		}
		size, ok := parseInt(line[1 : len(line)-2])
		if !ok || size < 0 {
			return nil, errInvalidBulk
		}
		if size > int64(r.lim.MaxBulk) {
			return nil, tooLarge("frame", size, r.lim.MaxBulk)
		}
		total += int(size)
		if total > r.lim.MaxRequest {
			return nil, tooLarge("request", int64(total), r.lim.MaxRequest)
		}
		arg, err := r.readBulk(int(size))
		if err != nil {
			return nil, err
		}
		r.args = append(r.args, arg)
	}
	return r.args, nil
}

func tooLarge(what string, n int64, limit int) error {
	return &ProtocolError{Reply: "TOO_LARGE " + what + " of " + strconv.FormatInt(n, 10) +
		" bytes exceeds limit " + strconv.Itoa(limit)}
}

// readBulk reads size bytes and the CRLF after them into the arena.
func (r *Reader) readBulk(size int) ([]byte, error) {
	start := len(r.arena)
	if size <= eagerBulk {
		r.arena = grow(r.arena, size+2)
		buf := r.arena[start : start+size+2]
		if _, err := io.ReadFull(r.br, buf); err != nil {
			return nil, noEOF(err)
		}
		r.arena = r.arena[:start+size+2]
	} else {
		// Grow with the data actually received, never by the declared size.
		remaining := size + 2
		for remaining > 0 {
			chunk := min(remaining, max(eagerBulk, len(r.arena)-start))
			r.arena = grow(r.arena, chunk)
			at := len(r.arena)
			if _, err := io.ReadFull(r.br, r.arena[at:at+chunk]); err != nil {
				return nil, noEOF(err)
			}
			r.arena = r.arena[:at+chunk]
			remaining -= chunk
		}
	}
	end := start + size
	if r.arena[end] != '\r' || r.arena[end+1] != '\n' {
		return nil, errMissingBulkCRLF
	}
	// Cap the slice so that a command that appends to an argument cannot
	// overwrite the next one.
	return r.arena[start:end:end], nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// grow makes room for n more bytes after len(b).
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	return append(b, make([]byte, n)...)[:len(b)]
}

func (r *Reader) readInline() ([][]byte, error) {
	line, err := r.br.ReadSlice('\n')
	switch {
	case err == nil:
	case err == bufio.ErrBufferFull:
		// Longer than the buffer: gather it, up to the inline limit.
		r.inline = append(r.inline[:0], line...)
		for err == bufio.ErrBufferFull {
			if len(r.inline) > r.lim.MaxInline {
				return nil, errTooBigInline
			}
			line, err = r.br.ReadSlice('\n')
			r.inline = append(r.inline, line...)
		}
		if err != nil {
			return nil, noEOF(err)
		}
		line = r.inline
	case err == io.EOF && len(line) > 0:
		return nil, io.ErrUnexpectedEOF
	default:
		return nil, err
	}
	if len(line) > r.lim.MaxInline {
		return nil, errTooBigInline
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	args, ok := r.splitInline(line)
	if !ok {
		return nil, errUnbalancedQuotes
	}
	if len(args) > r.lim.MaxArgs {
		return nil, errInvalidMultibulk
	}
	if len(args) == 0 {
		return nil, nil
	}
	return args, nil
}

// splitInline splits an inline command line into arguments the way
// redis-cli and telnet users expect (Redis's sdssplitargs): whitespace
// separates arguments; "double quotes" support \n \r \t \b \a \\ \" and
// \xHH escapes; 'single quotes' support only \'; a closing quote must be
// followed by whitespace or the end of the line. A NUL byte ends the line.
func (r *Reader) splitInline(line []byte) ([][]byte, bool) {
	if i := bytes.IndexByte(line, 0); i >= 0 {
		line = line[:i]
	}
	p := 0
	for {
		for p < len(line) && isSpace(line[p]) {
			p++
		}
		if p == len(line) {
			return r.args, true
		}
		start := len(r.arena)
		inDouble, inSingle, done := false, false, false
		for !done {
			var c byte
			if p < len(line) {
				c = line[p]
			}
			switch {
			case inDouble:
				switch {
				case c == '\\' && p+3 < len(line) && line[p+1] == 'x' && isHex(line[p+2]) && isHex(line[p+3]):
					r.arena = append(r.arena, unhex(line[p+2])<<4|unhex(line[p+3]))
					p += 3
				case c == '\\' && p+1 < len(line):
					p++
					switch line[p] {
					case 'n':
						c = '\n'
					case 'r':
						c = '\r'
					case 't':
						c = '\t'
					case 'b':
						c = '\b'
					case 'a':
						c = '\a'
					default:
						c = line[p]
					}
					r.arena = append(r.arena, c)
				case c == '"':
					if p+1 < len(line) && !isSpace(line[p+1]) {
						return nil, false
					}
					done = true
				case p == len(line):
					return nil, false
				default:
					r.arena = append(r.arena, c)
				}
			case inSingle:
				switch {
				case c == '\\' && p+1 < len(line) && line[p+1] == '\'':
					p++
					r.arena = append(r.arena, '\'')
				case c == '\'':
					if p+1 < len(line) && !isSpace(line[p+1]) {
						return nil, false
					}
					done = true
				case p == len(line):
					return nil, false
				default:
					r.arena = append(r.arena, c)
				}
			default:
				switch {
				case p == len(line) || c == ' ' || c == '\n' || c == '\r' || c == '\t':
					done = true
				case c == '"':
					inDouble = true
				case c == '\'':
					inSingle = true
				default:
					r.arena = append(r.arena, c)
				}
			}
			if p < len(line) {
				p++
			}
		}
		end := len(r.arena)
		r.args = append(r.args, r.arena[start:end:end])
	}
}

// isSpace is C's isspace in the "C" locale.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// commandComplete reports whether b begins with a whole request, or with
// one that is already known to be malformed or over a limit.
func commandComplete(b []byte, lim ReaderLimits) bool {
	if b[0] != '*' {
		return bytes.IndexByte(b, '\n') >= 0
	}
	nl := bytes.IndexByte(b, '\n')
	if nl < 0 {
		return false
	}
	if nl < 2 || b[nl-1] != '\r' {
		return true
	}
	n, ok := parseInt(b[1 : nl-1])
	if !ok || n <= 0 || n > int64(lim.MaxArgs) {
		return true
	}
	p := nl + 1
	for i := int64(0); i < n; i++ {
		if p >= len(b) {
			return false
		}
		if b[p] != '$' {
			return true
		}
		nl := bytes.IndexByte(b[p:], '\n')
		if nl < 0 {
			return false
		}
		line := b[p : p+nl+1]
		if len(line) < 3 || line[len(line)-2] != '\r' {
			return true
		}
		size, ok := parseInt(line[1 : len(line)-2])
		if !ok || size < 0 || size > int64(lim.MaxBulk) {
			return true
		}
		p += nl + 1 + int(size) + 2
		if p > len(b) {
			return false
		}
	}
	return true
}

// parseInt parses a decimal int64 as strictly as Redis's string2ll: an
// optional '-', no '+', no leading zeros, no spaces, no overflow.
func parseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	if len(b) == 1 && b[0] == '0' {
		return 0, true
	}
	neg := false
	if b[0] == '-' {
		neg = true
		b = b[1:]
		if len(b) == 0 {
			return 0, false
		}
	}
	if b[0] < '1' || b[0] > '9' {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (math.MaxUint64-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	if neg {
		if v > 1<<63 {
			return 0, false
		}
		return -int64(v), true
	}
	if v > math.MaxInt64 {
		return 0, false
	}
	return int64(v), true
}
