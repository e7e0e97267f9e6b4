package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/kv"
)

const namespaceUsage = `Usage:
  fulcrum namespace create NAME [--consistency strong|eventual|weak] [--replicas 3] [--shards 16] [--w 1] [--r 1]
                                [--read-repair async|blocking] [--conflicts lww|siblings]
  fulcrum namespace create NAME --replication primary [--ack async|semi|sync] [--ack-replicas 1]
                                [--allow-degrade] [--availability active-passive|active-active]
                                [--failover-timeout 500ms]
  fulcrum namespace list
  fulcrum namespace describe NAME
  fulcrum namespace drop NAME

Manage the namespaces of a cluster (through any member's HTTP API): a
namespace's policy (consistency, replicas, shards) is fixed at creation and
its shards are laid out over the members. --json prints the API's answer as
it is. A node that runs alone has no namespaces to manage (DISABLED).
`

// NamespaceMain is "fulcrum namespace SUBCOMMAND".
type NamespaceMain struct {
	clientMain
	Sub    string // create, list, describe, drop
	Name   string
	Policy kv.Policy
	JSON   bool
	// FailoverTimeout is --failover-timeout, sent as
	// Policy.FailoverTimeoutMs.
	FailoverTimeout time.Duration
}

// ParseFlags takes the subcommand, the name and the policy flags.
func (m *NamespaceMain) ParseFlags(ctx context.Context, args []string) error {
	cl := m.cmdline(namespaceUsage)
	cl.fs.StringVar(&m.Policy.Consistency, "consistency", kv.ConsistencyStrong, "create: `level` strong (Raft, linearizable, CP), eventual (leaderless, AP, repaired) or weak (leaderless, one replica, no repair)")
	cl.fs.IntVar(&m.Policy.W, "w", 0, "create, eventual: replicas that must acknowledge a write (default 1)")
	cl.fs.IntVar(&m.Policy.R, "r", 0, "create, eventual: replicas that must answer a read (default 1)")
	cl.fs.StringVar(&m.Policy.ReadRepair, "read-repair", "", "create, eventual: `mode` async (default: answer, then repair stale replicas) or blocking (answer once repaired)")
	cl.fs.StringVar(&m.Policy.Conflicts, "conflicts", "", "create, eventual: `mode` lww (default: the last writer by timestamp wins) or siblings (concurrent writes are all kept until a write resolves them)")
	cl.fs.StringVar(&m.Policy.Replication, "replication", "", "create: `mode` primary replicates by log shipping from one primary per shard, with automatic failover (default: the consistency level's engine)")
	cl.fs.StringVar(&m.Policy.Ack, "ack", "", "create, primary: `mode` async (once the primary applied it), semi (once --ack-replicas replicas did) or sync (default: once every in-sync replica did)")
	cl.fs.IntVar(&m.Policy.AckReplicas, "ack-replicas", 0, "create, primary semi/sync: replica acks a semi write waits for; the smallest in-sync set a sync write is taken with (default 1)")
	cl.fs.BoolVar(&m.Policy.AllowDegrade, "allow-degrade", false, "create, primary semi/sync: take writes with too few in-sync replicas (counted) instead of refusing them")
	cl.fs.StringVar(&m.Policy.Availability, "availability", "", "create, primary: `pattern` active-passive (default: every shard's primary on one node) or active-active (primaries spread, reads from every replica)")
	cl.fs.DurationVar(&m.FailoverTimeout, "failover-timeout", 0, "create, primary: how long a shard may go without a primary when its primary stops, in whole milliseconds from 100ms to 1m (default: the cluster's cluster.failover_timeout)")
	cl.fs.IntVar(&m.Policy.Replicas, "replicas", 3, "create: replicas of each shard")
	cl.fs.IntVar(&m.Policy.Shards, "shards", 16, "create: number of shards")
	cl.fs.BoolVar(&m.JSON, "json", false, "print the API's JSON answer")
	pos, err := cl.parse(args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return cl.usageErr("missing subcommand: create, list, describe or drop")
	}
	if m.FailoverTimeout < 0 || m.FailoverTimeout%time.Millisecond != 0 {
		return cl.usageErr("--failover-timeout %v: want whole milliseconds", m.FailoverTimeout)
	}
	m.Policy.FailoverTimeoutMs = int(m.FailoverTimeout.Milliseconds())
	m.Sub, pos = pos[0], pos[1:]
	switch m.Sub {
	case "list":
		if len(pos) > 0 {
			return cl.usageErr("list takes no arguments")
		}
	case "create", "describe", "drop":
		if len(pos) != 1 {
			return cl.usageErr("%s takes one NAME", m.Sub)
		}
		m.Name = pos[0]
		m.Namespace = m.Name // the URL is the namespace's
	default:
		return cl.usageErr("unknown subcommand %q: create, list, describe or drop", m.Sub)
	}
	return m.check(cl)
}

// Run sends the request and prints the answer.
func (m *NamespaceMain) Run(ctx context.Context) error {
	var (
		body []byte
		err  error
	)
	switch m.Sub {
	case "list":
		_, body, err = m.do(ctx, http.MethodGet, m.base.String()+"/v1/namespaces", nil, nil)
	case "describe":
		_, body, err = m.do(ctx, http.MethodGet, m.nsURL("", nil), nil, nil)
	case "drop":
		if _, _, err = m.do(ctx, http.MethodDelete, m.nsURL("", nil), nil, nil); err == nil {
			_, err = fmt.Fprintf(m.Stdout, "dropped %s\n", m.Name)
		}
		return err
	case "create":
		p, _ := json.Marshal(m.Policy)
		_, body, err = m.do(ctx, http.MethodPut, m.nsURL("", nil), p, http.Header{"Content-Type": {"application/json"}})
	}
	if err != nil {
		return err
	}
	if m.JSON {
		_, err := m.Stdout.Write(body)
		return err
	}
	if m.Sub == "list" {
		var list struct {
			Namespaces []struct {
				Name   string     `json:"name"`
				Keys   int64      `json:"keys"`
				Policy *kv.Policy `json:"policy"`
			} `json:"namespaces"`
		}
		if err := json.Unmarshal(body, &list); err != nil {
			return fmt.Errorf("decoding the answer: %w", err)
		}
		w := tabwriter.NewWriter(m.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "NAME\tCONSISTENCY\tREPLICAS\tSHARDS\tKEYS HERE")
		for _, n := range list.Namespaces {
			p := kv.Policy{Consistency: "-"}
			if n.Policy != nil {
				p = *n.Policy
			}
			fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\n", n.Name, p.Consistency, p.Replicas, p.Shards, n.Keys)
		}
		return w.Flush()
	}
	var info kv.NamespaceInfo
	if err := json.Unmarshal(body, &info); err != nil {
		return fmt.Errorf("decoding the answer: %w", err)
	}
	return writeNamespace(m.Stdout, info)
}

// writeNamespace prints a namespace's policy and shard layout.
func writeNamespace(out io.Writer, n kv.NamespaceInfo) error {
	fmt.Fprintf(out, "namespace %s: %s\n\n", n.Name, n.Policy)
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SHARD\tGROUP\tREPLICAS\tLEADER")
	for _, s := range n.Shards {
		ids := make([]string, len(s.Replicas))
		for i, r := range s.Replicas {
			ids[i] = strconv.FormatUint(r, 10)
		}
		lead := "-"
		if s.Leader != 0 {
			lead = strconv.FormatUint(s.Leader, 10)
		}
		fmt.Fprintf(w, "%d\t%d\t%s\t%s\n", s.Shard, s.Group, strings.Join(ids, ","), lead)
	}
	return w.Flush()
}
