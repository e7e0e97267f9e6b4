package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/config"
	"github.com/fulcrumdb/fulcrum/internal/controlplane"
	"github.com/fulcrumdb/fulcrum/internal/kv"
	lnode "github.com/fulcrumdb/fulcrum/internal/leaderless/node"
	"github.com/fulcrumdb/fulcrum/internal/primary"
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
	id    uint64
	peers map[uint64]string
	store *storage.Store
	tr    *transport.TCP
	log   *raftlog.Store
	node  *raftstore.Node
	meta  *controlplane.Service
	// metaRef is meta for the transport's resolver, which runs before
	// meta exists.
	metaRef atomic.Pointer[controlplane.Service]
	router  *router.Router
	// eventual is the leaderless engine of eventual and weak namespaces.
	eventual *lnode.Engine
	// primary is the primary/replica engine of replication=primary
	// namespaces, authority the control plane's failover authority, and
	// primaryShards the engine's shards (guarded by reconciling).
	primary       *primary.Engine
	authority     *controlplane.Primaries
	primaryShards map[uint64]bool
	logger        *slog.Logger

	// groups are the data groups this node runs, by id; reconciling
	// guards it (the control plane's subscriber and the retry both
	// reconcile). reconcileFailed asks for a retry.
	reconciling     sync.Mutex
	groups          map[uint64]raftstore.GroupSpec
	reconcileFailed atomic.Bool
	// lingering are local replicas of groups whose target no longer holds
	// this node but whose removal from the group's membership is not yet
	// confirmed: they keep running (the group may still count on them)
	// until it is. Guarded by reconciling.
	lingering map[uint64]bool
	// restored is set once the replicas left on disk by an earlier run
	// were looked at. Guarded by reconciling.
	restored bool
	// leaderlessNS are the eventual and weak namespaces of the last view
	// reconciled: one that disappears was dropped, and its rows here go.
	// Guarded by reconciling.
	leaderlessNS map[string]bool
	// antiEntropy, hintWindow and tombstoneGrace are cluster.*'s.
	antiEntropy, hintWindow, tombstoneGrace, requestTimeout time.Duration
	// aeBandwidth is cluster.anti_entropy_bandwidth.
	aeBandwidth int64
	// started is when this node started (a node heard from nobody yet
	// must not take silence for death).
	started time.Time

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

// openCluster makes the node a member of the cluster cfg describes (the
// static initial members, or joining a running cluster through
// cluster.join), on top of the node's state machine st. On error nothing
// it opened is left open.
func openCluster(cfg config.Config, st *storage.Store, logger *slog.Logger, now func() time.Time) (*cluster, error) {
	cc := cfg.Cluster
	joining := cc.Join != ""
	var (
		peers map[uint64]string
		err   error
	)
	if joining {
		if cc.ID, peers, err = join(cfg, logger); err != nil {
			return nil, err
		}
	} else if peers, err = cc.PeerMap(); err != nil {
		return nil, err
	}
	ids := make([]uint64, 0, len(peers))
	for id := range peers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	c := &cluster{id: cc.ID, peers: peers, store: st, logger: logger, groups: make(map[uint64]raftstore.GroupSpec), lingering: make(map[uint64]bool), started: now(), antiEntropy: time.Duration(cc.AntiEntropy), hintWindow: time.Duration(cc.HintWindow), tombstoneGrace: time.Duration(cc.TombstoneGrace), requestTimeout: time.Duration(cc.RequestTimeout), aeBandwidth: int64(cc.AntiEntropyBandwidth)}
	tcfg := transport.DefaultTCPConfig()
	tcfg.ID = transport.NodeID(cc.ID)
	tcfg.ListenAddr = cc.PeerAddr
	tcfg.ClusterID = cc.Name
	// Addresses come from the control plane's member records once they
	// are loaded (members that joined later are only there), else from the
	// static list.
	tcfg.Resolve = func(id transport.NodeID) (string, bool) {
		if m := c.metaRef.Load(); m != nil {
			if mem, ok := m.View().Members[uint64(id)]; ok && mem.PeerAddr != "" {
				return mem.PeerAddr, true
			}
		}
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
		LeaseReads:    cc.LeaseReads,
		MaxClockDrift: time.Duration(cc.MaxClockDrift),
		Now:           now,
		Logger:        logger.With("component", "raftstore"),
	})
	if err != nil {
		c.tr.Close()
		c.log.Close()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	c.tr.Handle(transport.KindRaft, c.node)

	// The control plane's group: the first 3 or 5 initial members vote (the
	// smallest id campaigns at once, so a new cluster has its metadata
	// leader quickly); the other members and joined nodes are learners.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	voters := metaVoters(ids)
	meta := raftstore.GroupSpec{ID: controlplane.MetaGroup, Namespace: controlplane.MetaNamespace, Shard: 0, Shards: 1, Peers: voters, Campaign: ids[0] == cc.ID}
	if joining || !slices.Contains(voters, cc.ID) {
		// A learner of the control plane: it gets the log from the leader.
		meta.Peers, meta.Campaign = nil, false
	}
	if err := c.node.CreateGroup(ctx, meta); err != nil {
		c.closeEngine()
		return nil, fmt.Errorf("cluster: control plane group: %w", err)
	}
	c.meta = controlplane.New(controlplane.Config{Engine: c.node, Store: st, Logger: logger.With("component", "controlplane"), Now: now})
	c.metaRef.Store(c.meta)
	c.router, err = router.New(router.Config{
		Self: cc.ID, Engine: c.node, Store: st, Transport: c.tr,
		Leaderless:    leaderlessRef{c},
		Primaries:     primaryRef{c},
		Refresh:       c.meta.Refresh,
		ReadsToLeader: cc.LeaseReads,
		Timeout:       time.Duration(cc.RequestTimeout),
		Logger:        logger.With("component", "router"),
	})
	if err != nil {
		c.closeEngine()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	c.tr.Handle(transport.KindForward, c.router)
	if err := c.startEventual(now, logger); err != nil {
		c.closeEngine()
		return nil, err
	}
	if err := c.startPrimary(time.Duration(cc.FailoverTimeout), now, logger); err != nil {
		c.closeEngine()
		return nil, err
	}
	vipOwner, err := newVIPOwner(cc.VIP, cc.VIPInterface)
	if err != nil {
		c.closeEngine()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	c.tr.Handle(transport.KindControl, transport.HandlerFuncs{OnServe: c.serveControl})
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
		if joining {
			return // the member that let us in registered us
		}
		// The first voter makes the other initial members learners of the
		// control plane (adding an existing learner changes nothing); they
		// can register, and so let bootstrap finish, only after that.
		if cc.ID == voters[0] {
			for _, id := range ids[len(voters):] {
				for bctx.Err() == nil {
					actx, cancel := context.WithTimeout(bctx, 5*time.Second)
					err := c.node.AddLearner(actx, controlplane.MetaGroup, id)
					cancel()
					if err == nil {
						break
					}
					logger.Warn("cannot add a control-plane learner yet", "node", id, "err", err)
				}
			}
		}
		if err := c.meta.Bootstrap(bctx, self, def, len(ids)); err != nil && bctx.Err() == nil {
			logger.Error("cluster bootstrap failed", "err", err)
		}
	}()
	go func() {
		defer c.wg.Done()
		c.maintain(bctx, ids[0])
	}()
	if vipOwner != nil {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.runVIP(bctx, vipOwner)
		}()
	}
	return c, nil
}

// metaVoters picks the control plane's voters among the initial members:
// 5 from 5 members on, else 3 from 3 on (an even count adds no fault
// tolerance), else all; the rest follow as learners.
func metaVoters(ids []uint64) []uint64 {
	switch {
	case len(ids) >= 5:
		return ids[:5]
	case len(ids) >= 3:
		return ids[:3]
	}
	return ids
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
	c.reconciling.Lock()
	defer c.reconciling.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	failed := false
	defer func() { c.reconcileFailed.Store(failed) }()
	want := make(map[uint64]raftstore.GroupSpec)
	known := make(map[uint64]raftstore.GroupSpec) // every data group of the view
	var table []router.Namespace
	for _, ns := range v.Namespaces {
		rn := router.Namespace{Name: ns.Name, Shards: ns.Policy.Shards, Policy: ns.Policy}
		if ns.Policy.Engine() == kv.EnginePrimary {
			rn.Primaries = primariesOf(v, ns)
		}
		for _, sh := range ns.Shards {
			rn.Groups = append(rn.Groups, sh.Group)
			rn.Replicas = append(rn.Replicas, sh.Replicas)
			if ns.Policy.Engine() != kv.EngineRaft {
				continue // the leaderless or primary engine's: no Raft group
			}
			spec := raftstore.GroupSpec{ID: sh.Group, Namespace: ns.Name, Shard: sh.Shard, Shards: ns.Policy.Shards}
			known[sh.Group] = spec
			if slices.Contains(sh.Replicas, c.id) {
				initial := sh.Initial
				if len(initial) == 0 {
					initial = sh.Replicas
				}
				// Only the group's first voters bootstrap it; a replica
				// moved in starts empty and waits to be added.
				if slices.Contains(initial, c.id) {
					spec.Peers, spec.Campaign = initial, sh.Replicas[0] == c.id
				}
				want[sh.Group] = spec
			}
		}
		table = append(table, rn)
	}
	if !c.restored && len(v.Namespaces) > 0 {
		// A replica that was moving away when this node stopped is still
		// on disk: run it again as lingering, so it is deleted once its
		// group confirms it is out.
		c.restored = true
		ids, err := c.log.Groups()
		if err != nil {
			c.logger.Error("cannot list the Raft groups on disk", "err", err)
		}
		for _, id := range ids {
			spec, ok := known[id]
			if _, wanted := want[id]; !ok || wanted {
				continue
			}
			if err := c.node.CreateGroup(ctx, spec); err != nil {
				c.logger.Error("cannot restart a moving-away replica", "group", id, "err", err)
				continue
			}
			c.groups[id] = spec
		}
	}
	for id, spec := range want {
		delete(c.lingering, id) // moved back before it left
		if _, ok := c.groups[id]; ok {
			continue
		}
		if err := c.node.CreateGroup(ctx, spec); err != nil {
			c.logger.Error("cannot start shard replica", "group", id, "namespace", spec.Namespace, "shard", spec.Shard, "err", err)
			failed = true
			continue
		}
		c.groups[id] = spec
	}
	for id := range c.groups {
		if _, ok := want[id]; ok {
			continue
		}
		if _, ok := known[id]; ok {
			// The shard moves away: the replica stays until the group's
			// leader has taken it out of the membership (maintain).
			c.lingering[id] = true
			continue
		}
		// The namespace was dropped: stop the replica and delete its rows.
		if err := c.node.RemoveGroup(ctx, id); err != nil {
			c.logger.Error("cannot stop shard replica", "group", id, "err", err)
			failed = true
			continue
		}
		delete(c.groups, id)
		delete(c.lingering, id)
	}
	if !c.syncPrimaryShards(v) {
		failed = true
	}
	if err := c.router.SetNamespaces(table); err != nil {
		c.logger.Error("bad namespace table", "err", err)
	}
	c.dropLeaderless(ctx, v)
}

// closeEngine stops the engines, the transport and the log, in that
// order: the engines must not send or persist after they are gone.
func (c *cluster) closeEngine() error {
	var evErr error
	if c.eventual != nil {
		evErr = c.eventual.Close()
	}
	if c.primary != nil {
		evErr = errors.Join(evErr, c.primary.Close())
	}
	nodeErr := c.node.Close()
	trErr := c.tr.Close()
	logErr := c.log.Close()
	return errors.Join(evErr, nodeErr, trErr, logErr)
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
	// Primaries are the local replicas of replication=primary shards.
	Primaries []PrimaryShardStatus `json:"primaries,omitempty"`
	Engine    raftstore.Stats      `json:"engine"`
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
	Learners  []uint64          `json:"learners,omitempty"` // replicas catching up (a move under way)
	Lag       map[string]uint64 `json:"lag,omitempty"`      // on the leader: entries each replica is behind
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
			State: g.State, Commit: g.Commit, Applied: g.Applied, Voters: g.Voters, Learners: g.Learners}
		if g.Match != nil {
			s.Lag = make(map[string]uint64)
			for id, m := range g.Match {
				s.Lag[strconv.FormatUint(id, 10)] = g.LastIndex - min(m, g.LastIndex)
			}
		}
		st.Shards = append(st.Shards, s)
	}
	st.Primaries = c.primaryStatus()
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
	fields := []resp.InfoField{
		{Name: "cluster_enabled", Value: "1"},
		{Name: "fulcrum_node_id", Value: strconv.FormatUint(c.id, 10)},
		{Name: "fulcrum_nodes", Value: strconv.Itoa(len(st.Members))},
		{Name: "fulcrum_shards_local", Value: strconv.Itoa(len(st.Shards))},
		{Name: "fulcrum_shards_leading", Value: strconv.Itoa(leading)},
		{Name: "fulcrum_raft_proposals", Value: strconv.FormatUint(e.Proposals, 10)},
		{Name: "fulcrum_raft_applied", Value: strconv.FormatUint(e.Applied, 10)},
		{Name: "fulcrum_raft_read_index", Value: strconv.FormatUint(e.ReadIndex, 10)},
		{Name: "fulcrum_raft_lease_reads", Value: strconv.FormatUint(e.LeaseReads, 10)},
		{Name: "fulcrum_raft_leader_changes", Value: strconv.FormatUint(e.LeaderChanges, 10)},
		{Name: "fulcrum_raft_snapshots_sent", Value: strconv.FormatUint(e.SnapshotsSent, 10)},
		{Name: "fulcrum_raft_snapshots_applied", Value: strconv.FormatUint(e.SnapshotsApplied, 10)},
		{Name: "fulcrum_raft_log_syncs", Value: strconv.FormatUint(e.PersistSyncs, 10)},
	}
	ev := c.eventual.Stats()
	lastFull := "never"
	if !ev.AntiEntropyLastFull.IsZero() {
		lastFull = strconv.FormatInt(time.Since(ev.AntiEntropyLastFull).Milliseconds(), 10)
	}
	fields = append(fields, primaryInfo(st.Primaries)...)
	return append(fields,
		resp.InfoField{Name: "fulcrum_leaderless_hints_pending", Value: strconv.Itoa(ev.HintsPending)},
		resp.InfoField{Name: "fulcrum_leaderless_hints_delivered", Value: strconv.FormatUint(ev.HintsDelivered, 10)},
		resp.InfoField{Name: "fulcrum_leaderless_read_repairs", Value: strconv.FormatUint(ev.RepairsSent, 10)},
		resp.InfoField{Name: "fulcrum_leaderless_anti_entropy_rounds", Value: strconv.FormatUint(ev.AntiEntropyRounds, 10)},
		resp.InfoField{Name: "fulcrum_leaderless_anti_entropy_pulled", Value: strconv.FormatUint(ev.AntiEntropyPulled, 10)},
		resp.InfoField{Name: "fulcrum_leaderless_anti_entropy_pushed", Value: strconv.FormatUint(ev.AntiEntropyPushed, 10)},
		resp.InfoField{Name: "fulcrum_leaderless_anti_entropy_last_full_ms_ago", Value: lastFull},
		resp.InfoField{Name: "fulcrum_leaderless_tombstones_collected", Value: strconv.FormatUint(ev.TombstonesCollected, 10)},
		resp.InfoField{Name: "fulcrum_leaderless_tombstones_refused", Value: strconv.FormatUint(ev.TombstonesRefused, 10)},
	)
}

// JoinRequest is the body of POST /v1/cluster/join: the joining node's
// addresses.
type JoinRequest struct {
	PeerAddr string `json:"peer_addr"`
	RESPAddr string `json:"resp_addr,omitempty"`
	HTTPAddr string `json:"http_addr,omitempty"`
}

// JoinResponse tells a joining node who it is and who the others are.
type JoinResponse struct {
	ID      uint64                `json:"id"`
	Members []controlplane.Member `json:"members"`
}

// admit serves POST /v1/cluster/join: it gives the node an id, records its
// addresses, and adds it to the control plane's group as a learner.
func (c *cluster) admit(w http.ResponseWriter, r *http.Request) {
	fail := func(err error) {
		w.Header().Set("Content-Type", "application/json")
		code := kv.CodeOf(err)
		w.WriteHeader(code.HTTPStatus())
		_ = json.NewEncoder(w).Encode(map[string]string{"code": string(code), "message": err.Error()})
	}
	if r.Method != http.MethodPost {
		fail(kv.Errorf(kv.CodeInvalid, "method %s not allowed on /v1/cluster/join (allowed: POST)", r.Method))
		return
	}
	var req JoinRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		fail(kv.Errorf(kv.CodeInvalid, "join request: %v", err))
		return
	}
	if _, _, err := net.SplitHostPort(req.PeerAddr); err != nil {
		fail(kv.Errorf(kv.CodeInvalid, "join request: peer_addr %q is not host:port", req.PeerAddr))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	id, err := c.meta.AllocateNodeID(ctx)
	if err != nil {
		fail(err)
		return
	}
	m := controlplane.Member{ID: id, PeerAddr: req.PeerAddr, RESPAddr: req.RESPAddr, HTTPAddr: req.HTTPAddr}
	if err := c.meta.RegisterMember(ctx, m); err != nil {
		fail(err)
		return
	}
	if err := c.node.AddLearner(ctx, controlplane.MetaGroup, id); err != nil {
		fail(err)
		return
	}
	if err := c.meta.Refresh(ctx); err != nil {
		fail(err)
		return
	}
	v := c.meta.View()
	resp := JoinResponse{ID: id}
	for _, mid := range v.MemberIDs() {
		resp.Members = append(resp.Members, v.Members[mid])
	}
	c.logger.Info("node joined", "id", id, "peer_addr", req.PeerAddr)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

// joinIDFile keeps a joined node's id across restarts.
const joinIDFile = "cluster-id"

// join returns this node's id and the members' peer addresses: from the
// id file of an earlier join, or by asking cfg.Cluster.Join.
func join(cfg config.Config, logger *slog.Logger) (uint64, map[uint64]string, error) {
	path := filepath.Join(cfg.Data.Dir, joinIDFile)
	if b, err := os.ReadFile(path); err == nil {
		id, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil || id == 0 {
			return 0, nil, fmt.Errorf("cluster: %s: %q is not a node id", path, b)
		}
		// The members' addresses come from the local copy of the
		// control plane (and are re-learned through the join address's
		// node otherwise).
		peers, err := joinPeers(cfg, id, logger)
		if err != nil {
			peers = map[uint64]string{id: cfg.Cluster.PeerAddr}
		}
		return id, peers, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return 0, nil, fmt.Errorf("cluster: %w", err)
	}
	body, _ := json.Marshal(JoinRequest{PeerAddr: cfg.Cluster.PeerAddr, RESPAddr: cfg.RESP.Addr, HTTPAddr: cfg.HTTP.Addr})
	var resp JoinResponse
	if err := postJSON("http://"+cfg.Cluster.Join+"/v1/cluster/join", body, &resp); err != nil {
		return 0, nil, fmt.Errorf("cluster: join through %s: %w", cfg.Cluster.Join, err)
	}
	if err := os.MkdirAll(cfg.Data.Dir, 0o755); err != nil {
		return 0, nil, fmt.Errorf("cluster: %w", err)
	}
	if err := writeFileSync(path, []byte(strconv.FormatUint(resp.ID, 10)+"\n")); err != nil {
		return 0, nil, fmt.Errorf("cluster: keep the node id: %w", err)
	}
	logger.Info("joined the cluster", "id", resp.ID, "through", cfg.Cluster.Join)
	peers := make(map[uint64]string)
	for _, m := range resp.Members {
		peers[m.ID] = m.PeerAddr
	}
	return resp.ID, peers, nil
}

// joinPeers asks the join address for the current members (a restarted
// joined node whose local metadata may be behind).
func joinPeers(cfg config.Config, id uint64, logger *slog.Logger) (map[uint64]string, error) {
	var st ClusterStatus
	if err := getJSON("http://"+cfg.Cluster.Join+"/v1/cluster", &st); err != nil {
		logger.Warn("cannot reach the join address; using local metadata only", "err", err)
		return nil, err
	}
	peers := map[uint64]string{id: cfg.Cluster.PeerAddr}
	for _, m := range st.Members {
		peers[m.ID] = m.PeerAddr
	}
	return peers, nil
}

var joinClient = &http.Client{Timeout: 15 * time.Second}

func postJSON(url string, body []byte, out any) error {
	resp, err := joinClient.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	return decodeReply(resp, out)
}

func getJSON(url string, out any) error {
	resp, err := joinClient.Get(url)
	if err != nil {
		return err
	}
	return decodeReply(resp, out)
}

func decodeReply(resp *http.Response, out any) error {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(b))
	}
	return json.Unmarshal(b, out)
}

// writeFileSync writes a small file durably (file and directory synced).
func writeFileSync(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
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
	v := a.c.meta.View()
	for i, s := range shards {
		if n.Policy.Engine() == kv.EnginePrimary {
			// A primary namespace's leader is its shard's primary.
			shards[i].Leader = uint64(v.Primaries[s.Group].Primary)
			continue
		}
		if st, ok := a.c.node.Status(s.Group); ok {
			shards[i].Leader = st.Leader
		}
	}
	n.Shards = shards
	return n
}
