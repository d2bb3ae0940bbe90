#!/usr/bin/env bash
# System calls and context switches per acknowledged request, per node of a
# local 3-node cluster, for one redis-benchmark load sent to the leader: the
# counts that say where a request's kernel time goes (client reads and
# replies, peer writes, wake-ups, fsyncs).
#
#   bench/syscalls-per-op.sh -- REDIS_BENCHMARK_ARGS (must include -n N)
#   e.g. bench/syscalls-per-op.sh -- -t set -c 50 -r 100000 -d 100 -n 100000
#
# SYNOD=<binary> picks the server (default target/release/synod). Needs perf
# with the syscalls tracepoints (root). Counts are exact; how they are spread
# over batches still moves with the machine's load, so compare runs side by
# side. Counting starts after a warm-up and stops when the load ends.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${1:-}" = "--" ] && shift
. bench/cost-lib.sh
N=$(requests_of syscalls-per-op "$@")
SYNOD=${SYNOD:-target/release/synod}
EVENTS=context-switches
for call in recvfrom sendto writev write epoll_wait futex pwrite64 fdatasync; do
  EVENTS="$EVENTS,syscalls:sys_enter_$call"
done
WORK=$(mktemp -d)
start_leader_cluster "$SYNOD" "$WORK"
count_on_nodes "$WORK" "$EVENTS" "$@"
cat "$WORK/load.out"
for pid in $(pgrep -P "$CLUSTER"); do
  role=follower
  [ "$pid" = "$LEADER_PID" ] && role=leader
  echo "$role (pid $pid), per request:"
  awk -v n="$N" '$1 ~ /^[0-9,]+$/ {gsub(",", "", $1); sub("syscalls:sys_enter_", "", $2); printf "  %-18s %.3f\n", $2, $1 / n}' "$WORK/stat.$pid"
done
