package main

import (
	"context"
	"log/slog"

	"github.com/fulcrumdb/fulcrum/internal/config"
	"github.com/fulcrumdb/fulcrum/internal/server"
)

// ServeFunc runs a node with cfg until ctx is cancelled, calls started with
// the bound addresses once it listens, and returns nil after a clean
// shutdown. Tests substitute their own.
type ServeFunc func(ctx context.Context, cfg config.Config, logger *slog.Logger, started func(respAddr, httpAddr string)) error

// serve is the one place cmd/fulcrum touches internal/server; adapt it here
// if the server's API changes.
func serve(ctx context.Context, cfg config.Config, logger *slog.Logger, started func(respAddr, httpAddr string)) error {
	s, err := server.New(cfg, logger, server.WithVersion(version))
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }() // always received below, so never leaked
	select {
	case <-s.Ready():
		started(s.RESPAddr(), s.HTTPAddr())
	case err := <-errc:
		return err
	}
	return <-errc
}
