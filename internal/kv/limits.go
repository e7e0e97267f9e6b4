package kv

import "fmt"

// Default and hard limits. Every limit is configurable below its hard cap.
const (
	DefaultMaxKeySize   = 16 << 10  // 16 KiB
	DefaultMaxValueSize = 1 << 20   // 1 MiB
	HardMaxValueSize    = 512 << 20 // 512 MiB, Redis's own proto-max-bulk-len
	HardMaxKeySize      = 1 << 20
	MaxNamespaceLen     = 64
	DefaultNamespace    = "default"
)

// Limits bound what a single request may carry. Front ends check them before
// allocating; storage checks them again so no path can bypass them.
type Limits struct {
	MaxKeySize   int
	MaxValueSize int
}

// DefaultLimits returns the default limits.
func DefaultLimits() Limits {
	return Limits{MaxKeySize: DefaultMaxKeySize, MaxValueSize: DefaultMaxValueSize}
}

// CheckKey returns a TOO_LARGE error if key is over the limit. The empty key
// is legal, as in Redis.
func (l Limits) CheckKey(key []byte) error {
	if len(key) > l.MaxKeySize {
		return Errorf(CodeTooLarge, "key is %d bytes, limit is %d", len(key), l.MaxKeySize)
	}
	return nil
}

// CheckValue returns a TOO_LARGE error if a value of n bytes is over the limit.
func (l Limits) CheckValue(n int) error {
	if n > l.MaxValueSize {
		return Errorf(CodeTooLarge, "value is %d bytes, limit is %d", n, l.MaxValueSize)
	}
	return nil
}

// ValidateNamespace reports whether name is a legal namespace name: 1 to 64
// characters from [A-Za-z0-9_.-]. Names are restricted so they can appear in
// URLs, metrics labels and file names without escaping.
func ValidateNamespace(name string) error {
	if name == "" {
		return Errorf(CodeInvalid, "empty namespace name")
	}
	if len(name) > MaxNamespaceLen {
		return Errorf(CodeInvalid, "namespace name is %d characters, limit is %d", len(name), MaxNamespaceLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return Errorf(CodeInvalid, "namespace name %q: character %q not allowed (use A-Z a-z 0-9 _ . -)", name, c)
		}
	}
	return nil
}

// String renders the limits for logs.
func (l Limits) String() string {
	return fmt.Sprintf("key<=%d value<=%d", l.MaxKeySize, l.MaxValueSize)
}
