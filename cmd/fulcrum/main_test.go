package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/fulcrumdb/fulcrum/internal/config"
)

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger
// and the reads of a test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testMain returns a Main whose environment is inert: no real signals, no
// exit, a fixed host name, and a Serve that fails the test if called.
func testMain(t *testing.T) (*Main, *syncBuffer, *syncBuffer) {
	t.Helper()
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	m := NewMain()
	m.Stdout, m.Stderr = stdout, stderr
	m.Notify = func(chan<- os.Signal) {}
	m.StopNotify = func(chan<- os.Signal) {}
	m.Exit = func(code int) { t.Errorf("Exit(%d) called", code) }
	m.Hostname = func() (string, error) { return "test-host", nil }
	m.Serve = func(context.Context, config.Config, *slog.Logger, func(string, string)) error {
		t.Errorf("Serve called")
		return nil
	}
	return m, stdout, stderr
}

func TestMainDispatch(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string // substring
		wantStderr string // substring
	}{
		{"no args", nil, 2, "", "Usage:\n  fulcrum <command>"},
		{"unknown", []string{"frobnicate"}, 2, "", "fulcrum: unknown command \"frobnicate\"\n\nFulcrum is"},
		{"help", []string{"help"}, 0, "Commands:\n  server", ""},
		{"-h", []string{"-h"}, 0, "Commands:\n  server", ""},
		{"help server", []string{"help", "server"}, 0, "Usage: fulcrum server [flags]", ""},
		{"server -h", []string{"server", "-h"}, 0, "-data-dir directory", ""},
		{"help config check", []string{"help", "config", "check"}, 0, "Usage: fulcrum config check FILE...", ""},
		{"help get", []string{"help", "get"}, 0, "Usage: fulcrum get [flags] KEY", ""},
		{"help unknown", []string{"help", "bogus"}, 2, "", "unknown command \"bogus\""},
		{"bad flag", []string{"server", "--bogus"}, 2, "", "fulcrum server: flag provided but not defined: -bogus\n\nUsage: fulcrum server"},
		{"server extra arg", []string{"server", "now"}, 2, "", "fulcrum server: unexpected argument \"now\""},
		{"config alone", []string{"config"}, 2, "", "fulcrum config: missing subcommand"},
		{"config unknown", []string{"config", "lint"}, 2, "", "fulcrum config: unknown subcommand \"lint\""},
		{"config -h", []string{"config", "-h"}, 0, "fulcrum config check FILE...", ""},
		{"version", []string{"version"}, 0, "fulcrum dev (" + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + ")\n", ""},
		{"version extra", []string{"version", "x"}, 2, "", "fulcrum version: unexpected argument \"x\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, stdout, stderr := testMain(t)
			code := m.Run(context.Background(), tt.args)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, stdout, stderr)
			}
			if !strings.Contains(stdout.String(), tt.wantStdout) || (tt.wantStdout == "" && stdout.String() != "") {
				t.Errorf("stdout = %q, want it to contain %q", stdout, tt.wantStdout)
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) || (tt.wantStderr == "" && stderr.String() != "") {
				t.Errorf("stderr = %q, want it to contain %q", stderr, tt.wantStderr)
			}
		})
	}
}

func TestCmdlineInterspersed(t *testing.T) {
	var out bytes.Buffer
	cl := newCmdline("x", "usage\n", &out, &out)
	ttl := cl.fs.Duration("ttl", 0, "")
	nx := cl.fs.Bool("nx", false, "")
	name := cl.fs.String("name", "", "")
	pos, err := cl.parse([]string{"k", "--ttl", "10s", "v", "-nx", "--name=a", "--", "--not-a-flag", "-"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"k", "v", "--not-a-flag", "-"}; strings.Join(pos, "|") != strings.Join(want, "|") {
		t.Errorf("positional = %q, want %q", pos, want)
	}
	if ttl.String() != "10s" || !*nx || *name != "a" {
		t.Errorf("flags ttl=%v nx=%v name=%q, want 10s true a", ttl, *nx, *name)
	}
}
