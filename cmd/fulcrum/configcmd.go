package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/fulcrumdb/fulcrum/internal/config"
)

const configUsage = `Usage:
  fulcrum config check FILE...   check configuration files
  fulcrum config default         print the commented default configuration
`

// ConfigMain is "fulcrum config": it hands over to check or default.
type ConfigMain struct {
	Stdout, Stderr io.Writer
	sub            command
}

// ParseFlags picks the subcommand and parses its arguments.
func (m *ConfigMain) ParseFlags(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprintf(m.Stderr, "fulcrum config: missing subcommand\n\n%s", configUsage)
		return exitCode(2)
	}
	switch args[0] {
	case "check":
		m.sub = &ConfigCheckMain{Stdout: m.Stdout, Stderr: m.Stderr}
	case "default":
		m.sub = &ConfigDefaultMain{Stdout: m.Stdout, Stderr: m.Stderr}
	case "-h", "-help", "--help", "help":
		fmt.Fprint(m.Stdout, configUsage)
		return exitCode(0)
	default:
		fmt.Fprintf(m.Stderr, "fulcrum config: unknown subcommand %q\n\n%s", args[0], configUsage)
		return exitCode(2)
	}
	return m.sub.ParseFlags(ctx, args[1:])
}

// Run runs the subcommand.
func (m *ConfigMain) Run(ctx context.Context) error { return m.sub.Run(ctx) }

// ConfigCheckMain is "fulcrum config check FILE...".
type ConfigCheckMain struct {
	Stdout, Stderr io.Writer
	Paths          []string
}

// ParseFlags takes one or more file names.
func (m *ConfigCheckMain) ParseFlags(ctx context.Context, args []string) error {
	cl := newCmdline("config check", `Usage: fulcrum config check FILE...

Load each file as "fulcrum server --config FILE" would and validate it.
Print "FILE: ok", or every problem (unknown keys with their line, then the
rules the values break); exit with status 1 if any file has a problem.
`, m.Stdout, m.Stderr)
	pos, err := cl.parse(args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return cl.usageErr("missing FILE")
	}
	m.Paths = pos
	return nil
}

// Run checks every file, reporting each on its own.
func (m *ConfigCheckMain) Run(ctx context.Context) error {
	bad := false
	for _, path := range m.Paths {
		cfg, err := config.Load(path)
		unknownKeys := false
		if err != nil {
			// Load's errors already name the file (and line).
			for _, p := range config.Problems(err) {
				fmt.Fprintln(m.Stderr, p)
			}
			bad = true
			if !errors.Is(err, config.ErrUnknownKeys) {
				continue // syntax or type errors: the rest is not trustworthy
			}
			unknownKeys = true
		}
		if err := cfg.Validate(); err != nil {
			for _, p := range config.Problems(err) {
				fmt.Fprintf(m.Stderr, "%s: %v\n", path, p)
			}
			bad = true
			continue
		}
		if !unknownKeys {
			fmt.Fprintf(m.Stdout, "%s: ok\n", path)
		}
	}
	if bad {
		return exitCode(1)
	}
	return nil
}

// ConfigDefaultMain is "fulcrum config default".
type ConfigDefaultMain struct {
	Stdout, Stderr io.Writer
}

// ParseFlags takes no arguments.
func (m *ConfigDefaultMain) ParseFlags(ctx context.Context, args []string) error {
	cl := newCmdline("config default", `Usage: fulcrum config default

Print the default configuration as a commented TOML file, a starting point
for "fulcrum server --config FILE".
`, m.Stdout, m.Stderr)
	return cl.parseNone(args)
}

// Run prints config.Default().TOML().
func (m *ConfigDefaultMain) Run(ctx context.Context) error {
	_, err := io.WriteString(m.Stdout, config.Default().TOML())
	return err
}
