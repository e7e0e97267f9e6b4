package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/config"
	"github.com/fulcrumdb/fulcrum/internal/raftlog"
	"github.com/fulcrumdb/fulcrum/internal/raftstore"
	"github.com/fulcrumdb/fulcrum/internal/resp"
	"github.com/fulcrumdb/fulcrum/internal/router"
	"github.com/fulcrumdb/fulcrum/internal/storage"
	"github.com/fulcrumdb/fulcrum/internal/transport"
)

// cluster is what a node adds when it is a cluster member: the peer
// transport, the Raft log, the strong engine and the router in front.
type cluster struct {
	id     uint64
	peers  map[uint64]string
	tr     *transport.TCP
	log    *raftlog.Store
	node   *raftstore.Node
	router *router.Router
	layout router.Namespace
}

// clusterDirs are where a member keeps its state machine and its Raft log.
func clusterDirs(cfg config.Config) (state, raftDir string) {
	return filepath.Join(cfg.Data.Dir, "state"), filepath.Join(cfg.Data.Dir, "raft")
}

// openCluster joins the static cluster cfg describes, on top of the
// node's state machine st. On error nothing it opened is left open.
func openCluster(cfg config.Config, st *storage.Store, logger *slog.Logger, now func() time.Time) (*cluster, error) {
	cc := cfg.Cluster
	peers, err := cc.PeerMap()
	if err != nil {
		return nil, err
	}
	ids := make([]uint64, 0, len(peers))
	for id := range peers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	layout, err := router.StaticLayout("default", cc.Shards, min(cc.Replicas, len(ids)), ids, 1)
	if err != nil {
		return nil, err
	}
	c := &cluster{id: cc.ID, peers: peers, layout: layout}
	tcfg := transport.DefaultTCPConfig()
	tcfg.ID = transport.NodeID(cc.ID)
	tcfg.ListenAddr = cc.PeerAddr
	tcfg.ClusterID = cc.Name
	tcfg.Resolve = func(id transport.NodeID) (string, bool) {
		a, ok := peers[uint64(id)]
		return a, ok
	}
	tcfg.Logger = logger.With("component", "transport")
	if c.tr, err = transport.NewTCP(tcfg); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	_, raftDir := clusterDirs(cfg)
	if c.log, err = raftlog.Open(raftlog.Options{Dir: raftDir, Logger: logger.With("component", "raftlog")}); err != nil {
		c.tr.Close()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	c.node, err = raftstore.New(raftstore.Config{
		NodeID:        cc.ID,
		Transport:     c.tr,
		Log:           c.log,
		Store:         st,
		TickInterval:  time.Duration(cc.Tick),
		ElectionTicks: cc.ElectionTicks,
		Now:           now,
		Logger:        logger.With("component", "raftstore"),
	})
	if err != nil {
		c.tr.Close()
		c.log.Close()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	c.tr.Handle(transport.KindRaft, c.node)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for s := 0; s < layout.Shards; s++ {
		if !slices.Contains(layout.Replicas[s], cc.ID) {
			continue
		}
		spec := raftstore.GroupSpec{ID: layout.Groups[s], Namespace: layout.Name, Shard: s, Shards: layout.Shards, Peers: layout.Replicas[s]}
		if err := c.node.CreateGroup(ctx, spec); err != nil {
			c.close(context.Background())
			return nil, fmt.Errorf("cluster: %w", err)
		}
	}
	c.router, err = router.New(router.Config{
		Self: cc.ID, Engine: c.node, Store: st, Transport: c.tr,
		Namespaces: []router.Namespace{layout},
		Timeout:    time.Duration(cc.RequestTimeout),
		Logger:     logger.With("component", "router"),
	})
	if err != nil {
		c.close(context.Background())
		return nil, fmt.Errorf("cluster: %w", err)
	}
	c.tr.Handle(transport.KindForward, c.router)
	return c, nil
}

// close hands leadership away (within ctx), then stops the engine, the
// transport and the log, in that order: the engine must not send or
// persist after they are gone.
func (c *cluster) close(ctx context.Context) error {
	if err := c.node.Drain(ctx); err != nil {
		// Not fatal: the others elect a leader after a timeout instead.
		_ = err
	}
	nodeErr := c.node.Close()
	trErr := c.tr.Close()
	logErr := c.log.Close()
	return errors.Join(nodeErr, trErr, logErr)
}

// ClusterStatus is the JSON of GET /v1/cluster: this node's view.
type ClusterStatus struct {
	Node   uint64            `json:"node"`
	Peers  map[string]string `json:"peers"`
	Shards []ShardStatus     `json:"shards"`
	Engine raftstore.Stats   `json:"engine"`
}

// ShardStatus is one local replica's state.
type ShardStatus struct {
	Namespace string            `json:"namespace"`
	Shard     int               `json:"shard"`
	Group     uint64            `json:"group"`
	Leader    uint64            `json:"leader"`
	Term      uint64            `json:"term"`
	State     string            `json:"state"`
	Commit    uint64            `json:"commit"`
	Applied   uint64            `json:"applied"`
	Voters    []uint64          `json:"voters"`
	Lag       map[string]uint64 `json:"lag,omitempty"` // on the leader: entries each replica is behind
}

func (c *cluster) status() ClusterStatus {
	st := ClusterStatus{Node: c.id, Peers: make(map[string]string), Engine: c.node.Stats()}
	for id, a := range c.peers {
		st.Peers[strconv.FormatUint(id, 10)] = a
	}
	for _, g := range c.node.Groups() {
		s := ShardStatus{Namespace: g.Namespace, Shard: g.Shard, Group: g.ID, Leader: g.Leader, Term: g.Term,
			State: g.State, Commit: g.Commit, Applied: g.Applied, Voters: g.Voters}
		if g.Match != nil {
			s.Lag = make(map[string]uint64)
			for id, m := range g.Match {
				s.Lag[strconv.FormatUint(id, 10)] = g.LastIndex - min(m, g.LastIndex)
			}
		}
		st.Shards = append(st.Shards, s)
	}
	sort.Slice(st.Shards, func(i, j int) bool {
		a, b := st.Shards[i], st.Shards[j]
		return a.Namespace < b.Namespace || (a.Namespace == b.Namespace && a.Shard < b.Shard)
	})
	return st
}

func (c *cluster) serveStatus(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(c.status())
}

// info is INFO's Cluster section.
func (c *cluster) info() []resp.InfoField {
	st := c.status()
	leading := 0
	for _, s := range st.Shards {
		if s.Leader == c.id {
			leading++
		}
	}
	e := st.Engine
	return []resp.InfoField{
		{Name: "cluster_enabled", Value: "1"},
		{Name: "fulcrum_node_id", Value: strconv.FormatUint(c.id, 10)},
		{Name: "fulcrum_nodes", Value: strconv.Itoa(len(c.peers))},
		{Name: "fulcrum_shards_local", Value: strconv.Itoa(len(st.Shards))},
		{Name: "fulcrum_shards_leading", Value: strconv.Itoa(leading)},
		{Name: "fulcrum_raft_proposals", Value: strconv.FormatUint(e.Proposals, 10)},
		{Name: "fulcrum_raft_applied", Value: strconv.FormatUint(e.Applied, 10)},
		{Name: "fulcrum_raft_read_index", Value: strconv.FormatUint(e.ReadIndex, 10)},
		{Name: "fulcrum_raft_leader_changes", Value: strconv.FormatUint(e.LeaderChanges, 10)},
		{Name: "fulcrum_raft_snapshots_sent", Value: strconv.FormatUint(e.SnapshotsSent, 10)},
		{Name: "fulcrum_raft_snapshots_applied", Value: strconv.FormatUint(e.SnapshotsApplied, 10)},
		{Name: "fulcrum_raft_log_syncs", Value: strconv.FormatUint(e.PersistSyncs, 10)},
	}
}
