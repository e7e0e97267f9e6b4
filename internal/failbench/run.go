package failbench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// System is a replicated store whose primary a trial kills: what Run needs
// from Fulcrum or Redis with Sentinel.
type System interface {
	// NewClient opens writer connection i (0 to Config.InFlight-1).
	NewClient(i int) (Client, error)
	// Ready waits until the system is whole: every process up, one
	// primary, every replica following it.
	Ready(ctx context.Context) error
	// KillPrimary kills the current primary's process with SIGKILL and
	// returns once it has exited, with a name for it and the instant just
	// before the signal.
	KillPrimary(ctx context.Context) (victim string, at time.Time, err error)
	// ReadBack reads keys from the current primary; a key not found is
	// absent from the map.
	ReadBack(ctx context.Context, keys []string) (map[string]string, error)
	// Restart starts the killed process again on its data.
	Restart(ctx context.Context) error
}

// LostReporter is the optional capability of a system whose returning
// primary counts the writes it had to set aside.
type LostReporter interface {
	// ReportedLost is how many writes the node killed last reported as set
	// aside since just before it was killed; called after Restart and
	// Ready. ErrNotExposed if the system does not say.
	ReportedLost(ctx context.Context) (uint64, error)
}

// Isolator is the optional capability of a system that can cut its
// primary off from its replicas while clients still reach every process
// (Config.Isolate).
type Isolator interface {
	// IsolatePrimary drops the traffic between the primary and its
	// replicas until heal is called; the next KillPrimary kills that
	// primary. ErrNoFirewall if it cannot be done here.
	IsolatePrimary(ctx context.Context) (heal func() error, err error)
}

// ErrNotExposed is returned by a LostReporter whose system does not
// expose the count.
var ErrNotExposed = errors.New("lost-writes count not exposed")

// ErrNoRecovery is returned by Run when no write was acknowledged within
// Config.MaxUnavailable of a kill; the trial is in the Result.
var ErrNoRecovery = errors.New("no acknowledged write after the kill")

// Config is one configuration's run.
type Config struct {
	// Name labels the result.
	Name string
	// Trials is the number of kills.
	Trials int
	// Rate is the writes a second the writer attempts (open loop).
	Rate int
	// InFlight is the number of connections, each with at most one write
	// in flight.
	InFlight int
	// WarmUp, then a uniformly random extra delay below Jitter, pass
	// between the writer's start and the kill.
	WarmUp, Jitter time.Duration
	// Settle is how long the writer goes on after the first write sent
	// after the kill was acknowledged.
	Settle time.Duration
	// MaxUnavailable bounds the wait for that first acknowledgement.
	MaxUnavailable time.Duration
	// RequestTimeout bounds each write.
	RequestTimeout time.Duration
	// Isolate, if above 0, cuts the primary off from its replicas this
	// long before the kill and heals the cut once a write is acknowledged
	// after it (or the trial gives up), so that an asynchronous primary
	// acknowledges writes no replica receives (the system must be an
	// Isolator). Stopping the replicas' processes instead would not do:
	// the kernel keeps what the primary sent in their sockets' buffers.
	Isolate time.Duration
	// Seed seeds the kill delays.
	Seed uint64
	// Logf, if set, gets a line per trial.
	Logf func(format string, args ...any)
}

// DefaultConfig is 20 trials of 200 writes a second over 4 connections,
// killing 1 to 2 s after the start.
func DefaultConfig() Config {
	return Config{Trials: 20, Rate: 200, InFlight: 4, WarmUp: time.Second, Jitter: time.Second,
		Settle: time.Second, MaxUnavailable: 20 * time.Second, RequestTimeout: 3 * time.Second, Seed: 1}
}

// Validate checks the fields.
func (c Config) Validate() error {
	switch {
	case c.Trials < 1:
		return fmt.Errorf("failbench: Trials %d < 1", c.Trials)
	case c.Rate < 1 || c.Rate > 100_000:
		return fmt.Errorf("failbench: Rate %d not in 1..100000", c.Rate)
	case c.InFlight < 1:
		return fmt.Errorf("failbench: InFlight %d < 1", c.InFlight)
	case c.WarmUp < 0 || c.Jitter < 0 || c.Settle < 0 || c.Isolate < 0:
		return fmt.Errorf("failbench: negative WarmUp, Jitter, Settle or Isolate")
	case c.MaxUnavailable <= 0 || c.RequestTimeout <= 0:
		return fmt.Errorf("failbench: MaxUnavailable and RequestTimeout must be positive")
	}
	return nil
}

// Run runs cfg.Trials kill trials against sys and returns every trial,
// also those done when an error ends the run.
func Run(ctx context.Context, sys System, cfg Config) (Result, error) {
	res := Result{Name: cfg.Name}
	if err := cfg.Validate(); err != nil {
		return res, err
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x6661696c))
	for n := 1; n <= cfg.Trials; n++ {
		var delay time.Duration
		if cfg.Jitter > 0 {
			delay = time.Duration(rng.Int64N(int64(cfg.Jitter)))
		}
		t, err := trial(ctx, sys, cfg, n, cfg.WarmUp+delay)
		if t.N != 0 {
			res.Trials = append(res.Trials, t)
			if cfg.Logf != nil {
				rep := "-"
				if t.Reported >= 0 {
					rep = fmt.Sprint(t.Reported)
				}
				cfg.Logf("%s trial %d: killed %s, unavailable %v (recovered %v), ack gap %v, acked %d, failed %d, lost %d, reported %s",
					cfg.Name, n, t.Victim, t.Unavailable.Round(time.Millisecond), t.Recovered, t.AckGap.Round(time.Millisecond), t.Acked, t.Failed, t.Lost, rep)
			}
		}
		if err != nil {
			return res, fmt.Errorf("%s trial %d: %w", cfg.Name, n, err)
		}
	}
	return res, nil
}

// trial runs one kill. It returns a Trial with N set once the writes were
// measured, even with an error from a later step.
func trial(ctx context.Context, sys System, cfg Config, n int, killAfter time.Duration) (Trial, error) {
	t := Trial{Reported: -1}
	if err := sys.Ready(ctx); err != nil {
		return t, fmt.Errorf("before the kill: %w", err)
	}
	clients := make([]Client, 0, cfg.InFlight)
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for i := range cfg.InFlight {
		c, err := sys.NewClient(i)
		if err != nil {
			return t, fmt.Errorf("client %d: %w", i, err)
		}
		clients = append(clients, c)
	}
	origin := time.Now()
	w := startWriter(ctx, clients, cfg.Rate, cfg.RequestTimeout, fmt.Sprintf("fb:%d:", n), origin)
	stopped := false
	stop := func() ([]Op, int) { stopped = true; return w.stop() }
	defer func() {
		if !stopped {
			w.stop()
		}
	}()
	if err := sleep(ctx, killAfter); err != nil {
		return t, err
	}
	victim, at, heal, err := kill(ctx, sys, cfg.Isolate)
	healed := false
	defer func() {
		if !healed {
			heal()
		}
	}()
	if err != nil {
		return t, fmt.Errorf("kill: %w", err)
	}
	killAt := at.Sub(origin)
	t.Recovered = w.waitAckedSince(ctx, killAt, cfg.MaxUnavailable)
	healed = true
	if err := heal(); err != nil {
		return t, fmt.Errorf("heal the cut: %w", err)
	}
	if t.Recovered {
		if err := sleep(ctx, cfg.Settle); err != nil {
			return t, err
		}
	}
	ops, skipped := stop()
	if err := ctx.Err(); err != nil {
		return t, err
	}

	t.N, t.Victim, t.Skipped = n, victim, skipped
	if d, ok := Unavailable(ops, killAt); ok && t.Recovered {
		t.Unavailable = d
	} else {
		t.Recovered, t.Unavailable = false, cfg.MaxUnavailable
	}
	t.AckGap = AckGap(ops)
	for _, op := range ops {
		t.Sent++
		if op.Acked {
			t.Acked++
			continue
		}
		t.Failed++
		if t.FirstErr == "" && op.Sent >= killAt {
			t.FirstErr = op.Err
		}
	}
	if !t.Recovered {
		return t, fmt.Errorf("%w within %v (first error after it: %s)", ErrNoRecovery, cfg.MaxUnavailable, t.FirstErr)
	}

	acked := Acked(ops)
	keys := make([]string, len(acked))
	for i, op := range acked {
		keys[i] = op.Key
	}
	got, err := sys.ReadBack(ctx, keys)
	if err != nil {
		return t, fmt.Errorf("read back: %w", err)
	}
	lost := Lost(acked, got)
	t.Lost = len(lost)
	for i := 0; i < len(lost) && i < 5; i++ {
		t.LostKeys = append(t.LostKeys, lost[i].Key)
	}

	if err := sys.Restart(ctx); err != nil {
		return t, fmt.Errorf("restart %s: %w", victim, err)
	}
	if err := sys.Ready(ctx); err != nil {
		return t, fmt.Errorf("after restarting %s: %w", victim, err)
	}
	if lr, ok := sys.(LostReporter); ok {
		switch got, err := lr.ReportedLost(ctx); {
		case err == nil:
			t.Reported = int64(got)
		case !errors.Is(err, ErrNotExposed):
			return t, fmt.Errorf("reported lost writes: %w", err)
		}
	}
	return t, nil
}

// kill kills sys's primary, after cutting it off from its replicas for
// isolate if that is above 0. heal (never nil) removes the cut.
func kill(ctx context.Context, sys System, isolate time.Duration) (victim string, at time.Time, heal func() error, err error) {
	heal = func() error { return nil }
	if isolate <= 0 {
		victim, at, err = sys.KillPrimary(ctx)
		return victim, at, heal, err
	}
	iso, ok := sys.(Isolator)
	if !ok {
		return "", at, heal, fmt.Errorf("%w: %T cannot isolate its primary", ErrNoFirewall, sys)
	}
	h, err := iso.IsolatePrimary(ctx)
	if err != nil {
		return "", at, heal, fmt.Errorf("isolate the primary: %w", err)
	}
	if err := sleep(ctx, isolate); err != nil {
		return "", at, h, err
	}
	victim, at, err = sys.KillPrimary(ctx)
	return victim, at, h, err
}

// sleep waits d or until ctx ends. It is for the trial's schedule (the
// kill's moment, the settling time), never to wait for a state.
func sleep(ctx context.Context, d time.Duration) error {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
