#!/usr/bin/env bash
# Side-by-side redis-benchmark of Fulcrum and redis-server on this machine,
# interleaved scenario by scenario so both share the same noise. Prints a
# markdown table (ops/s, p50, p99 and Fulcrum/Redis ratios).
#
#   scripts/bench-vs-redis.sh            # full run (-n 1000000; -c 1 uses -n 200000)
#   N=100000 N1=20000 scripts/bench-vs-redis.sh   # quick run
#
# Needs redis-server and redis-benchmark (apt-get install redis-server).
# Only loopback is used; every server started here is stopped on exit.
set -euo pipefail
N=${N:-1000000}
N1=${N1:-200000}
R=${R:-100000}
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/fulcrum" ./cmd/fulcrum

waitport() { for _ in $(seq 1 200); do redis-cli -p "$1" ping >/dev/null 2>&1 && return 0; sleep 0.05; done; echo "port $1 not ready" >&2; exit 1; }

start_fulcrum() { # sync port
  "$work/fulcrum" server --data-dir "$work/f-$1" --sync "$1" --resp-addr 127.0.0.1:$2 --http-addr 127.0.0.1:$(($2+1)) --log-level warn &
  waitport "$2"
}
start_redis() { # port extra-args...
  local port=$1; shift
  redis-server --port "$port" --bind 127.0.0.1 --dir "$work" --dbfilename "r$port.rdb" --save "" "$@" >/dev/null &
  waitport "$port"
}

# bench port n test args... -> "rps p50 p99"
bench() {
  local port=$1 n=$2 t=$3; shift 3
  redis-benchmark -p "$port" -t "$t" -n "$n" -r "$R" "$@" --csv 2>/dev/null |
    awk -F, 'NR==2 { gsub(/"/,""); printf "%.0f %s %s\n", $2, $5, $7 }'
}

start_fulcrum interval 7501
start_fulcrum always 7511
start_redis 7601 --appendonly no
start_redis 7611 --appendonly yes --appendfsync always --appendfilename r7611.aof

printf '| scenario | op | Fulcrum ops/s | p50 ms | p99 ms | Redis ops/s | p50 ms | p99 ms | ratio |\n'
printf '|---|---|---:|---:|---:|---:|---:|---:|---:|\n'
row() { # label op fport rport n args...
  local label=$1 op=$2 fp=$3 rp=$4 n=$5; shift 5
  read -r fr f50 f99 < <(bench "$fp" "$n" "$op" "$@")
  read -r rr r50 r99 < <(bench "$rp" "$n" "$op" "$@")
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %.2f |\n' "$label" "$op" "$fr" "$f50" "$f99" "$rr" "$r50" "$r99" "$(echo "$fr / $rr" | bc -l)"
}
for op in set get; do
  row "-c 50 -P 16 (Fulcrum sync=interval, Redis no persistence)" $op 7501 7601 "$N" -c 50 -P 16
  row "-c 50 (same)" $op 7501 7601 "$N" -c 50
  row "-c 1 (same)" $op 7501 7601 "$N1" -c 1
done
row "durable -c 50 (sync=always vs appendfsync always)" set 7511 7611 "$N1" -c 50
row "durable -c 50 -P 16 (sync=always vs appendfsync always)" set 7511 7611 "$N" -c 50 -P 16
row "durable -c 1 (sync=always vs appendfsync always)" set 7511 7611 $((N1/10)) -c 1
