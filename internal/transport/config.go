package transport

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"time"
)

// TCPConfig configures a TCP endpoint. NewTCP copies it and gives zero fields
// the values of DefaultTCPConfig.
type TCPConfig struct {
	// ID is this node's id. Required, not zero.
	ID NodeID
	// ListenAddr is the address to listen on, such as ":7400". ":0" picks a
	// free port; TCP.Addr reports it.
	ListenAddr string
	// ClusterID names the cluster. Both sides of a connection must agree, so
	// nodes of two clusters never exchange messages by mistake; a peer with
	// another id is refused and the refusal logged. At most 255 bytes.
	ClusterID string
	// Resolve returns a peer's current address. It is called again before
	// every connection attempt, so addresses may change at runtime (the
	// control plane updates them). Required; it must be safe for concurrent
	// use and must not block (no I/O).
	Resolve func(NodeID) (string, bool)
	// QueueSize bounds each peer's outbound queue, in messages. While the
	// peer is unreachable, one-way messages accumulate up to it; beyond it
	// Send returns ErrQueueFull. Default 4096.
	QueueSize int
	// SourceIP, when set, is the local address outbound connections to
	// peers come from (the peer address's host on a multi-homed machine),
	// so peer traffic can be told apart, and firewalled, by address.
	SourceIP string
	// DialTimeout bounds one connection attempt, handshake included.
	// Default 2 s.
	DialTimeout time.Duration
	// WriteTimeout bounds one batched write: a peer that stops reading for
	// longer loses the connection (and the Calls pending on it). Default 10 s.
	WriteTimeout time.Duration
	// MaxFrame bounds a frame's body, in both directions. Send and Call
	// refuse a bigger message with ErrFrameTooLarge; a bigger frame received
	// resets the connection. Default 64 MiB.
	MaxFrame int
	// MessageTTL: a one-way message older than this when the writer reaches
	// it is dropped and counted (DroppedExpired), so a reconnect does not
	// flood the peer with stale Raft traffic. Default 5 s.
	MessageTTL time.Duration
	// MaxServe bounds the Serve calls running at once for one inbound
	// connection; at the bound, the connection's reader waits. Default 256.
	MaxServe int
	// Logger receives connection events (connected, lost, refused). Default:
	// discard.
	Logger *slog.Logger
}

// DefaultTCPConfig returns the defaults; the caller sets ID, ListenAddr,
// ClusterID and Resolve.
func DefaultTCPConfig() TCPConfig {
	return TCPConfig{
		QueueSize:    4096,
		DialTimeout:  2 * time.Second,
		WriteTimeout: 10 * time.Second,
		MaxFrame:     64 << 20,
		MessageTTL:   5 * time.Second,
		MaxServe:     256,
	}
}

// minFrame is the smallest MaxFrame accepted: room for any header and an
// error reply's message.
const minFrame = 2 * maxErrorMessage

func (c TCPConfig) withDefaults() TCPConfig {
	d := DefaultTCPConfig()
	if c.QueueSize == 0 {
		c.QueueSize = d.QueueSize
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = d.DialTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = d.WriteTimeout
	}
	if c.MaxFrame == 0 {
		c.MaxFrame = d.MaxFrame
	}
	if c.MessageTTL == 0 {
		c.MessageTTL = d.MessageTTL
	}
	if c.MaxServe == 0 {
		c.MaxServe = d.MaxServe
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports the first field that is out of range.
func (c TCPConfig) Validate() error {
	var err error
	switch {
	case c.ID == 0:
		err = errors.New("node id is zero")
	case c.Resolve == nil:
		err = errors.New("no Resolve function")
	case len(c.ClusterID) > maxClusterID:
		err = fmt.Errorf("cluster id is %d bytes, limit %d", len(c.ClusterID), maxClusterID)
	case c.QueueSize < 1:
		err = fmt.Errorf("queue size %d < 1", c.QueueSize)
	case c.DialTimeout < 0 || c.WriteTimeout < 0 || c.MessageTTL < 0:
		err = errors.New("negative timeout")
	case c.MaxFrame < minFrame || int64(c.MaxFrame) > math.MaxUint32:
		err = fmt.Errorf("max frame %d outside [%d, %d]", c.MaxFrame, minFrame, uint64(math.MaxUint32))
	case c.MaxServe < 1:
		err = fmt.Errorf("max serve %d < 1", c.MaxServe)
	case c.SourceIP != "" && net.ParseIP(c.SourceIP) == nil:
		err = fmt.Errorf("source ip %q is not an IP address", c.SourceIP)
	}
	if err != nil {
		return fmt.Errorf("transport: invalid config: %w", err)
	}
	return nil
}
