package resp

import (
	"slices"
	"strconv"
	"strings"
)

// command describes one command: how to run it and what COMMAND reports.
type command struct {
	name  string // lower-case
	arity int    // Redis convention: n exact, -n at least n (name included)
	// flags and acl are COMMAND INFO's flags and ACL categories.
	flags []string
	acl   []string
	// firstKey, lastKey and step locate the keys among the arguments.
	firstKey, lastKey, step int
	group, summary, since   string
	// subcommands lists a container command's subcommands, for COMMAND.
	subcommands []*command
	fn          func(c *conn, args [][]byte)
	// batch marks commands that may only queue writes: their reply waits
	// for the batch, and they do not need the queued writes applied first.
	batch bool
	id    int
}

func (cmd *command) arityOK(n int) bool {
	if cmd.arity >= 0 {
		return n == cmd.arity
	}
	return n >= -cmd.arity
}

// def builds a command entry; flags and acl are space-separated.
func def(name string, arity int, flags, acl string, first, last, step int, group, summary string,
	fn func(*conn, [][]byte)) *command {
	return &command{
		name: name, arity: arity, flags: strings.Fields(flags), acl: strings.Fields(acl),
		firstKey: first, lastKey: last, step: step, group: group, summary: summary, since: "1.0.0", fn: fn,
	}
}

// batched marks cmd as a queue-only write.
func batched(cmd *command) *command {
	cmd.batch = true
	return cmd
}

// commandTable returns the commands, sorted by name. It is built per Server
// because COMMAND's handler reads the table it is part of.
func commandTable() []*command {
	const (
		wr   = "write denyoom"
		wrf  = "write denyoom fast"
		ro   = "readonly"
		rof  = "readonly fast"
		str  = "@string"
		ks   = "@keyspace"
		conn = "@connection"
	)
	cmds := []*command{
		// Strings.
		def("get", 2, rof, "@read "+str+" @fast", 1, 1, 1, "string", "Get the value of a key", cmdGet),
		batched(def("set", -3, wr, "@write "+str+" @slow", 1, 1, 1, "string", "Set the string value of a key", cmdSet)),
		batched(def("setnx", 3, wrf, "@write "+str+" @fast", 1, 1, 1, "string", "Set the value of a key, only if the key does not exist", cmdSetNX)),
		batched(def("setex", 4, wr, "@write "+str+" @slow", 1, 1, 1, "string", "Set the value and expiration of a key", cmdSetEX)),
		batched(def("psetex", 4, wr, "@write "+str+" @slow", 1, 1, 1, "string", "Set the value and expiration in milliseconds of a key", cmdPSetEX)),
		batched(def("getset", 3, wrf, "@write "+str+" @fast", 1, 1, 1, "string", "Set the string value of a key and return its old value", cmdGetSet)),
		batched(def("getdel", 2, "write fast", "@write "+str+" @fast", 1, 1, 1, "string", "Get the value of a key and delete the key", cmdGetDel)),
		def("getex", -2, "write fast", "@write "+str+" @fast", 1, 1, 1, "string", "Get the value of a key and optionally set its expiration", cmdGetEx),
		def("mget", -2, rof, "@read "+str+" @fast", 1, -1, 1, "string", "Get the values of all the given keys", cmdMGet),
		batched(def("mset", -3, wr, "@write "+str+" @slow", 1, -1, 2, "string", "Set multiple keys to multiple values", cmdMSet)),
		def("msetnx", -3, wr, "@write "+str+" @slow", 1, -1, 2, "string", "Set multiple keys to multiple values, only if none of the keys exist", cmdMSetNX),
		batched(def("incr", 2, wrf, "@write "+str+" @fast", 1, 1, 1, "string", "Increment the integer value of a key by one", cmdIncr)),
		batched(def("decr", 2, wrf, "@write "+str+" @fast", 1, 1, 1, "string", "Decrement the integer value of a key by one", cmdDecr)),
		batched(def("incrby", 3, wrf, "@write "+str+" @fast", 1, 1, 1, "string", "Increment the integer value of a key by the given amount", cmdIncrBy)),
		batched(def("decrby", 3, wrf, "@write "+str+" @fast", 1, 1, 1, "string", "Decrement the integer value of a key by the given number", cmdDecrBy)),
		batched(def("incrbyfloat", 3, wrf, "@write "+str+" @fast", 1, 1, 1, "string", "Increment the float value of a key by the given amount", cmdIncrByFloat)),
		batched(def("append", 3, wrf, "@write "+str+" @fast", 1, 1, 1, "string", "Append a value to a key", cmdAppend)),
		def("strlen", 2, rof, "@read "+str+" @fast", 1, 1, 1, "string", "Get the length of the value stored in a key", cmdStrlen),
		def("getrange", 4, ro, "@read "+str+" @slow", 1, 1, 1, "string", "Get a substring of the string stored at a key", cmdGetRange),
		def("substr", 4, ro, "@read "+str+" @slow", 1, 1, 1, "string", "Get a substring of the string stored at a key", cmdGetRange),
		batched(def("setrange", 4, wr, "@write "+str+" @slow", 1, 1, 1, "string", "Overwrite part of a string at key starting at the specified offset", cmdSetRange)),

		// Keys.
		batched(def("del", -2, "write", "@keyspace @write @slow", 1, -1, 1, "generic", "Delete a key", cmdDel)),
		batched(def("unlink", -2, "write fast", "@keyspace @write @fast", 1, -1, 1, "generic", "Delete a key asynchronously", cmdDel)),
		def("exists", -2, rof, ks+" @read @fast", 1, -1, 1, "generic", "Determine if a key exists", cmdExists),
		def("touch", -2, rof, ks+" @read @fast", 1, -1, 1, "generic", "Alters the last access time of a key(s)", cmdExists),
		batched(def("expire", -3, "write fast", ks+" @write @fast", 1, 1, 1, "generic", "Set a key's time to live in seconds", cmdExpire)),
		batched(def("pexpire", -3, "write fast", ks+" @write @fast", 1, 1, 1, "generic", "Set a key's time to live in milliseconds", cmdPExpire)),
		batched(def("expireat", -3, "write fast", ks+" @write @fast", 1, 1, 1, "generic", "Set the expiration for a key as a UNIX timestamp", cmdExpireAt)),
		batched(def("pexpireat", -3, "write fast", ks+" @write @fast", 1, 1, 1, "generic", "Set the expiration for a key as a UNIX timestamp specified in milliseconds", cmdPExpireAt)),
		batched(def("persist", 2, "write fast", ks+" @write @fast", 1, 1, 1, "generic", "Remove the expiration from a key", cmdPersist)),
		def("ttl", 2, rof, ks+" @read @fast", 1, 1, 1, "generic", "Get the time to live for a key in seconds", cmdTTL),
		def("pttl", 2, rof, ks+" @read @fast", 1, 1, 1, "generic", "Get the time to live for a key in milliseconds", cmdPTTL),
		def("expiretime", 2, rof, ks+" @read @fast", 1, 1, 1, "generic", "Get the expiration Unix timestamp for a key", cmdExpireTime),
		def("pexpiretime", 2, rof, ks+" @read @fast", 1, 1, 1, "generic", "Get the expiration Unix timestamp for a key in milliseconds", cmdPExpireTime),
		def("type", 2, rof, ks+" @read @fast", 1, 1, 1, "generic", "Determine the type stored at key", cmdType),
		def("scan", -2, ro, ks+" @read @slow", 0, 0, 0, "generic", "Incrementally iterate the keys space", cmdScan),
		def("keys", 2, ro, ks+" @read @slow @dangerous", 0, 0, 0, "generic", "Find all keys matching the given pattern", cmdKeys),
		def("randomkey", 1, ro, ks+" @read @slow", 0, 0, 0, "generic", "Return a random key from the keyspace", cmdRandomKey),
		def("dbsize", 1, rof, ks+" @read @fast", 0, 0, 0, "server", "Return the number of keys in the selected database", cmdDBSize),
		def("flushdb", -1, "write", ks+" @write @slow @dangerous", 0, 0, 0, "server", "Remove all keys from the current database", cmdFlushDB),
		def("flushall", -1, "write", ks+" @write @slow @dangerous", 0, 0, 0, "server", "Remove all keys from all databases", cmdFlushAll),
		def("namespace", -1, "fast", conn+" @fast", 0, 0, 0, "connection", "Select or show the connection's Fulcrum namespace", cmdNamespace),
		def("fulcrum.consistency", -1, "fast", conn+" @fast", 0, 0, 0, "connection", "Set or show this connection's W and R for eventual namespaces", cmdFulcrumConsistency),
		def("readonly", -1, "fast", conn+" @fast", 0, 0, 0, "connection", "Let this connection's reads of replication=primary namespaces be served by replicas (optionally MAXSTALENESS ms)", cmdReadOnly),
		def("readwrite", 1, "fast", conn+" @fast", 0, 0, 0, "connection", "Send this connection's reads of replication=primary namespaces to the primary again", cmdReadWrite),
		def("fulcrum.getmeta", -2, rof, ks+" @read @fast", 1, 1, 1, "string", "Get a key's value with its timestamp and how many replicas answered and agreed, or which replica of a replication=primary namespace answered and its lag (READONLY or MAXSTALENESS ms: a replica may answer this read)", cmdFulcrumGetMeta),
		def("fulcrum.put", -3, wr, "@write "+str+" @slow", 1, 1, 1, "string", "Set a key of an eventual namespace, replacing the siblings of the read whose CONTEXT it passes", cmdFulcrumPut),
		def("fulcrum.del", -2, "write", "@keyspace @write @slow", 1, 1, 1, "generic", "Delete a key of an eventual namespace, replacing the siblings of the read whose CONTEXT it passes", cmdFulcrumDel),
		def("fulcrum.namespace", -2, "admin", "@admin @slow", 0, 0, 0, "server", "Create, list, describe or drop a cluster namespace", cmdFulcrumNamespace),

		// Connection and server.
		def("ping", -1, "fast", conn+" @fast", 0, 0, 0, "connection", "Ping the server", cmdPing),
		def("echo", 2, "fast", conn+" @fast", 0, 0, 0, "connection", "Echo the given string", cmdEcho),
		def("quit", -1, "noscript loading stale fast no_auth allow_busy", conn+" @fast", 0, 0, 0, "connection", "Close the connection", cmdQuit),
		def("hello", -1, "noscript loading stale fast no_auth allow_busy", conn+" @fast", 0, 0, 0, "connection", "Handshake with Redis", cmdHello),
		def("auth", -2, "noscript loading stale fast no_auth allow_busy", conn+" @fast", 0, 0, 0, "connection", "Authenticate to the server", cmdAuth),
		def("select", 2, "loading stale fast", conn+" @fast", 0, 0, 0, "connection", "Change the selected database for the current connection", cmdSelect),
		def("client", -2, "", "@slow", 0, 0, 0, "connection", "A container for client connection commands", cmdClient),
		def("command", -1, "loading stale", "@slow @connection", 0, 0, 0, "server", "Get array of Redis command details", cmdCommand),
		def("config", -2, "", "@slow", 0, 0, 0, "server", "A container for server configuration commands", cmdConfig),
		def("info", -1, "loading stale", "@slow @dangerous", 0, 0, 0, "server", "Get information and statistics about the server", cmdInfo),
		def("time", 1, "loading stale fast", "@fast", 0, 0, 0, "server", "Return the current server time", cmdTime),
	}
	for _, c := range cmds {
		switch c.name {
		case "client":
			c.subcommands = subcommands("client", "getname:2", "setname:3", "id:2", "info:2", "list:-2",
				"setinfo:4", "no-evict:3", "no-touch:3", "help:2")
		case "config":
			c.subcommands = subcommands("config", "get:-3", "set:-4", "resetstat:2", "rewrite:2", "help:2")
		case "command":
			c.subcommands = subcommands("command", "count:2", "docs:-2", "info:-2", "list:-2", "help:2")
		}
	}
	slices.SortFunc(cmds, func(a, b *command) int { return strings.Compare(a.name, b.name) })
	return cmds
}

// subcommands describes a container's subcommands ("name:arity"); the
// container's handler dispatches them.
func subcommands(parent string, specs ...string) []*command {
	out := make([]*command, len(specs))
	for i, spec := range specs {
		name, arity, _ := strings.Cut(spec, ":")
		n, err := strconv.Atoi(arity)
		if err != nil {
			panic("resp: bad subcommand spec " + spec)
		}
		out[i] = &command{name: parent + "|" + name, arity: n, flags: []string{"loading", "stale"},
			acl: []string{"@slow"}, group: "server", since: "1.0.0"}
	}
	return out
}

// subcommand finds the subcommand that args[1] names and checks its arity,
// answering the error Redis gives when either is wrong. It returns the
// subcommand's own name ("setname") or "".
func (c *conn) subcommand(parent *command, args [][]byte) string {
	for _, sub := range parent.subcommands {
		name := sub.name[len(parent.name)+1:]
		if !equalFold(args[1], name) {
			continue
		}
		c.info.Lock()
		c.info.lastSub = sub.name
		c.info.Unlock()
		if !sub.arityOK(len(args)) {
			c.writeError("ERR wrong number of arguments for '" + sub.name + "' command")
			return ""
		}
		return name
	}
	c.writeError(unknownSubcommand(args[1], parent.name))
	return ""
}

// equalFold reports whether b equals the lower-case ASCII word s, ignoring
// case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		if lower(b[i]) != s[i] {
			return false
		}
	}
	return true
}
