package vip

import (
	"errors"
	"fmt"
)

// Errors callers branch on.
var (
	// ErrNotPermitted is wrapped when the kernel refuses for lack of
	// privilege (EPERM or EACCES): the process needs CAP_NET_ADMIN and
	// CAP_NET_RAW in the interface's network namespace. Callers fall back
	// to clients following the active node.
	ErrNotPermitted = errors.New("not permitted to manage the virtual IP (needs CAP_NET_ADMIN and CAP_NET_RAW)")
	// ErrNotSupported is wrapped by every method on systems other than
	// Linux. Callers fall back as for ErrNotPermitted.
	ErrNotSupported = errors.New("virtual IP takeover is supported only on Linux")
	// ErrNoInterface is wrapped when the configured interface does not
	// exist.
	ErrNoInterface = errors.New("no such network interface")
	// ErrConflict is wrapped when the interface carries the address with
	// a different prefix length than configured: someone else put it
	// there, and the Owner touches it neither to add nor to remove.
	ErrConflict = errors.New("address present with a different prefix length")
	// ErrNotHeld is returned by Announce when the interface lacks the
	// address: announcing an address this host does not hold would draw
	// the traffic away from the node that does.
	ErrNotHeld = errors.New("address not held")
)

// Owner adds, removes and announces one virtual IP on one interface. It
// keeps no state beyond its Config; its methods are safe for concurrent
// use, though racing Acquire against Release leaves whichever the kernel
// applies last.
type Owner struct {
	cfg Config
}

// New validates cfg and returns an Owner for it. It touches nothing: the
// interface need not exist yet.
func New(cfg Config) (*Owner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Owner{cfg: cfg}, nil
}

// Config returns the Owner's configuration.
func (o *Owner) Config() Config { return o.cfg }

// String names the address and the interface, for error messages.
func (o *Owner) String() string {
	return fmt.Sprintf("%v on %s", o.cfg.Address, o.cfg.Interface)
}
