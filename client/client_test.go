package client

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestRetryable(t *testing.T) {
	opErr := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	for _, tc := range []struct {
		err        error
		read, want bool
	}{
		{nil, true, false},
		{redis.Nil, true, false},
		{errors.New("NOT_LEADER shard 0: not the primary"), false, true},
		{errors.New("STALE_EPOCH epoch 3, current 4"), false, true},
		{errors.New("UNAVAILABLE shard 7: lease lost: epoch 2 window ended 3ms ago"), false, true},
		{errors.New("UNAVAILABLE shard 0 of \"o\": no primary (a failover is under way)"), false, true},
		{errors.New("UNAVAILABLE not enough in-sync replicas: have 0, need 1"), false, false},
		{errors.New("INVALID bad"), true, false},
		{opErr, true, true},
		{opErr, false, false}, // a write whose connection failed: outcome unknown
		{redis.ErrClosed, false, true},
	} {
		if got := retryable(tc.err, tc.read); got != tc.want {
			t.Errorf("retryable(%v, read=%v) = %v, want %v", tc.err, tc.read, got, tc.want)
		}
	}
}

func TestNewNeedsAMember(t *testing.T) {
	if _, err := New(context.Background(), Options{Namespace: "x"}); err == nil {
		t.Error("New without nodes: no error")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := New(ctx, Options{Nodes: []string{"http://127.0.0.1:1"}, Namespace: "x", Poll: 50 * time.Millisecond}); err == nil {
		t.Error("New with no member answering: no error")
	}
}
