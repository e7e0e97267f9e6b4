// Package proxy is "fulcrum proxy": a TCP proxy for clients that cannot
// follow a replication=primary namespace's active node themselves and
// where the service address cannot move (no cluster.vip: no privilege,
// or no shared layer-2 network).
//
// It reads the control plane's view from any member's HTTP API every
// Poll (GET /v1/namespaces/NS for the shards' primaries, GET /v1/cluster
// for the members' RESP addresses), takes the node that is primary of
// most of the namespace's shards as the active one, and pipes every new
// client connection to it. When the active changes it closes the open
// pipes, so clients reconnect (as Redis clients do after a failover) and
// land on the new active within Poll of the control plane's promotion.
//
// # Guarantees
//
// The proxy adds no state of its own: a byte stream goes to one node, and
// a connection is never moved to another node mid-stream (a command in
// flight when the active changes fails on the client as a closed
// connection; its outcome is unknown, as with any connection loss). What
// a write's acknowledgement means is the namespace's ack mode. Any node
// also forwards writes to the shard's primary, so a connection that
// reaches a replica during the switch is still served.
//
// # Goroutines
//
// Run owns everything it starts: the view poller, one goroutine per
// client connection and one copier per pipe; they stop when Run's context
// ends, and Run returns after they have.
package proxy
