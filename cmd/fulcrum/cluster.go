package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
)

const clusterUsage = `Usage:
  fulcrum cluster status [--addr HOST:PORT] [--json]   show a node's view of the cluster
  fulcrum cluster remove [--addr HOST:PORT] NODE      move every replica off NODE, then take it out
`

// ClusterMain is "fulcrum cluster": it hands over to its subcommand.
type ClusterMain struct {
	Stdout, Stderr io.Writer
	HTTPClient     *http.Client
	sub            command
}

// ParseFlags picks the subcommand and parses its arguments.
func (m *ClusterMain) ParseFlags(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprintf(m.Stderr, "fulcrum cluster: missing subcommand\n\n%s", clusterUsage)
		return exitCode(2)
	}
	switch args[0] {
	case "status":
		m.sub = &ClusterStatusMain{Stdout: m.Stdout, Stderr: m.Stderr, HTTPClient: m.HTTPClient}
	case "remove":
		m.sub = &ClusterRemoveMain{Stdout: m.Stdout, Stderr: m.Stderr, HTTPClient: m.HTTPClient}
	case "-h", "-help", "--help", "help":
		fmt.Fprint(m.Stdout, clusterUsage)
		return exitCode(0)
	default:
		fmt.Fprintf(m.Stderr, "fulcrum cluster: unknown subcommand %q\n\n%s", args[0], clusterUsage)
		return exitCode(2)
	}
	return m.sub.ParseFlags(ctx, args[1:])
}

// Run runs the subcommand.
func (m *ClusterMain) Run(ctx context.Context) error { return m.sub.Run(ctx) }

const clusterStatusUsage = `Usage: fulcrum cluster status [--addr HOST:PORT] [--json]

Print one node's view of the cluster (GET /v1/cluster on its HTTP port): the
members, then one line per shard replica on that node: its leader, Raft term,
this replica's state, commit and applied indexes, voters, and lag.

LAG is how many log entries each follower is behind, as the leader sees it:
it is known only for the shards this node leads, and is "-" for the others.
For those, ask their leader's node (its HTTP address; the PEER addresses are
not HTTP). A shard whose LEADER is "none" is electing one or has no quorum.
`

// ClusterStatusMain is "fulcrum cluster status".
type ClusterStatusMain struct {
	Stdout, Stderr io.Writer
	HTTPClient     *http.Client

	// Set by ParseFlags.
	Addr    string
	JSON    bool
	Timeout time.Duration
	base    string // http://host:port, no trailing slash
}

// ParseFlags reads --addr, --json and --timeout.
func (m *ClusterStatusMain) ParseFlags(ctx context.Context, args []string) error {
	cl := newCmdline("cluster status", clusterStatusUsage, m.Stdout, m.Stderr)
	cl.fs.StringVar(&m.Addr, "addr", "127.0.0.1:7380", "HTTP `host:port` (or URL) of the node to ask")
	cl.fs.BoolVar(&m.JSON, "json", false, "print the node's JSON as it is")
	cl.fs.DurationVar(&m.Timeout, "timeout", 5*time.Second, "time limit of the request")
	if err := cl.parseNone(args); err != nil {
		return err
	}
	base, err := baseURL(m.Addr)
	if err != nil {
		return cl.usageErr("--addr: %v", err)
	}
	if m.Timeout <= 0 {
		return cl.usageErr("--timeout must be > 0")
	}
	m.base = base
	return nil
}

// baseURL turns "host:port" or "http://host:port" into the node's base URL.
func baseURL(addr string) (string, error) {
	s := addr
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%q is not host:port or an http:// or https:// URL", addr)
	}
	u.Path, u.RawPath = strings.TrimSuffix(u.Path, "/"), ""
	return u.String(), nil
}

// Run fetches the node's view and prints it.
func (m *ClusterStatusMain) Run(ctx context.Context) error {
	view, raw, err := fetchCluster(ctx, m.HTTPClient, m.base, m.Timeout)
	if err != nil {
		return err
	}
	if m.JSON {
		_, err := m.Stdout.Write(raw)
		return err
	}
	return writeClusterView(m.Stdout, view)
}

// clusterView is what the CLI reads of GET /v1/cluster (the server's
// ClusterStatus). The CLI is a client of the HTTP API like any other, so
// it keeps its own copy of the fields it uses.
type clusterView struct {
	Node    uint64            `json:"node"`
	Peers   map[string]string `json:"peers"`
	Members []memberView      `json:"members"`
	Shards  []shardView       `json:"shards"`
	// Primaries are the node's replicas of replication=primary shards.
	Primaries []primaryView `json:"primaries"`
	// Engine is the engine's counters; they are printed as they come.
	Engine map[string]json.RawMessage `json:"engine"`
}

type primaryView struct {
	Namespace    string   `json:"namespace"`
	Shard        int      `json:"shard"`
	Role         string   `json:"role"`
	Epoch        uint64   `json:"epoch"`
	Primary      uint64   `json:"primary"`
	Applied      uint64   `json:"applied"`
	Recorded     []uint64 `json:"recorded_in_sync"`
	LagEntries   uint64   `json:"lag_entries"`
	LagMillis    int64    `json:"lag_ms"`
	Lost         uint64   `json:"lost_writes"`
	Failovers    int      `json:"failovers"`
	LastFailover int64    `json:"last_failover"`
}

type memberView struct {
	ID       uint64 `json:"id"`
	PeerAddr string `json:"peer_addr"`
	RESPAddr string `json:"resp_addr"`
	HTTPAddr string `json:"http_addr"`
	State    string `json:"state"`
}

type shardView struct {
	Namespace string            `json:"namespace"`
	Shard     int               `json:"shard"`
	Leader    uint64            `json:"leader"`
	Term      uint64            `json:"term"`
	State     string            `json:"state"`
	Commit    uint64            `json:"commit"`
	Applied   uint64            `json:"applied"`
	Voters    []uint64          `json:"voters"`
	Learners  []uint64          `json:"learners"`
	Lag       map[string]uint64 `json:"lag"`
}

// errNotMember is returned by fetchCluster for a node that runs alone.
var errNotMember = errors.New("not a cluster member")

// fetchCluster gets base/v1/cluster within timeout and returns it decoded
// and as sent.
func fetchCluster(ctx context.Context, client *http.Client, base string, timeout time.Duration) (clusterView, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	host := strings.TrimPrefix(strings.TrimPrefix(base, "http://"), "https://")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/cluster", nil)
	if err != nil {
		return clusterView{}, nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return clusterView{}, nil, fmt.Errorf("no answer from the node at %s within %v", host, timeout)
		}
		return clusterView{}, nil, fmt.Errorf("cannot reach the node at %s: %w", host, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return clusterView{}, nil, fmt.Errorf("reading the answer of the node at %s: %w", host, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return clusterView{}, nil, fmt.Errorf("the node at %s is %w: it runs alone (no /v1/cluster)", host, errNotMember)
	case resp.StatusCode != http.StatusOK:
		return clusterView{}, nil, fmt.Errorf("the node at %s answered GET /v1/cluster with %s: %w", host, resp.Status, apiError(resp.StatusCode, body))
	}
	var v clusterView
	if err := json.Unmarshal(body, &v); err != nil {
		return clusterView{}, nil, fmt.Errorf("the node at %s sent a cluster status that is not JSON: %w", host, err)
	}
	return v, body, nil
}

// writeClusterView prints a node's view as tables.
func writeClusterView(w io.Writer, v clusterView) error {
	ids := make([]uint64, 0, len(v.Peers))
	for k := range v.Peers {
		if id, err := strconv.ParseUint(k, 10, 64); err == nil {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	if len(v.Members) > 0 {
		// The control plane's members: joined nodes are only there.
		fmt.Fprintf(w, "node %d of %d\n\n", v.Node, len(v.Members))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NODE\tPEER ADDRESS\tRESP\tHTTP\tSTATE")
		for _, m := range v.Members {
			state := m.State
			if state == "" {
				state = "active"
			}
			if m.ID == v.Node {
				state += "  (this node)"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", m.ID, m.PeerAddr, dash(m.RESPAddr), dash(m.HTTPAddr), state)
		}
		tw.Flush()
	} else {
		fmt.Fprintf(w, "node %d of %d\n\n", v.Node, len(ids))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NODE\tPEER ADDRESS")
		for _, id := range ids {
			self := ""
			if id == v.Node {
				self = "  (this node)"
			}
			fmt.Fprintf(tw, "%d\t%s%s\n", id, v.Peers[strconv.FormatUint(id, 10)], self)
		}
		tw.Flush()
	}

	namespaces := false
	for _, s := range v.Shards {
		namespaces = namespaces || s.Namespace != "default"
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if namespaces {
		fmt.Fprint(tw, "NAMESPACE\t")
	}
	fmt.Fprintln(tw, "SHARD\tLEADER\tTERM\tSTATE\tCOMMIT\tAPPLIED\tVOTERS\tLAG")
	leading, leaderless := 0, 0
	for _, s := range v.Shards {
		leader := "none"
		switch s.Leader {
		case 0:
			leaderless++
		case v.Node:
			leading++
			fallthrough
		default:
			leader = strconv.FormatUint(s.Leader, 10)
		}
		if namespaces {
			fmt.Fprintf(tw, "%s\t", s.Namespace)
		}
		voters := joinIDs(s.Voters)
		if len(s.Learners) > 0 {
			// A replica move under way: the learners catch up.
			voters += " +" + joinIDs(s.Learners)
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%d\t%d\t%s\t%s\n", s.Shard, leader, s.Term, raftState(s.State),
			s.Commit, s.Applied, voters, lagText(s, v.Node))
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%d shard replicas on node %d; it leads %d; %d without a known leader.\n", len(v.Shards), v.Node, leading, leaderless)
	if len(v.Primaries) > 0 {
		writePrimaries(w, v.Primaries)
	}
	if len(v.Engine) > 0 {
		keys := make([]string, 0, len(v.Engine))
		for k := range v.Engine {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = fmt.Sprintf("%s=%s", k, v.Engine[k])
		}
		fmt.Fprintf(w, "engine: %s\n", strings.Join(parts, " "))
	}
	return nil
}

// raftState turns "StatePreCandidate" into "pre-candidate".
func raftState(s string) string {
	s = strings.TrimPrefix(s, "State")
	var b strings.Builder
	for i, r := range s {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('-')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	if b.Len() == 0 {
		return "?"
	}
	return b.String()
}

func joinIDs(ids []uint64) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = strconv.FormatUint(id, 10)
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ",")
}

// lagText lists "follower:entries" for a shard this node leads, or "-".
func lagText(s shardView, self uint64) string {
	if s.Leader != self || len(s.Lag) == 0 {
		return "-"
	}
	var ids []uint64
	for k := range s.Lag {
		if id, err := strconv.ParseUint(k, 10, 64); err == nil && id != self {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = fmt.Sprintf("%d:%d", id, s.Lag[strconv.FormatUint(id, 10)])
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

const clusterRemoveUsage = `Usage: fulcrum cluster remove [--addr HOST:PORT] NODE

Take node NODE (its id, as "fulcrum cluster status" lists it) out of the
cluster (DELETE /v1/cluster/members/NODE). The node is marked leaving: no
new replica is placed on it, every shard's leader moves its replica to
another node (a new replica catches up as a learner before it replaces the
old one, so no shard loses a vote on the way), and a control-plane vote it
held passes to another node. When it holds nothing, "fulcrum cluster
status" shows it as removed and its process can be stopped.

It is refused when the remaining nodes could not hold every namespace's
replicas.
`

// ClusterRemoveMain is "fulcrum cluster remove".
type ClusterRemoveMain struct {
	Stdout, Stderr io.Writer
	HTTPClient     *http.Client

	// Set by ParseFlags.
	Addr    string
	Timeout time.Duration
	Node    uint64
	base    string
}

// ParseFlags reads --addr, --timeout and the node id.
func (m *ClusterRemoveMain) ParseFlags(ctx context.Context, args []string) error {
	cl := newCmdline("cluster remove", clusterRemoveUsage, m.Stdout, m.Stderr)
	cl.fs.StringVar(&m.Addr, "addr", "127.0.0.1:7380", "HTTP `host:port` (or URL) of any node")
	cl.fs.DurationVar(&m.Timeout, "timeout", 15*time.Second, "time limit of the request")
	pos, err := cl.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return cl.usageErr("want one node id, got %d arguments", len(pos))
	}
	if m.Node, err = strconv.ParseUint(pos[0], 10, 64); err != nil || m.Node == 0 {
		return cl.usageErr("node %q: want a node id (a positive integer)", pos[0])
	}
	if m.base, err = baseURL(m.Addr); err != nil {
		return cl.usageErr("--addr: %v", err)
	}
	if m.Timeout <= 0 {
		return cl.usageErr("--timeout must be > 0")
	}
	return nil
}

// Run asks the node to start the removal.
func (m *ClusterRemoveMain) Run(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, m.Timeout)
	defer cancel()
	host := strings.TrimPrefix(strings.TrimPrefix(m.base, "http://"), "https://")
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, m.base+"/v1/cluster/members/"+strconv.FormatUint(m.Node, 10), nil)
	if err != nil {
		return err
	}
	resp, err := m.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the node at %s: %w", host, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch {
	case resp.StatusCode == http.StatusNotFound && !strings.Contains(string(body), `"code"`):
		return fmt.Errorf("the node at %s is %w: it runs alone", host, errNotMember)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("remove node %d: %w", m.Node, apiError(resp.StatusCode, body))
	}
	fmt.Fprintf(m.Stdout, "node %d is leaving: its replicas move to the other nodes.\n"+
		"\"fulcrum cluster status --addr %s\" shows it as removed once it holds nothing; then stop it.\n", m.Node, host)
	return nil
}

// writePrimaries prints the replication=primary shards held here: who is
// primary in which epoch, the recorded in-sync set, this replica's lag,
// the failovers and the writes this node set aside as lost.
func writePrimaries(w io.Writer, ps []primaryView) {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tSHARD\tROLE\tPRIMARY\tEPOCH\tAPPLIED\tIN-SYNC\tLAG\tFAILOVERS\tLAST FAILOVER\tLOST")
	for _, p := range ps {
		lag := fmt.Sprintf("%d (%dms)", p.LagEntries, p.LagMillis)
		if p.LagMillis < 0 {
			lag = fmt.Sprintf("%d (never caught up)", p.LagEntries)
		}
		last := "-"
		if p.LastFailover > 0 {
			last = time.UnixMilli(p.LastFailover).UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%d\t%s\t%s\t%d\t%s\t%d\n", p.Namespace, p.Shard, p.Role, p.Primary, p.Epoch,
			p.Applied, joinIDs(p.Recorded), lag, p.Failovers, last, p.Lost)
	}
	tw.Flush()
}
