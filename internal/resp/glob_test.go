package resp

import "testing"

func TestMatchGlob(t *testing.T) {
	for _, tc := range []struct {
		pat, s string
		want   bool
	}{
		{"", "", true},
		{"", "a", false},
		{"*", "", true},
		{"*", "anything", true},
		{"**", "x", true},
		{"a*", "a", true},
		{"a*", "abc", true},
		{"a*", "ba", false},
		{"*a", "bca", true},
		{"*a", "ab", false},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYY", false},
		{"*ab*ab*", "xxabyyab", true},
		{"h?llo", "hello", true},
		{"h?llo", "hllo", false},
		{"h??lo", "hello", true},
		{"?", "", false},
		{"h[ae]llo", "hallo", true},
		{"h[ae]llo", "hillo", false},
		{"h[^e]llo", "hallo", true},
		{"h[^e]llo", "hello", false},
		{"h[a-b]llo", "hbllo", true},
		{"h[a-b]llo", "hcllo", false},
		{"h[b-a]llo", "hallo", true}, // reversed range
		{"[a-c-e]", "-", true},       // range a-c, then '-' and 'e' as literals
		{"[a-c-e]", "d", false},
		{"[\\]]", "]", true},
		{"[\\-]", "-", true},
		{"[abc", "b", true}, // unclosed set takes the rest
		{"[abc", "d", false},
		{"x[", "x", false},
		{"[]", "a", false},
		{"[a-]", "]", true}, // Redis quirk: a range from 'a' down to ']'
		{"[a-]", "b", false},
		{"\\*", "*", true},
		{"\\*", "a", false},
		{"\\?x", "?x", true},
		{"a\\", "a\\", true}, // trailing backslash is literal
		{"a\\", "a", false},
		{"*\\", "ab\\", true},
		{"user:*:name", "user:42:name", true},
		{"user:*:name", "user:42:age", false},
		{"*[0-9]", "abc7", true},
		{"*[0-9]", "abc", false},
		{"HELLO", "hello", false},
	} {
		if got := matchGlob([]byte(tc.pat), []byte(tc.s), false); got != tc.want {
			t.Errorf("matchGlob(%q, %q) = %v, want %v", tc.pat, tc.s, got, tc.want)
		}
	}
}

func TestMatchGlobFold(t *testing.T) {
	for _, tc := range []struct {
		pat, s string
		want   bool
	}{
		{"HELLO", "hello", true},
		{"max*", "MAXMEMORY", true},
		{"[A-C]x", "bX", true},
		{"[^A]", "a", false},
	} {
		if got := matchGlob([]byte(tc.pat), []byte(tc.s), true); got != tc.want {
			t.Errorf("matchGlob(%q, %q, fold) = %v, want %v", tc.pat, tc.s, got, tc.want)
		}
	}
}

// naiveGlob is a direct recursive reading of the glob rules, the oracle for
// the backtracking implementation.
func naiveGlob(pat, s []byte) bool {
	if len(pat) == 0 {
		return len(s) == 0
	}
	if pat[0] == '*' {
		for i := 0; i <= len(s); i++ {
			if naiveGlob(pat[1:], s[i:]) {
				return true
			}
		}
		return false
	}
	if len(s) == 0 {
		return false
	}
	n, ok := matchToken(pat, s[0], false)
	return ok && naiveGlob(pat[n:], s[1:])
}

func TestMatchGlobAgainstOracle(t *testing.T) {
	const alphabet = "ab*?[]^-\\"
	seed := uint64(20240601)
	t.Logf("seed %d", seed)
	next := func() uint64 { seed = seed*6364136223846793005 + 1442695040888963407; return seed >> 33 }
	gen := func(chars string, n int) []byte {
		b := make([]byte, int(next()%uint64(n+1)))
		for i := range b {
			b[i] = chars[next()%uint64(len(chars))]
		}
		return b
	}
	for i := 0; i < 20000; i++ {
		pat, s := gen(alphabet, 7), gen("ab-]", 6)
		if got, want := matchGlob(pat, s, false), naiveGlob(pat, s); got != want {
			t.Fatalf("matchGlob(%q, %q) = %v, oracle says %v", pat, s, got, want)
		}
	}
}

func TestGlobPrefix(t *testing.T) {
	for _, tc := range []struct{ pat, want string }{
		{"user:*", "user:"}, {"abc", "abc"}, {"*", ""}, {"a?c", "a"}, {"a[bc]", "a"}, {"a\\*", "a"},
	} {
		if got := string(globPrefix([]byte(tc.pat))); got != tc.want {
			t.Errorf("globPrefix(%q) = %q, want %q", tc.pat, got, tc.want)
		}
	}
}
