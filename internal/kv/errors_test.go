package kv

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
)

func TestErrorIsMatchesByCode(t *testing.T) {
	err := fmt.Errorf("put: %w", Errorf(CodeTooLarge, "value is %d bytes", 10))
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("errors.Is(%v, ErrTooLarge) = false, want true", err)
	}
	if errors.Is(err, ErrUnavailable) {
		t.Fatalf("errors.Is(%v, ErrUnavailable) = true, want false", err)
	}
	if got := CodeOf(err); got != CodeTooLarge {
		t.Fatalf("CodeOf = %s, want TOO_LARGE", got)
	}
	if got := err.Error(); got != "put: TOO_LARGE value is 10 bytes" {
		t.Fatalf("got %q", got)
	}
}

func TestCodeOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want Code
	}{
		{context.DeadlineExceeded, CodeTimeout},
		{fmt.Errorf("x: %w", ErrNotInteger), CodeInvalid},
		{errors.New("disk on fire"), CodeInternal},
		{Errorf(CodeUnavailable, "no quorum"), CodeUnavailable},
	} {
		if got := CodeOf(tc.err); got != tc.want {
			t.Errorf("CodeOf(%v) = %s, want %s", tc.err, got, tc.want)
		}
	}
	if CodeTooLarge.HTTPStatus() != http.StatusRequestEntityTooLarge || CodeConflict.HTTPStatus() != http.StatusPreconditionFailed {
		t.Fatal("wrong HTTP status mapping")
	}
}

func TestValidateNamespace(t *testing.T) {
	for _, ok := range []string{"default", "a", "A-b_c.9"} {
		if err := ValidateNamespace(ok); err != nil {
			t.Errorf("ValidateNamespace(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", "a/b", "a b", "ü", string(make([]byte, 65))} {
		if err := ValidateNamespace(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidateNamespace(%q) = %v, want INVALID", bad, err)
		}
	}
}

func TestLimits(t *testing.T) {
	l := Limits{MaxKeySize: 4, MaxValueSize: 8}
	if err := l.CheckKey([]byte("abcd")); err != nil {
		t.Fatal(err)
	}
	if err := l.CheckKey([]byte("abcde")); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want TOO_LARGE", err)
	}
	if err := l.CheckValue(9); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want TOO_LARGE", err)
	}
}

func TestNotAdmittedKeepsCodeAndMessage(t *testing.T) {
	if NotAdmitted(nil) != nil {
		t.Fatal("NotAdmitted(nil) != nil")
	}
	inner := Errorf(CodeUnavailable, "shard 1: lease lost")
	err := NotAdmitted(inner)
	if !errors.Is(err, ErrNotAdmitted) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("%v: errors.Is ErrNotAdmitted %v, ErrUnavailable %v", err, errors.Is(err, ErrNotAdmitted), errors.Is(err, ErrUnavailable))
	}
	if CodeOf(err) != CodeUnavailable || err.Error() != inner.Error() {
		t.Fatalf("code %s message %q, want %s %q", CodeOf(err), err.Error(), CodeUnavailable, inner.Error())
	}
}
