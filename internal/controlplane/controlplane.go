package controlplane

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/placement"
)

// MetaGroup is the Raft group id of the control plane; data groups are
// numbered from 1 by the meta group's counter and never reach it.
const MetaGroup uint64 = 1 << 62

// MetaNamespace is where the meta group keeps its records. Routers never
// serve it to clients.
const MetaNamespace = "_cluster"

// Record keys in MetaNamespace.
const (
	memberPrefix = "member/"
	// statePrefix keeps a member's state apart from its addresses, which
	// the member rewrites whenever it starts.
	statePrefix  = "state/"
	nsPrefix     = "ns/"
	groupCounter = "next_group"
	nodeCounter  = "next_node"
)

// Member states.
const (
	// StateActive members hold replicas and vote for the control plane.
	StateActive = ""
	// StateLeaving members are being emptied: placement no longer puts
	// replicas on them, and the shards' leaders move theirs away.
	StateLeaving = "leaving"
	// StateRemoved members hold nothing and are out of every group; the
	// process can be stopped. Their ids are never reused.
	StateRemoved = "removed"
)

// Engine is what the control plane needs from the strong engine.
type Engine interface {
	Write(ctx context.Context, group uint64, b kv.Batch) ([]kv.Result, error)
	ReadBarrier(ctx context.Context, group uint64) error
}

// Reader reads the node's local replica of the meta group.
type Reader interface {
	Scan(ctx context.Context, req kv.ScanRequest) (kv.ScanResult, error)
}

// Member is a node of the cluster.
type Member struct {
	ID       uint64 `json:"id"`
	PeerAddr string `json:"peer_addr"`
	RESPAddr string `json:"resp_addr,omitempty"`
	HTTPAddr string `json:"http_addr,omitempty"`
	// State is StateActive, StateLeaving or StateRemoved (kept in its own
	// record).
	State string `json:"state,omitempty"`
}

// View is one version of the cluster's metadata.
type View struct {
	// Version grows with every change to the metadata (the highest
	// record version seen).
	Version    uint64
	Members    map[uint64]Member
	Namespaces map[string]kv.NamespaceInfo
	// Primaries are the records of replication=primary shards, by group.
	Primaries map[uint64]PrimaryRecord
	// nsVersions are the namespace records' versions, for conditional
	// rewrites; primaryVersions the primary records'.
	nsVersions      map[string]uint64
	primaryVersions map[uint64]uint64
}

// Active returns the ids, in order, of the members placement may put
// replicas on.
func (v *View) Active() []uint64 {
	var ids []uint64
	for _, id := range v.MemberIDs() {
		if v.Members[id].State == StateActive {
			ids = append(ids, id)
		}
	}
	return ids
}

// Holds says whether any namespace's layout puts a replica on node.
func (v *View) Holds(node uint64) bool {
	for _, ns := range v.Namespaces {
		for _, sh := range ns.Shards {
			if slices.Contains(sh.Replicas, node) {
				return true
			}
		}
	}
	return false
}

// MemberIDs returns the members' ids in order.
func (v *View) MemberIDs() []uint64 {
	ids := make([]uint64, 0, len(v.Members))
	for id := range v.Members {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Config configures a Service.
type Config struct {
	Engine Engine
	Store  Reader
	// Poll is how often the local replica is read for changes (default
	// 100ms).
	Poll   time.Duration
	Logger *slog.Logger
	Now    func() time.Time
}

// Service is a node's handle on the control plane.
type Service struct {
	cfg Config

	// reloading serializes reloads, so views are published in order and
	// subscribers run one at a time.
	reloading sync.Mutex
	mu        sync.Mutex
	view      *View
	subs      []func(*View)

	refresh chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}
}

// New returns a service with an empty view. Subscribe, then Start.
func New(cfg Config) *Service {
	if cfg.Poll <= 0 {
		cfg.Poll = 100 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{
		cfg:     cfg,
		view:    &View{Members: map[uint64]Member{}, Namespaces: map[string]kv.NamespaceInfo{}},
		refresh: make(chan struct{}, 1),
	}
}

// Subscribe registers f to be called, in registration order and one call
// at a time, with every new view.
func (s *Service) Subscribe(f func(*View)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subs = append(s.subs, f)
}

// View returns the current view. Callers must not modify it.
func (s *Service) View() *View {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.view
}

// Start runs the refresh loop until Close.
func (s *Service) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	go s.run(ctx)
}

// Close stops the refresh loop.
func (s *Service) Close() {
	if s.cancel != nil {
		s.cancel()
		<-s.done
	}
}

func (s *Service) run(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(s.cfg.Poll)
	defer t.Stop()
	for {
		if err := s.reload(ctx); err != nil && ctx.Err() == nil {
			s.cfg.Logger.Warn("control plane: reading metadata", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.refresh:
		}
	}
}

// Refresh makes the local view catch up with the meta group: it waits for
// the read barrier, then reloads. Routers call it before answering that a
// namespace does not exist.
func (s *Service) Refresh(ctx context.Context) error {
	if err := s.cfg.Engine.ReadBarrier(ctx, MetaGroup); err != nil {
		return err
	}
	return s.reload(ctx)
}

// reload reads the local replica and publishes a new view if it changed.
func (s *Service) reload(ctx context.Context) error {
	s.reloading.Lock()
	defer s.reloading.Unlock()
	v, err := s.load(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if v.Version == s.view.Version && len(v.Members) == len(s.view.Members) && len(v.Namespaces) == len(s.view.Namespaces) {
		s.mu.Unlock()
		return nil
	}
	s.view = v
	subs := slices.Clone(s.subs)
	s.mu.Unlock()
	for _, f := range subs {
		f(v)
	}
	return nil
}

// load builds a view from the local replica's records.
func (s *Service) load(ctx context.Context) (*View, error) {
	v := &View{Members: map[uint64]Member{}, Namespaces: map[string]kv.NamespaceInfo{}, Primaries: map[uint64]PrimaryRecord{},
		nsVersions: map[string]uint64{}, primaryVersions: map[uint64]uint64{}}
	states := map[uint64]string{}
	req := kv.ScanRequest{Namespace: MetaNamespace, Limit: 1000}
	for {
		res, err := s.cfg.Store.Scan(ctx, req)
		if err != nil {
			return nil, err
		}
		for _, e := range res.Entries {
			v.Version = max(v.Version, e.Value.Version)
			key := string(e.Key)
			switch {
			case strings.HasPrefix(key, memberPrefix):
				var m Member
				if err := json.Unmarshal(e.Value.Data, &m); err != nil {
					return nil, fmt.Errorf("control plane: record %q: %w", key, err)
				}
				v.Members[m.ID] = m
			case strings.HasPrefix(key, nsPrefix):
				var n kv.NamespaceInfo
				if err := json.Unmarshal(e.Value.Data, &n); err != nil {
					return nil, fmt.Errorf("control plane: record %q: %w", key, err)
				}
				v.Namespaces[n.Name] = n
				v.nsVersions[n.Name] = e.Value.Version
			case strings.HasPrefix(key, primaryPrefix):
				var r PrimaryRecord
				if err := json.Unmarshal(e.Value.Data, &r); err != nil {
					return nil, fmt.Errorf("control plane: record %q: %w", key, err)
				}
				v.Primaries[r.Group] = r
				v.primaryVersions[r.Group] = e.Value.Version
			case strings.HasPrefix(key, statePrefix):
				id, err := strconv.ParseUint(strings.TrimPrefix(key, statePrefix), 10, 64)
				if err != nil {
					return nil, fmt.Errorf("control plane: record %q: %w", key, err)
				}
				states[id] = string(e.Value.Data)
			}
		}
		if res.Next == nil {
			for id, st := range states {
				if m, ok := v.Members[id]; ok {
					m.State = st
					v.Members[id] = m
				}
			}
			return v, nil
		}
		req.After = res.Next
	}
}

func (s *Service) write(ctx context.Context, ops ...kv.Op) ([]kv.Result, error) {
	for i := range ops {
		ops[i].Namespace = MetaNamespace
	}
	res, err := s.cfg.Engine.Write(ctx, MetaGroup, kv.Batch{Ops: ops})
	if err != nil {
		return nil, fmt.Errorf("control plane: %w", err)
	}
	for _, r := range res {
		if r.Err != nil {
			return nil, fmt.Errorf("control plane: %w", r.Err)
		}
	}
	return res, nil
}

// kick asks the loop to reload now.
func (s *Service) kick() {
	select {
	case s.refresh <- struct{}{}:
	default:
	}
}

// RegisterMember records (or updates) a member's addresses; its state
// is kept.
func (s *Service) RegisterMember(ctx context.Context, m Member) error {
	m.State = ""
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	_, err = s.write(ctx, kv.Op{Kind: kv.OpSet, Key: []byte(memberPrefix + strconv.FormatUint(m.ID, 10)), Value: data})
	s.kick()
	return err
}

// CreateNamespace lays out a new namespace over the current members and
// records it. It fails with CONFLICT if the name is taken.
func (s *Service) CreateNamespace(ctx context.Context, name string, p kv.Policy) (kv.NamespaceInfo, error) {
	if err := kv.ValidateNamespace(name); err != nil {
		return kv.NamespaceInfo{}, err
	}
	if name == MetaNamespace || strings.HasPrefix(name, "_") {
		return kv.NamespaceInfo{}, kv.Errorf(kv.CodeInvalid, "namespace names starting with _ are reserved")
	}
	if err := s.Refresh(ctx); err != nil {
		return kv.NamespaceInfo{}, err
	}
	v := s.View()
	if _, ok := v.Namespaces[name]; ok {
		return kv.NamespaceInfo{}, kv.Errorf(kv.CodeConflict, "namespace %q already exists", name)
	}
	ids := v.Active()
	p = p.WithDefaults()
	if err := p.Validate(len(ids)); err != nil {
		return kv.NamespaceInfo{}, err
	}
	a, err := placement.Assign(name, p.Shards, p.Replicas, placementIDs(ids))
	if err != nil {
		return kv.NamespaceInfo{}, kv.Errorf(kv.CodeInvalid, "lay out %q: %v", name, err)
	}
	// Group ids come from one counter in the meta group, so no two
	// shards anywhere ever share one.
	res, err := s.write(ctx, kv.Op{Kind: kv.OpIncrBy, Key: []byte(groupCounter), Delta: int64(p.Shards)})
	if err != nil {
		return kv.NamespaceInfo{}, err
	}
	last, err := strconv.ParseUint(string(res[0].Cur.Data), 10, 64)
	if err != nil {
		return kv.NamespaceInfo{}, fmt.Errorf("control plane: group counter %q: %w", res[0].Cur.Data, err)
	}
	info := kv.NamespaceInfo{Name: name, Policy: p, Created: s.cfg.Now().UnixMilli()}
	for sh, set := range a {
		si := kv.ShardInfo{Shard: sh, Group: last - uint64(p.Shards) + 1 + uint64(sh), Replicas: nodeIDs(set)}
		si.Initial = slices.Clone(si.Replicas)
		info.Shards = append(info.Shards, si)
	}
	data, err := json.Marshal(info)
	if err != nil {
		return kv.NamespaceInfo{}, err
	}
	res, err = s.write(ctx, kv.Op{Kind: kv.OpSet, Key: []byte(nsPrefix + name), Value: data, Cond: kv.CondAbsent})
	if err != nil {
		return kv.NamespaceInfo{}, err
	}
	if !res[0].Applied {
		return kv.NamespaceInfo{}, kv.Errorf(kv.CodeConflict, "namespace %q already exists", name)
	}
	s.kick()
	return info, nil
}

// DropNamespace removes a namespace; every node then drops its replicas
// and their data.
func (s *Service) DropNamespace(ctx context.Context, name string) error {
	if name == "default" {
		return kv.Errorf(kv.CodeInvalid, "the default namespace cannot be dropped")
	}
	ops := []kv.Op{{Kind: kv.OpDelete, Key: []byte(nsPrefix + name)}}
	if err := s.Refresh(ctx); err != nil {
		return err
	}
	if ns, ok := s.View().Namespaces[name]; ok {
		for _, sh := range ns.Shards {
			ops = append(ops, kv.Op{Kind: kv.OpDelete, Key: primaryKey(sh.Group)}) // a primary namespace's
		}
	}
	res, err := s.write(ctx, ops...)
	if err != nil {
		return err
	}
	if !res[0].Applied {
		return kv.Errorf(kv.CodeNotFound, "namespace %q does not exist", name)
	}
	s.kick()
	return nil
}

// Namespace describes one namespace, linearizably.
func (s *Service) Namespace(ctx context.Context, name string) (kv.NamespaceInfo, error) {
	if err := s.Refresh(ctx); err != nil {
		return kv.NamespaceInfo{}, err
	}
	n, ok := s.View().Namespaces[name]
	if !ok {
		return kv.NamespaceInfo{}, kv.Errorf(kv.CodeNotFound, "namespace %q does not exist", name)
	}
	return n, nil
}

// Namespaces lists every namespace by name, linearizably.
func (s *Service) Namespaces(ctx context.Context) ([]kv.NamespaceInfo, error) {
	if err := s.Refresh(ctx); err != nil {
		return nil, err
	}
	v := s.View()
	out := make([]kv.NamespaceInfo, 0, len(v.Namespaces))
	for _, n := range v.Namespaces {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Bootstrap makes sure the cluster's first metadata exists: this member's
// record and the default namespace. Every member runs it at start; the
// conditional writes make the racing attempts agree. It retries until it
// succeeds or ctx ends (the meta group needs a quorum first).
func (s *Service) Bootstrap(ctx context.Context, self Member, def kv.Policy, members int) error {
	var last error
	for {
		last = s.bootstrapOnce(ctx, self, def, members)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("control plane: bootstrap: %w (last error: %v)", ctx.Err(), last)
		case <-time.After(s.cfg.Poll):
		}
	}
}

func (s *Service) bootstrapOnce(ctx context.Context, self Member, def kv.Policy, members int) error {
	actx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := s.RegisterMember(actx, self); err != nil {
		return err
	}
	if err := s.Refresh(actx); err != nil {
		return err
	}
	v := s.View()
	if _, ok := v.Namespaces["default"]; ok {
		return nil
	}
	// Every initial member must be registered before the default
	// namespace is laid out over them.
	if len(v.Members) < members {
		return kv.Errorf(kv.CodeUnavailable, "waiting for members: %d of %d registered", len(v.Members), members)
	}
	// Node ids handed to joining nodes start after the initial members'.
	maxID := v.MemberIDs()[len(v.Members)-1]
	if _, err := s.write(actx, kv.Op{Kind: kv.OpSet, Key: []byte(nodeCounter), Value: []byte(strconv.FormatUint(maxID, 10)), Cond: kv.CondAbsent}); err != nil {
		return err
	}
	def.Replicas = min(def.Replicas, len(v.Members))
	_, err := s.CreateNamespace(actx, "default", def)
	if kv.CodeOf(err) == kv.CodeConflict {
		return nil // another member won the race
	}
	return err
}

// AllocateNodeID hands out an id no member has had, for a joining node.
func (s *Service) AllocateNodeID(ctx context.Context) (uint64, error) {
	res, err := s.write(ctx, kv.Op{Kind: kv.OpIncrBy, Key: []byte(nodeCounter), Delta: 1})
	if err != nil {
		return 0, err
	}
	id, err := strconv.ParseUint(string(res[0].Cur.Data), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("control plane: node counter %q: %w", res[0].Cur.Data, err)
	}
	return id, nil
}
