#!/usr/bin/env bash
# Two builds side by side: ROUNDS alternated runs of each (A, B, A, B, ...),
# every run on a fresh local 3-node cluster with one redis-benchmark load sent
# to the leader. Prints per run the throughput and the server CPU per request
# summed over the three nodes (all, and user time only, from /proc), the
# leader's and the followers'; then each build's means. This machine's speed
# drifts by 10-30% within minutes, so compare builds only within one run of
# this script.
#
#   bench/ab-cpu.sh ROUNDS SYNOD_A SYNOD_B -- REDIS_BENCHMARK_ARGS (with -n N)
#   e.g. bench/ab-cpu.sh 4 old/synod target/release/synod -- \
#          -t set -c 50 -P 16 -d 100 -r 100000 -n 800000
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 4 ] && [ "$4" = "--" ] || {
  echo "usage: bench/ab-cpu.sh ROUNDS SYNOD_A SYNOD_B -- REDIS_BENCHMARK_ARGS" >&2
  exit 2
}
ROUNDS=$1 A=$2 B=$3
shift 4
. bench/cost-lib.sh
N=$(requests_of ab-cpu "$@")
HZ=$(getconf CLK_TCK)

# one_run SYNOD -> one line: label, req/s, CPU µs per request (all, user,
# leader, followers).
one_run() (
  bin=$1 label=$2
  shift 2
  WORK=$(mktemp -d)
  start_leader_cluster "$bin" "$WORK"
  pids=$(pgrep -P "$CLUSTER" | tr '\n' ' ')
  followers=$(echo "$pids" | tr ' ' '\n' | grep -vx "$LEADER_PID" | tr '\n' ' ')
  # shellcheck disable=SC2086 # lists of pids
  {
    all0=$(cpu_ticks $pids) user0=$(user_ticks $pids)
    lead0=$(cpu_ticks "$LEADER_PID") foll0=$(cpu_ticks $followers)
  }
  rps=$(redis-benchmark -p "$PORT" -q "$@" | tr '\r' '\n' | grep 'requests per second' |
    tail -1 | awk '{print $2}')
  # shellcheck disable=SC2086
  {
    all=$(($(cpu_ticks $pids) - all0)) user=$(($(user_ticks $pids) - user0))
    lead=$(($(cpu_ticks "$LEADER_PID") - lead0)) foll=$(($(cpu_ticks $followers) - foll0))
  }
  awk -v label="$label" -v rps="$rps" -v n="$N" -v hz="$HZ" -v all="$all" -v user="$user" \
    -v lead="$lead" -v foll="$foll" 'BEGIN {
      us = 1e6 / hz / n
      printf "%s req/s %.0f cpu_us %.2f user_us %.2f leader_us %.2f followers_us %.2f\n",
        label, rps, all * us, user * us, lead * us, foll * us
    }'
)

LINES=$(mktemp)
trap 'rm -f "$LINES"' EXIT
for _ in $(seq 1 "$ROUNDS"); do
  for side in A B; do
    bin=$A
    [ $side = B ] && bin=$B
    one_run "$bin" "$side" "$@" | tee -a "$LINES"
  done
done
echo "== means over $ROUNDS runs each (A: $A, B: $B)"
awk '{ n[$1]++; for (i = 2; i < NF; i += 2) s[$1, $i] += $(i + 1); k[$1] = $0 }
  END {
    for (side in n) {
      printf "%s", side
      split(k[side], f, " ")
      for (i = 2; i < length(f); i += 2) printf " %s %.2f", f[i], s[side, f[i]] / n[side]
      printf "\n"
    }
  }' "$LINES" | sort
