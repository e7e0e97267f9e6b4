package vip

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// lab is a set of network namespaces built with iproute2 for one test and
// deleted when it ends, however it ends.
type lab struct {
	t      *testing.T
	id     string  // random suffix that keeps parallel runs apart
	subnet [3]byte // the lab's 10.a.b.0/24
	ctx    context.Context
}

// newLab skips the test unless this process may create network
// namespaces, and otherwise returns an empty lab.
func newLab(t *testing.T, ctx context.Context) *lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: moving a virtual IP needs root (CAP_SYS_ADMIN for network namespaces, CAP_NET_ADMIN and CAP_NET_RAW inside them); .ci/run runs this test as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping: needs iproute2's ip command to build network namespaces")
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, seed>>1))
	return &lab{
		t:      t,
		ctx:    ctx,
		id:     fmt.Sprintf("%06x", r.Uint32()&0xffffff),
		subnet: [3]byte{10, byte(16 + r.IntN(224)), byte(r.IntN(256))},
	}
}

// addr returns 10.a.b.host in the lab's subnet.
func (l *lab) addr(host byte) netip.Addr {
	return netip.AddrFrom4([4]byte{l.subnet[0], l.subnet[1], l.subnet[2], host})
}

// ip runs iproute2's ip and fails the test with its output on error.
func (l *lab) ip(args ...string) {
	l.t.Helper()
	if out, err := l.tryIP(l.ctx, args...); err != nil {
		l.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func (l *lab) tryIP(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// netns creates a namespace named after role and deletes it at cleanup,
// which also destroys the interfaces inside it. The first namespace a lab
// cannot create skips the test: the environment does not permit it.
func (l *lab) netns(role string) string {
	l.t.Helper()
	name := "fvip-" + l.id + "-" + role
	if out, err := l.tryIP(l.ctx, "netns", "add", name); err != nil {
		l.t.Skipf("skipping: cannot create network namespace %s here (%v: %s); needs root with CAP_SYS_ADMIN, which .ci/run has", name, err, out)
	}
	l.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if out, err := l.tryIP(ctx, "netns", "del", name); err != nil {
			l.t.Errorf("delete namespace %s: %v: %s", name, err, out)
		}
	})
	l.ip("-n", name, "link", "set", "lo", "up")
	return name
}

// inNS runs fn on an OS thread that has entered the named namespace.
// Sockets fn opens belong to that namespace for their whole life. The
// thread is never unlocked, so it exits with its goroutine instead of
// going back to the scheduler in the wrong namespace or with the
// capabilities fn dropped.
func inNS(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		h, err := netns.GetFromName(name)
		if err != nil {
			errc <- fmt.Errorf("open namespace %s: %w", name, err)
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- fmt.Errorf("enter namespace %s: %w", name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// dropCaps removes capabilities from the calling thread's effective set.
// Linux checks capabilities per thread, so only the locked thread inNS
// runs fn on loses them.
func dropCaps(caps ...uint) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	for _, c := range caps {
		data[c/32].Effective &^= 1 << (c % 32)
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	return nil
}

// serve accepts TCP connections on port (0 picks one) in namespace ns and
// answers each with name, until the test ends. It returns the port.
func serve(t *testing.T, ns, name string, port int) int {
	t.Helper()
	var ln net.Listener
	err := inNS(ns, func() (err error) {
		ln, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", port))
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", ns, err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed at cleanup
			}
			_, _ = c.Write([]byte(name))
			_ = c.Close()
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	return ln.Addr().(*net.TCPAddr).Port
}

// whoAnswers connects from namespace ns to addr and returns what the
// server there says, within timeout.
func whoAnswers(ctx context.Context, ns string, addr netip.AddrPort, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var got string
	err := inNS(ns, func() error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp4", addr.String())
		if err != nil {
			return err
		}
		defer c.Close()
		deadline, _ := ctx.Deadline()
		if err := c.SetDeadline(deadline); err != nil {
			return err
		}
		b, err := io.ReadAll(c)
		got = string(b)
		return err
	})
	return got, err
}

// neighbour returns the MAC address namespace ns's neighbour cache holds
// for ip on interface dev, or nil if it has no entry.
func neighbour(ns, dev string, ip netip.Addr) (net.HardwareAddr, error) {
	var mac net.HardwareAddr
	err := inNS(ns, func() error {
		link, err := netlink.LinkByName(dev)
		if err != nil {
			return err
		}
		neighs, err := netlink.NeighList(link.Attrs().Index, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, n := range neighs {
			if n.IP.Equal(net.IP(ip.AsSlice())) {
				mac = n.HardwareAddr
			}
		}
		return nil
	})
	return mac, err
}

// macOf returns the MAC address of dev in namespace ns.
func macOf(t *testing.T, ns, dev string) net.HardwareAddr {
	t.Helper()
	var mac net.HardwareAddr
	err := inNS(ns, func() error {
		link, err := netlink.LinkByName(dev)
		if err != nil {
			return err
		}
		mac = link.Attrs().HardwareAddr
		return nil
	})
	if err != nil {
		t.Fatalf("MAC of %s in %s: %v", dev, ns, err)
	}
	return mac
}

// waitFor polls cond every 10ms until it holds or ctx ends.
func waitFor(ctx context.Context, cond func() (bool, error)) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// TestMove moves a virtual IP from node A to node B while a client C, on
// the same bridge, watches. Topology (C owns the bridge):
//
//	A eth0 .1 ── pa ┐
//	                ├ br0 .3  (C)
//	B eth0 .2 ── pb ┘
//
// C talks to the VIP (.100) at A, so its neighbour cache maps the VIP to
// A's MAC. After the move C connects again without flushing that cache:
// it reaches B only because B's gratuitous ARP updated the entry. A
// negative control shows the entry stays on A's MAC until B announces.
func TestMove(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	l := newLab(t, ctx)
	nsA, nsB, nsC := l.netns("a"), l.netns("b"), l.netns("c")
	l.ip("-n", nsC, "link", "add", "br0", "type", "bridge")
	l.ip("-n", nsC, "addr", "add", l.addr(3).String()+"/24", "dev", "br0")
	l.ip("-n", nsC, "link", "set", "br0", "up")
	for i, node := range []string{nsA, nsB} {
		port := "p" + string(rune('a'+i))
		l.ip("-n", node, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", nsC)
		l.ip("-n", nsC, "link", "set", port, "master", "br0", "up")
		l.ip("-n", node, "addr", "add", l.addr(byte(1+i)).String()+"/24", "dev", "eth0")
		l.ip("-n", node, "link", "set", "eth0", "up")
	}
	macA, macB := macOf(t, nsA, "eth0"), macOf(t, nsB, "eth0")
	port := serve(t, nsA, "A", 0)
	serve(t, nsB, "B", port)

	vipAddr := l.addr(100)
	vip := netip.AddrPortFrom(vipAddr, uint16(port))
	cfg := DefaultConfig()
	cfg.Address = netip.PrefixFrom(vipAddr, 24)
	cfg.Interface = "eth0"
	owner, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// One Owner value serves both nodes: it keeps no state, and each call
	// acts in the namespace of the thread it runs on.
	at := func(ns string, what string, f func() error) {
		t.Helper()
		if err := inNS(ns, f); err != nil {
			t.Fatalf("%s in %s: %v", what, ns, err)
		}
	}
	held := func(ns string) bool {
		t.Helper()
		var h bool
		at(ns, "Held", func() (err error) { h, err = owner.Held(); return err })
		return h
	}
	t.Logf("VIP %v, client %v on a bridge with A %v and B %v", cfg.Address, l.addr(3), l.addr(1), l.addr(2))

	// A takes the address; C reaches A through it.
	at(nsA, "Acquire", func() error { return owner.Acquire(ctx) })
	if !held(nsA) || held(nsB) {
		t.Fatalf("after A acquired: held at A %v, at B %v; want true, false", held(nsA), held(nsB))
	}
	var got string
	err = waitFor(ctx, func() (bool, error) {
		// Retried only while the bridge's ports come up.
		var err error
		got, err = whoAnswers(ctx, nsC, vip, time.Second)
		return err == nil, err
	})
	if err != nil || got != "A" {
		t.Fatalf("C connects to %v: got %q, %v; want A", vip, got, err)
	}
	if mac, err := neighbour(nsC, "br0", vipAddr); err != nil || mac.String() != macA.String() {
		t.Fatalf("C's neighbour entry for the VIP: got %v, %v; want A's %v", mac, err, macA)
	}

	// A lets go (twice: idempotent); B adds the address without telling
	// anyone. C's cache still sends the VIP's traffic to A.
	at(nsA, "Release", func() error { return owner.Release(ctx) })
	at(nsA, "second Release", func() error { return owner.Release(ctx) })
	if held(nsA) {
		t.Fatal("A still holds the VIP after Release")
	}
	at(nsB, "add", owner.add)
	if mac, err := neighbour(nsC, "br0", vipAddr); err != nil || mac.String() != macA.String() {
		t.Fatalf("C's entry before B announces: got %v, %v; want still A's %v (the cache the announcement must fix)", mac, err, macA)
	}

	// B acquires (the address is there; Acquire announces). C's entry
	// moves to B's MAC, and C reaches B at once. A watcher times the move
	// while Acquire is still sending its later rounds.
	start := time.Now()
	var updated time.Duration
	var watchErr error
	var watch sync.WaitGroup
	watch.Go(func() {
		watchErr = waitFor(ctx, func() (bool, error) {
			mac, err := neighbour(nsC, "br0", vipAddr)
			return err == nil && mac.String() == macB.String(), err
		})
		updated = time.Since(start)
	})
	at(nsB, "Acquire", func() error { return owner.Acquire(ctx) })
	acquired := time.Since(start)
	watch.Wait()
	if watchErr != nil {
		mac, _ := neighbour(nsC, "br0", vipAddr)
		t.Fatalf("C's entry after B announced: got %v (%v); want B's %v", mac, watchErr, macB)
	}
	if got, err := whoAnswers(ctx, nsC, vip, 2*time.Second); err != nil || got != "B" {
		t.Fatalf("C connects to %v after the move: got %q, %v; want B", vip, got, err)
	}
	t.Logf("C's neighbour entry moved to B %v after B's Acquire started; Acquire (%d rounds, %v apart) took %v",
		updated.Round(100*time.Microsecond), cfg.Announcements, cfg.AnnounceInterval, acquired.Round(time.Millisecond))

	at(nsB, "Release", func() error { return owner.Release(ctx) })
	if held(nsB) {
		t.Fatal("B still holds the VIP after Release")
	}
}

// TestErrors checks the errors callers branch on, in a namespace with a
// veth pair: missing privilege (dropped from the calling thread),
// a missing interface, a conflicting prefix, and announcing an address
// not held.
func TestErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	l := newLab(t, ctx)
	ns := l.netns("x")
	l.ip("-n", ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
	l.ip("-n", ns, "link", "set", "v0", "up")
	l.ip("-n", ns, "link", "set", "v1", "up")

	owner := func(prefix, dev string) *Owner {
		cfg := DefaultConfig()
		cfg.Address = netip.MustParsePrefix(prefix)
		cfg.Interface = dev
		cfg.AnnounceInterval = time.Millisecond
		o, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	vip := owner(l.addr(100).String()+"/24", "v0")
	check := func(name string, want error, f func() error) {
		t.Helper()
		if err := inNS(ns, f); !errors.Is(err, want) {
			t.Errorf("%s: got %v, want %v", name, err, want)
		}
	}
	heldIs := func(name string, want bool) {
		t.Helper()
		check(name, nil, func() error {
			h, err := vip.Held()
			if err == nil && h != want {
				err = fmt.Errorf("held %v, want %v", h, want)
			}
			return err
		})
	}

	check("Acquire without CAP_NET_ADMIN", ErrNotPermitted, func() error {
		if err := dropCaps(unix.CAP_NET_ADMIN); err != nil {
			return err
		}
		return vip.Acquire(ctx)
	})
	heldIs("Held after a refused Acquire", false)
	check("Announce before Acquire", ErrNotHeld, func() error { return vip.Announce(ctx) })

	check("Acquire", nil, func() error { return vip.Acquire(ctx) })
	check("Acquire without CAP_NET_RAW", ErrNotPermitted, func() error {
		if err := dropCaps(unix.CAP_NET_RAW); err != nil {
			return err
		}
		return vip.Acquire(ctx)
	})
	check("Release without CAP_NET_ADMIN", ErrNotPermitted, func() error {
		if err := dropCaps(unix.CAP_NET_ADMIN); err != nil {
			return err
		}
		return vip.Release(ctx)
	})
	heldIs("Held after a refused Release", true)
	check("Release", nil, func() error { return vip.Release(ctx) })
	heldIs("Held after Release", false)

	check("missing interface", ErrNoInterface, func() error {
		return owner(l.addr(100).String()+"/24", "nosuch0").Acquire(ctx)
	})

	other := l.addr(101)
	l.ip("-n", ns, "addr", "add", other.String()+"/32", "dev", "v0")
	conflict := owner(other.String()+"/24", "v0")
	check("Acquire over a /32", ErrConflict, func() error { return conflict.Acquire(ctx) })
	check("Release over a /32", ErrConflict, func() error { return conflict.Release(ctx) })

	// Loopback does not use ARP: the address is added, nothing is sent.
	lo := owner(l.addr(102).String()+"/32", "lo")
	check("Acquire on lo", nil, func() error { return lo.Acquire(ctx) })
	check("Release on lo", nil, func() error { return lo.Release(ctx) })

	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	check("Acquire with a cancelled context", context.Canceled, func() error { return vip.Acquire(cctx) })
}
