#!/usr/bin/env bash
# Heap allocations per acknowledged request, per node of a local 3-node
# cluster, for one redis-benchmark load sent to the leader: calls of
# jemalloc's malloc, mallocx and calloc (the synod binary's allocator), or of
# glibc's malloc for a binary built with --no-default-features.
#
#   bench/allocs-per-op.sh -- REDIS_BENCHMARK_ARGS (must include -n N)
#   e.g. bench/allocs-per-op.sh -- -t set -c 50 -P 16 -r 1000000 -d 100 -n 400000
#
# SYNOD=<binary> picks the server (default target/release/synod). Needs perf
# with uprobes (root): the probes are (re)added for that binary each run.
# Counts are exact (a uprobe per call), so unlike CPU time they do not swing
# with the machine's load; the probes slow the servers down while they count.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${1:-}" = "--" ] && shift
. bench/cost-lib.sh
N=$(requests_of allocs-per-op "$@")
SYNOD=${SYNOD:-target/release/synod}
# A rebuilt binary moves its functions: its probes are made afresh.
perf probe -q -d 'synodalloc:*' 2>/dev/null || true
if nm "$SYNOD" 2>/dev/null | grep ' T _rjem_malloc$' >/dev/null; then
  for fn in malloc mallocx calloc; do
    perf probe -q -x "$SYNOD" -a "synodalloc:synod_$fn=_rjem_$fn"
  done
  EVENTS=synodalloc:synod_malloc,synodalloc:synod_mallocx,synodalloc:synod_calloc
else
  perf probe -q -x "$(ldd "$SYNOD" | awk '/libc.so.6/ {print $3}')" -a synodalloc:synod_malloc=malloc
  EVENTS=synodalloc:synod_malloc
fi
WORK=$(mktemp -d)
start_leader_cluster "$SYNOD" "$WORK"
count_on_nodes "$WORK" "$EVENTS" "$@"
for pid in $(pgrep -P "$CLUSTER"); do
  role=follower
  [ "$pid" = "$LEADER_PID" ] && role=leader
  awk -v n="$N" -v r="$role" '/synodalloc:/ {gsub(",", "", $1); total += $1}
    END {printf "%-8s %.1f allocations per request\n", r, total / n}' "$WORK/stat.$pid"
done
