#!/usr/bin/env bash
# What checkpoints cost once the keyspace is large: a local 3-node cluster
# takes 2 x KEYS SETs of 100-byte values over KEYS random keys
# (redis-benchmark -r KEYS -P 32 on the leader: ~86% of them distinct),
# then 2M pipelined SETs over the same keys (-P 16, 50
# clients). Prints the SET throughput, the server CPU per SET summed over the
# three nodes, how long each node's checkpoints took (from their logs, wall
# time from start to the snapshot file written), and the RSS of each node 2 s
# after the load. Every checkpoint encodes the whole keyspace, so at a
# million keys they are a good part of a write's cost.
#
#   bench/checkpoint-cost.sh [KEYS] [-- extra synod server args]
#   e.g. bench/checkpoint-cost.sh 1000000 -- --snapshot-log-bytes 33554432
#
# SYNOD=<binary> picks the server (default target/release/synod). Compare
# builds or settings by alternating runs: this machine's speed drifts.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/cost-lib.sh
KEYS=1000000
if [ $# -gt 0 ] && [ "$1" != "--" ]; then
  KEYS=$1
  shift
fi
SYNOD=${SYNOD:-target/release/synod}
WORK=$(mktemp -d)
start_leader_cluster "$SYNOD" "$WORK" "$@"
redis-benchmark -p "$PORT" -q -t set -c 50 -P 32 -d 100 -r "$KEYS" -n $((KEYS * 2)) >/dev/null
PIDS=$(pgrep -P "$CLUSTER")
# shellcheck disable=SC2086 # one argument per pid
c0=$(cpu_ticks $PIDS)
N=2000000
out=$(redis-benchmark -p "$PORT" -q -t set -c 50 -P 16 -d 100 -r "$KEYS" -n $N |
  tr '\r' '\n' | grep "requests per second" | tail -1 || true)
# shellcheck disable=SC2086
c1=$(cpu_ticks $PIDS)
sleep 2
echo "$out"
echo "server CPU per SET: $(awk -v t=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v n=$N 'BEGIN {printf "%.2f us", t * 1e6 / hz / n}')"
# The nodes' logs color their fields; strip that to read `ms=`.
echo "checkpoint ms, all nodes, sorted: $(cat "$WORK"/s/node-*.log | sed 's/\x1b\[[0-9;]*m//g' |
  grep 'checkpoint written' | grep -o ' ms=[0-9]*' | cut -d= -f2 | sort -n | tr '\n' ' ')"
for pid in $PIDS; do
  echo "node pid $pid: RSS $(($(rss_kib "$pid") / 1024)) MiB"
done
