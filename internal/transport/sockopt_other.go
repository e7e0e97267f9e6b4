//go:build !linux

package transport

import (
	"net"
	"time"
)

// setUserTimeout does nothing outside Linux: keepalives and WriteTimeout
// bound dead connections there.
func setUserTimeout(net.Conn, time.Duration) {}
