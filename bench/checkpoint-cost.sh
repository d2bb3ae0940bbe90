#!/usr/bin/env bash
# What checkpoints cost once the keyspace is large: a local 3-node cluster
# takes 2 x KEYS SETs of 100-byte values over KEYS random keys
# (redis-benchmark -r KEYS -P 32 on the leader: ~86% of them distinct),
# then 2M pipelined SETs over the same keys (-P 16, 50
# clients). Prints the SET throughput, the server CPU per SET summed over the
# three nodes, how long each node's checkpoints took (from their logs, wall
# time from start to the snapshot file written), and the RSS of each node 2 s
# after the load. Every checkpoint encodes the whole keyspace, so at a
# million keys they are a good part of a write's cost. Then what checkpoints
# do to latency: 600k SETs from 50 clients, not pipelined, over the same
# keys (several checkpoints on every node), with redis-benchmark's latency
# summary (a stall shows in the max) and, per node, the log syncs that took
# over 25 ms and over 100 ms (from /metrics); last, each node's peak RSS.
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
# Latency while checkpoints run: the nodes' log syncs over 25 and 100 ms before and
# after (`synod_fsync_seconds` buckets, which leave checkpoints out; node N
# serves /metrics on 7600+N; a node that does not answer shows as 0).
slow_syncs() {
  local n
  for n in 1 2 3; do
    { curl -s "http://127.0.0.1:$((7600 + n))/metrics" || true; } |
      awk -v n="$n" '/^synod_fsync_seconds_bucket\{le="0.025"\}/ {a=$2}
        /^synod_fsync_seconds_bucket\{le="0.1"\}/ {b=$2}
        /^synod_fsync_seconds_count/ {c=$2} END {print n, c - a, c - b}'
  done
}
before=$(slow_syncs)
echo "50 clients, not pipelined, 600k SETs: latency (ms)"
# (The latency summary needs redis-benchmark 6.2 or later.)
redis-benchmark -p "$PORT" -t set -c 50 -d 100 -r "$KEYS" -n 600000 2>/dev/null | tr '\r' '\n' |
  { grep -A2 "latency summary" || echo "(no latency summary from this redis-benchmark)"; } | tail -2
after=$(slow_syncs)
echo "log syncs over 25 ms / over 100 ms during it, per node: $(join <(echo "$before") <(echo "$after") |
  awk '{printf "node %s: %d / %d  ", $1, $4 - $2, $5 - $3}')"
# The most memory each node held at any time of the run (checkpoints
# included: the values chosen while one is written stay in memory).
for pid in $PIDS; do
  echo "node pid $pid: peak RSS $(($(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status") / 1024)) MiB"
done
