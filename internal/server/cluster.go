package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/config"
	"github.com/fulcrumdb/fulcrum/internal/controlplane"
	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/raftlog"
	"github.com/fulcrumdb/fulcrum/internal/raftstore"
	"github.com/fulcrumdb/fulcrum/internal/resp"
	"github.com/fulcrumdb/fulcrum/internal/router"
	"github.com/fulcrumdb/fulcrum/internal/storage"
	"github.com/fulcrumdb/fulcrum/internal/transport"
)

// cluster is what a node adds when it is a cluster member: the peer
// transport, the Raft log, the strong engine, the control plane and the
// router in front.
type cluster struct {
	id     uint64
	peers  map[uint64]string
	store  *storage.Store
	tr     *transport.TCP
	log    *raftlog.Store
	node   *raftstore.Node
	meta   *controlplane.Service
	router *router.Router
	logger *slog.Logger

	// groups are the data groups this node runs, by id (touched only by
	// reconcile, on the control plane's goroutine).
	groups map[uint64]raftstore.GroupSpec

	// bg is the context of the background work (bootstrap, address
	// registration); close cancels it.
	bg     context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
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
	c := &cluster{id: cc.ID, peers: peers, store: st, logger: logger, groups: make(map[uint64]raftstore.GroupSpec)}
	tcfg := transport.DefaultTCPConfig()
	tcfg.ID = transport.NodeID(cc.ID)
	tcfg.ListenAddr = cc.PeerAddr
	tcfg.ClusterID = cc.Name
	tcfg.Resolve = func(id transport.NodeID) (string, bool) {
		a, ok := peers[uint64(id)]
		return a, ok
	}
	tcfg.Logger = logger.With("component", "transport")
	// Peer traffic leaves from the peer address's host when it is a
	// specific IP, so it can be told apart (and firewalled) by address.
	if host, _, err := net.SplitHostPort(cc.PeerAddr); err == nil {
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
			tcfg.SourceIP = host
		}
	}
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

	// The control plane's group spans every initial member; the smallest
	// id campaigns first so a new cluster has its metadata leader at once.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	meta := raftstore.GroupSpec{ID: controlplane.MetaGroup, Namespace: controlplane.MetaNamespace, Shard: 0, Shards: 1, Peers: ids, Campaign: ids[0] == cc.ID}
	if err := c.node.CreateGroup(ctx, meta); err != nil {
		c.closeEngine()
		return nil, fmt.Errorf("cluster: control plane group: %w", err)
	}
	c.meta = controlplane.New(controlplane.Config{Engine: c.node, Store: st, Logger: logger.With("component", "controlplane"), Now: now})
	c.router, err = router.New(router.Config{
		Self: cc.ID, Engine: c.node, Store: st, Transport: c.tr,
		Refresh: c.meta.Refresh,
		Timeout: time.Duration(cc.RequestTimeout),
		Logger:  logger.With("component", "router"),
	})
	if err != nil {
		c.closeEngine()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	c.tr.Handle(transport.KindForward, c.router)
	c.meta.Subscribe(c.reconcile)
	c.meta.Start()

	// Bootstrap needs a quorum of the meta group, so it cannot block
	// New: the members start one after another.
	c.bg, c.cancel = context.WithCancel(context.Background())
	bctx := c.bg
	self := controlplane.Member{ID: cc.ID, PeerAddr: peers[cc.ID], RESPAddr: cfg.RESP.Addr, HTTPAddr: cfg.HTTP.Addr}
	def := kv.Policy{Consistency: kv.ConsistencyStrong, Replicas: cc.Replicas, Shards: cc.Shards}
	c.wg.Add(2)
	go func() {
		defer c.wg.Done()
		if err := c.meta.Bootstrap(bctx, self, def, len(ids)); err != nil && bctx.Err() == nil {
			logger.Error("cluster bootstrap failed", "err", err)
		}
	}()
	go func() {
		defer c.wg.Done()
		c.balanceLeaders(bctx, ids[0])
	}()
	return c, nil
}

// leaderBalanceInterval is how often a node looks for leaderships to hand
// back to their preferred replicas.
const leaderBalanceInterval = 2 * time.Second

// balanceLeaders gives back, every leaderBalanceInterval, each leadership
// this node holds of a group whose preferred leader (the first replica in
// the layout; for the control plane the smallest member id) is another
// node that is fully caught up. After a failure and recovery the leaders
// return to where placement spread them, instead of piling up on the
// survivors.
func (c *cluster) balanceLeaders(ctx context.Context, metaPreferred uint64) {
	t := time.NewTicker(leaderBalanceInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		preferred := map[uint64]uint64{controlplane.MetaGroup: metaPreferred}
		for _, ns := range c.meta.View().Namespaces {
			for _, sh := range ns.Shards {
				preferred[sh.Group] = sh.Replicas[0]
			}
		}
		var wg sync.WaitGroup
		for _, st := range c.node.Groups() {
			pref := preferred[st.ID]
			if st.Leader != c.id || pref == 0 || pref == c.id {
				continue
			}
			if m, ok := st.Match[pref]; !ok || m < st.Commit {
				continue // not caught up (or down): leading stays here
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				tctx, cancel := context.WithTimeout(ctx, time.Second)
				defer cancel()
				if err := c.node.TransferLeadership(tctx, st.ID, pref); err == nil {
					c.logger.Info("leadership handed back to the preferred replica", "group", st.ID, "namespace", st.Namespace, "shard", st.Shard, "to", pref)
				}
			}()
		}
		wg.Wait()
	}
}

// setAddrs records the bound client addresses (known after Run listens)
// in this member's record, for cluster status and clients.
func (c *cluster) setAddrs(respAddr, httpAddr string) {
	self := controlplane.Member{ID: c.id, PeerAddr: c.peers[c.id], RESPAddr: respAddr, HTTPAddr: httpAddr}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for i := 0; i < 50; i++ {
			ctx, cancel := context.WithTimeout(c.bg, 2*time.Second)
			err := c.meta.RegisterMember(ctx, self)
			cancel()
			if err == nil || errors.Is(err, raftstore.ErrClosed) {
				return
			}
			select {
			case <-time.After(200 * time.Millisecond):
			case <-c.bg.Done():
				return
			}
		}
	}()
}

// reconcile makes the local replicas match a new view: it starts the
// groups the view places here and drops the ones it no longer does, then
// hands the namespaces to the router.
func (c *cluster) reconcile(v *controlplane.View) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	want := make(map[uint64]raftstore.GroupSpec)
	var table []router.Namespace
	for _, ns := range v.Namespaces {
		rn := router.Namespace{Name: ns.Name, Shards: ns.Policy.Shards}
		for _, sh := range ns.Shards {
			rn.Groups = append(rn.Groups, sh.Group)
			rn.Replicas = append(rn.Replicas, sh.Replicas)
			if slices.Contains(sh.Replicas, c.id) {
				want[sh.Group] = raftstore.GroupSpec{ID: sh.Group, Namespace: ns.Name, Shard: sh.Shard, Shards: ns.Policy.Shards,
					Peers: sh.Replicas, Campaign: sh.Replicas[0] == c.id}
			}
		}
		table = append(table, rn)
	}
	for id, spec := range want {
		if _, ok := c.groups[id]; ok {
			continue
		}
		if err := c.node.CreateGroup(ctx, spec); err != nil {
			c.logger.Error("cannot start shard replica", "group", id, "namespace", spec.Namespace, "shard", spec.Shard, "err", err)
			continue
		}
		c.groups[id] = spec
	}
	for id, spec := range c.groups {
		if _, ok := want[id]; ok {
			continue
		}
		// The namespace was dropped (or the shard moved away): stop the
		// replica and delete its rows here.
		if err := c.node.RemoveGroup(ctx, id); err != nil {
			c.logger.Error("cannot stop shard replica", "group", id, "err", err)
			continue
		}
		flush := kv.Batch{Ops: []kv.Op{{Kind: kv.OpFlush, Namespace: spec.Namespace}}, Shard: spec.Shard, Shards: spec.Shards}
		if _, err := c.store.Apply(ctx, flush); err != nil {
			c.logger.Error("cannot delete a dropped shard's rows", "group", id, "err", err)
		}
		delete(c.groups, id)
	}
	if err := c.router.SetNamespaces(table); err != nil {
		c.logger.Error("bad namespace table", "err", err)
	}
}

// closeEngine stops the engine, the transport and the log, in that
// order: the engine must not send or persist after they are gone.
func (c *cluster) closeEngine() error {
	nodeErr := c.node.Close()
	trErr := c.tr.Close()
	logErr := c.log.Close()
	return errors.Join(nodeErr, trErr, logErr)
}

// close hands leadership away (within ctx), then stops everything.
func (c *cluster) close(ctx context.Context) error {
	c.cancel()
	c.wg.Wait()
	// A failed drain is not fatal: the others elect a leader after a
	// timeout instead.
	_ = c.node.Drain(ctx)
	c.meta.Close()
	return c.closeEngine()
}

// ClusterStatus is the JSON of GET /v1/cluster: this node's view.
type ClusterStatus struct {
	Node  uint64            `json:"node"`
	Peers map[string]string `json:"peers"`
	// Members are the nodes the control plane knows, with their client
	// addresses.
	Members []controlplane.Member `json:"members"`
	Shards  []ShardStatus         `json:"shards"`
	Engine  raftstore.Stats       `json:"engine"`
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
	v := c.meta.View()
	for _, id := range v.MemberIDs() {
		st.Members = append(st.Members, v.Members[id])
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

// namespaceAdmin is the control plane's namespace management for the
// front ends, with the leaders this node knows filled in.
type namespaceAdmin struct{ c *cluster }

func (a namespaceAdmin) CreateNamespace(ctx context.Context, name string, p kv.Policy) (kv.NamespaceInfo, error) {
	return a.c.meta.CreateNamespace(ctx, name, p)
}

func (a namespaceAdmin) DropNamespace(ctx context.Context, name string) error {
	return a.c.meta.DropNamespace(ctx, name)
}

func (a namespaceAdmin) Namespace(ctx context.Context, name string) (kv.NamespaceInfo, error) {
	n, err := a.c.meta.Namespace(ctx, name)
	if err != nil {
		return n, err
	}
	return a.withLeaders(n), nil
}

func (a namespaceAdmin) Namespaces(ctx context.Context) ([]kv.NamespaceInfo, error) {
	list, err := a.c.meta.Namespaces(ctx)
	for i := range list {
		list[i] = a.withLeaders(list[i])
	}
	return list, err
}

func (a namespaceAdmin) withLeaders(n kv.NamespaceInfo) kv.NamespaceInfo {
	shards := slices.Clone(n.Shards)
	for i, s := range shards {
		if st, ok := a.c.node.Status(s.Group); ok {
			shards[i].Leader = st.Leader
		}
	}
	n.Shards = shards
	return n
}
