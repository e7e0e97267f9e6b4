package bench

import (
	"context"
	"testing"
	"time"
)

// fakeClock jumps to whatever time the scheduler waits for; cost is added
// on every wait, standing for a generator that is slower than the rate.
type fakeClock struct {
	now  time.Time
	cost time.Duration
}

func (c *fakeClock) Now() time.Time { return c.now }

func (c *fakeClock) SleepUntil(_ context.Context, t time.Time) error {
	if c.now.Before(t) {
		c.now = t
	}
	c.now = c.now.Add(c.cost)
	return nil
}

func TestArrivalsKeepRate(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	for _, tc := range []struct {
		rate float64
		dur  time.Duration
		want int
	}{
		{1000, time.Second, 1000},
		{333, 3 * time.Second, 999},
		{50000, 100 * time.Millisecond, 5000},
		{0.5, 10 * time.Second, 5},
	} {
		clk := &fakeClock{now: start}
		out := make(chan time.Time, tc.want+1)
		lag, err := Arrivals(context.Background(), clk, start, start.Add(tc.dur), tc.rate, out)
		if err != nil {
			t.Fatal(err)
		}
		close(out)
		n := 0
		interval := float64(time.Second) / tc.rate
		for at := range out {
			if want := start.Add(time.Duration(float64(n) * interval)); !at.Equal(want) {
				t.Fatalf("rate %g: arrival %d intended at %v, want %v", tc.rate, n, at.Sub(start), want.Sub(start))
			}
			n++
		}
		if n != tc.want || lag.Sent != int64(tc.want) {
			t.Errorf("rate %g for %v: got %d arrivals (lag.Sent %d), want %d", tc.rate, tc.dur, n, lag.Sent, tc.want)
		}
		if lag.Late != 0 || lag.Max != 0 {
			t.Errorf("rate %g: got lag %+v, want none", tc.rate, lag)
		}
	}
}

func TestArrivalsReportFallingBehind(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	// Each hand-off costs 2ms at 1000/s: the generator ends about 1s late,
	// and keeps the intended times (it does not lower the offered rate).
	clk := &fakeClock{now: start, cost: 2 * time.Millisecond}
	out := make(chan time.Time, 2000)
	lag, err := Arrivals(context.Background(), clk, start, start.Add(time.Second), 1000, out)
	if err != nil {
		t.Fatal(err)
	}
	if lag.Sent != 1000 {
		t.Errorf("sent: got %d, want 1000", lag.Sent)
	}
	if lag.Late < 990 {
		t.Errorf("late: got %d, want at least 990", lag.Late)
	}
	if lag.Max < 990*time.Millisecond || lag.Max > 1010*time.Millisecond {
		t.Errorf("max lag: got %v, want about 1s", lag.Max)
	}
}

func TestArrivalsStopWithContext(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	out := make(chan time.Time) // nobody reads: only ctx can end the send
	_, err := Arrivals(ctx, &fakeClock{now: start}, start, start.Add(time.Hour), 10, out)
	if err == nil {
		t.Fatal("got nil error, want context.Canceled")
	}
}

func TestWallClockSpinNeverReturnsEarly(t *testing.T) {
	for _, spin := range []time.Duration{0, time.Hour} {
		c := WallClock{Spin: spin}
		target := c.Now().Add(2 * time.Millisecond)
		if err := c.SleepUntil(context.Background(), target); err != nil {
			t.Fatal(err)
		}
		if now := c.Now(); now.Before(target) {
			t.Errorf("spin %v: returned %v before the deadline", spin, target.Sub(now))
		}
	}
}
