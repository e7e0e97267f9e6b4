package config

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Load reads the TOML file at path over Default: keys the file leaves out
// keep their defaults. Unknown keys are errors, each reported as
// "path:line: unknown key x.y", because a misspelt key silently ignored is a
// setting the operator believes is in force and is not. Load does not call
// Validate. When the only problems are unknown keys the error matches
// ErrUnknownKeys and the returned Config is the rest of the file.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("load config: %w", err)
	}
	return decode(path, string(data))
}

// ErrUnknownKeys marks a Load error caused only by unknown keys. The
// Config returned with it holds every key that was understood, so callers
// can Validate it too and report all problems in one pass.
var ErrUnknownKeys = errors.New("unknown keys")

type unknownKeysError struct{ err error }

func (e unknownKeysError) Error() string        { return e.err.Error() }
func (e unknownKeysError) Unwrap() error        { return e.err }
func (e unknownKeysError) Is(target error) bool { return target == ErrUnknownKeys }

// decode parses src (named name in errors) over Default.
func decode(name, src string) (Config, error) {
	cfg := Default()
	md, err := toml.Decode(src, &cfg)
	if err != nil {
		return Config{}, tomlError(name, err)
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		lines := keyLines(src)
		reported := map[string]bool{}
		var errs []error
		for _, k := range undecoded {
			// An unknown table makes every key in it unknown too; naming the
			// table is enough.
			if reported[keyID(k)] || hasReportedPrefix(reported, k) {
				continue
			}
			reported[keyID(k)] = true
			if line := lineOf(lines, k); line > 0 {
				errs = append(errs, fmt.Errorf("%s:%d: unknown key %s", name, line, k))
			} else {
				errs = append(errs, fmt.Errorf("%s: unknown key %s", name, k))
			}
		}
		return cfg, unknownKeysError{errors.Join(errs...)}
	}
	return cfg, nil
}

// tomlError rewrites a decoding error in the "file:line: key: message" form
// of the unknown-key errors. The toml package returns a ParseError for
// syntax and Unmarshaler errors but a plain error, in the same
// "toml: line N (last key K): message" shape, for type mismatches.
func tomlError(name string, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		if pe.LastKey != "" {
			return fmt.Errorf("%s:%d: %s: %s", name, pe.Position.Line, pe.LastKey, pe.Message)
		}
		return fmt.Errorf("%s:%d: %s", name, pe.Position.Line, pe.Message)
	}
	if m := tomlErrorRE.FindStringSubmatch(err.Error()); m != nil {
		if m[2] != "" {
			if key, uerr := strconv.Unquote(m[2]); uerr == nil {
				return fmt.Errorf("%s:%s: %s: %s", name, m[1], key, m[3])
			}
		}
		return fmt.Errorf("%s:%s: %s", name, m[1], m[3])
	}
	return fmt.Errorf("%s: %w", name, err)
}

var tomlErrorRE = regexp.MustCompile(`^toml: line (\d+)(?: \(last key ("(?:[^"\\]|\\.)*")\))?: (?s:(.*))$`)

func keyID(parts []string) string { return strings.Join(parts, "\x00") }

func hasReportedPrefix(reported map[string]bool, k toml.Key) bool {
	for i := 1; i < len(k); i++ {
		if reported[keyID(k[:i])] {
			return true
		}
	}
	return false
}

// lineOf returns the line defining k or, for keys inside inline tables and
// arrays, the nearest enclosing key that keyLines found; 0 if none.
func lineOf(lines map[string]int, k toml.Key) int {
	for i := len(k); i > 0; i-- {
		if l, ok := lines[keyID(k[:i])]; ok {
			return l
		}
	}
	return 0
}

// keyLines maps the keys a TOML document defines (by keyID) to the line of
// their first definition. The toml package does not expose key positions, so
// this is a small best-effort scanner: it understands comments, table and
// array-of-table headers, dotted and quoted keys and multi-line strings, but
// not keys inside inline tables. It is used only to point at unknown keys,
// so a miss merely drops a line number.
func keyLines(src string) map[string]int {
	lines := map[string]int{}
	var table []string
	inMulti := "" // the delimiter of the multi-line string we are in, if any
	for i, line := range strings.Split(src, "\n") {
		lineNo := i + 1
		if inMulti != "" {
			if strings.Count(line, inMulti)%2 == 1 {
				inMulti = ""
			}
			continue
		}
		t := strings.TrimSpace(line)
		switch {
		case t == "" || t[0] == '#':
			continue
		case strings.HasPrefix(t, "["):
			header := strings.TrimPrefix(t, "[")
			end := "]"
			if strings.HasPrefix(header, "[") {
				header, end = header[1:], "]]"
			}
			parts, rest, ok := splitKey(header)
			if !ok || !strings.HasPrefix(strings.TrimSpace(rest), end) {
				continue
			}
			table = parts
			record(lines, table, lineNo)
			continue
		}
		parts, rest, ok := splitKey(t)
		rest = strings.TrimSpace(rest)
		if !ok || !strings.HasPrefix(rest, "=") {
			continue
		}
		full := append(append([]string(nil), table...), parts...)
		record(lines, full, lineNo)
		for _, delim := range []string{`"""`, `'''`} {
			if strings.Count(rest, delim)%2 == 1 {
				inMulti = delim
				break
			}
		}
	}
	return lines
}

// record notes key and its dotted prefixes at line unless already known.
func record(lines map[string]int, key []string, line int) {
	for i := 1; i <= len(key); i++ {
		if _, ok := lines[keyID(key[:i])]; !ok {
			lines[keyID(key[:i])] = line
		}
	}
}

// splitKey parses a (possibly dotted, possibly quoted) TOML key at the start
// of s and returns its parts and the text after it.
func splitKey(s string) (parts []string, rest string, ok bool) {
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return nil, "", false
		}
		var part string
		switch s[0] {
		case '"', '\'':
			q := s[0]
			end := 1
			for end < len(s) && s[end] != q {
				if q == '"' && s[end] == '\\' {
					end++
				}
				end++
			}
			if end >= len(s) {
				return nil, "", false
			}
			part, s = s[1:end], s[end+1:]
			if q == '"' {
				part = unescapeBasic(part)
			}
		default:
			end := 0
			for end < len(s) && isBareKeyChar(s[end]) {
				end++
			}
			if end == 0 {
				return nil, "", false
			}
			part, s = s[:end], s[end:]
		}
		parts = append(parts, part)
		s = strings.TrimLeft(s, " \t")
		if !strings.HasPrefix(s, ".") {
			return parts, s, true
		}
		s = s[1:]
	}
}

func isBareKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// unescapeBasic handles the escapes likely in a quoted key; others are kept
// as written (the line lookup then misses, which is harmless).
func unescapeBasic(s string) string {
	return strings.NewReplacer(`\"`, `"`, `\\`, `\`, `\t`, "\t").Replace(s)
}
