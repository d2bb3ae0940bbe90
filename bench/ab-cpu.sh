#!/usr/bin/env bash
# Two builds side by side: ROUNDS alternated runs of each (A, B, A, B, ...),
# every run on a fresh local 3-node cluster with one redis-benchmark load sent
# to the leader. Prints per run the throughput and the server CPU per request
# summed over the three nodes (all, and user time only, from /proc), the
# leader's and the followers'; then each build's means. This machine's speed
# drifts by 10-30% within minutes, so compare builds only within one run of
# this script; the order alternates by round (A B, B A, ...) so that a steady
# drift favours neither. One redis-benchmark test per run (`-t set`, not
# `-t set,get`): the CPU is divided by its -n.
#
#   bench/ab-cpu.sh ROUNDS SYNOD_A SYNOD_B -- REDIS_BENCHMARK_ARGS (with -n N)
#   e.g. bench/ab-cpu.sh 4 old/synod target/release/synod -- \
#          -t set -c 50 -P 16 -d 100 -r 100000 -n 800000
#
# SYNOD_ARGS="FLAGS" starts every node with those flags (e.g. --read-lease).
# TTL_KEYS=K first writes the K keys `-r K` draws, with a TTL of an hour
# (`preload_ttl`), to each cluster: GETs of keys that all expire.
set -euo pipefail
[ $# -ge 4 ] && [ "$4" = "--" ] || {
  echo "usage: bench/ab-cpu.sh ROUNDS SYNOD_A SYNOD_B -- REDIS_BENCHMARK_ARGS" >&2
  exit 2
}
ROUNDS=$1
# The binaries as given from the caller's directory (the script moves to the
# repository's root next).
A=$(realpath "$2")
B=$(realpath "$3")
for bin in "$A" "$B"; do
  [ -x "$bin" ] || { echo "ab-cpu: $bin is not an executable" >&2; exit 2; }
done
shift 4
case " $* " in
  *" -t "*,*) echo "ab-cpu: one redis-benchmark test per run (-t without a comma)" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."
. bench/cost-lib.sh
N=$(requests_of ab-cpu "$@")
HZ=$(getconf CLK_TCK)

# one_run SYNOD -> one line: label, req/s, CPU µs per request (all, user,
# leader, followers).
one_run() (
  bin=$1 label=$2
  shift 2
  WORK=$(mktemp -d)
  # shellcheck disable=SC2086 # SYNOD_ARGS is a list of flags
  start_leader_cluster "$bin" "$WORK" ${SYNOD_ARGS:+-- $SYNOD_ARGS}
  pids=$(pgrep -P "$CLUSTER" | tr '\n' ' ')
  # The leader's pid came from whoever listens on its port: another
  # cluster left on these ports would be measured instead.
  case " $pids " in
    *" $LEADER_PID "*) ;;
    *) echo "ab-cpu: port $PORT is not served by this cluster ($pids)" >&2; exit 1 ;;
  esac
  followers=$(echo "$pids" | tr ' ' '\n' | grep -vx "$LEADER_PID" | tr '\n' ' ')
  [ -z "${TTL_KEYS:-}" ] || preload_ttl "$PORT" "$TTL_KEYS" 3600
  # shellcheck disable=SC2086 # lists of pids
  {
    all0=$(cpu_ticks $pids)
    user0=$(user_ticks $pids)
    lead0=$(cpu_ticks "$LEADER_PID")
    foll0=$(cpu_ticks $followers)
  }
  rps=$(redis-benchmark -p "$PORT" -q "$@" | tr '\r' '\n' | grep 'requests per second' |
    tail -1 | awk '{print $2}')
  # shellcheck disable=SC2086
  {
    all=$(($(cpu_ticks $pids) - all0))
    user=$(($(user_ticks $pids) - user0))
    lead=$(($(cpu_ticks "$LEADER_PID") - lead0))
    foll=$(($(cpu_ticks $followers) - foll0))
  }
  awk -v label="$label" -v rps="$rps" -v n="$N" -v hz="$HZ" -v all="$all" -v user="$user" \
    -v lead="$lead" -v foll="$foll" 'BEGIN {
      us = 1e6 / hz / n
      printf "%s req/s %.0f cpu_us %.2f user_us %.2f leader_us %.2f followers_us %.2f\n",
        label, rps, all * us, user * us, lead * us, foll * us
    }'
)

ab_rounds "$ROUNDS" "$A" "$B" one_run "$@"
