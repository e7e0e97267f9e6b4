//go:build !linux

package vip

import (
	"context"
	"fmt"
)

// Acquire returns ErrNotSupported: only Linux can take over the address.
func (o *Owner) Acquire(ctx context.Context) error {
	return fmt.Errorf("acquire %v: %w", o, ErrNotSupported)
}

// Release returns ErrNotSupported.
func (o *Owner) Release(ctx context.Context) error {
	return fmt.Errorf("release %v: %w", o, ErrNotSupported)
}

// Held returns ErrNotSupported.
func (o *Owner) Held() (bool, error) {
	return false, fmt.Errorf("check %v: %w", o, ErrNotSupported)
}

// Announce returns ErrNotSupported.
func (o *Owner) Announce(ctx context.Context) error {
	return fmt.Errorf("announce %v: %w", o, ErrNotSupported)
}
