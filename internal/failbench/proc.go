package failbench

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// exitLimit bounds how long a killed process may take to be reaped.
const exitLimit = 10 * time.Second

// proc is one child process this package started. It owns the goroutine
// that waits for the child; kill ends the child and waits for both.
type proc struct {
	name   string
	cmd    *exec.Cmd
	out    *tailBuf
	exited chan struct{} // closed once cmd.Wait returned
}

// startProc starts bin with args; its output is kept (the last part) for
// diagnostics.
func startProc(name, bin string, args ...string) (*proc, error) {
	p := &proc{name: name, out: &tailBuf{max: 64 << 10}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = childAttr()
	p.cmd.WaitDelay = 5 * time.Second // Wait must not hang on the pipes once the child is gone
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		// Ends when the child exits, which kill ensures.
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL (if the child still runs) and waits for it to be
// reaped, at most exitLimit.
func (p *proc) kill() error {
	if p.running() {
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && p.running() {
			return fmt.Errorf("kill %s: %w", p.name, err)
		}
	}
	select {
	case <-p.exited:
		return nil
	case <-time.After(exitLimit):
		return fmt.Errorf("%s (pid %d) still running %v after SIGKILL", p.name, p.cmd.Process.Pid, exitLimit)
	}
}

// tail is the end of the child's output, and how it ended.
func (p *proc) tail() string {
	state := "running"
	if !p.running() {
		state = p.cmd.ProcessState.String()
	}
	return fmt.Sprintf("--- %s (pid %d, %s):\n%s", p.name, p.cmd.Process.Pid, state, p.out.String())
}

// tailBuf keeps the last max bytes written to it.
type tailBuf struct {
	max int
	mu  struct {
		sync.Mutex
		b []byte
	}
}

func (t *tailBuf) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.mu.b = append(t.mu.b, p...)
	if over := len(t.mu.b) - t.max; over > 0 {
		t.mu.b = append(t.mu.b[:0], t.mu.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuf) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.mu.b)
}

// freeAddrs returns n distinct loopback addresses that were free a moment
// ago. They are held open together so that they differ, then released for
// the children to bind; another process may take one in between, which
// the starters detect ("address already in use") and retry.
func freeAddrs(n int) ([]string, error) {
	hosts := make([]string, n)
	for i := range hosts {
		hosts[i] = "127.0.0.1"
	}
	return freeAddrsOn(hosts)
}

// freeAddrsOn is freeAddrs with one address on each of hosts.
func freeAddrsOn(hosts []string) ([]string, error) {
	addrs := make([]string, len(hosts))
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for i, h := range hosts {
		ln, err := net.Listen("tcp", net.JoinHostPort(h, "0"))
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		lns = append(lns, ln)
		addrs[i] = ln.Addr().String()
	}
	return addrs, nil
}

// poll calls f every 20 ms until it returns nil, and returns f's last
// error, wrapped with what, if limit passes or ctx ends first.
func poll(ctx context.Context, limit time.Duration, what string, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := f(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not done after %v: %w", what, limit, err)
		case <-tick.C:
		}
	}
}

// getJSON GETs url and decodes its JSON answer into out.
func getJSON(ctx context.Context, c *http.Client, url string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return nil
}

func mkdirAll(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("mkdir %s: %w", dir, err)
	}
	return nil
}

// writeFile writes a configuration file.
func writeFile(path, text string) error {
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
