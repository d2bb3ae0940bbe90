#!/usr/bin/env bash
# Where the clients connect, side by side: one `synod bench` load, alternated
# ROUNDS times between clients spread over the three nodes of one local
# cluster, all of them on the leader, all of them on one follower, and one
# Redis (appendonly yes, appendfsync always): throughput, p50, and the
# servers' CPU and context switches per request (Synod: its three nodes
# summed; from /proc over the measured seconds only). The committed
# side-by-side report spreads its clients; this says what that costs
# against clients on one node, on one cluster in one run (this machine's
# speed drifts by 10-30% within minutes).
#
#   bench/entry-points.sh ROUNDS SYNOD_BIN [-- SYNOD_BENCH_ARGS]
#   e.g. bench/entry-points.sh 3 target/release/synod -- --clients 50 --read-ratio 1
#
# SYNOD_ARGS="FLAGS" starts every node with those flags (e.g. --read-lease).
# MODES picks the order and the set (default "spread leader follower redis").
# For Synod a last column gives each node's CPU per request, in node order,
# the leader's marked with a star.
set -euo pipefail
[ $# -ge 2 ] && { [ $# -eq 2 ] || [ "$3" = "--" ]; } || {
  echo "usage: bench/entry-points.sh ROUNDS SYNOD_BIN [-- SYNOD_BENCH_ARGS]" >&2
  exit 2
}
ROUNDS=$1
BIN=$(realpath "$2")
shift 2
[ $# -gt 0 ] && shift
cd "$(dirname "$0")/.."
# shellcheck source=bench/cost-lib.sh
. bench/cost-lib.sh
HZ=$(getconf CLK_TCK)
SECONDS_EACH=5
WORK=$(mktemp -d "${TMPDIR:-/tmp}/synod-entry-points.XXXXXX")
# shellcheck disable=SC2086 # SYNOD_ARGS is a list of flags
start_cluster_and_redis "$BIN" "$WORK" ${SYNOD_ARGS:+-- $SYNOD_ARGS}
FOLLOWER=$(((PORT - 7400) % 3 + 7401))
echo "mode ops/s p50_ms cpu_us_per_op switches_per_op [per-node cpu_us_per_op]"
for _ in $(seq 1 "$ROUNDS"); do
  for mode in ${MODES:-spread leader follower redis}; do
    case $mode in
      spread) addr=127.0.0.1:7401,127.0.0.1:7402,127.0.0.1:7403 pids=$NODES ;;
      leader) addr=127.0.0.1:$PORT pids=$NODES ;;
      follower) addr=127.0.0.1:$FOLLOWER pids=$NODES ;;
      redis) addr=127.0.0.1:6491 pids=$REDIS ;;
      *) echo "entry-points: unknown mode $mode" >&2; exit 2 ;;
    esac
    "$BIN" bench --addr "$addr" --duration "$SECONDS_EACH" --warmup 1 "$@" >"$WORK/out" &
    bench=$!
    sleep 1
    # shellcheck disable=SC2086 # lists of pids
    c0=$(cpu_ticks $pids) s0=$(switches $pids)
    each0=()
    for pid in $pids; do each0+=("$(cpu_ticks "$pid")"); done
    wait "$bench"
    # shellcheck disable=SC2086
    c1=$(cpu_ticks $pids) s1=$(switches $pids)
    each="" i=0
    if [ "$mode" != redis ]; then
      for pid in $pids; do
        star=""
        [ "$pid" = "$LEADER_PID" ] && star="*"
        each="$each $star$(($(cpu_ticks "$pid") - each0[i]))"
        i=$((i + 1))
      done
    fi
    # The result line: label clients pipeline ops/s p50 ...
    tail -1 "$WORK/out" | awk -v mode="$mode" -v secs="$SECONDS_EACH" -v hz="$HZ" \
      -v cpu=$((c1 - c0)) -v sw=$((s1 - s0)) -v each="$each" '{
        n = $4 * secs
        line = sprintf("%s %.0f %s %.1f %.3f", mode, $4, $5, cpu * 1e6 / hz / n, sw / n)
        k = split(each, ticks, " ")
        for (j = 1; j <= k; j++) {
          star = (substr(ticks[j], 1, 1) == "*") ? "*" : ""
          line = line sprintf(" %s%.1f", star, substr(ticks[j], length(star) + 1) * 1e6 / hz / n)
        }
        print line
      }'
  done
done
