package resp

// matchGlob reports whether s matches the glob pattern pat with Redis's
// semantics (stringmatchlen): '*' matches any sequence, '?' any one byte,
// "[abc]" a set, "[^abc]" its complement, "[a-z]" a range (either order),
// and '\' escapes the next byte, inside a set too. An unclosed '[' takes
// the rest of the pattern as the set. fold makes the match case-insensitive
// (ASCII), as CONFIG GET's is.
//
// Each non-star token matches exactly one byte, so remembering the last
// star and retrying one byte further is enough: an earlier star could only
// absorb what the last one can. Time is O(len(pat)*len(s)) and there is no
// recursion.
func matchGlob(pat, s []byte, fold bool) bool {
	p, i := 0, 0
	starP, starI := -1, 0
	for i < len(s) {
		if p < len(pat) {
			if pat[p] == '*' {
				for p < len(pat) && pat[p] == '*' {
					p++
				}
				if p == len(pat) {
					return true
				}
				starP, starI = p, i
				continue
			}
			if n, ok := matchToken(pat[p:], s[i], fold); ok {
				p += n
				i++
				continue
			}
		}
		if starP < 0 {
			return false
		}
		starI++
		p, i = starP, starI
	}
	for p < len(pat) && pat[p] == '*' {
		p++
	}
	return p == len(pat)
}

// matchToken matches the single-byte token at the start of pat (not '*')
// against c. It returns the pattern bytes the token spans and whether it
// matched.
func matchToken(pat []byte, c byte, fold bool) (int, bool) {
	switch pat[0] {
	case '?':
		return 1, true
	case '\\':
		if len(pat) >= 2 {
			return 2, eqByte(pat[1], c, fold)
		}
		return 1, eqByte('\\', c, fold)
	case '[':
		q := 1
		not := q < len(pat) && pat[q] == '^'
		if not {
			q++
		}
		match := false
		for {
			switch {
			case q >= len(pat):
				// Unclosed: the set runs to the end of the pattern.
				return q, match != not
			case pat[q] == '\\' && len(pat)-q >= 2:
				if eqByte(pat[q+1], c, fold) {
					match = true
				}
				q += 2
			case pat[q] == ']':
				return q + 1, match != not
			case len(pat)-q >= 3 && pat[q+1] == '-':
				lo, hi, x := pat[q], pat[q+2], c
				if lo > hi {
					lo, hi = hi, lo
				}
				if fold {
					lo, hi, x = lower(lo), lower(hi), lower(x)
				}
				if x >= lo && x <= hi {
					match = true
				}
				q += 3
			default:
				if eqByte(pat[q], c, fold) {
					match = true
				}
				q++
			}
		}
	}
	return 1, eqByte(pat[0], c, fold)
}

func eqByte(a, b byte, fold bool) bool {
	if fold {
		return lower(a) == lower(b)
	}
	return a == b
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// globPrefix returns the literal bytes every match of pat starts with, so a
// scan can seek to them instead of examining the whole namespace.
func globPrefix(pat []byte) []byte {
	for i, c := range pat {
		switch c {
		case '*', '?', '[', '\\':
			return pat[:i]
		}
	}
	return pat
}
