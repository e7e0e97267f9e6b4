package resp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func newTestReader(input string, lim ReaderLimits) *Reader {
	return NewReader(bufio.NewReaderSize(strings.NewReader(input), 64), lim)
}

// readAll reads commands until an error and returns them and the error.
func readAll(r *Reader) ([][]string, error) {
	var out [][]string
	for {
		args, err := r.ReadCommand()
		if err != nil {
			return out, err
		}
		if args == nil {
			out = append(out, nil)
			continue
		}
		cmd := make([]string, len(args))
		for i, a := range args {
			cmd[i] = string(a)
		}
		out = append(out, cmd)
	}
}

func TestReaderValid(t *testing.T) {
	for _, tc := range []struct {
		name  string
		input string
		want  [][]string
	}{
		{"multibulk", "*2\r\n$3\r\nGET\r\n$1\r\na\r\n", [][]string{{"GET", "a"}}},
		{"empty bulk", "*2\r\n$3\r\nGET\r\n$0\r\n\r\n", [][]string{{"GET", ""}}},
		{"binary bulk", "*1\r\n$4\r\n\r\n\x00\xff\r\n", [][]string{{"\r\n\x00\xff"}}},
		{"pipeline", "*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n", [][]string{{"PING"}, {"PING"}}},
		{"empty multibulk ignored", "*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n", [][]string{nil, nil, {"PING"}}},
		{"inline", "SET a b\r\n", [][]string{{"SET", "a", "b"}}},
		{"inline LF only", "GET a\n", [][]string{{"GET", "a"}}},
		{"inline extra spaces", "  SET   a \t b  \r\n", [][]string{{"SET", "a", "b"}}},
		{"inline empty line", "\r\n\nPING\r\n", [][]string{nil, nil, {"PING"}}},
		{"inline double quotes", `SET "a b" "c\"d\n\x41\x4a\\"` + "\r\n", [][]string{{"SET", "a b", "c\"d\nAJ\\"}}},
		{"inline single quotes", `SET 'a "b' 'it\'s'` + "\r\n", [][]string{{"SET", "a \"b", "it's"}}},
		{"inline quote mid-word", `SET ab"c d"e` + "\r\n", nil}, // closing quote not followed by space
		{"inline quoted empty", `SET a ""` + "\r\n", [][]string{{"SET", "a", ""}}},
		{"inline NUL ends line", "SET a b\x00c d\r\n", [][]string{{"SET", "a", "b"}}},
		{"inline bad hex kept", `SET "\xZZ"` + "\r\n", [][]string{{"SET", "xZZ"}}},
		{"long bulk across buffer", "*2\r\n$3\r\nSET\r\n$100\r\n" + strings.Repeat("x", 100) + "\r\n",
			[][]string{{"SET", strings.Repeat("x", 100)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readAll(newTestReader(tc.input, ReaderLimits{}))
			if tc.want == nil {
				var pe *ProtocolError
				if !errors.As(err, &pe) {
					t.Fatalf("got %q, %v; want a protocol error", got, err)
				}
				return
			}
			if err != io.EOF {
				t.Fatalf("error %v, want EOF (got %q)", err, got)
			}
			if !equalCmds(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func equalCmds(a, b [][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if strings.Join(a[i], "\x00") != strings.Join(b[i], "\x00") || (a[i] == nil) != (b[i] == nil) {
			return false
		}
	}
	return true
}

func TestReaderMalformed(t *testing.T) {
	lim := ReaderLimits{MaxBulk: 100, MaxArgs: 4, MaxInline: 40, MaxRequest: 150}
	for _, tc := range []struct {
		name, input, want string
	}{
		{"non-numeric count", "*x\r\n", "ERR Protocol error: invalid multibulk length"},
		{"empty count", "*\r\n", "ERR Protocol error: invalid multibulk length"},
		{"count with plus", "*+1\r\n", "ERR Protocol error: invalid multibulk length"},
		{"count leading zero", "*01\r\n", "ERR Protocol error: invalid multibulk length"},
		{"negative count", "*-2\r\n", "ERR Protocol error: invalid multibulk length"},
		{"count over limit", "*5\r\n", "ERR Protocol error: invalid multibulk length"},
		{"count overflow", "*99999999999999999999\r\n", "ERR Protocol error: invalid multibulk length"},
		{"count missing CR", "*1\n$4\r\nPING\r\n", "ERR Protocol error: invalid multibulk length"},
		{"bad bulk prefix", "*1\r\nx4\r\nPING\r\n", "ERR Protocol error: expected '$', got 'x'"},
		{"inline in multibulk", "*1\r\nPING\r\n", "ERR Protocol error: expected '$', got 'P'"},
		{"non-numeric bulk length", "*1\r\n$x\r\n", "ERR Protocol error: invalid bulk length"},
		{"negative bulk length", "*1\r\n$-1\r\n", "ERR Protocol error: invalid bulk length"},
		{"bulk length missing CR", "*1\r\n$4\nPING\r\n", "ERR Protocol error: invalid bulk length"},
		{"bulk missing CRLF", "*1\r\n$4\r\nPINGxx", "ERR Protocol error: expected CRLF after bulk data"},
		{"bulk too long", "*1\r\n$101\r\n", "TOO_LARGE frame of 101 bytes exceeds limit 100"},
		{"huge bulk", "*1\r\n$999999999999\r\n", "TOO_LARGE frame of 999999999999 bytes exceeds limit 100"},
		{"request too large", "*2\r\n$100\r\n" + strings.Repeat("a", 100) + "\r\n$100\r\n", "TOO_LARGE request of 200 bytes exceeds limit 150"},
		{"unbalanced double", `SET "a` + "\r\n", "ERR Protocol error: unbalanced quotes in request"},
		{"unbalanced single", `SET 'a` + "\r\n", "ERR Protocol error: unbalanced quotes in request"},
		{"quote not followed by space", `SET "a"b` + "\r\n", "ERR Protocol error: unbalanced quotes in request"},
		{"inline too long", strings.Repeat("a", 200) + "\r\n", "ERR Protocol error: too big inline request"},
		{"inline too many args", "a b c d e\r\n", "ERR Protocol error: invalid multibulk length"},
		{"header line too long", "*1\r\n$" + strings.Repeat("1", 100), "ERR Protocol error: too big bulk count string"},
		{"count line too long", "*" + strings.Repeat("1", 100), "ERR Protocol error: too big mbulk count string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readAll(newTestReader(tc.input, lim))
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("got error %v, want protocol error %q", err, tc.want)
			}
			if pe.Reply != tc.want {
				t.Fatalf("got %q, want %q", pe.Reply, tc.want)
			}
		})
	}
}

func TestReaderTruncated(t *testing.T) {
	for _, input := range []string{"*2\r\n$3\r\nGET\r\n", "*1\r\n$4\r\nPI", "*1\r\n$4", "*1", "GET a"} {
		_, err := readAll(newTestReader(input, ReaderLimits{}))
		if err != io.ErrUnexpectedEOF {
			t.Errorf("%q: got %v, want unexpected EOF", input, err)
		}
	}
}

// failingReader fails the test if anything reads past its data: the reader
// must refuse a declared length without trying to read (or allocate) it.
type failingReader struct {
	t    *testing.T
	data []byte
}

func (f *failingReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		f.t.Fatal("read past the declared header")
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

func TestReaderLimitBeforeAllocation(t *testing.T) {
	header := "*1\r\n$999999999999\r\n"
	r := NewReader(bufio.NewReaderSize(&failingReader{t: t, data: []byte(header)}, 16), ReaderLimits{})
	_, err := r.ReadCommand()
	var pe *ProtocolError
	if !errors.As(err, &pe) || !strings.HasPrefix(pe.Reply, "TOO_LARGE frame of 999999999999 bytes") {
		t.Fatalf("got %v, want TOO_LARGE", err)
	}
	if cap(r.arena) != 0 {
		t.Fatalf("arena grew to %d bytes for a refused bulk", cap(r.arena))
	}
	// A count over the limit is refused without reserving the slots.
	allocs := testing.AllocsPerRun(100, func() {
		r := NewReader(bufio.NewReaderSize(strings.NewReader("*2000000\r\n"), 32), ReaderLimits{})
		r.args = make([][]byte, 0, 1) // part of setup, counted once
		if _, err := r.ReadCommand(); err == nil {
			t.Fatal("accepted an over-limit count")
		}
	})
	if allocs > 6 {
		t.Fatalf("%v allocations to refuse an over-limit count", allocs)
	}
}

func TestReaderLargeBulkGrowsWithData(t *testing.T) {
	// A bulk under the limit but sent only partly must not reserve the
	// whole declared size.
	size := 3 << 20
	input := "*1\r\n$" + itoa(int64(size)) + "\r\n" + strings.Repeat("z", 1000)
	r := newTestReader(input, ReaderLimits{})
	_, err := r.ReadCommand()
	if err != io.ErrUnexpectedEOF {
		t.Fatalf("got %v, want unexpected EOF", err)
	}
	if cap(r.arena) >= size {
		t.Fatalf("arena is %d bytes after 1000 bytes of a %d-byte bulk", cap(r.arena), size)
	}
	// And the whole bulk, when sent, arrives intact.
	full := "*1\r\n$" + itoa(int64(size)) + "\r\n" + strings.Repeat("z", size) + "\r\n"
	args, err := newTestReader(full, ReaderLimits{}).ReadCommand()
	if err != nil || len(args) != 1 || len(args[0]) != size || args[0][size-1] != 'z' {
		t.Fatalf("got %d args, err %v", len(args), err)
	}
}

func TestReaderArgsStableUntilRelease(t *testing.T) {
	r := newTestReader("*2\r\n$3\r\nSET\r\n$1\r\na\r\n*2\r\n$3\r\nGET\r\n$1\r\nb\r\n", ReaderLimits{})
	a1, _ := r.ReadCommand()
	first := a1[1]
	if _, err := r.ReadCommand(); err != nil {
		t.Fatal(err)
	}
	if string(first) != "a" {
		t.Fatalf("first command's argument changed to %q before Release", first)
	}
	// Appending to an argument must not clobber its neighbour.
	_ = append(first, 'X')
	if a2 := r.args; string(a2[0]) != "GET" {
		t.Fatalf("append to an argument overwrote the next: %q", a2[0])
	}
}

func TestReaderBuffered(t *testing.T) {
	lim := ReaderLimits{MaxBulk: 100, MaxArgs: 10}
	for _, tc := range []struct {
		input string
		want  bool
	}{
		{"", false},
		{"*2\r\n$3\r\nGET\r\n$1\r\na\r\n", true},
		{"*2\r\n$3\r\nGET\r\n$1\r\na\r", false},
		{"*2\r\n$3\r\nGET\r\n", false},
		{"*2\r\n", false},
		{"*2", false},
		{"GET a", false},
		{"GET a\n", true},
		{"*x\r\n", true},            // malformed: reading reports it at once
		{"*1\r\n$999\r\n", true},    // over the limit
		{"*1\r\nx\r\n", true},       // bad prefix
		{"*0\r\n", true},            // empty command
		{"*1\r\n$4\r\nPING", false}, // missing CRLF
	} {
		br := bufio.NewReaderSize(strings.NewReader(tc.input), 64)
		r := NewReader(br, lim)
		if tc.input != "" {
			_, _ = br.Peek(len(tc.input)) // fill the buffer
		}
		if got := r.Buffered(); got != tc.want {
			t.Errorf("Buffered(%q) = %v, want %v", tc.input, got, tc.want)
		}
	}
}

func TestParseInt(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"1", 1, true}, {"-1", -1, true}, {"9223372036854775807", 1<<63 - 1, true},
		{"-9223372036854775808", -1 << 63, true}, {"9223372036854775808", 0, false},
		{"-0", 0, false}, {"01", 0, false}, {"+1", 0, false}, {" 1", 0, false}, {"1 ", 0, false},
		{"", 0, false}, {"-", 0, false}, {"1.5", 0, false}, {"18446744073709551616", 0, false},
	} {
		got, ok := parseInt([]byte(tc.in))
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseInt(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"*2\r\n$3\r\nGET\r\n$1\r\na\r\n",
		"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\nb\r\n*1\r\n$4\r\nPING\r\n",
		"SET \"a b\" 'c'\r\n",
		"*-1\r\n*0\r\n\r\n",
		"*1\r\n$999999999\r\n",
		`GET "\x41\n"` + "\n",
	} {
		f.Add([]byte(seed))
	}
	lim := ReaderLimits{MaxBulk: 64, MaxArgs: 8, MaxInline: 128, MaxRequest: 256}
	f.Fuzz(func(t *testing.T, data []byte) {
		src := &countingSource{r: bytes.NewReader(data)}
		br := bufio.NewReaderSize(src, 16)
		r := NewReader(br, lim)
		for i := 0; i < 1000; i++ {
			buffered := r.Buffered()
			reads := src.reads
			args, err := r.ReadCommand()
			if buffered && src.reads != reads {
				t.Fatalf("Buffered() said a whole command was buffered, yet reading it read more input")
			}
			if err != nil {
				return
			}
			if len(args) > lim.MaxArgs {
				t.Fatalf("%d args over the limit %d", len(args), lim.MaxArgs)
			}
			total := 0
			for _, a := range args {
				if len(a) > lim.MaxBulk {
					t.Fatalf("argument of %d bytes over the limit %d", len(a), lim.MaxBulk)
				}
				total += len(a)
			}
			if total > lim.MaxRequest {
				t.Fatalf("request of %d bytes over the limit %d", total, lim.MaxRequest)
			}
			r.Release()
		}
	})
}

type countingSource struct {
	r     io.Reader
	reads int
}

func (c *countingSource) Read(p []byte) (int, error) {
	c.reads++
	return c.r.Read(p)
}
