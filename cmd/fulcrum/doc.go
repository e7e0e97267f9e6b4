// Command fulcrum runs a Fulcrum node and talks to one.
//
//	fulcrum server [--config FILE] [--data-dir D] [--resp-addr A] [--http-addr A] ...
//	               [--cluster-id N --peer-addr A --peers "1=A,2=A,3=A"] ...
//	fulcrum dev [--nodes 3] [--base-port 7379] [--data-dir ./fulcrum-dev] ...
//	fulcrum cluster status [--addr HOST:PORT] [--json]
//	fulcrum config check FILE...
//	fulcrum config default
//	fulcrum get KEY | set KEY VALUE | del KEY... | scan   (over the HTTP API)
//	fulcrum version | help [COMMAND]
//
// "fulcrum dev" is a supervisor, not a node: it runs this same binary as
// "fulcrum server" child processes (a local cluster), copies their logs,
// reports any that dies, and stops them all on SIGINT/SIGTERM; the nodes
// are in their own process group so the terminal's Ctrl-C reaches only it.
//
// The binary is thin: each subcommand is a type with ParseFlags and Run
// (ServerMain, GetMain, ...) that tests drive in-process with their own
// stdout, stderr, signals and HTTP client. This package is the only one that
// reads flags, the environment, the host name or signals; everything else
// gets a config.Config.
//
// Exit codes: 0 success; 1 a failed operation (an error from the node, a key
// not found, a configuration file with problems under "config check");
// 2 a usage error or a configuration the server refuses to start with;
// 130 a second SIGINT/SIGTERM during a graceful shutdown.
package main
