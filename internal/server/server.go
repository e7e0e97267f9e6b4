// PLACEHOLDER — written by the config/cmd engineer only so that cmd/fulcrum
// builds before the real package exists. The lead replaces this whole file
// (and adds doc.go); nothing here is meant to survive.

// Package server is a Fulcrum node: it wires storage and the RESP and HTTP
// front ends from a config.Config and owns their goroutines and shutdown.
package server

import (
	"context"
	"errors"
	"log/slog"

	"github.com/fulcrumdb/fulcrum/internal/config"
)

var errNotImplemented = errors.New("server: not implemented yet")

// Server is a running Fulcrum node. PLACEHOLDER.
type Server struct{}

// New opens storage and builds the front ends; it starts no goroutines.
// PLACEHOLDER: always fails.
func New(cfg config.Config, logger *slog.Logger) (*Server, error) {
	return nil, errNotImplemented
}

// Run listens and serves until ctx is cancelled, then shuts down gracefully
// within cfg.ShutdownTimeout and closes storage; nil means a clean stop.
// PLACEHOLDER.
func (s *Server) Run(ctx context.Context) error { return errNotImplemented }

// RESPAddr is the address the RESP listener is bound to. PLACEHOLDER.
func (s *Server) RESPAddr() string { return "" }

// HTTPAddr is the address the HTTP listener is bound to. PLACEHOLDER.
func (s *Server) HTTPAddr() string { return "" }

// Ready is closed once both listeners accept connections. PLACEHOLDER.
func (s *Server) Ready() <-chan struct{} { return nil }
