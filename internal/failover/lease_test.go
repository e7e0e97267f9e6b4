package failover

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

const ms = int64(time.Millisecond)

func TestHolderWindow(t *testing.T) {
	l := Lease{Holder: 1, Epoch: 4, Granted: 5_000 * ms, Duration: time.Second}
	for _, tc := range []struct {
		name        string
		sentAt, now int64
		drift       time.Duration
		wantUntil   int64
		wantLost    bool
	}{
		{"no drift, just before", 100 * ms, 1100*ms - 1, 0, 1100 * ms, false},
		{"no drift, at the end", 100 * ms, 1100 * ms, 0, 1100 * ms, true},
		{"drift shortens the window", 100 * ms, 1000*ms - 1, 100 * time.Millisecond, 1000 * ms, false},
		{"drift, at the shortened end", 100 * ms, 1000 * ms, 100 * time.Millisecond, 1000 * ms, true},
		{"long after", 100 * ms, 9000 * ms, 100 * time.Millisecond, 1000 * ms, true},
		// The holder's clock has its own origin: Granted (5s on the control
		// plane's clock) plays no part.
		{"negative local clock", -3000 * ms, -2001 * ms, 0, -2000 * ms, false},
		{"drift as large as the lease", 100 * ms, 100 * ms, time.Second, 100 * ms, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := l.HolderValidUntil(tc.sentAt, tc.drift); got != tc.wantUntil {
				t.Fatalf("HolderValidUntil: got %d, want %d", got, tc.wantUntil)
			}
			err := l.HolderCheck(tc.now, tc.sentAt, tc.drift)
			if got := errors.Is(err, ErrLeaseLost); got != tc.wantLost {
				t.Fatalf("HolderCheck: got %v, want lost=%v", err, tc.wantLost)
			}
		})
	}
}

func TestControlPlaneExpiry(t *testing.T) {
	l := Lease{Holder: 1, Epoch: 4, Granted: 5_000 * ms, Duration: time.Second}
	for _, tc := range []struct {
		now     int64
		margin  time.Duration
		wantAt  int64
		expired bool
	}{
		{6000*ms - 1, 0, 6000 * ms, false},
		{6000 * ms, 0, 6000 * ms, true},
		{6000 * ms, 100 * time.Millisecond, 6100 * ms, false},
		{6100 * ms, 100 * time.Millisecond, 6100 * ms, true},
	} {
		if got := l.ExpiredAt(tc.margin); got != tc.wantAt {
			t.Fatalf("ExpiredAt(%v): got %d, want %d", tc.margin, got, tc.wantAt)
		}
		if got := l.Expired(tc.now, tc.margin); got != tc.expired {
			t.Fatalf("Expired(%d, %v): got %v, want %v", tc.now, tc.margin, got, tc.expired)
		}
	}
}

func TestRenew(t *testing.T) {
	cur := Lease{Holder: 2, Epoch: 5, Granted: 1000, Duration: time.Second}
	for _, tc := range []struct {
		name    string
		holder  NodeID
		epoch   Epoch
		now     int64
		want    Lease
		wantErr error
	}{
		{"renewed", 2, 5, 1500, Lease{2, 5, 1500, 2 * time.Second}, nil},
		{"renewed after expiry: nobody else was promoted", 2, 5, 900_000, Lease{2, 5, 900_000, 2 * time.Second}, nil},
		{"granted never moves back", 2, 5, 10, Lease{2, 5, 1000, 2 * time.Second}, nil},
		{"old epoch", 2, 4, 1500, cur, ErrStaleEpoch},
		{"someone else", 3, 5, 1500, cur, ErrNotHolder},
		{"future epoch", 2, 6, 1500, cur, ErrNotHolder},
		{"no node", 0, 5, 1500, cur, ErrNotHolder},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Renew(cur, tc.holder, tc.epoch, tc.now, 2*time.Second)
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("got error %v, want %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// clockModel is the holder's clock against the control plane's, which the
// test takes as real time: from the send, the holder's clock advances at
// rate num1/d for p nanoseconds, then at num2/d. Rates no lower than
// (d-drift)/d satisfy the drift bound: over any span of d the holder's
// clock advances by at least d-drift.
type clockModel struct{ d, p, num1, num2 int64 }

// elapsed is how far the holder's clock has moved real nanoseconds after
// the send. A single floor keeps it a faithful lower-rounded reading.
func (c clockModel) elapsed(real int64) int64 {
	a := min(real, c.p)
	return (a*c.num1 + (real-a)*c.num2) / c.d
}

// stop is the first real offset from the send at which the holder may no
// longer write under a window of w on its own clock, or 4d if it may write
// all that time (longer than any re-grant in these tests is away).
func (c clockModel) stop(w int64) int64 {
	lo, hi := int64(0), 4*c.d
	for lo < hi {
		mid := lo + (hi-lo)/2
		if c.elapsed(mid) >= w {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// TestLeaseBoundary shows the bound is tight: a holder clock exactly at
// the drift bound stops one nanosecond before the control plane may
// re-grant; one slower than the bound overlaps.
func TestLeaseBoundary(t *testing.T) {
	const d = int64(time.Second)
	for _, tc := range []struct {
		name    string
		drift   time.Duration
		rateNum int64 // holder rate = rateNum/d
		overlap bool
	}{
		{"exact clocks, no drift budget", 0, d, false},
		{"exact clocks, drift budget", 100 * time.Millisecond, d, false},
		{"slow holder at the bound", 100 * time.Millisecond, d - 100*ms, false},
		{"fast holder", 100 * time.Millisecond, d + 300*ms, false},
		{"slow holder beyond the bound", 100 * time.Millisecond, d - 101*ms, true},
		{"slow holder, no drift budget", 0, d - 1*ms, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const sendReal, sentAt = 7 * d, -42 * d                                        // offsets are irrelevant
			l := Lease{Holder: 1, Epoch: 1, Granted: sendReal, Duration: time.Duration(d)} // no request delay
			c := clockModel{d: d, p: d, num1: tc.rateNum, num2: tc.rateNum}
			stop := c.stop(l.HolderValidUntil(sentAt, tc.drift) - sentAt)
			lastWrite := sendReal + stop - 1
			if err := l.HolderCheck(sentAt+c.elapsed(stop-1), sentAt, tc.drift); err != nil {
				t.Fatalf("holder refused its last write: %v", err)
			}
			regrant := l.ExpiredAt(0)
			if got := lastWrite >= regrant; got != tc.overlap {
				t.Fatalf("last write at %d, re-grant at %d: got overlap=%v, want %v", lastWrite, regrant, got, tc.overlap)
			}
		})
	}
}

// TestLeaseNoOverlap: for any lease, drift bound, margin, request delay
// and holder clock within the bound, the holder's last write comes
// strictly before the control plane may grant the lease to another node.
func TestLeaseNoOverlap(t *testing.T) {
	seed := rand.Uint64()
	rng := rand.New(rand.NewPCG(seed, 1))
	for i := range 20000 {
		d := 1 + rng.Int64N(int64(time.Second))
		var drift int64
		switch rng.IntN(4) {
		case 0: // none
		case 1:
			drift = d - 1 // almost the whole lease
		default:
			drift = rng.Int64N(d)
		}
		var margin int64
		if rng.IntN(2) == 0 {
			margin = rng.Int64N(drift + 1)
		}
		rate := func() int64 {
			if rng.IntN(4) == 0 {
				return d - drift // exactly at the bound
			}
			return d - drift + rng.Int64N(drift+d+1) // up to twice as fast as real time
		}
		c := clockModel{d: d, p: rng.Int64N(d + 1), num1: rate(), num2: rate()}
		sendReal := rng.Int64N(1 << 50)
		sentAt := rng.Int64N(1<<50) - 1<<49
		var delay int64
		if rng.IntN(3) > 0 {
			delay = rng.Int64N(2 * d)
		}
		l := Lease{Holder: 1, Epoch: 1, Granted: sendReal + delay, Duration: time.Duration(d)}

		w := l.HolderValidUntil(sentAt, time.Duration(drift)) - sentAt
		stop := c.stop(w)
		if stop > 0 && l.HolderCheck(sentAt+c.elapsed(stop-1), sentAt, time.Duration(drift)) != nil {
			t.Fatalf("seed %d case %d: holder refused a write before its window ended", seed, i)
		}
		if c.elapsed(stop) >= w && l.HolderCheck(sentAt+c.elapsed(stop), sentAt, time.Duration(drift)) == nil {
			t.Fatalf("seed %d case %d: holder accepted a write after its window ended", seed, i)
		}
		lastWrite, regrant := sendReal+stop-1, l.ExpiredAt(time.Duration(margin))
		if lastWrite >= regrant {
			t.Fatalf("seed %d case %d: d=%d drift=%d margin=%d delay=%d clock=%+v: got last write at %d, re-grant at %d, want the write first",
				seed, i, d, drift, margin, delay, c, lastWrite, regrant)
		}
	}
}
