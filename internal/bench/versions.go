package bench

import (
	"errors"
	"fmt"
)

// ErrConflict is what a Conn stores for an OpCAS whose precondition did
// not hold: the key moved (another client wrote or deleted it) since this
// client last saw it. It is a normal outcome of a CAS, counted per run as
// a conflict, not as an error.
var ErrConflict = errors.New("cas precondition failed")

// casTarget marks the targets whose connections carry OpCAS.
type casTarget interface{ casCapable() }

var (
	_ casTarget = (*HTTPTarget)(nil)
	_ casTarget = (*EtcdTarget)(nil)
)

// CheckTarget reports whether t can run every operation of w. A CAS needs
// the key's version: Fulcrum's HTTP API has If-Match and etcd a Txn on
// ModRevision, but RESP carries no versions (and Fulcrum's RESP front end
// has no WATCH), so a resp target cannot run CASes. A fake CAS (a plain
// SET) would measure something else, so it is refused instead.
func CheckTarget(t Target, w Workload) error {
	if _, ok := t.(casTarget); w.CASRatio > 0 && !ok {
		return fmt.Errorf("target %s: cas needs an http or etcd target (%s has no compare-and-set)", t.Name(), t.Kind())
	}
	return nil
}

// maxSeen bounds a client's version cache; past it an arbitrary entry is
// dropped, and that key's next CAS reads it first.
const maxSeen = 4096

// seen is what a client last saw of a key.
type seen struct {
	version uint64 // the key's version (etcd: its ModRevision)
	exists  bool
}

// versionCache is one client's last seen version of the keys it touched,
// the input of its CASes. A nil cache records nothing: a connection makes
// one at its first CAS, so workloads without CASes pay nothing for it.
type versionCache struct {
	m map[string]seen
}

func newVersionCache() *versionCache { return &versionCache{m: make(map[string]seen)} }

func (c *versionCache) get(key []byte) (seen, bool) {
	if c == nil {
		return seen{}, false
	}
	s, ok := c.m[string(key)]
	return s, ok
}

func (c *versionCache) set(key []byte, s seen) {
	if c == nil {
		return
	}
	if _, ok := c.m[string(key)]; !ok && len(c.m) >= maxSeen {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[string(key)] = s
}

func (c *versionCache) forget(key []byte) {
	if c != nil {
		delete(c.m, string(key))
	}
}
