package resp

import (
	"math"
	"strconv"
)

// The Append functions encode one RESP value at the end of b and return the
// extended slice. They allocate only when b lacks capacity; the server
// appends into the free space of its per-connection bufio.Writer.

// AppendSimple appends a simple string: +s.
func AppendSimple(b []byte, s string) []byte {
	b = append(b, '+')
	b = appendLine(b, s)
	return append(b, '\r', '\n')
}

// AppendError appends an error: -msg. msg starts with the error code
// ("ERR", "WRONGTYPE", "TOO_LARGE", ...). CR and LF in msg become spaces, as
// Redis does, so a message can never break the framing.
func AppendError(b []byte, msg string) []byte {
	b = append(b, '-')
	b = appendLine(b, msg)
	return append(b, '\r', '\n')
}

func appendLine(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		b = append(b, c)
	}
	return b
}

// AppendInt appends an integer: :n.
func AppendInt(b []byte, n int64) []byte {
	b = append(b, ':')
	b = strconv.AppendInt(b, n, 10)
	return append(b, '\r', '\n')
}

// AppendBulk appends a bulk string: $len CRLF v CRLF.
func AppendBulk(b []byte, v []byte) []byte {
	b = appendHeader(b, '$', len(v))
	b = append(b, v...)
	return append(b, '\r', '\n')
}

// AppendBulkString appends a bulk string.
func AppendBulkString(b []byte, s string) []byte {
	b = appendHeader(b, '$', len(s))
	b = append(b, s...)
	return append(b, '\r', '\n')
}

// AppendBulkInt appends n in decimal as a bulk string.
func AppendBulkInt(b []byte, n int64) []byte {
	var tmp [20]byte
	return AppendBulk(b, strconv.AppendInt(tmp[:0], n, 10))
}

// AppendArray appends an array header for n elements: *n.
func AppendArray(b []byte, n int) []byte { return appendHeader(b, '*', n) }

// AppendMap appends a RESP3 map header for n key-value pairs: %n.
func AppendMap(b []byte, n int) []byte { return appendHeader(b, '%', n) }

// AppendSet appends a RESP3 set header for n elements: ~n.
func AppendSet(b []byte, n int) []byte { return appendHeader(b, '~', n) }

// AppendNullBulk appends RESP2's null bulk string: $-1.
func AppendNullBulk(b []byte) []byte { return append(b, "$-1\r\n"...) }

// AppendNullArray appends RESP2's null array: *-1.
func AppendNullArray(b []byte) []byte { return append(b, "*-1\r\n"...) }

// AppendNull appends RESP3's null: _.
func AppendNull(b []byte) []byte { return append(b, "_\r\n"...) }

// AppendBool appends a RESP3 boolean: #t or #f.
func AppendBool(b []byte, v bool) []byte {
	if v {
		return append(b, "#t\r\n"...)
	}
	return append(b, "#f\r\n"...)
}

// AppendDouble appends a RESP3 double: ,f (inf, -inf and nan spelled as
// RESP3 specifies).
func AppendDouble(b []byte, f float64) []byte {
	b = append(b, ',')
	b = appendFloat(b, f)
	return append(b, '\r', '\n')
}

func appendFloat(b []byte, f float64) []byte {
	switch {
	case math.IsInf(f, 1):
		return append(b, "inf"...)
	case math.IsInf(f, -1):
		return append(b, "-inf"...)
	case math.IsNaN(f):
		return append(b, "nan"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}

// AppendVerbatim appends a RESP3 verbatim string: =len CRLF fmt:text CRLF.
// format is three characters, "txt" or "mkd".
func AppendVerbatim(b []byte, format string, text []byte) []byte {
	b = appendHeader(b, '=', len(format)+1+len(text))
	b = append(b, format...)
	b = append(b, ':')
	b = append(b, text...)
	return append(b, '\r', '\n')
}

func appendHeader(b []byte, prefix byte, n int) []byte {
	b = append(b, prefix)
	b = strconv.AppendInt(b, int64(n), 10)
	return append(b, '\r', '\n')
}
