package transport

import (
	"net"
	"syscall"
	"time"
)

// tcpUserTimeout is Linux's TCP_USER_TIMEOUT socket option (linux/tcp.h),
// which package syscall does not name.
const tcpUserTimeout = 0x12

// setUserTimeout makes the kernel reset conn when sent data stays
// unacknowledged for longer than d. Without it, a connection into a network
// partition keeps absorbing writes into its socket buffer and retransmits
// for up to ~15 minutes, so messages vanish without any error and recovery
// after the partition heals waits for retransmission backoff. With it, the
// writer sees an error, reconnects, and the queue bounds the loss.
func setUserTimeout(conn net.Conn, d time.Duration) {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return
	}
	raw.Control(func(fd uintptr) {
		// Best effort: without it, keepalives and WriteTimeout still apply.
		syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeout, int(d/time.Millisecond))
	})
}
