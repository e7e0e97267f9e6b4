# dev-cluster.sh: sourced by the bench scripts. start_dev BASE SHARDS builds
# fulcrum into a temporary directory ($bin), starts `fulcrum dev` (3 nodes
# on 127.0.0.1, RESP on BASE, BASE+10, BASE+20; HTTP one above each) with
# SHARDS default shards in $dir, waits until it is ready, sets $http to
# node 1's HTTP address, and stops the cluster and removes $dir on exit.
start_dev() {
	local base=$1 shards=$2
	bin=$(mktemp -d)/fulcrum
	go build -o "$bin" ./cmd/fulcrum
	dir=$(mktemp -d)
	"$bin" dev --data-dir "$dir/dev" --base-port "$base" --shards "$shards" >"$dir/dev.out" 2>"$dir/dev.err" &
	dev=$!
	trap 'kill -INT $dev 2>/dev/null; wait $dev 2>/dev/null; rm -rf "$dir"' EXIT
	for _ in $(seq 300); do grep -q "cluster ready" "$dir/dev.out" && break; sleep 0.1; done
	grep -q "cluster ready" "$dir/dev.out" || { cat "$dir/dev.err"; exit 1; }
	http="http://127.0.0.1:$((base + 1))"
}
