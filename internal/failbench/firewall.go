package failbench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"time"
)

// ErrNoFirewall is returned when the primary cannot be isolated: nft is
// missing or the process may not change the firewall (not root).
var ErrNoFirewall = errors.New("cannot isolate: needs root and nft (nftables)")

// tables numbers the nftables tables of this process, so two systems
// never share one.
var tables atomic.Int64

// firewall drops the packets between one loopback address and others with
// an nftables table of its own, which it removes on heal. The rules match
// only the addresses given, so nothing else on the machine is touched.
type firewall struct {
	nft, table string
}

// newFirewall checks that nftables can be used here.
func newFirewall(ctx context.Context) (*firewall, error) {
	nft, err := exec.LookPath("nft")
	if err != nil || os.Geteuid() != 0 {
		return nil, ErrNoFirewall
	}
	fw := &firewall{nft: nft, table: fmt.Sprintf("failbench_%d_%d", os.Getpid(), tables.Add(1))}
	if err := fw.run(ctx, "", "add", "table", "ip", fw.table); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoFirewall, err)
	}
	return fw, fw.run(ctx, "", "delete", "table", "ip", fw.table)
}

// cut drops every packet between ip and any of others, both ways, until
// heal.
func (fw *firewall) cut(ctx context.Context, ip string, others []string) error {
	set := "{ " + strings.Join(others, ", ") + " }"
	rule := fmt.Sprintf("ip saddr %s ip daddr %s drop; ip saddr %s ip daddr %s drop;", ip, set, set, ip)
	rules := fmt.Sprintf("table ip %s {\n\tchain in { type filter hook input priority 0; %s }\n\tchain out { type filter hook output priority 0; %s }\n}\n",
		fw.table, rule, rule)
	return fw.run(ctx, rules, "-f", "-")
}

// heal removes the table and with it every rule cut added; it is a no-op
// when there is none.
func (fw *firewall) heal() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := fw.run(ctx, "", "list", "table", "ip", fw.table); err != nil {
		return nil // no table: nothing to heal
	}
	return fw.run(ctx, "", "delete", "table", "ip", fw.table)
}

func (fw *firewall) run(ctx context.Context, stdin string, args ...string) error {
	cmd := exec.CommandContext(ctx, fw.nft, args...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}
