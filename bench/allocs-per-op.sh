#!/usr/bin/env bash
# Heap allocations (glibc malloc calls) per acknowledged request, per node of
# a local 3-node cluster, for one redis-benchmark load sent to the leader.
#
#   bench/allocs-per-op.sh -- REDIS_BENCHMARK_ARGS (must include -n N)
#   e.g. bench/allocs-per-op.sh -- -t set -c 50 -P 16 -r 1000000 -d 100 -n 400000
#
# SYNOD=<binary> picks the server (default target/release/synod). Needs perf
# with uprobes (root): the probe on libc's malloc is added once if missing.
# Counts are exact (a uprobe per call), so unlike CPU time they do not swing
# with the machine's load; the probe slows the servers down while it counts.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${1:-}" = "--" ] && shift
. bench/cost-lib.sh
N=$(requests_of allocs-per-op "$@")
SYNOD=${SYNOD:-target/release/synod}
LIBC=$(ldd "$SYNOD" | awk '/libc.so.6/ {print $3}')
perf probe -l 2>/dev/null | grep -q "probe_libc:malloc " || perf probe -q -x "$LIBC" malloc
WORK=$(mktemp -d)
start_leader_cluster "$SYNOD" "$WORK"
count_on_nodes "$WORK" probe_libc:malloc "$@"
for pid in $(pgrep -P "$CLUSTER"); do
  role=follower
  [ "$pid" = "$LEADER_PID" ] && role=leader
  awk -v n="$N" -v r="$role" '/probe_libc:malloc/ {gsub(",", "", $1); printf "%-8s %.1f mallocs per request\n", r, $1 / n}' "$WORK/stat.$pid"
done
