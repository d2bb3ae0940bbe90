#!/usr/bin/env bash
# What it costs where the clients connect: one `synod bench` load against a
# local 3-node cluster with its clients on the leader only, on one follower
# only, or spread over the three nodes (as bench/side-by-side.sh does), and
# the server CPU per acknowledged request of each node and summed, with the
# context switches per request summed over the nodes.
#
#   bench/placement-cost.sh leader|follower|spread [CLIENTS] [READ_RATIO] [PIPELINE] [-- SERVER_ARGS...]
#   e.g. bench/placement-cost.sh spread 50 1      # GET at 50 clients, spread
#        bench/placement-cost.sh leader 17 0      # SET at 17 clients, all on the leader
#
# SYNOD=<binary> picks the server (default target/release/synod); SECONDS_EACH
# the measured seconds (default 5, after a 2 s warm-up). One line out:
# placement, ops/s, p50 and p99 ms, then each node's CPU µs per request
# (the leader marked L), the sum, and switches per request. Noisy on a
# shared machine: alternate what you compare, in one sitting.
set -euo pipefail
cd "$(dirname "$0")/.."
PLACE=${1:?leader, follower or spread}
CLIENTS=${2:-50}
READS=${3:-1}
PIPELINE=${4:-1}
shift $(($# < 4 ? $# : 4))
[ "${1:-}" = "--" ] && shift
. bench/cost-lib.sh
SYNOD=${SYNOD:-target/release/synod}
WORK=$(mktemp -d)
start_leader_cluster "$SYNOD" "$WORK" -- "$@"
LEADER=$((PORT - 7400))
case $PLACE in
  leader) ADDR=127.0.0.1:$PORT ;;
  follower) ADDR=127.0.0.1:$((7400 + LEADER % 3 + 1)) ;;
  spread) ADDR=127.0.0.1:7401,127.0.0.1:7402,127.0.0.1:7403 ;;
  *) echo "placement-cost: leader, follower or spread, not $PLACE" >&2; exit 2 ;;
esac
# The node pids in node order (node i listens on RESP port 7400+i).
PIDS=()
for i in 1 2 3; do
  PIDS+=("$(ss -ltnp | grep ":$((7400 + i)) " | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)")
done
"$SYNOD" bench --addr "$ADDR" --clients "$CLIENTS" --pipeline "$PIPELINE" \
  --read-ratio "$READS" --duration "${SECONDS_EACH:-5}" --warmup 2 --csv "$WORK/rows.csv" >/dev/null &
BENCH=$!
sleep 2
declare -a C0
for i in 0 1 2; do C0[$i]=$(cpu_ticks "${PIDS[$i]}"); done
S0=$(switches "${PIDS[@]}")
wait "$BENCH"
S1=$(switches "${PIDS[@]}")
ROW=$(tail -1 "$WORK/rows.csv")
REQUESTS=$(echo "$ROW" | cut -d, -f7)
TICK=$(getconf CLK_TCK)
OUT="$PLACE c$CLIENTS reads=$READS P$PIPELINE: $(echo "$ROW" | cut -d, -f9) ops/s, p50 $(echo "$ROW" | cut -d, -f10) p99 $(echo "$ROW" | cut -d, -f12) ms; CPU µs/op"
SUM=0
for i in 0 1 2; do
  d=$(($(cpu_ticks "${PIDS[$i]}") - C0[i]))
  SUM=$((SUM + d))
  mark=""
  [ $((i + 1)) = "$LEADER" ] && mark=L
  OUT="$OUT n$((i + 1))$mark $(awk -v d="$d" -v r="$REQUESTS" -v t="$TICK" 'BEGIN {printf "%.1f", d * 1e6 / t / r}')"
done
OUT="$OUT sum $(awk -v d="$SUM" -v r="$REQUESTS" -v t="$TICK" 'BEGIN {printf "%.1f", d * 1e6 / t / r}')"
OUT="$OUT; switches/op $(awk -v d=$((S1 - S0)) -v r="$REQUESTS" 'BEGIN {printf "%.2f", d / r}')"
echo "$OUT"
