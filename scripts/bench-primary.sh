#!/usr/bin/env bash
# bench-primary.sh: write throughput and replication lag of
# replication=primary namespaces on one local 3-node cluster, per ack mode
# (async, semi k=1, sync k=1) and availability pattern (active-passive,
# active-active), with a strong (Raft) namespace for reference.
#
#   scripts/bench-primary.sh [DURATION] [CONCURRENCY]     (default 10s 16)
#
# While each point runs, every replica's lag (entries and ms, from
# GET /v1/cluster) is sampled every 100 ms; the table gives its maximum
# and 99th percentile. Everything runs on 127.0.0.1 and stops at the end.
set -euo pipefail
dur=${1:-10s}
conc=${2:-16}
base=17379
cd "$(dirname "$0")/.."
. scripts/dev-cluster.sh
start_dev $base 4
ns_create() { "$bin" namespace create "$@" --shards 4 --addr "$http" >/dev/null; }
ns_create st
ns_create pasync --replication primary --ack async
ns_create psemi --replication primary --ack semi --ack-replicas 1
ns_create psync --replication primary --ack sync --ack-replicas 1
ns_create aasync --replication primary --ack async --availability active-active
ns_create aasync_sync --replication primary --ack sync --ack-replicas 1 --availability active-active
targets="resp://127.0.0.1:$base,127.0.0.1:$((base + 10)),127.0.0.1:$((base + 20))"

sample_lag() { # $1: namespace; samples until the file $dir/stop exists
	while [ ! -e "$dir/stop" ]; do
		for port in $((base + 1)) $((base + 11)) $((base + 21)); do
			curl -s --max-time 1 "http://127.0.0.1:$port/v1/cluster" |
				jq -r --arg ns "$1" '.primaries[]? | select(.namespace == $ns and .role == "replica" and .lag_ms >= 0) | "\(.lag_entries) \(.lag_ms)"'
		done
		sleep 0.1
	done
}

printf '| namespace | ack | availability | writes/s | p50 ms | p99 ms | replica lag p99 / max (entries) | (ms) |\n|---|---|---|---|---|---|---|---|\n'
for ns in st pasync psemi psync aasync aasync_sync; do
	rm -f "$dir/stop"
	sample_lag "$ns" >"$dir/lag.$ns" &
	sampler=$!
	"$bin" bench --target "f=$targets" --namespace "$ns" --read-ratio 0 --concurrency "$conc" \
		--duration "$dur" --warmup 2s --value-size 100 --out "$dir/$ns" >"$dir/bench.$ns" 2>&1 || { cat "$dir/bench.$ns"; exit 1; }
	touch "$dir/stop"
	wait $sampler
	read -r ops p50 p99 < <(jq -r '.runs[0].ops[] | select(.op == "write") | "\(.ops_per_sec | floor) \(.p50_ms) \(.p99_ms)"' "$dir/$ns/"*.json 2>/dev/null || echo "? ? ?")
	lag=$(sort -n "$dir/lag.$ns" | awk '{e[NR]=$1; if ($1>me) me=$1} END {i=int(NR*0.99); if (i<1) i=1; if (NR==0) {print "- -"} else {print e[i], me}}')
	lagms=$(awk '{print $2}' "$dir/lag.$ns" | sort -n | awk '{m[NR]=$1; if ($1>mx) mx=$1} END {i=int(NR*0.99); if (i<1) i=1; if (NR==0) {print "- -"} else {print m[i], mx}}')
	case $ns in
	st) ack=raft avail=- ;;
	pasync) ack=async avail=active-passive ;;
	psemi) ack=semi avail=active-passive ;;
	psync) ack=sync avail=active-passive ;;
	aasync) ack=async avail=active-active ;;
	aasync_sync) ack=sync avail=active-active ;;
	esac
	printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$ns" "$ack" "$avail" "$ops" "$p50" "$p99" "${lag/ / \/ }" "${lagms/ / \/ }"
done
