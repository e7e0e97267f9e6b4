package failbench

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Client is one writer connection to the system under test. It handles
// its own failures as a real client would (reconnect, ask where the
// primary is); the writer only counts what it answered.
type Client interface {
	// Set writes value under key; nil means the system acknowledged it.
	Set(ctx context.Context, key, value string) error
	Close() error
}

// writer issues SETs of unique keys at a fixed rate over its clients (one
// request in flight per client) and records every one. It owns its
// goroutines: stop ends them and waits.
type writer struct {
	origin time.Time
	cancel context.CancelFunc // stops the ticker
	wg     sync.WaitGroup

	skipped atomic.Int64
	// ackedSent is the latest Sent offset (ns) of an acknowledged write,
	// or -1; acked is nudged after each acknowledgement so a waiter can
	// look at it again.
	ackedSent atomic.Int64
	acked     chan struct{}

	ops [][]Op // per client; each written only by its worker until wg is done
}

// startWriter starts writing at rate writes a second over clients, keys
// prefix followed by a sequence number. Requests run under reqCtx, each
// bounded by timeout; stop lets those in flight finish. Times are offsets
// from origin.
func startWriter(reqCtx context.Context, clients []Client, rate int, timeout time.Duration, prefix string, origin time.Time) *writer {
	tickCtx, cancel := context.WithCancel(reqCtx)
	w := &writer{origin: origin, cancel: cancel, acked: make(chan struct{}, 1), ops: make([][]Op, len(clients))}
	w.ackedSent.Store(-1)
	jobs := make(chan int)
	w.wg.Add(1)
	go func() {
		// The ticker: ends when stop cancels tickCtx, then closes jobs so
		// the workers end once their request in flight is done.
		defer w.wg.Done()
		defer close(jobs)
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		seq := 0
		for {
			select {
			case <-tickCtx.Done():
				return
			case <-tick.C:
			}
			select {
			case jobs <- seq:
				seq++
			default:
				w.skipped.Add(1) // open loop: every connection busy, the tick is dropped
			}
		}
	}()
	for i, c := range clients {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for seq := range jobs {
				w.ops[i] = append(w.ops[i], w.write(reqCtx, c, timeout, prefix, seq))
			}
		}()
	}
	return w
}

func (w *writer) write(ctx context.Context, c Client, timeout time.Duration, prefix string, seq int) Op {
	op := Op{Seq: seq, Key: fmt.Sprintf("%s%07d", prefix, seq)}
	op.Value = "val:" + op.Key
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	op.Sent = time.Since(w.origin)
	err := c.Set(ctx, op.Key, op.Value)
	op.Done = time.Since(w.origin)
	if err != nil {
		op.Err = err.Error()
		return op
	}
	op.Acked = true
	for {
		cur := w.ackedSent.Load()
		if int64(op.Sent) <= cur || w.ackedSent.CompareAndSwap(cur, int64(op.Sent)) {
			break
		}
	}
	select {
	case w.acked <- struct{}{}:
	default:
	}
	return op
}

// waitAckedSince waits until a write sent at or after since (an offset
// from origin) is acknowledged, and reports whether one was before limit
// passed or ctx ended.
func (w *writer) waitAckedSince(ctx context.Context, since, limit time.Duration) bool {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for time.Duration(w.ackedSent.Load()) < since {
		select {
		case <-w.acked:
		case <-deadline.C:
			return time.Duration(w.ackedSent.Load()) >= since
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// stop stops issuing writes, waits for those in flight, and returns every
// write in sequence order and the number of skipped ticks.
func (w *writer) stop() ([]Op, int) {
	w.cancel()
	w.wg.Wait()
	var all []Op
	for _, ops := range w.ops {
		all = append(all, ops...)
	}
	slices.SortFunc(all, func(a, b Op) int { return a.Seq - b.Seq })
	return all, int(w.skipped.Load())
}
