package failover

// Active is the active node of an active-passive set of shards given
// each shard's primary (0: none): the node that is primary of the most
// of them, ties to the highest id (where active-passive places the
// first primaries). 0 when no shard has a primary. The control plane's
// nodes (for the service address) and the clients that follow the
// active (fulcrum proxy, package client) use the same rule, so they
// agree on one node.
func Active(primaries []NodeID) NodeID {
	count := make(map[NodeID]int)
	var active NodeID
	for _, p := range primaries {
		if p == 0 {
			continue
		}
		count[p]++
		if n := count[p]; n > count[active] || n == count[active] && p > active {
			active = p
		}
	}
	return active
}
