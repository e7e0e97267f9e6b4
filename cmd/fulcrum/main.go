package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
)

// version is set at build time: go build -ldflags "-X main.version=v0.1.0".
var version = "dev"

func main() {
	os.Exit(NewMain().Run(context.Background(), os.Args[1:]))
}

// Main is the whole program: it picks the subcommand and turns its outcome
// into an exit code. Its fields are the process's environment, replaced by
// tests.
type Main struct {
	Stdout io.Writer
	Stderr io.Writer

	// Notify and StopNotify subscribe a channel to SIGINT and SIGTERM and
	// unsubscribe it (signal.Notify, signal.Stop).
	Notify     func(chan<- os.Signal)
	StopNotify func(chan<- os.Signal)
	// Exit ends the process (os.Exit); the server calls it on a second
	// signal, when waiting for a graceful shutdown is no longer wanted.
	Exit func(code int)
	// Hostname supplies the node id when the configuration has none.
	Hostname func() (string, error)
	// Serve runs a node until its context is cancelled (serve in serve.go).
	Serve ServeFunc

	// HTTPClient carries the client subcommands' requests.
	HTTPClient *http.Client
	// Executable returns the path of this binary (os.Executable), which
	// "fulcrum dev" runs as its nodes.
	Executable func() (string, error)
}

// NewMain returns a Main wired to the real process.
func NewMain() *Main {
	return &Main{
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
		Notify:     func(c chan<- os.Signal) { signal.Notify(c, os.Interrupt, syscall.SIGTERM) },
		StopNotify: signal.Stop,
		Exit:       os.Exit,
		Hostname:   os.Hostname,
		Serve:      serve,
		HTTPClient: &http.Client{},
		Executable: os.Executable,
	}
}

// command is one subcommand: ParseFlags checks the arguments (printing
// usage itself when they are wrong), Run does the work.
type command interface {
	ParseFlags(ctx context.Context, args []string) error
	Run(ctx context.Context) error
}

// exitCode is an error whose message has already been printed; it only
// carries the exit status.
type exitCode int

func (c exitCode) Error() string { return fmt.Sprintf("exit status %d", int(c)) }

const mainUsage = `Fulcrum is a key-value database served over the Redis protocol and HTTP.

Usage:
  fulcrum <command> [arguments]

Commands:
  server          run a node
  dev             run a local cluster of nodes (the quickest start)
  cluster status  show a node's view of its cluster
  namespace       create, list, describe or drop a cluster's namespaces
  config check    check configuration files
  config default  print the commented default configuration
  get             print the value of a key
  set             store a value
  del             delete keys
  scan            list keys
  proxy           send clients to a primary namespace's active node
  bench           measure throughput and latency of servers
  version         print the version
  help            print help: fulcrum help <command>

Run "fulcrum <command> -h" for the flags of a command.
`

// Run runs the subcommand named by args[0] and returns the exit code.
func (m *Main) Run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(m.Stderr, mainUsage)
		return 2
	}
	name, rest := args[0], args[1:]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(rest) == 0 {
			fmt.Fprint(m.Stdout, mainUsage)
			return 0
		}
		// "help server" is "server -h"; "help config check" is "config check -h".
		return m.Run(ctx, append(append([]string(nil), rest...), "-h"))
	}
	cmd := m.command(name)
	if cmd == nil {
		fmt.Fprintf(m.Stderr, "fulcrum: unknown command %q\n\n%s", name, mainUsage)
		return 2
	}
	err := cmd.ParseFlags(ctx, rest)
	if err == nil {
		err = cmd.Run(ctx)
	}
	var code exitCode
	switch {
	case err == nil:
		return 0
	case errors.As(err, &code):
		return int(code)
	}
	fmt.Fprintf(m.Stderr, "error: %v\n", err)
	return 1
}

func (m *Main) command(name string) command {
	switch name {
	case "server":
		return &ServerMain{
			Stdout: m.Stdout, Stderr: m.Stderr,
			Notify: m.Notify, StopNotify: m.StopNotify, Exit: m.Exit,
			Hostname: m.Hostname, Serve: m.Serve,
		}
	case "dev":
		return &DevMain{
			Stdout: m.Stdout, Stderr: m.Stderr,
			Notify: m.Notify, StopNotify: m.StopNotify,
			Executable: m.Executable, HTTPClient: m.HTTPClient,
		}
	case "cluster":
		return &ClusterMain{Stdout: m.Stdout, Stderr: m.Stderr, HTTPClient: m.HTTPClient}
	case "config":
		return &ConfigMain{Stdout: m.Stdout, Stderr: m.Stderr}
	case "get":
		return &GetMain{clientMain: m.clientMain("get")}
	case "set":
		return &SetMain{clientMain: m.clientMain("set")}
	case "del":
		return &DelMain{clientMain: m.clientMain("del")}
	case "namespace":
		return &NamespaceMain{clientMain: m.clientMain("namespace")}
	case "scan":
		return &ScanMain{clientMain: m.clientMain("scan")}
	case "version":
		return &VersionMain{Stdout: m.Stdout, Stderr: m.Stderr}
	case "proxy":
		return &ProxyMain{Stdout: m.Stdout, Stderr: m.Stderr, Notify: m.Notify, StopNotify: m.StopNotify}
	case "bench":
		return &BenchMain{Stdout: m.Stdout, Stderr: m.Stderr, Notify: m.Notify, StopNotify: m.StopNotify}
	}
	return nil
}

// VersionMain prints the version.
type VersionMain struct {
	Stdout, Stderr io.Writer
}

// ParseFlags takes no arguments.
func (m *VersionMain) ParseFlags(ctx context.Context, args []string) error {
	return newCmdline("version", "Usage: fulcrum version\n\nPrint the version of fulcrum and of the Go toolchain that built it.\n", m.Stdout, m.Stderr).parseNone(args)
}

// Run prints "fulcrum VERSION (GOVERSION OS/ARCH)".
func (m *VersionMain) Run(ctx context.Context) error {
	_, err := fmt.Fprintf(m.Stdout, "fulcrum %s (%s %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return err
}

// cmdline is a subcommand's flag set and usage text. Unlike flag.Parse, its
// parse accepts flags after positional arguments ("set KEY VALUE --ttl 10s");
// "--" ends the flags, for a KEY or VALUE that starts with '-'.
type cmdline struct {
	name   string // "server", "config check", ...
	usage  string // text before the flag list
	fs     *flag.FlagSet
	stdout io.Writer
	stderr io.Writer
}

func newCmdline(name, usage string, stdout, stderr io.Writer) *cmdline {
	fs := flag.NewFlagSet("fulcrum "+name, flag.ContinueOnError)
	// Errors and usage are printed by parse, to stdout for -h and to stderr
	// otherwise, so the flag package must print nothing.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &cmdline{name: name, usage: usage, fs: fs, stdout: stdout, stderr: stderr}
}

// parse parses args and returns the positional arguments. On -h it prints
// the usage to stdout and returns exitCode(0); on a bad flag it prints the
// problem and the usage to stderr and returns exitCode(2).
// parseNone parses a command that takes flags only (-h) and no arguments.
func (c *cmdline) parseNone(args []string) error {
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return c.usageErr("unexpected argument %q", pos[0])
	}
	return nil
}

func (c *cmdline) parse(args []string) ([]string, error) {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := c.fs.Lookup(name)
		if f == nil {
			continue // fs.Parse reports it
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			continue
		}
		if i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	if err := c.fs.Parse(flags); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			c.printUsage(c.stdout)
			return nil, exitCode(0)
		}
		return nil, c.usageErr("%v", err)
	}
	return pos, nil
}

// usageErr prints a problem with the command line and the usage to stderr.
func (c *cmdline) usageErr(format string, args ...any) error {
	fmt.Fprintf(c.stderr, "fulcrum %s: %s\n\n", c.name, fmt.Sprintf(format, args...))
	c.printUsage(c.stderr)
	return exitCode(2)
}

func (c *cmdline) printUsage(w io.Writer) {
	fmt.Fprint(w, c.usage)
	hasFlags := false
	c.fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	if hasFlags {
		fmt.Fprint(w, "\nFlags:\n")
		c.fs.SetOutput(w)
		c.fs.PrintDefaults()
		c.fs.SetOutput(io.Discard)
	}
}
