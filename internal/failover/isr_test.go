package failover

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func isrConfig(maxLagLSN uint64, maxLagTime time.Duration) Config {
	c := DefaultConfig()
	c.MaxLagLSN, c.MaxLagTime = maxLagLSN, maxLagTime
	return c
}

func TestISRScenario(t *testing.T) {
	s, err := NewISR(isrConfig(5, 100), ISRRecord{Epoch: 1}, []NodeID{3, 1, 2}, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	type ev = string // "+1@10" joined, "-2@50 <reason fragment>" left
	for i, st := range []struct {
		do         func() error
		wantInSync []NodeID
		wantEvents []ev
	}{
		{func() error { return nil }, nil, nil},
		{func() error { return s.Ack(1, 10, 10) }, []NodeID{1}, []ev{"+1@10"}},
		{func() error { return s.Ack(2, 9, 10) }, []NodeID{1}, nil}, // within bounds is not enough to join
		{func() error { return s.Ack(2, 10, 20) }, []NodeID{1, 2}, []ev{"+2@20"}},
		{func() error { return s.Appended(13, 30) }, []NodeID{1, 2}, nil},
		{func() error { return s.Ack(1, 13, 40) }, []NodeID{1, 2}, nil},
		{func() error { return s.Appended(17, 50) }, []NodeID{1}, []ev{"-2@50 7 entries behind, more than 5"}},
		{func() error { return s.Ack(1, 15, 120) }, []NodeID{1}, nil},
		{func() error { s.Tick(150); return nil }, []NodeID{1}, nil},
		{func() error { s.Tick(151); return nil }, nil, []ev{"-1@151 lacks an entry 101ns old, more than 100ns"}},
		{func() error { return s.Ack(3, 17, 160) }, []NodeID{3}, []ev{"+3@160"}},
		{func() error { s.Tick(100); return nil }, []NodeID{3}, nil}, // time never runs back
		{func() error { s.Tick(261); return nil }, nil, []ev{"-3@261 silent for 101ns, more than 100ns"}},
		{func() error { return s.Ack(2, 17, 262) }, []NodeID{2}, []ev{"+2@262"}},
	} {
		if err := st.do(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got := s.InSync(); !slices.Equal(got, st.wantInSync) {
			t.Fatalf("step %d: got in-sync %v, want %v", i, got, st.wantInSync)
		}
		if s.Pending() != (len(st.wantEvents) > 0) {
			t.Fatalf("step %d: Pending() = %v with events %q", i, s.Pending(), st.wantEvents)
		}
		var got []ev
		for _, e := range s.Events() {
			sign := "+"
			if e.Change == Left {
				sign = "-"
			}
			got = append(got, strings.TrimSpace(fmt.Sprintf("%s%d@%d %s", sign, e.Replica, e.At, e.Reason)))
		}
		if s.Pending() {
			t.Fatalf("step %d: Pending() after Events", i)
		}
		if !slices.Equal(got, st.wantEvents) {
			t.Fatalf("step %d: got events %q, want %q", i, got, st.wantEvents)
		}
	}
	want := []Progress{
		// Replica 1 left at 151 lacking entries 16-17 (appended at 50);
		// the primary no longer keeps per-entry times for it, only the
		// newest time it forgot (17 at 50), so its lag is a lower bound.
		{Replica: 1, Acked: 15, LagLSN: 2, LagTime: 262 - 50, LagTimeAtLeast: true, SinceAck: 262 - 120},
		{Replica: 2, InSync: true, Acked: 17},
		{Replica: 3, Acked: 17, SinceAck: 262 - 160},
	}
	if got := s.Progress(); !slices.Equal(got, want) {
		t.Fatalf("got progress %+v, want %+v", got, want)
	}
	if got, want := s.AckedBy(16), []NodeID{2, 3}; !slices.Equal(got, want) {
		t.Fatalf("AckedBy(16): got %v, want %v", got, want)
	}
}

func TestISRInputErrors(t *testing.T) {
	if _, err := NewISR(isrConfig(0, 100), ISRRecord{}, []NodeID{1}, 0, 0); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("zero MaxLagLSN: got %v, want ErrInvalidConfig", err)
	}
	if _, err := NewISR(isrConfig(5, 100), ISRRecord{}, []NodeID{1, 1}, 0, 0); !errors.Is(err, ErrUnknownReplica) {
		t.Fatalf("repeated replica: got %v, want ErrUnknownReplica", err)
	}
	s, err := NewISR(isrConfig(5, 100), ISRRecord{}, []NodeID{1, 2}, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"ack from a stranger", s.Ack(9, 1, 1), ErrUnknownReplica},
		{"ack beyond the log", s.Ack(1, 11, 1), ErrInvalidLog},
		{"append not after the log", s.Appended(10, 1), ErrInvalidLog},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Fatalf("%s: got %v, want %v", tc.name, tc.err, tc.want)
		}
	}
	if got := s.Last(); got != 10 {
		t.Fatalf("Last: got %d, want 10", got)
	}
}

// TestISRRecordFlow walks the in-sync set through the control plane: a
// replica stays required until the control plane's record drops it,
// including while a proposal naming it may still be applied.
func TestISRRecordFlow(t *testing.T) {
	cp := ISRRecord{Epoch: 3}
	s, err := NewISR(isrConfig(5, 100), cp, []NodeID{1, 2}, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	mustPropose := func(want ISRProposal) ISRProposal {
		t.Helper()
		p, ok := s.Propose()
		if !ok || p.Epoch != want.Epoch || p.Base != want.Base || !slices.Equal(p.Members, want.Members) {
			t.Fatalf("Propose: got %+v, %v, want %+v", p, ok, want)
		}
		return p
	}
	apply := func(p ISRProposal) {
		t.Helper()
		var err error
		if cp, err = cp.Apply(p); err != nil {
			t.Fatal(err)
		}
	}
	recorded := func(r ISRRecord) {
		t.Helper()
		if err := s.Recorded(r); err != nil {
			t.Fatal(err)
		}
	}
	required := func(want ...NodeID) {
		t.Helper()
		if got := s.Required(); !slices.Equal(got, want) {
			t.Fatalf("Required: got %v, want %v", got, want)
		}
	}

	// Until the record moves on, a proposal from before a restart could
	// still land, so every replica is required and a proposal goes out
	// even with nothing to change.
	required(1, 2)
	p := mustPropose(ISRProposal{Epoch: 3, Base: 0})
	_ = s.Ack(1, 10, 10)
	mustPropose(p) // resent while in flight
	required(1, 2)
	stale := ISRProposal{Epoch: 3, Base: 0, Members: []NodeID{2}} // the earlier incarnation's
	apply(stale)
	if _, err := cp.Apply(p); !errors.Is(err, ErrISRConflict) {
		t.Fatalf("proposal after the stale one: got %v, want ErrISRConflict", err)
	}
	recorded(cp) // the conflict reply carries the record: confirmed
	required(1, 2)
	p = mustPropose(ISRProposal{Epoch: 3, Base: 1, Members: []NodeID{1}})
	mustPropose(p)
	apply(p)
	if _, err := cp.Apply(p); !errors.Is(err, ErrISRConflict) {
		t.Fatalf("second apply of one proposal: got %v, want ErrISRConflict", err)
	}
	recorded(cp)
	required(1)
	if p, ok := s.Propose(); ok {
		t.Fatalf("Propose after the record caught up: got %+v", p)
	}
	promotable := func(want int) {
		t.Helper()
		if got := s.Promotable(); got != want {
			t.Fatalf("Promotable: got %d, want %d (in sync %v, record %v)", got, want, s.InSync(), cp.Members)
		}
	}
	promotable(1)

	_ = s.Ack(2, 10, 20)
	promotable(1) // 2 is in sync, but the record does not name it yet
	p = mustPropose(ISRProposal{Epoch: 3, Base: 2, Members: []NodeID{1, 2}})
	_ = s.Ack(1, 10, 100)
	s.Tick(121) // 2 silent for 101
	if got := s.InSync(); !slices.Equal(got, []NodeID{1}) {
		t.Fatalf("got in-sync %v, want [1]", got)
	}
	required(1, 2) // the proposal naming 2 may still be applied
	promotable(1)
	recorded(cp) // a read from before it was: still in flight
	required(1, 2)
	apply(p)
	recorded(cp)
	required(1, 2) // now it is the record
	p = mustPropose(ISRProposal{Epoch: 3, Base: 3, Members: []NodeID{1}})
	apply(p)
	recorded(ISRRecord{Epoch: 3, Version: 2}) // old news
	required(1, 2)
	recorded(cp)
	required(1)

	if err := s.Recorded(ISRRecord{Epoch: 2, Version: 9}); err != nil {
		t.Fatalf("older epoch's record: got %v, want it ignored", err)
	}
	required(1)
	if err := s.Recorded(ISRRecord{Epoch: 4}); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("newer epoch's record: got %v, want ErrStaleEpoch", err)
	}
	if _, err := cp.Apply(ISRProposal{Epoch: 2, Base: 4}); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("proposal of an older epoch: got %v, want ErrStaleEpoch", err)
	}
	if got, err := cp.Apply(ISRProposal{Epoch: 3, Base: 4, Members: []NodeID{2, 1, 2}}); err != nil || !slices.Equal(got.Members, []NodeID{1, 2}) || got.Version != 5 {
		t.Fatalf("unsorted proposal: got %+v, %v, want members [1 2] at version 5", got, err)
	}
}

// oracleISR applies the membership rules the plain way: it keeps every
// append time forever and scans them.
type oracleISR struct {
	cfg   Config
	last  LSN
	now   int64
	marks []mark
	reps  []replica
}

func (o *oracleISR) progress(r replica) Progress {
	p := Progress{Replica: r.id, InSync: r.inSync, Acked: r.acked, LagLSN: uint64(o.last - r.acked), SinceAck: time.Duration(o.now - r.lastAck)}
	if p.LagLSN > 0 {
		for _, m := range o.marks {
			if m.lsn > r.acked {
				p.LagTime = time.Duration(o.now - m.at)
				break
			}
		}
	}
	return p
}

func (o *oracleISR) evaluate() (events []Event) {
	for i := range o.reps {
		r := &o.reps[i]
		p := o.progress(*r)
		if r.inSync && (p.LagLSN > o.cfg.MaxLagLSN || p.LagTime > o.cfg.MaxLagTime || p.SinceAck > o.cfg.MaxLagTime) {
			r.inSync = false
			events = append(events, Event{Replica: r.id, Change: Left, At: o.now})
		} else if !r.inSync && r.heard && p.LagLSN == 0 && p.SinceAck <= o.cfg.MaxLagTime {
			r.inSync = true
			events = append(events, Event{Replica: r.id, Change: Joined, At: o.now})
		}
	}
	return events
}

func TestISRAgainstOracle(t *testing.T) {
	seed := rand.Uint64()
	rng := rand.New(rand.NewPCG(seed, 2))
	for run := range 300 {
		cfg := isrConfig(1+rng.Uint64N(20), time.Duration(1+rng.IntN(1000)))
		n := 1 + rng.IntN(5)
		var ids []NodeID
		for i := range n {
			ids = append(ids, NodeID(10*i+1+rng.IntN(10)))
		}
		last, now := LSN(rng.IntN(50)), rng.Int64N(1_000_000)
		s, err := NewISR(cfg, ISRRecord{}, ids, last, now)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		o := &oracleISR{cfg: cfg, last: last, now: now, marks: []mark{{last, now}}}
		for _, id := range ids {
			o.reps = append(o.reps, replica{id: id, lastAck: now})
		}
		slices.SortFunc(o.reps, func(a, b replica) int { return int(a.id) - int(b.id) })

		for step := range 300 {
			fail := func(format string, args ...any) {
				t.Helper()
				t.Fatalf("seed %d run %d step %d: %s", seed, run, step, fmt.Sprintf(format, args...))
			}
			switch rng.IntN(10) {
			case 0: // time may be passed in out of order; both clamp
				now -= rng.Int64N(int64(cfg.MaxLagTime))
			default:
				now += rng.Int64N(int64(cfg.MaxLagTime)*2/3 + 1)
			}
			o.now = max(o.now, now)
			var events []Event
			switch op := rng.IntN(10); {
			case op < 3:
				lsn := last + 1 + LSN(rng.Uint64N(cfg.MaxLagLSN+1))
				if err := s.Appended(lsn, now); err != nil {
					fail("Appended: %v", err)
				}
				last, o.last = lsn, lsn
				o.marks = append(o.marks, mark{lsn, o.now})
				events = o.evaluate()
			case op < 9:
				i := rng.IntN(n)
				r := &o.reps[i]
				var lsn LSN
				switch rng.IntN(4) {
				case 0:
					lsn = LSN(rng.Uint64N(uint64(last) + 1))
				case 1:
					lsn = last
				default:
					lsn = last - min(last, LSN(rng.Uint64N(cfg.MaxLagLSN+2)))
				}
				if err := s.Ack(r.id, lsn, now); err != nil {
					fail("Ack: %v", err)
				}
				r.acked, r.lastAck, r.heard = max(r.acked, lsn), o.now, true
				events = o.evaluate()
			default:
				s.Tick(now)
				events = o.evaluate()
			}

			got := s.Events()
			if len(got) != len(events) {
				fail("got events %+v, want %+v", got, events)
			}
			for i := range got {
				if got[i].Replica != events[i].Replica || got[i].Change != events[i].Change || got[i].At != events[i].At || (got[i].Change == Left) != (got[i].Reason != "") {
					fail("got event %+v, want %+v", got[i], events[i])
				}
			}
			var want []NodeID
			for _, r := range o.reps {
				if r.inSync {
					want = append(want, r.id)
				}
			}
			if got := s.InSync(); !slices.Equal(got, want) {
				fail("got in-sync %v, want %v", got, want)
			}
			for i, p := range s.Progress() {
				w := o.progress(o.reps[i])
				exact := p
				exact.LagTime, exact.LagTimeAtLeast = w.LagTime, false
				if exact != w || (p.LagTimeAtLeast && (p.InSync || p.LagTime > w.LagTime)) || (!p.LagTimeAtLeast && p.LagTime != w.LagTime) {
					fail("got progress %+v, want %+v", p, w)
				}
			}
			lsn := LSN(rng.Uint64N(uint64(last) + 2))
			var acked []NodeID
			for _, r := range o.reps {
				if r.acked >= lsn {
					acked = append(acked, r.id)
				}
			}
			if got := s.AckedBy(lsn); !slices.Equal(got, acked) {
				fail("AckedBy(%d): got %v, want %v", lsn, got, acked)
			}
			if uint64(len(s.marks)) > cfg.MaxLagLSN {
				fail("kept %d append times, want at most MaxLagLSN=%d", len(s.marks), cfg.MaxLagLSN)
			}
		}
	}
}
