package transport

import (
	"net"
	"syscall"
	"testing"
	"time"
)

func TestUserTimeoutSet(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	setUserTimeout(conn, 1500*time.Millisecond)
	raw, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var got int
	var gerr error
	raw.Control(func(fd uintptr) {
		got, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeout)
	})
	if gerr != nil || got != 1500 {
		t.Errorf("TCP_USER_TIMEOUT = %d (%v), want 1500", got, gerr)
	}
}
