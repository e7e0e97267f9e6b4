package placement

import (
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/cespare/xxhash/v2"
)

// NodeID names a node.
type NodeID string

// ShardOf returns the shard (0..shards-1) of key in namespace ns.
func ShardOf(ns string, key []byte, shards int) int {
	var d xxhash.Digest
	d.Reset()
	_, _ = d.WriteString(ns)
	_, _ = d.Write([]byte{0})
	_, _ = d.Write(key)
	return int(d.Sum64() % uint64(shards))
}

// score is node's rendezvous weight for a shard of ns.
func score(ns string, shard int, node NodeID) uint64 {
	var d xxhash.Digest
	d.Reset()
	_, _ = d.WriteString(ns)
	_, _ = d.Write([]byte{0, byte(shard >> 24), byte(shard >> 16), byte(shard >> 8), byte(shard)})
	_, _ = d.WriteString(string(node))
	return d.Sum64()
}

// Assignment lists each shard's replica set, ordered by preference (the
// first node is the preferred leader).
type Assignment [][]NodeID

// Move is one replica change: From "" adds a replica on To; To "" removes
// the replica on From.
type Move struct {
	Shard    int
	From, To NodeID
}

// ErrTooFewNodes is returned when there are fewer nodes than replicas.
var ErrTooFewNodes = errors.New("placement: fewer nodes than replicas")

// Assign places shards × replicas over nodes from scratch.
func Assign(ns string, shards, replicas int, nodes []NodeID) (Assignment, error) {
	a, _, err := Rebalance(ns, make(Assignment, shards), replicas, nodes)
	return a, err
}

// Rebalance returns a balanced assignment of cur's shards over nodes (the
// live set) and the moves from cur to it. Replicas on nodes that are still
// live stay where they are unless their node holds more than its share;
// replicas on departed nodes are replaced.
func Rebalance(ns string, cur Assignment, replicas int, nodes []NodeID) (Assignment, []Move, error) {
	// Which nodes take the extra replicas when the total does not divide
	// evenly decides whether the minimum is reachable (two vacancies of one
	// shard cannot share a node). Several deterministic choices are tried
	// and the plan adding fewest replicas wins.
	var best Assignment
	var bestMoves []Move
	bestAdds := -1
	for attempt := 0; attempt < maxAttempts; attempt++ {
		a, moves, err := rebalance(ns, cur, replicas, nodes, attempt)
		if err != nil {
			return nil, nil, err
		}
		adds := 0
		for _, m := range moves {
			if m.To != "" {
				adds++
			}
		}
		if bestAdds < 0 || adds < bestAdds {
			best, bestMoves, bestAdds = a, moves, adds
		}
		if adds == minAdditions(cur, replicas, nodes) {
			break
		}
	}
	SpreadLeaders(best)
	return best, bestMoves, nil
}

// SpreadLeaders reorders each replica set in place so the preferred
// leaders (first nodes) are spread over the nodes as evenly as the sets
// allow: it moves a leadership from a node with the most to a replica of
// the same shard with at least two fewer until no such move is left.
// Leadership follows the order; replicas do not move. Deterministic.
func SpreadLeaders(a Assignment) {
	count := make(map[NodeID]int)
	for _, set := range a {
		if len(set) > 0 {
			count[set[0]]++
		}
	}
	for changed := true; changed; {
		changed = false
		for _, set := range a {
			if len(set) < 2 {
				continue
			}
			lead := set[0]
			best := 0
			for i := 1; i < len(set); i++ {
				if count[set[i]] <= count[lead]-2 && (best == 0 || count[set[i]] < count[set[best]]) {
					best = i
				}
			}
			if best == 0 {
				continue
			}
			// Keep the rest in score order: the new leader moves to the
			// front, the old one right behind it.
			n := set[best]
			copy(set[1:best+1], set[:best])
			set[0] = n
			count[n]++
			count[lead]--
			changed = true
		}
	}
}

// Rebalance's search: the first attempts give the extra replicas to the
// most loaded nodes (varying only the order among equals); later ones to
// other subsets, which is sometimes the only way to reach the optimum.
const (
	tieAttempts = 8
	maxAttempts = 48
)

// minAdditions is the fewest replicas any balanced placement must add:
// everything on departed nodes plus what live nodes hold beyond their
// largest possible share.
func minAdditions(cur Assignment, replicas int, nodes []NodeID) int {
	live := make(map[NodeID]bool, len(nodes))
	for _, n := range nodes {
		live[n] = true
	}
	load := make(map[NodeID]int, len(nodes))
	gone := 0
	for _, set := range cur {
		for _, n := range set {
			if live[n] {
				load[n]++
			} else {
				gone++
			}
		}
	}
	total := len(cur) * replicas
	q, extra := total/len(nodes), total%len(nodes)
	loads := make([]int, 0, len(nodes))
	for _, n := range nodes {
		loads = append(loads, load[n])
	}
	sort.Sort(sort.Reverse(sort.IntSlice(loads)))
	excess := 0
	for i, l := range loads {
		t := q
		if i < extra {
			t++
		}
		excess += max(0, l-t)
	}
	return gone + excess
}

func rebalance(ns string, cur Assignment, replicas int, nodes []NodeID, attempt int) (Assignment, []Move, error) {
	if replicas <= 0 {
		return nil, nil, fmt.Errorf("placement: replicas must be positive, got %d", replicas)
	}
	if len(nodes) < replicas {
		return nil, nil, fmt.Errorf("%w: %d nodes, %d replicas", ErrTooFewNodes, len(nodes), replicas)
	}
	nodes = slices.Clone(nodes)
	slices.Sort(nodes)
	if len(slices.Compact(slices.Clone(nodes))) != len(nodes) {
		return nil, nil, errors.New("placement: duplicate node ids")
	}
	shards := len(cur)
	live := make(map[NodeID]bool, len(nodes))
	for _, n := range nodes {
		live[n] = true
	}

	// Current load of each live node, counting each shard once.
	held := make([]map[NodeID]bool, shards)
	load := make(map[NodeID]int, len(nodes))
	for s, set := range cur {
		held[s] = make(map[NodeID]bool)
		for _, n := range set {
			if live[n] && !held[s][n] {
				held[s][n] = true
				load[n]++
			}
		}
	}

	// Targets: every node gets q or q+1; the extra ones go to the nodes
	// holding the most already, so the fewest replicas have to move.
	total := shards * replicas
	q, extra := total/len(nodes), total%len(nodes)
	byLoad := slices.Clone(nodes)
	sort.SliceStable(byLoad, func(i, j int) bool {
		a, b := byLoad[i], byLoad[j]
		if load[a] != load[b] && attempt < tieAttempts {
			return load[a] > load[b]
		}
		if attempt == 0 {
			return a < b
		}
		return score(ns, -attempt, a) > score(ns, -attempt, b) // another tie order
	})
	target := make(map[NodeID]int, len(nodes))
	for i, n := range byLoad {
		target[n] = q
		if i < extra {
			target[n]++
		}
	}

	// Keep phase: a node over its target sheds replicas. It sheds first
	// the shards that have lost the fewest replicas so far, so vacancies
	// spread over distinct shards and nodes with spare capacity can take
	// them all (two vacancies of one shard cannot go to one node); among
	// those, the replicas it scores lowest for.
	keep := make([]map[NodeID]bool, shards)
	lost := make([]int, shards)
	for s := range keep {
		keep[s] = make(map[NodeID]bool)
		lost[s] = replicas - len(held[s])
	}
	for _, n := range byLoad {
		var mine []int
		for s := range held {
			if held[s][n] {
				mine = append(mine, s)
			}
		}
		sort.Slice(mine, func(i, j int) bool {
			a, b := mine[i], mine[j]
			if lost[a] != lost[b] {
				return lost[a] > lost[b] // keep shards that already lost replicas
			}
			return score(ns, a, n) > score(ns, b, n)
		})
		for i, s := range mine {
			if i < target[n] {
				keep[s][n] = true
			} else {
				lost[s]++
			}
		}
	}
	for s := range keep {
		if len(keep[s]) > replicas {
			set := sortedByScore(ns, s, keys(keep[s]))
			for _, n := range set[replicas:] {
				delete(keep[s], n)
			}
		}
	}
	used := make(map[NodeID]int, len(nodes))
	for s := range keep {
		for n := range keep[s] {
			used[n]++
		}
	}

	// Fill phase: missing replicas go to nodes with spare capacity that do
	// not hold the shard, highest score first. When the greedy choice is
	// blocked, an augmenting path re-routes earlier fills (never kept
	// replicas), so no more replicas move than balance requires; only if no
	// such path exists does a kept replica move (swap).
	f := &filler{ns: ns, nodes: nodes, keep: keep, spare: map[NodeID]int{}}
	for _, n := range nodes {
		f.spare[n] = target[n] - used[n]
	}
	for s := range keep {
		for len(keep[s]) < replicas {
			if f.augment(s, map[NodeID]bool{}) {
				continue
			}
			if !swap(ns, s, keep, nodes, used, target) {
				return nil, nil, fmt.Errorf("placement: cannot place shard %d (internal error)", s)
			}
		}
	}

	out := make(Assignment, shards)
	var moves []Move
	for s := range keep {
		out[s] = sortedByScore(ns, s, keys(keep[s]))
		for _, n := range cur[s] {
			if !keep[s][n] {
				moves = append(moves, Move{Shard: s, From: n})
			}
		}
		for _, n := range out[s] {
			if !held[s][n] {
				moves = append(moves, Move{Shard: s, To: n})
			}
		}
	}
	return out, pairMoves(moves), nil
}

// filler assigns missing replicas as a capacitated bipartite matching
// between shards and nodes' spare slots.
type filler struct {
	ns    string
	nodes []NodeID
	keep  []map[NodeID]bool // replica sets being built (kept + filled)
	spare map[NodeID]int
	// filled[n] lists the shards given to n by this phase (re-routable).
	filled map[NodeID][]int
}

// augment gives shard s one more node, re-routing earlier fills if needed.
func (f *filler) augment(s int, visited map[NodeID]bool) bool {
	if f.filled == nil {
		f.filled = map[NodeID][]int{}
	}
	cands := sortedByScore(f.ns, s, slices.Clone(f.nodes))
	for _, n := range cands {
		if f.keep[s][n] || visited[n] || f.spare[n] <= 0 {
			continue
		}
		f.take(s, n)
		return true
	}
	for _, n := range cands {
		if f.keep[s][n] || visited[n] {
			continue
		}
		visited[n] = true
		for i, s2 := range f.filled[n] {
			if s2 == s {
				continue
			}
			// Move s2's fill from n elsewhere, then n's slot goes to s.
			delete(f.keep[s2], n)
			f.spare[n]++
			f.filled[n] = slices.Delete(f.filled[n], i, i+1)
			if f.augment(s2, visited) {
				f.take(s, n)
				return true
			}
			f.keep[s2][n] = true
			f.spare[n]--
			f.filled[n] = slices.Insert(f.filled[n], i, s2)
		}
	}
	return false
}

func (f *filler) take(s int, n NodeID) {
	f.keep[s][n] = true
	f.spare[n]--
	f.filled[n] = append(f.filled[n], s)
}

// swap frees a slot for shard s: it finds a node y not holding s whose
// replica of some shard s2 can move to a spare node x that lacks s2, moves
// it, and gives y's slot to s.
func swap(ns string, s int, keep []map[NodeID]bool, nodes []NodeID, used, target map[NodeID]int) bool {
	for _, x := range nodes {
		if used[x] >= target[x] {
			continue
		}
		for _, y := range nodes {
			if keep[s][y] || y == x {
				continue
			}
			for s2 := range keep {
				if s2 != s && keep[s2][y] && !keep[s2][x] {
					delete(keep[s2], y)
					keep[s2][x] = true
					keep[s][y] = true
					used[x]++
					return true
				}
			}
		}
	}
	return false
}

func keys(m map[NodeID]bool) []NodeID {
	out := make([]NodeID, 0, len(m))
	for n := range m {
		out = append(out, n)
	}
	return out
}

func sortedByScore(ns string, s int, set []NodeID) []NodeID {
	sort.Slice(set, func(i, j int) bool {
		a, b := score(ns, s, set[i]), score(ns, s, set[j])
		if a != b {
			return a > b
		}
		return set[i] < set[j]
	})
	return set
}

// pairMoves turns a removal and an addition on the same shard into one
// transfer, so a caller can stream the replica from its old node.
func pairMoves(moves []Move) []Move {
	var out []Move
	adds := map[int][]int{}
	for i, m := range moves {
		if m.From == "" {
			adds[m.Shard] = append(adds[m.Shard], i)
		}
	}
	paired := make([]bool, len(moves))
	for i, m := range moves {
		if m.To != "" || m.From == "" {
			continue
		}
		if a := adds[m.Shard]; len(a) > 0 {
			out = append(out, Move{Shard: m.Shard, From: m.From, To: moves[a[0]].To})
			paired[a[0]] = true
			adds[m.Shard] = a[1:]
			paired[i] = true
		}
	}
	for i, m := range moves {
		if !paired[i] {
			out = append(out, m)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Shard < out[j].Shard })
	return out
}
