package bench

import (
	"context"
	"runtime"
	"time"
)

// Clock is the time source of the open-loop scheduler; tests inject a fake
// one so that the rate is checked without the wall clock.
type Clock interface {
	Now() time.Time
	// SleepUntil returns when the clock reads t or later, or when ctx ends.
	SleepUntil(ctx context.Context, t time.Time) error
}

// WallClock is the real clock.
type WallClock struct {
	// Spin is how long before a deadline SleepUntil stops sleeping and
	// polls the clock instead. Go's timers can wake up to a millisecond
	// late on an idle process, and in open loop that lateness counts as
	// latency; spinning buys precision with CPU time. 0 = never spin.
	Spin time.Duration
}

// Now implements Clock.
func (WallClock) Now() time.Time { return time.Now() }

// SleepUntil implements Clock.
func (c WallClock) SleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t) - c.Spin
	if d <= 0 {
		for time.Now().Before(t) && ctx.Err() == nil {
			runtime.Gosched()
		}
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return c.SleepUntil(ctx, t)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Lag is how far an open-loop generator fell behind its schedule: the
// delay between a request's intended start and its hand-off to a client.
type Lag struct {
	Sent  int64         // arrivals handed off
	Late  int64         // arrivals handed off more than LateAfter after their intended time
	Max   time.Duration // worst delay
	Total time.Duration // sum of delays, for the mean
}

// LateAfter is the delay from which an arrival counts as late.
const LateAfter = time.Millisecond

// Add merges o into l.
func (l *Lag) Add(o Lag) {
	l.Sent += o.Sent
	l.Late += o.Late
	l.Total += o.Total
	l.Max = max(l.Max, o.Max)
}

// Arrivals sends the intended start time of each request to out, at rate
// per second from start until end: the i-th request is intended at
// start + i/rate, whatever happened to the ones before, so a slow consumer
// shows up as lag (and as latency, measured from the intended time) rather
// than as a lower offered rate. It returns when end is reached or ctx ends.
func Arrivals(ctx context.Context, clk Clock, start, end time.Time, rate float64, out chan<- time.Time) (Lag, error) {
	var lag Lag
	if rate <= 0 {
		return lag, nil
	}
	interval := float64(time.Second) / rate
	for i := int64(0); ; i++ {
		t := start.Add(time.Duration(float64(i) * interval))
		if !t.Before(end) {
			return lag, nil
		}
		if err := clk.SleepUntil(ctx, t); err != nil {
			return lag, err
		}
		select {
		case out <- t:
		case <-ctx.Done():
			return lag, ctx.Err()
		}
		d := clk.Now().Sub(t)
		lag.Sent++
		lag.Total += d
		lag.Max = max(lag.Max, d)
		if d > LateAfter {
			lag.Late++
		}
	}
}
