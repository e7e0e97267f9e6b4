#!/usr/bin/env bash
# bench-eventual.sh: write throughput of strong (Raft), eventual W=1 and
# eventual W=2 namespaces on one local 3-node cluster (fulcrum dev), at
# several client counts, one namespace after the other (read the ratios
# with the machine's noise in mind). data.sync is "always": every engine's
# acknowledged writes are fsynced (Raft's in its log, the leaderless
# engine's in the store).
#
#   scripts/bench-eventual.sh [DURATION] [CONCURRENCIES]   (default 5s 1,16,64)
#
# Everything runs on 127.0.0.1 and stops at the end.
set -euo pipefail
dur=${1:-5s}
conc=${2:-1,16,64}
base=18379
cd "$(dirname "$0")/.."
. scripts/dev-cluster.sh
start_dev $base 16
"$bin" namespace create st --shards 16 --addr "$http" >/dev/null
"$bin" namespace create cache --consistency eventual --replicas 3 --shards 16 --addr "$http" >/dev/null
"$bin" namespace create quorum --consistency eventual --replicas 3 --shards 16 --w 2 --r 2 --addr "$http" >/dev/null
a="127.0.0.1:$base,127.0.0.1:$((base + 10)),127.0.0.1:$((base + 20))"
for ns in st cache quorum; do
	"$bin" bench --target "$ns=resp://$a" --namespace "$ns" --read-ratio 0 --concurrency "$conc" \
		--duration "$dur" --warmup 1s --value-size 256 --out "$dir/$ns" >"$dir/bench.$ns" 2>&1 || { cat "$dir/bench.$ns"; exit 1; }
done
printf '| clients | strong ops/s (p50 / p99 ms) | eventual W=1 | ÷ strong | eventual W=2 | ÷ strong |\n|---|---|---|---|---|---|\n'
row() { jq -r --argjson c "$2" '.runs[] | select(.clients == $c) | .ops[] | select(.op == "write") | "\(.ops_per_sec | floor) \(.p50_ms) \(.p99_ms)"' "$dir/$1/"*.json | head -1; }
for c in ${conc//,/ }; do
	read -r s sp50 sp99 < <(row st "$c")
	read -r e ep50 ep99 < <(row cache "$c")
	read -r q qp50 qp99 < <(row quorum "$c")
	printf '| %s | %s (%s / %s) | %s (%s / %s) | %.2f× | %s (%s / %s) | %.2f× |\n' "$c" "$s" "$sp50" "$sp99" "$e" "$ep50" "$ep99" \
		"$(echo "$e / $s" | bc -l)" "$q" "$qp50" "$qp99" "$(echo "$q / $s" | bc -l)"
done
