package versionvec

import (
	"bytes"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/fulcrumdb/fulcrum/internal/hlc"
)

// The model is the full causal history, with nothing compressed: every write
// records the exact set of writes its client had seen, every replica the
// set of writes it knows of (received directly or through a state that
// knew them). A write supersedes exactly what it saw, so a replica's
// siblings must be the maximal writes of what it knows: those no known
// write saw.
//
// A replica may also forget a state that holds only tombstones (tombstone
// collection, once Forgettable and once every replica knows what it
// knows, as after the engine's grace period): it then knows nothing. Its
// next write's
// counter is above every one its node issued for the key, so wherever the
// new state travels, the writes of that node it no longer holds count as
// seen by the new write: in the model, such a write has seen every
// earlier write of its node that the replica does not know.

type set map[int]bool

type modelWrite struct {
	dot  Dot
	seen set // ids of the writes the client's context covered
	sib  Sibling
}

type model struct {
	writes    []modelWrite
	byDot     map[Dot]int
	forgotten set // writes some replica forgot (tombstones only)
}

// own returns the ids of the writes node coordinated.
func (m *model) own(node uint64) set {
	out := set{}
	for id, w := range m.writes {
		if w.dot.Node == node {
			out[id] = true
		}
	}
	return out
}

// maximal returns the ids in known that no write in known saw, ascending.
func (m *model) maximal(known set) []int {
	var out []int
	for w := range known {
		superseded := false
		for v := range known {
			if m.writes[v].seen[w] {
				superseded = true
				break
			}
		}
		if !superseded {
			out = append(out, w)
		}
	}
	slices.Sort(out)
	return out
}

type replica struct {
	node  uint64
	state Siblings
	known set
	wall  int64 // the node's clock (ns); it never goes back
}

type readCtx struct {
	vec   Vector
	known set
}

// check compares a replica's state with the model: the context covers
// exactly the known writes, and the siblings are exactly the maximal ones,
// with the values written.
func (m *model) check(t *testing.T, seed uint64, step int, r *replica) {
	t.Helper()
	ctx := r.state.Context()
	for id, w := range m.writes {
		if got, want := ctx.Covers(w.dot), r.known[id]; got != want {
			t.Fatalf("seed %d step %d node %d: context %v covers write %v: got %v, want %v", seed, step, r.node, ctx, w.dot, got, want)
		}
	}
	var got []int
	for _, x := range r.state.Values() {
		id, ok := m.byDot[x.Dot]
		if !ok {
			t.Fatalf("seed %d step %d node %d: sibling %v was never written", seed, step, r.node, x)
		}
		if !x.equal(m.writes[id].sib) {
			t.Fatalf("seed %d step %d node %d: sibling got %v, want %v", seed, step, r.node, x, m.writes[id].sib)
		}
		got = append(got, id)
	}
	slices.Sort(got)
	if want := m.maximal(r.known); !slices.Equal(got, want) {
		t.Fatalf("seed %d step %d node %d: siblings got writes %v, want %v (state %v)", seed, step, r.node, got, want, r.state)
	}
	b := r.state.Encode()
	back, err := DecodeSiblings(b)
	if err != nil || !back.Equal(r.state) {
		t.Fatalf("seed %d step %d node %d: round trip got %v, %v; want %v", seed, step, r.node, back, err, r.state)
	}
}

func union(sets ...set) set {
	u := set{}
	for _, s := range sets {
		maps.Copy(u, s)
	}
	return u
}

var nodeSets = [][]uint64{{1, 2, 3}, {0, 5, 300, 1 << 63}, {7, 8}, {10, 11, 12, 13, 14}}

// Random writes at random replicas with random (often stale) contexts,
// reads, one-way syncs and read repairs, checked against the model after
// every step; then the Sync laws on the states seen, and convergence.
func TestAgainstHistoryModel(t *testing.T) {
	var c modelCounts
	for seed := uint64(1); seed <= 300; seed++ {
		runModel(t, seed, &c)
	}
	// The forgetting path must be exercised, not just allowed.
	t.Logf("%d states forgotten, %d writes minted after their replica forgot some of its node's writes", c.forgets, c.afterForget)
	if c.forgets < 100 || c.afterForget < 100 {
		t.Errorf("got %d forgets and %d writes after one, want at least 100 of each", c.forgets, c.afterForget)
	}
}

// checkFresh checks that a new write's dot is dominated by nothing that
// existed before it: no earlier state of any replica, no replica's
// current state but the writer's, no read context a client may hold.
// Were it covered, a replica holding that state would take the write for
// one it has already seen superseded, and drop it.
func checkFresh(t *testing.T, seed uint64, step int, d Dot, writer *replica, reps []*replica, seen []Siblings, pool []readCtx) {
	t.Helper()
	for i, st := range seen {
		if st.Context().Covers(d) {
			t.Fatalf("seed %d step %d: new dot %v covered by earlier state #%d %v", seed, step, d, i, st)
		}
	}
	for _, o := range reps {
		if o != writer && o.state.Context().Covers(d) {
			t.Fatalf("seed %d step %d: new dot %v covered by node %d's state %v", seed, step, d, o.node, o.state)
		}
	}
	for _, rc := range pool {
		if rc.vec.Covers(d) {
			t.Fatalf("seed %d step %d: new dot %v covered by read context %v", seed, step, d, rc.vec)
		}
	}
}

// modelCounts counts the rarer events of the model runs, to check they
// happen.
type modelCounts struct {
	forgets, afterForget int
}

func runModel(t *testing.T, seed uint64, counts *modelCounts) {
	rng := rand.New(rand.NewPCG(seed, 0))
	nodes := nodeSets[rng.IntN(len(nodeSets))]
	reps := make([]*replica, len(nodes))
	for i, n := range nodes {
		// Clocks a few microseconds apart, so dot counters are sometimes
		// one past the last and sometimes the clock's (CounterFloor).
		reps[i] = &replica{node: n, known: set{}, wall: rng.Int64N(10 * CounterUnit)}
	}
	m := &model{byDot: map[Dot]int{}, forgotten: set{}}
	pool := []readCtx{{vec: nil, known: set{}}}
	var seen []Siblings
	steps := 20 + rng.IntN(80)

	// write mints a write at r with the client context rc (a delete when
	// del) and records it in the model.
	write := func(step int, r *replica, rc readCtx, del bool) {
		r.wall += rng.Int64N(3 * CounterUnit)
		stamp := hlc.Timestamp{WallNanos: r.wall, Logical: rng.Uint32N(2)}
		var d Dot
		var want Sibling
		if del {
			r.state, d = r.state.Delete(rc.vec, r.node, stamp)
			want = Sibling{Dot: d, Timestamp: stamp, Tombstone: true}
		} else {
			val := []byte{byte(step), byte(seed)}
			r.state, d = r.state.Update(rc.vec, r.node, val, stamp)
			want = Sibling{Dot: d, Value: val, Timestamp: stamp}
		}
		if _, dup := m.byDot[d]; dup {
			t.Fatalf("seed %d step %d: dot %v issued twice", seed, step, d)
		}
		if d.Counter < CounterFloor(stamp) {
			t.Fatalf("seed %d step %d: dot %v below the floor %d of its timestamp %v", seed, step, d, CounterFloor(stamp), stamp)
		}
		checkFresh(t, seed, step, d, r, reps, seen, pool)
		// Writes of this node that the replica forgot are superseded by
		// this one wherever its state goes (its counter is above theirs);
		// a replica that never forgot knows them all.
		forgot := set{}
		for id := range m.own(r.node) {
			if !r.known[id] {
				forgot[id] = true
			}
		}
		if len(forgot) > 0 {
			counts.afterForget++
		}
		id := len(m.writes)
		m.writes = append(m.writes, modelWrite{dot: d, seen: union(rc.known, forgot), sib: want})
		m.byDot[d] = id
		r.known = union(r.known, rc.known, forgot, set{id: true})
	}
	// syncAll is a complete anti-entropy pass: every replica ends with the
	// merge of all.
	syncAll := func() {
		var states []Siblings
		var knowns []set
		for _, o := range reps {
			states, knowns = append(states, o.state), append(knowns, o.known)
		}
		merged, k := Sync(states...), union(knowns...)
		for _, o := range reps {
			o.state, o.known = merged, union(k)
		}
	}
	// forget drops r's state if it holds only tombstones, Forgettable
	// allows it at r's clock, and every replica knows what r knows (the
	// engine's grace period: a tombstone forgotten before a replica that
	// holds the value it deleted has it lets the value back, the
	// resurrection problem, which no dot can prevent).
	forget := func(step int, r *replica) bool {
		now := hlc.Timestamp{WallNanos: r.wall}
		if r.state.Len() == 0 || !r.state.Absent() {
			return false
		}
		if !r.state.Forgettable(r.node, now) {
			if c := r.state.Context()[r.node]; c < CounterFloor(now) {
				t.Fatalf("seed %d step %d node %d: %v not forgettable at %v (floor %d)", seed, step, r.node, r.state, now, CounterFloor(now))
			}
			return false
		}
		for _, o := range reps {
			for id := range r.known {
				if !o.known[id] {
					return false
				}
			}
		}
		counts.forgets++
		for id := range r.known {
			if m.writes[id].sib.Tombstone {
				m.forgotten[id] = true
			}
		}
		r.state, r.known = Siblings{}, set{}
		return true
	}

	for step := range steps {
		r := reps[rng.IntN(len(reps))]
		switch p := rng.IntN(100); {
		case p < 40: // write with a context from some earlier read, maybe stale
			rc := pool[rng.IntN(len(pool))]
			if rng.IntN(3) == 0 && len(pool) > 1 {
				rc = pool[len(pool)-1-rng.IntN(min(3, len(pool)))] // fresh-ish
			}
			write(step, r, rc, rng.IntN(6) == 0)
		case p < 45: // a delete of everything, maybe spread, then maybe forgotten
			if rng.IntN(2) == 0 {
				syncAll()
			}
			rc := readCtx{vec: r.state.Context(), known: union(r.known)}
			pool = append(pool, rc)
			write(step, r, rc, true)
			if rng.IntN(3) > 0 {
				syncAll()
			}
			r.wall += rng.Int64N(3 * CounterUnit) // time passes
			for _, o := range reps {
				if rng.IntN(2) == 0 && forget(step, o) && rng.IntN(2) == 0 {
					// A write right after: blind, or with a context from
					// before the delete (which covers old dots of o's).
					write(step, o, pool[rng.IntN(len(pool))], false)
				}
			}
		case p < 60: // read at one replica
			pool = append(pool, readCtx{vec: r.state.Context(), known: union(r.known)})
		case p < 70: // quorum read: merge two replicas' answers, no write-back
			o := reps[rng.IntN(len(reps))]
			merged := Sync(r.state, o.state)
			pool = append(pool, readCtx{vec: merged.Context(), known: union(r.known, o.known)})
		case p < 90: // one replica ships its state to another
			o := reps[rng.IntN(len(reps))]
			r.state = Sync(r.state, o.state)
			r.known = union(r.known, o.known)
		default: // read repair over a random subset
			var group []*replica
			for _, o := range reps {
				if rng.IntN(2) == 0 {
					group = append(group, o)
				}
			}
			var states []Siblings
			var knowns []set
			for _, o := range group {
				states = append(states, o.state)
				knowns = append(knowns, o.known)
			}
			merged, k := Sync(states...), union(knowns...)
			for _, o := range group {
				o.state, o.known = merged, union(k)
			}
		}
		for _, o := range reps {
			m.check(t, seed, step, o)
		}
		seen = append(seen, r.state)
	}

	checkSyncLaws(t, seed, rng, seen)

	// Anti-entropy until quiet: everyone converges on Sync of everything.
	var all []Siblings
	for _, o := range reps {
		all = append(all, o.state)
	}
	final := Sync(all...)
	slices.Reverse(all)
	if other := Sync(all...); !other.Equal(final) {
		t.Fatalf("seed %d: Sync in reverse order got %v, want %v", seed, other, final)
	}
	everything := set{}
	for _, o := range reps {
		everything = union(everything, o.known)
	}
	fin := &replica{node: 0, state: final, known: everything}
	m.check(t, seed, steps, fin)

	// No acknowledged write is lost: each is a sibling of the converged
	// state, or a later known write saw it.
	sibs := set{}
	for _, x := range final.Values() {
		sibs[m.byDot[x.Dot]] = true
	}
	for id, w := range m.writes {
		if sibs[id] || m.forgotten[id] {
			continue // a sibling, or a tombstone collected somewhere
		}
		covered := false
		for _, v := range m.writes {
			if v.seen[id] {
				covered = true
				break
			}
		}
		if !covered {
			t.Fatalf("seed %d: write %v lost: not a sibling of %v and no write saw it", seed, w.dot, final)
		}
	}
	// No sibling explosion: siblings are pairwise concurrent.
	for a := range sibs {
		for b := range sibs {
			if m.writes[a].seen[b] {
				t.Fatalf("seed %d: siblings %v and %v, but the first saw the second", seed, m.writes[a].dot, m.writes[b].dot)
			}
		}
	}
}

func checkSyncLaws(t *testing.T, seed uint64, rng *rand.Rand, states []Siblings) {
	t.Helper()
	if len(states) == 0 {
		return
	}
	pick := func() Siblings { return states[rng.IntN(len(states))] }
	for range 50 {
		a, b, c := pick(), pick(), pick()
		if got, want := Sync(a, b), Sync(b, a); !got.Equal(want) || !bytes.Equal(got.Encode(), want.Encode()) {
			t.Fatalf("seed %d: not commutative: Sync(a, b) = %v, Sync(b, a) = %v\na %v\nb %v", seed, got, want, a, b)
		}
		if got, want := Sync(Sync(a, b), c), Sync(a, Sync(b, c)); !got.Equal(want) {
			t.Fatalf("seed %d: not associative: got %v, want %v\na %v\nb %v\nc %v", seed, got, want, a, b, c)
		}
		if got := Sync(a, a); !got.Equal(a) {
			t.Fatalf("seed %d: not idempotent: Sync(a, a) = %v, want %v", seed, got, a)
		}
		if got := Sync(a, Sync(a, b)); !got.Equal(Sync(a, b)) {
			t.Fatalf("seed %d: absorbing: Sync(a, Sync(a, b)) = %v, want %v", seed, got, Sync(a, b))
		}
	}
}
