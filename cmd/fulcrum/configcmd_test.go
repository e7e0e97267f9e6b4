package main

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/fulcrumdb/fulcrum/internal/config"
)

func TestConfigCheck(t *testing.T) {
	good := writeFile(t, "good.toml", "[data]\nsync = \"none\"\n")
	invalid := writeFile(t, "invalid.toml", "[data]\nsync = \"sometimes\"\n[log]\nformat = \"xml\"\n")
	unknown := writeFile(t, "unknown.toml", "nodeid = \"x\"\n[resp]\nadr = \":1\"\n")
	syntax := writeFile(t, "syntax.toml", "[data]\ndir = \n")
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"ok", []string{good}, 0, good + ": ok\n", ""},
		{"invalid", []string{invalid}, 1, "",
			invalid + `: data.sync: "sometimes" is not one of always, interval, none` + "\n" +
				invalid + `: log.format: "xml" is not one of text, json` + "\n"},
		{"unknown keys", []string{unknown}, 1, "",
			unknown + ":1: unknown key nodeid\n" + unknown + ":3: unknown key resp.adr\n"},
		{"syntax", []string{syntax}, 1, "", syntax + ":2: data.dir: expected value but found '\\n' instead\n"},
		{"several files", []string{good, invalid, good}, 1, good + ": ok\n" + good + ": ok\n",
			invalid + `: data.sync: "sometimes" is not one of always, interval, none` + "\n" +
				invalid + `: log.format: "xml" is not one of text, json` + "\n"},
		{"missing", []string{"/nonexistent.toml"}, 1, "", "load config: open /nonexistent.toml: no such file or directory\n"},
		{"no file", nil, 2, "", "fulcrum config check: missing FILE\n\nUsage: fulcrum config check FILE...\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, stdout, stderr := testMain(t)
			code := m.Run(context.Background(), append([]string{"config", "check"}, tt.args...))
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d", code, tt.wantCode)
			}
			if stdout.String() != tt.wantStdout {
				t.Errorf("stdout = %q\nwant %q", stdout, tt.wantStdout)
			}
			if tt.wantCode == 2 {
				if got := stderr.String(); len(got) < len(tt.wantStderr) || got[:len(tt.wantStderr)] != tt.wantStderr {
					t.Errorf("stderr = %q\nwant prefix %q", got, tt.wantStderr)
				}
			} else if stderr.String() != tt.wantStderr {
				t.Errorf("stderr = %q\nwant %q", stderr, tt.wantStderr)
			}
		})
	}
}

// TestConfigDefault checks that "config default" prints a file that loads
// back to the defaults and that "config check" accepts.
func TestConfigDefault(t *testing.T) {
	m, stdout, stderr := testMain(t)
	if code := m.Run(context.Background(), []string{"config", "default"}); code != 0 {
		t.Fatalf("exit code = %d, stderr %s", code, stderr)
	}
	if stdout.String() != config.Default().TOML() {
		t.Errorf("config default printed something other than config.Default().TOML()")
	}
	path := filepath.Join(t.TempDir(), "default.toml")
	if err := os.WriteFile(path, []byte(stdout.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil || !reflect.DeepEqual(cfg, config.Default()) {
		t.Errorf("Load(printed default) = %+v, %v; want Default()", cfg, err)
	}
	m, stdout, _ = testMain(t)
	if code := m.Run(context.Background(), []string{"config", "check", path}); code != 0 || stdout.String() != path+": ok\n" {
		t.Errorf("config check of the default: code %d, stdout %q", code, stdout)
	}
	m, _, stderr = testMain(t)
	if code := m.Run(context.Background(), []string{"config", "default", "extra"}); code != 2 {
		t.Errorf("config default extra: code %d, want 2 (stderr %q)", code, stderr)
	}
}
