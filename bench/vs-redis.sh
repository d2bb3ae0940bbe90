#!/usr/bin/env bash
# Synod's leader against Redis (appendonly yes, appendfsync always), one
# redis-benchmark load alternated between them ROUNDS times (Synod, Redis,
# Synod, ...), on one cluster and one Redis started once: throughput and the
# server CPU per request from /proc (Synod: the leader's, its user time, and
# all three nodes summed; Redis: its process, and its user time). This
# machine's speed drifts by 10-30% within minutes: alternating in one run is
# what makes the ratio worth quoting. One redis-benchmark test per run (the
# CPU is divided by its -n).
#
#   bench/vs-redis.sh ROUNDS SYNOD_BIN -- REDIS_BENCHMARK_ARGS (with -n N)
#   e.g. bench/vs-redis.sh 3 target/release/synod -- \
#          -t get -c 50 -d 100 -r 100000 -n 300000
#
# SYNOD_ARGS="FLAGS" starts every node with those flags (e.g. --read-lease).
# TTL_KEYS=K first writes the K keys `-r K` draws, with a TTL of an hour, to
# both systems (`preload_ttl`): GETs of keys that all expire.
set -euo pipefail
[ $# -ge 3 ] && [ "$3" = "--" ] || {
  echo "usage: bench/vs-redis.sh ROUNDS SYNOD_BIN -- REDIS_BENCHMARK_ARGS" >&2
  exit 2
}
ROUNDS=$1
BIN=$(realpath "$2")
shift 3
cd "$(dirname "$0")/.."
# shellcheck source=bench/cost-lib.sh
. bench/cost-lib.sh
N=$(requests_of x "$@")
HZ=$(getconf CLK_TCK)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/synod-vs-redis.XXXXXX")
# shellcheck disable=SC2086 # SYNOD_ARGS is a list of flags
start_cluster_and_redis "$BIN" "$WORK" ${SYNOD_ARGS:+-- $SYNOD_ARGS}
redis-benchmark -p 6491 -q -n 50000 -t set -r 100000 -d 100 -c 50 >/dev/null 2>&1
if [ -n "${TTL_KEYS:-}" ]; then
  preload_ttl "$PORT" "$TTL_KEYS" 3600
  preload_ttl 6491 "$TTL_KEYS" 3600
fi
per_op() { echo "scale=2; ($2 - $1) * 1000000 / $HZ / $N" | bc -l; }
rate() { redis-benchmark -p "$1" -q "${@:2}" | tr '\r' '\n' | grep 'per second' | tail -1 | awk '{print $2}'; }
echo "system ops/s cpu_us_per_op (synod: leader, leader user, all nodes; redis: process, user)"
for _ in $(seq 1 "$ROUNDS"); do
  # shellcheck disable=SC2086 # NODES is a list of pids
  l0=$(cpu_ticks "$LEADER_PID") u0=$(user_ticks "$LEADER_PID") a0=$(cpu_ticks $NODES)
  s=$(rate "$PORT" "$@")
  # shellcheck disable=SC2086
  l1=$(cpu_ticks "$LEADER_PID") u1=$(user_ticks "$LEADER_PID") a1=$(cpu_ticks $NODES)
  echo "synod $s leader $(per_op "$l0" "$l1") user $(per_op "$u0" "$u1") all $(per_op "$a0" "$a1")"
  r0=$(cpu_ticks "$REDIS") v0=$(user_ticks "$REDIS")
  s=$(rate 6491 "$@")
  r1=$(cpu_ticks "$REDIS") v1=$(user_ticks "$REDIS")
  echo "redis $s cpu $(per_op "$r0" "$r1") user $(per_op "$v0" "$v1")"
done
