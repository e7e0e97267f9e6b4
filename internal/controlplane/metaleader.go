package controlplane

// MetaLeaderFor is where the control plane's leadership belongs among
// voters: on the voter that is primary of the fewest replication=primary
// shards, ties going to current (the leader now: every move of the
// leadership restarts the failover authority's leases, so while there are
// primaries it moves only for a real gain), then to fallback, then to the
// smallest id. Without primaries, ties go to fallback: the leadership
// returns to its usual place, instead of piling up on a survivor. 0 when
// there are no voters.
//
// The failover authority runs on the control plane's leader. When the
// node that dies is both that leader and a shard's primary, the shard
// waits for a control-plane election before its failover can even start
// (one to two seconds at the default Raft tick), so the leadership is kept
// away from primaries. With active-passive namespaces every primary sits
// on the active node, and this keeps the control plane on a standby.
func MetaLeaderFor(v *View, voters []uint64, current, fallback uint64) uint64 {
	if len(voters) == 0 {
		return 0
	}
	held := make(map[uint64]int, len(voters))
	if v != nil {
		for _, rec := range v.Primaries {
			held[uint64(rec.Primary)]++
		}
	}
	if v == nil || len(v.Primaries) == 0 {
		current = 0
	}
	best := uint64(0)
	better := func(id uint64) bool {
		switch {
		case best == 0 || held[id] < held[best]:
			return true
		case held[id] > held[best]:
			return false
		case id == current:
			return true
		case best == current:
			return false
		case id == fallback:
			return true
		case best == fallback:
			return false
		}
		return id < best
	}
	for _, id := range voters {
		if better(id) {
			best = id
		}
	}
	return best
}
