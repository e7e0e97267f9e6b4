#!/usr/bin/env bash
# Replicated strong mode, side by side: a 3-node Fulcrum cluster (Raft per
# shard) and a 3-member etcd cluster on this machine, driven by
# `fulcrum bench` in interleaved rounds so both share the same noise.
#   writes: write-only workload at 1, 16, 64 and 256 clients
#   reads:  read-only workload (linearizable on both) at 16, 64, 256
# 256-byte values, 10000 keys written before measuring, zipfian keys.
# Prints a markdown table (ops/s, p50, p99 and Fulcrum/etcd ratios), the
# write throughput ratio at equal p99, and the single-client write floor
# (loopback round trip + fdatasync on the data directories' disk).
#
#   scripts/bench-vs-etcd.sh                  # full run, about 5 min (10s per target and load point)
#   QUICK=1 scripts/bench-vs-etcd.sh          # quick run, about 1.5 min (2s; QUICK_DUR=4s for 4s)
#   OUT=dir PROFILE=1 scripts/bench-vs-etcd.sh    # keep the results (JSON, CSV, tables) in dir, and
#                                             # take 10s CPU profiles of Fulcrum node 1 (writes, reads)
#   PLOT=1 scripts/bench-vs-etcd.sh           # also the curves and CAS (below); about 2x the time
#
# PLOT=1 adds concurrency sweeps (1, 4, 16, 64, 256 clients) of writes and
# of linearizable reads, Fulcrum with client i on node i mod 3 against the
# first etcd setting, and copies their latency-vs-throughput charts to
# docs/figures/strong-{writes,reads}-fulcrum-vs-etcd.svg (FIGURES=dir to
# put them elsewhere); then a compare-and-set run (50% reads, 50% CAS at 1
# and 16 clients): Fulcrum over HTTP (PUT with If-Match, 3 nodes) against
# etcd (Txn If ModRevision == last read Then Put).
#
# Targets. Fulcrum (default durability: in a cluster the Raft log is
# fsynced before a write is acknowledged; log level warn) twice: with every
# client on node 1 ("fulcrum-node1") and with client i on node i mod 3
# ("fulcrum-3nodes"); FULCRUM_SPREAD="1" or "3" keeps one. etcd (default
# durability: fsync on; default settings otherwise) with all three
# endpoints in each client, whose balancer spreads the requests; by
# default 16 clientv3 clients are shared by all bench clients (HTTP/2
# multiplexing, etcd's own benchmark practice, and etcd's better showing
# here); ETCD_CONNS lists settings to run, the first named "etcd" and used
# for the ratios, 0 meaning one client per bench client (ETCD_CONNS="16 0").
#
# Needs etcd and etcdctl (apt-get install etcd-server etcd-client), curl,
# awk and go. Only loopback is used; every process started here is stopped
# on exit. Data lives in a temporary directory: TMPDIR decides the disk
# (not a tmpfs, or fsync is free).
set -euo pipefail
DUR=${DUR:-10s}
[ -n "${QUICK:-}" ] && DUR=${QUICK_DUR:-2s}
KEYS=${KEYS:-10000}
VALUE=${VALUE:-256}
FULCRUM_SPREAD=${FULCRUM_SPREAD:-1 3}
ETCD_CONNS=${ETCD_CONNS:-16}
cd "$(dirname "$0")/.."
work=$(mktemp -d "${TMPDIR:-/tmp}/bench-vs-etcd.XXXXXX")
out=${OUT:-$work/out}
mkdir -p "$out"
pids=() fpids=() epids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for bin in etcd etcdctl curl go awk; do
	command -v $bin >/dev/null || { echo "$bin not on PATH" >&2; exit 1; }
done
go build -o "$work/fulcrum" ./cmd/fulcrum

# Ports: Fulcrum node i serves RESP on 173i1, HTTP on 173i2, peers on
# 173i3; etcd member i serves clients on i2379 and peers on i2380.
fresp() { echo "127.0.0.1:173${1}1"; }
fhttp() { echo "127.0.0.1:173${1}2"; }
fpeer() { echo "127.0.0.1:173${1}3"; }
eclient() { echo "127.0.0.1:${1}2379"; }
epeer() { echo "127.0.0.1:${1}2380"; }

peers='"1='$(fpeer 1)'", "2='$(fpeer 2)'", "3='$(fpeer 3)'"'
for i in 1 2 3; do
	cat >"$work/f$i.toml" <<EOF
node_id = "n$i"
shutdown_timeout = "3s"
[data]
dir = "$work/f$i"
[resp]
addr = "$(fresp $i)"
[http]
addr = "$(fhttp $i)"
enable_pprof = $([ "$i" = 1 ] && echo true || echo false)
[log]
level = "warn"
[cluster]
id = $i
peer_addr = "$(fpeer $i)"
peers = [$peers]
EOF
	"$work/fulcrum" server --config "$work/f$i.toml" 2>"$work/f$i.log" &
	pids+=($!) fpids+=($!)
done
initial=e1=http://$(epeer 1),e2=http://$(epeer 2),e3=http://$(epeer 3)
for i in 1 2 3; do
	etcd --name e$i --data-dir "$work/e$i" \
		--listen-client-urls http://$(eclient $i) --advertise-client-urls http://$(eclient $i) \
		--listen-peer-urls http://$(epeer $i) --initial-advertise-peer-urls http://$(epeer $i) \
		--initial-cluster "$initial" --initial-cluster-state new --initial-cluster-token bench-vs-etcd \
		--logger zap --log-level warn 2>"$work/e$i.log" &
	pids+=($!) epids+=($!)
done

# Ready: every Fulcrum node sees a leader for each of its shards, and
# every etcd member is healthy. 30s at most.
shards=$("$work/fulcrum" config default | awk '/^\[cluster\]/ { c = 1 } c && $1 == "shards" { print $3; exit }')
ready() {
	local i led
	for i in 1 2 3; do
		led=$(curl -sf "http://$(fhttp $i)/v1/cluster" | grep -c '"leader": [1-9]') || return 1
		[ "$led" -ge "$shards" ] || return 1
	done
	etcdctl --endpoints="$(eclient 1),$(eclient 2),$(eclient 3)" endpoint health >/dev/null 2>&1
}
for n in $(seq 1 300); do
	ready && break
	[ "$n" = 300 ] && { echo "clusters not ready after 30s; logs in $work" >&2; tail -5 "$work"/*.log >&2; exit 1; }
	sleep 0.1
done

# The floor of a single-client write: loopback TCP round trip and a small
# write + fdatasync on this disk (overwriting an already written file, as
# Pebble's recycled WAL and etcd's preallocated WAL segments mostly do;
# and appending, which also journals the new size), medians.
mkdir -p "$work/floor"
cat >"$work/floor/main.go" <<'EOF'
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

func median(f func(), n int) time.Duration {
	for range n / 10 {
		f()
	}
	ds := make([]time.Duration, n)
	for i := range ds {
		t := time.Now()
		f()
		ds[i] = time.Since(t)
	}
	slices.Sort(ds)
	return ds[n/2]
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	go func() {
		c, err := ln.Accept()
		must(err)
		buf := make([]byte, 64)
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			_, _ = c.Write(buf)
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	must(err)
	buf := make([]byte, 64)
	rtt := median(func() {
		_, err := c.Write(buf)
		must(err)
		_, err = io.ReadFull(c, buf)
		must(err)
	}, 20000)

	rec := make([]byte, 512)
	f, err := os.Create(filepath.Join(os.Args[1], "overwrite"))
	must(err)
	_, err = f.Write(make([]byte, 4<<20))
	must(err)
	must(f.Sync())
	off := int64(0)
	over := median(func() {
		_, err := f.WriteAt(rec, off)
		must(err)
		must(syscall.Fdatasync(int(f.Fd())))
		off = (off + 512) % (4 << 20)
	}, 2000)
	g, err := os.Create(filepath.Join(os.Args[1], "append"))
	must(err)
	app := median(func() {
		_, err := g.Write(rec)
		must(err)
		must(syscall.Fdatasync(int(g.Fd())))
	}, 1000)
	fmt.Printf("%.1f %.1f %.1f\n", float64(rtt)/1e3, float64(over)/1e3, float64(app)/1e3)
}
EOF
read -r rtt_us fsync_us append_us < <(cd "$work/floor" && go run main.go "$work")

# Targets: Fulcrum with every client on node 1 and with clients spread
# over the 3 nodes (FULCRUM_SPREAD lists node counts); etcd with each
# ETCD_CONNS value (0: a client per bench client, N: N shared clients);
# the first etcd one is "etcd", the one the ratios are against.
targets=()
for n in $FULCRUM_SPREAD; do
	case $n in
	1) targets+=(--target "fulcrum-node1=resp://$(fresp 1)") ;;
	3) targets+=(--target "fulcrum-3nodes=resp://$(fresp 1),$(fresp 2),$(fresp 3)") ;;
	*) echo "FULCRUM_SPREAD: $n is not 1 or 3" >&2; exit 2 ;;
	esac
done
first=1
for c in $ETCD_CONNS; do
	q= name=etcd-conns$c
	[ "$c" != 0 ] && q="?conns=$c"
	[ -n "$first" ] && name=etcd first=
	targets+=(--target "$name=etcd://$(eclient 1),$(eclient 2),$(eclient 3)$q")
done

# bench NAME args...: one interleaved fulcrum bench run, results in $out/NAME.
bench() {
	local name=$1
	shift
	echo "== $name: $*" >&2
	local f0 e0
	f0=$(cputicks "${fpids[@]}") e0=$(cputicks "${epids[@]}")
	# In the background, so that a signal to this script is handled at once
	# (bash runs traps only between foreground commands).
	"$work/fulcrum" bench "${targets[@]}" --value-size "$VALUE" --keys "$KEYS" \
		--duration "$DUR" --seed 42 --out "$out/$name" "$@" >"$out/$name.txt" 2>"$out/$name.progress" &
	pids+=($!)
	wait $!
	echo "$(($(cputicks "${fpids[@]}") - f0)) $(($(cputicks "${epids[@]}") - e0))" >"$out/$name.cpu"
	cat "$out/$name.txt" >&2
}

# cputicks PID...: user + system CPU time of the processes, in clock ticks.
cputicks() {
	local p t=0
	for p in "$@"; do t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); done
	echo $t
}

# raftm I: node I's Raft metrics so far: log persists (count, sum in
# seconds) and writes proposed there until applied (count, sum).
raftm() {
	curl -sf "http://$(fhttp "$1")/metrics" | awk '
		$1 == "fulcrum_raft_log_persist_seconds_count" { pc = $2 } $1 == "fulcrum_raft_log_persist_seconds_sum" { ps = $2 }
		$1 == "fulcrum_raft_write_seconds_count" { wc = $2 } $1 == "fulcrum_raft_write_seconds_sum" { ws = $2 }
		END { print pc + 0, ps + 0, wc + 0, ws + 0 }'
}

load_before=$(uptime)
# Writes with 16+ clients first: their first load point writes every key
# (preload, 16 clients), so the single-client run and the reads need none.
bench writes --read-ratio 0 --concurrency 16,64,256
for i in 1 2 3; do m0[$i]=$(raftm $i); done
bench writes-c1 --read-ratio 0 --concurrency 1 --preload=false
for i in 1 2 3; do m1[$i]=$(raftm $i); done
bench reads --workload C --concurrency 16,64,256 --preload=false
if [ -n "${PLOT:-}" ]; then
	figures=${FIGURES:-docs/figures}
	mkdir -p "$figures"
	all_targets=("${targets[@]}")
	etcd1=
	for c in $ETCD_CONNS; do
		q=
		[ "$c" != 0 ] && q="?conns=$c"
		etcd1="etcd=etcd://$(eclient 1),$(eclient 2),$(eclient 3)$q"
		break
	done
	targets=(--target "fulcrum=resp://$(fresp 1),$(fresp 2),$(fresp 3)" --target "$etcd1")
	bench curve-writes --read-ratio 0 --concurrency 1,4,16,64,256 --preload=false --plot "$out/curve-writes"
	bench curve-reads --workload C --concurrency 1,4,16,64,256 --preload=false --plot "$out/curve-reads"
	cp "$out/curve-writes/latency-throughput.svg" "$figures/strong-writes-fulcrum-vs-etcd.svg"
	cp "$out/curve-reads/latency-throughput.svg" "$figures/strong-reads-fulcrum-vs-etcd.svg"
	targets=(--target "fulcrum-http=http://$(fhttp 1),$(fhttp 2),$(fhttp 3)" --target "$etcd1")
	bench cas --read-ratio 0.5 --cas-ratio 0.5 --concurrency 1,16 --preload=false
	targets=("${all_targets[@]}")
fi
load_after=$(uptime)

if [ -n "${PROFILE:-}" ]; then
	# Fulcrum alone, 64 clients, while node 1 is profiled for 10s.
	for w in writes reads; do
		mix=(--read-ratio 0)
		[ $w = reads ] && mix=(--workload C)
		"$work/fulcrum" bench --target "fulcrum=resp://$(fresp 1)" --value-size "$VALUE" --keys "$KEYS" --concurrency 64 \
			--duration 14s --warmup 0s --preload=false "${mix[@]}" >/dev/null 2>&1 &
		bp=$!
		pids+=($bp)
		sleep 2
		curl -sf -o "$out/fulcrum-node1-$w.pprof" "http://$(fhttp 1)/debug/pprof/profile?seconds=10"
		wait $bp
		go tool pprof -top -cum -nodecount=40 "$out/fulcrum-node1-$w.pprof" >"$out/fulcrum-node1-$w.top" 2>/dev/null
	done
fi

# The results: "load clients target ops/s p50 p99" per run, from the CSVs.
rows() {
	local csv
	for csv in "$out"/writes/*.csv "$out"/writes-c1/*.csv; do
		awk -F, -v load=writes 'NR > 1 && $7 == "total" { printf "%s %s %s %.0f %.3f %.3f\n", load, $4, $1, $10, $11, $13 }' "$csv"
	done
	for csv in "$out"/reads/*.csv; do
		awk -F, -v load=reads 'NR > 1 && $7 == "total" { printf "%s %s %s %.0f %.3f %.3f\n", load, $4, $1, $10, $11, $13 }' "$csv"
	done
}
rows | sort -k1,1r -k2,2n -k3,3 >"$out/rows.txt"
versions=$(awk -F'"' '/"server_version"/ { print $4 }' "$out"/writes/*.json | sort -u | paste -sd, -)

echo
echo "Fulcrum: 3 nodes; etcd: 3 members; $DUR per target and load point; versions: $versions"
echo "targets: ${targets[*]}"
echo "data on $(df -T "$work" | awk 'NR == 2 { print $1 " (" $2 ")" }'); nproc $(nproc); load average before: ${load_before##*load average: }; after: ${load_after##*load average: }"
echo
echo '| workload | clients | target | ops/s | p50 ms | p99 ms | ops/s ÷ etcd | p50 ÷ etcd | p99 ÷ etcd |'
echo '|---|---:|---|---:|---:|---:|---:|---:|---:|'
awk '
	{ row[++n] = $0; if ($3 == "etcd") { eo[$1 " " $2] = $4; e50[$1 " " $2] = $5; e99[$1 " " $2] = $6 } }
	END {
		for (i = 1; i <= n; i++) {
			split(row[i], a, " "); k = a[1] " " a[2]
			r = "| - | - | - |"
			if (a[3] != "etcd" && (k in eo)) r = sprintf("| %.2f | %.2f | %.2f |", a[4] / eo[k], a[5] / e50[k], a[6] / e99[k])
			printf "| %s | %s | %s | %d | %.2f | %.2f %s\n", a[1], a[2], a[3], a[4], a[5], a[6], r
		}
	}' "$out/rows.txt"
echo
# Throughput at equal p99: for each etcd write point, a Fulcrum target's
# best throughput at a p99 no worse than etcd's there.
awk '
	$1 != "writes" { next }
	$3 ~ /^fulcrum/ { t[$3] = 1; fo[$3, ++nf[$3]] = $4; fp[$3, nf[$3]] = $6 }
	$3 == "etcd" { eo[++ne] = $4; ep[ne] = $6; ec[ne] = $2 }
	END {
		for (name in t) for (j = 1; j <= ne; j++) {
			best = 0
			for (i = 1; i <= nf[name]; i++) if (fp[name, i] <= ep[j] && fo[name, i] > best) best = fo[name, i]
			if (best > 0) printf "writes, %s vs etcd c=%s (%d ops/s, p99 %.2f ms): best at a p99 <= that %d ops/s = %.2fx\n", name, ec[j], eo[j], ep[j], best, best / eo[j]
			else printf "writes, %s vs etcd c=%s (p99 %.2f ms): no point with a p99 that low\n", name, ec[j], ep[j]
		}
	}' "$out/rows.txt" | sort -s -k2,2
# Server CPU per operation (the 3 processes of each system together), by
# bench run: operations counted include the 1s warm-ups and the preload.
hz=$(getconf CLK_TCK)
# (Not for the single-client run: idle work, such as background
# compactions after the writes before it, would dominate.)
for name in writes reads; do
	pre=0
	[ $name = writes ] && pre=$KEYS
	read -r ft et <"$out/$name.cpu"
	cat "$out/$name"/*.csv | awk -F, -v name=$name -v ft="$ft" -v et="$et" -v hz="$hz" -v pre="$pre" '
		$7 != "total" || $1 == "target" { next }
		{ n = $8 + $10 * 1; seen[$1] = 1; if ($1 ~ /^fulcrum/) fo += n; else eo += n }
		END {
			for (t in seen) if (t ~ /^fulcrum/) fo += pre; else eo += pre
			printf "server CPU per operation, %s: Fulcrum %.0f us, etcd %.0f us (%.1f and %.1f CPU-seconds)\n", name, ft / hz / fo * 1e6, et / hz / eo * 1e6, ft / hz, et / hz
		}'
done
f1=$(awk '$1 == "writes" && $2 == 1 && $3 ~ /^fulcrum/ { print $5; exit }' "$out/rows.txt")
awk -v rtt="$rtt_us" -v fs="$fsync_us" -v ap="$append_us" -v f1="$f1" 'BEGIN {
	floor = (rtt + fs) / 1000
	printf "single-client write floor: loopback RTT %.0f us + fdatasync %.0f us (appending: %.0f us) = %.3f ms; Fulcrum c=1 write p50 %.3f ms = %.2fx\n", rtt, fs, ap, floor, f1, f1 / floor
}'
for i in 1 2 3; do
	echo "${m0[$i]} ${m1[$i]}" | awk -v i=$i '{
		printf "node %d during the c=1 writes: %d Raft log persists, mean %.0f us", i, $5 - $1, ($5 > $1) ? ($6 - $2) / ($5 - $1) * 1e6 : 0
		if ($7 > $3) printf "; %d writes proposed here, propose to applied mean %.0f us", $7 - $3, ($8 - $4) / ($7 - $3) * 1e6
		printf "\n"
	}'
done
if [ -n "${PROFILE:-}" ]; then
	for w in writes reads; do
		echo
		echo "CPU profile of Fulcrum node 1 (10s), $w at 64 clients, all on node 1 (top by cumulative time):"
		sed -n '1,48p' "$out/fulcrum-node1-$w.top"
	done
fi
if [ -n "${PLOT:-}" ]; then
	echo
	echo "figures: $figures/strong-writes-fulcrum-vs-etcd.svg, $figures/strong-reads-fulcrum-vs-etcd.svg"
	echo
	echo "compare-and-set (50% reads, 50% CAS; a CAS never seen by its client reads first, inside the CAS):"
	echo '| clients | target | CAS ops/s | CAS p50 ms | CAS p99 ms | conflicts | read p50 ms | read p99 ms |'
	echo '|---:|---|---:|---:|---:|---:|---:|---:|'
	# Columns: 1 target, 4 clients, 7 op, 8 count, 10 ops/s, 11 p50, 13 p99, 16 conflicts.
	awk -F, 'NR > 1 && $7 == "cas" { k = $4 " " $1; c[k] = sprintf("| %s | %s | %.0f | %.2f | %.2f | %.1f%% |", $4, $1, $10, $11, $13, 100 * $16 / $8) }
		NR > 1 && $7 == "read" { r[$4 " " $1] = sprintf(" %.2f | %.2f |", $11, $13) }
		END { for (k in c) print c[k] r[k] }' "$out"/cas/*.csv | sort -t'|' -k2,2n -k3,3
fi
[ -n "${OUT:-}" ] && echo "results in $out"
exit 0
