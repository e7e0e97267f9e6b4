package resp

import (
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/kv"
)

func cmdPing(c *conn, args [][]byte) {
	switch len(args) {
	case 1:
		c.writeSimple("PONG")
	case 2:
		c.writeBulk(args[1])
	default:
		c.writeError("ERR wrong number of arguments for 'ping' command")
	}
}

func cmdEcho(c *conn, args [][]byte) { c.writeBulk(args[1]) }

func cmdQuit(c *conn, _ [][]byte) {
	c.writeOK()
	c.closeAfter = true
}

func cmdSelect(c *conn, args [][]byte) {
	n, ok := parseInt(args[1])
	switch {
	case !ok:
		c.writeError(errNotInteger)
	case n < math32Min || n > math32Max:
		c.writeError("ERR value is out of range, value must between -2147483648 and 2147483647")
	case n != 0:
		c.writeError("ERR DB index is out of range")
	default:
		c.writeOK()
	}
}

const (
	math32Min = -1 << 31
	math32Max = 1<<31 - 1
)

const errWrongPass = "WRONGPASS invalid username-password pair or user is disabled."

// cmdAuth behaves as Redis with no password configured: the default user
// accepts any password, and AUTH with only a password is a configuration
// mistake worth reporting.
func cmdAuth(c *conn, args [][]byte) {
	switch len(args) {
	case 2:
		c.writeError("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
	case 3:
		if string(args[1]) != "default" {
			c.writeError(errWrongPass)
			return
		}
		c.writeOK()
	default:
		c.writeError(errSyntax)
	}
}

// validName reports whether a client name (or library attribute) has only
// printable characters and no spaces, as Redis requires.
func validName(b []byte) bool {
	for _, ch := range b {
		if ch < '!' || ch > '~' {
			return false
		}
	}
	return true
}

const errClientName = "ERR Client names cannot contain spaces, newlines or special characters."

func cmdHello(c *conn, args [][]byte) {
	ver := int64(0)
	next := 1
	if len(args) >= 2 {
		n, ok := parseInt(args[1])
		if !ok {
			c.writeError("ERR Protocol version is not an integer or out of range")
			return
		}
		if n < 2 || n > 3 {
			c.writeError("NOPROTO unsupported protocol version")
			return
		}
		ver, next = n, 2
	}
	var user, name []byte
	setName := false
	for j := next; j < len(args); j++ {
		more := len(args) - 1 - j
		switch {
		case equalFold(args[j], "auth") && more >= 2:
			user = args[j+1]
			j += 2
		case equalFold(args[j], "setname") && more >= 1:
			name, setName = args[j+1], true
			j++
		default:
			c.writeError("ERR Syntax error in HELLO option '" + string(cString(args[j], len(args[j]))) + "'")
			return
		}
	}
	if user != nil && string(user) != "default" {
		c.writeError(errWrongPass)
		return
	}
	if setName {
		if !validName(name) {
			c.writeError(errClientName)
			return
		}
		c.info.Lock()
		c.info.name = string(name)
		c.info.Unlock()
	}
	if ver != 0 {
		c.proto = int(ver)
		c.info.Lock()
		c.info.proto = c.proto
		c.info.Unlock()
	}
	c.writeMap(7)
	c.writeBulkString("server")
	c.writeBulkString("fulcrum")
	c.writeBulkString("version")
	c.writeBulkString(c.s.opts.Version)
	c.writeBulkString("proto")
	c.writeInt(int64(c.proto))
	c.writeBulkString("id")
	c.writeInt(c.id)
	c.writeBulkString("mode")
	c.writeBulkString("standalone")
	c.writeBulkString("role")
	c.writeBulkString("master")
	c.writeBulkString("modules")
	c.writeArray(0)
}

func cmdTime(c *conn, _ [][]byte) {
	now := c.s.opts.Now()
	c.writeArray(2)
	var tmp [20]byte
	c.writeBulk(strconv.AppendInt(tmp[:0], now.Unix(), 10))
	c.writeBulk(strconv.AppendInt(tmp[:0], int64(now.Nanosecond()/1000), 10))
}

func cmdClient(c *conn, args [][]byte) {
	switch c.subcommand(c.cmd, args) {
	case "":
	case "id":
		c.writeInt(c.id)
	case "getname":
		c.info.Lock()
		name := c.info.name
		c.info.Unlock()
		if name == "" {
			c.writeNull()
		} else {
			c.writeBulkString(name)
		}
	case "setname":
		if !validName(args[2]) {
			c.writeError(errClientName)
			return
		}
		c.info.Lock()
		c.info.name = string(args[2])
		c.info.Unlock()
		c.writeOK()
	case "setinfo":
		attr, val := args[2], args[3]
		var field *string
		var canon string
		switch {
		case equalFold(attr, "lib-name"):
			field, canon = &c.info.libName, "lib-name"
		case equalFold(attr, "lib-ver"):
			field, canon = &c.info.libVer, "lib-ver"
		default:
			c.writeError("ERR Unrecognized option '" + string(cString(attr, len(attr))) + "'")
			return
		}
		if !validName(val) {
			c.writeError("ERR " + canon + " cannot contain spaces, newlines or special characters.")
			return
		}
		c.info.Lock()
		*field = string(val)
		c.info.Unlock()
		c.writeOK()
	case "info":
		c.writeVerbatim(c.clientLine(nil, time.Now()))
	case "list":
		clientList(c, args)
	case "no-evict", "no-touch":
		if !equalFold(args[2], "on") && !equalFold(args[2], "off") {
			c.writeError(errSyntax)
			return
		}
		c.writeOK()
	case "help":
		writeHelp(c, "CLIENT",
			"GETNAME", "    Return the name of the current connection.",
			"ID", "    Return the ID of the current connection.",
			"INFO", "    Return information about the current client connection.",
			"LIST [TYPE NORMAL] [ID <id> [<id> ...]]", "    Return information about client connections.",
			"SETINFO <LIB-NAME|LIB-VER> <value>", "    Set client library name or version.",
			"SETNAME <name>", "    Assign the name <name> to the current connection.",
			"NO-EVICT (ON|OFF)", "    Accepted for compatibility; Fulcrum evicts no clients.",
			"NO-TOUCH (ON|OFF)", "    Accepted for compatibility; Fulcrum keeps no access times.")
	}
}

// clientList answers CLIENT LIST [TYPE normal] [ID id ...].
func clientList(c *conn, args [][]byte) {
	var ids []int64
	for i := 2; i < len(args); i++ {
		switch {
		case equalFold(args[i], "type") && i+1 < len(args):
			t := args[i+1]
			if !equalFold(t, "normal") && !equalFold(t, "master") && !equalFold(t, "replica") &&
				!equalFold(t, "slave") && !equalFold(t, "pubsub") {
				c.writeError("ERR Unknown client type '" + string(t) + "'")
				return
			}
			if !equalFold(t, "normal") {
				ids = []int64{} // no such clients here
			}
			i++
		case equalFold(args[i], "id") && i+1 < len(args):
			if ids == nil {
				ids = []int64{}
			}
			for i++; i < len(args); i++ {
				id, ok := parseInt(args[i])
				if !ok || id <= 0 {
					c.writeError("ERR Invalid client ID")
					return
				}
				ids = append(ids, id)
			}
		default:
			c.writeError(errSyntax)
			return
		}
	}
	conns := c.s.snapshotConns()
	slices.SortFunc(conns, func(a, b *conn) int { return int(a.id - b.id) })
	now := time.Now()
	var b []byte
	for _, o := range conns {
		if ids != nil && !slices.Contains(ids, o.id) {
			continue
		}
		b = o.clientLine(b, now)
	}
	c.writeVerbatim(b)
}

// writeHelp answers a container's HELP with Redis's layout.
func writeHelp(c *conn, cmd string, lines ...string) {
	all := append([]string{cmd + " <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"}, lines...)
	all = append(all, "HELP", "    Print this help.")
	c.writeArray(len(all))
	for _, l := range all {
		c.writeSimple(l)
	}
}

func cmdConfig(c *conn, args [][]byte) {
	switch c.subcommand(c.cmd, args) {
	case "":
	case "get":
		cfg := c.s.opts.ConfigValues
		var names []string
		for name := range cfg {
			for _, pat := range args[2:] {
				if matchGlob(pat, []byte(name), true) {
					names = append(names, name)
					break
				}
			}
		}
		slices.Sort(names)
		c.writeMap(len(names))
		for _, name := range names {
			c.writeBulkString(name)
			c.writeBulkString(cfg[name])
		}
	case "set":
		c.writeError("ERR CONFIG SET is not supported by Fulcrum; change the server's configuration and restart it")
	case "rewrite":
		c.writeError("ERR CONFIG REWRITE is not supported by Fulcrum; its configuration file is edited by hand")
	case "resetstat":
		c.s.stats.reset()
		c.writeOK()
	case "help":
		writeHelp(c, "CONFIG",
			"GET <pattern>", "    Return parameters matching the glob-like <pattern> and their values.",
			"SET <directive> <value>", "    Not supported: Fulcrum is configured at start.",
			"RESETSTAT", "    Reset statistics reported by the INFO command.")
	}
}

func cmdCommand(c *conn, args [][]byte) {
	if len(args) == 1 {
		c.writeArray(len(c.s.cmdList))
		for _, cmd := range c.s.cmdList {
			writeCommandInfo(c, cmd)
		}
		return
	}
	switch c.subcommand(c.cmd, args) {
	case "":
	case "count":
		c.writeInt(int64(len(c.s.cmdList)))
	case "list":
		if len(args) > 2 {
			c.writeError(errSyntax)
			return
		}
		c.writeArray(len(c.s.cmdList))
		for _, cmd := range c.s.cmdList {
			c.writeBulkString(cmd.name)
		}
	case "info":
		if len(args) == 2 {
			c.writeArray(len(c.s.cmdList))
			for _, cmd := range c.s.cmdList {
				writeCommandInfo(c, cmd)
			}
			return
		}
		c.writeArray(len(args) - 2)
		for _, name := range args[2:] {
			if cmd := c.lookup(name); cmd != nil {
				writeCommandInfo(c, cmd)
			} else {
				c.writeNullArray()
			}
		}
	case "docs":
		var cmds []*command
		if len(args) == 2 {
			cmds = c.s.cmdList
		} else {
			for _, name := range args[2:] {
				if cmd := c.lookup(name); cmd != nil {
					cmds = append(cmds, cmd)
				}
			}
		}
		c.writeMap(len(cmds))
		for _, cmd := range cmds {
			c.writeBulkString(cmd.name)
			writeCommandDocs(c, cmd)
		}
	case "help":
		writeHelp(c, "COMMAND",
			"(no subcommand)", "    Return details about all commands.",
			"COUNT", "    Return the total number of commands in this server.",
			"LIST", "    Return a list of all commands in this server.",
			"INFO [<command-name> ...]", "    Return details about the given commands, or all of them.",
			"DOCS [<command-name> ...]", "    Return documentation details about the given commands, or all of them.")
	}
}

// writeCommandInfo writes one command's COMMAND INFO entry in Redis 7's
// ten-element layout.
func writeCommandInfo(c *conn, cmd *command) {
	c.writeArray(10)
	c.writeBulkString(cmd.name)
	c.writeInt(int64(cmd.arity))
	c.writeSet(len(cmd.flags))
	for _, f := range cmd.flags {
		c.writeSimple(f)
	}
	c.writeInt(int64(cmd.firstKey))
	c.writeInt(int64(cmd.lastKey))
	c.writeInt(int64(cmd.step))
	c.writeSet(len(cmd.acl))
	for _, a := range cmd.acl {
		c.writeSimple(a)
	}
	c.writeSet(0) // tips
	if cmd.firstKey > 0 {
		writeKeySpec(c, cmd)
	} else {
		c.writeArray(0)
	}
	c.writeArray(len(cmd.subcommands))
	for _, sub := range cmd.subcommands {
		writeCommandInfo(c, sub)
	}
}

// writeKeySpec writes the single key spec our commands need: keys from
// argument firstKey to lastKey (negative counts from the end) every step.
func writeKeySpec(c *conn, cmd *command) {
	access := "RO"
	if slices.Contains(cmd.flags, "write") {
		access = "RW"
	}
	last := 0
	if cmd.lastKey < 0 {
		last = cmd.lastKey
	} else {
		last = cmd.lastKey - cmd.firstKey
	}
	c.writeArray(1)
	c.writeMap(3)
	c.writeBulkString("flags")
	c.writeSet(1)
	c.writeSimple(access)
	c.writeBulkString("begin_search")
	c.writeMap(2)
	c.writeBulkString("type")
	c.writeBulkString("index")
	c.writeBulkString("spec")
	c.writeMap(1)
	c.writeBulkString("index")
	c.writeInt(int64(cmd.firstKey))
	c.writeBulkString("find_keys")
	c.writeMap(2)
	c.writeBulkString("type")
	c.writeBulkString("range")
	c.writeBulkString("spec")
	c.writeMap(3)
	c.writeBulkString("lastkey")
	c.writeInt(int64(last))
	c.writeBulkString("keystep")
	c.writeInt(int64(cmd.step))
	c.writeBulkString("limit")
	c.writeInt(0)
}

func writeCommandDocs(c *conn, cmd *command) {
	n := 3
	if len(cmd.subcommands) > 0 {
		n++
	}
	c.writeMap(n)
	c.writeBulkString("summary")
	c.writeBulkString(cmd.summary)
	c.writeBulkString("since")
	c.writeBulkString(cmd.since)
	c.writeBulkString("group")
	c.writeBulkString(cmd.group)
	if len(cmd.subcommands) > 0 {
		c.writeBulkString("subcommands")
		c.writeMap(len(cmd.subcommands))
		for _, sub := range cmd.subcommands {
			c.writeBulkString(sub.name)
			writeCommandDocs(c, sub)
		}
	}
}

// infoSection is one INFO section: a title and its fields.
type infoSection struct {
	name   string
	fields func(c *conn) []InfoField
}

// builtinSections are INFO's own sections, in Redis's order.
var builtinSections = []infoSection{
	{"Server", serverInfo},
	{"Clients", clientsInfo},
	{"Stats", statsInfo},
	{"Keyspace", keyspaceInfo},
}

func cmdInfo(c *conn, args [][]byte) {
	all := len(args) == 1
	want := map[string]bool{}
	for _, a := range args[1:] {
		s := strings.ToLower(string(a))
		if s == "all" || s == "everything" || s == "default" {
			all = true
		}
		want[s] = true
	}
	var b []byte
	add := func(name string, fields []InfoField) {
		if len(b) > 0 {
			b = append(b, "\r\n"...)
		}
		b = append(b, "# "...)
		b = append(b, name...)
		b = append(b, "\r\n"...)
		for _, f := range fields {
			b = append(b, f.Name...)
			b = append(b, ':')
			b = append(b, f.Value...)
			b = append(b, "\r\n"...)
		}
	}
	// ExtraInfo sections follow the built-in ones, in the wiring's order.
	for _, sec := range builtinSections {
		if all || want[strings.ToLower(sec.name)] {
			add(sec.name, sec.fields(c))
		}
	}
	for _, sec := range c.s.opts.ExtraInfo {
		if all || want[strings.ToLower(sec.Name)] {
			add(sec.Name, sec.Fields())
		}
	}
	c.writeVerbatim(b)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func serverInfo(c *conn) []InfoField {
	s := c.s
	up := time.Since(s.started)
	_, port, _ := net.SplitHostPort(c.nc.LocalAddr().String())
	return []InfoField{
		{"redis_version", RedisVersion},
		{"fulcrum_version", s.opts.Version},
		{"redis_mode", "standalone"},
		{"os", runtime.GOOS + " " + runtime.GOARCH},
		{"arch_bits", strconv.Itoa(strconv.IntSize)},
		{"go_version", runtime.Version()},
		{"process_id", strconv.Itoa(os.Getpid())},
		{"run_id", s.runID},
		{"tcp_port", port},
		{"server_time_usec", itoa(s.opts.Now().UnixMicro())},
		{"uptime_in_seconds", itoa(int64(up / time.Second))},
		{"uptime_in_days", itoa(int64(up / (24 * time.Hour)))},
	}
}

func clientsInfo(c *conn) []InfoField {
	return []InfoField{
		{"connected_clients", strconv.Itoa(c.s.numConns())},
		{"maxclients", strconv.Itoa(c.s.opts.MaxClients)},
		{"blocked_clients", "0"},
		{"tracking_clients", "0"},
	}
}

func statsInfo(c *conn) []InfoField {
	st := &c.s.stats
	return []InfoField{
		{"total_connections_received", itoa(st.connectionsReceived.Load())},
		{"total_commands_processed", itoa(st.commands.Load())},
		{"total_net_input_bytes", itoa(st.netIn.Load())},
		{"total_net_output_bytes", itoa(st.netOut.Load())},
		{"rejected_connections", itoa(st.rejected.Load())},
		{"keyspace_hits", itoa(st.hits.Load())},
		{"keyspace_misses", itoa(st.misses.Load())},
		{"scan_cursors", strconv.Itoa(c.s.cursors.len())},
	}
}

// keyspaceInfo reports the default namespace as Redis's db0 (so tools that
// read db0 work) and every namespace as ns_<name>.
func keyspaceInfo(c *conn) []InfoField {
	var out []InfoField
	stats := c.s.opts.Store.Keyspace()
	line := func(keys, expires int64) string {
		return "keys=" + itoa(keys) + ",expires=" + itoa(expires) + ",avg_ttl=0"
	}
	for _, st := range stats {
		if st.Name == kv.DefaultNamespace && st.Keys > 0 {
			out = append(out, InfoField{"db0", line(st.Keys, st.Expires)})
		}
	}
	slices.SortFunc(stats, func(a, b kv.NamespaceStats) int { return strings.Compare(a.Name, b.Name) })
	for _, st := range stats {
		if st.Keys > 0 {
			out = append(out, InfoField{"ns_" + st.Name, line(st.Keys, st.Expires)})
		}
	}
	return out
}
