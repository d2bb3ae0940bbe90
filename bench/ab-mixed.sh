#!/usr/bin/env bash
# Two builds side by side under a mixed load: ROUNDS alternated runs of each
# (A, B, B, A, ...), every run on a fresh local 3-node cluster, with a SET
# load and a GET load sent to the leader at once by two redis-benchmark
# processes (CLIENTS each, 100-byte values, 100k random keys; the GET load
# sends twice the requests, so that it covers the whole SET load). Prints
# per run each load's ops/s and p50, and how many GETs the leader answered
# on the connection (`synod_local_lease_reads_total`), then each build's
# means. Compare builds only within one run of this script: this machine's
# speed drifts by 10-30% within minutes.
#
#   bench/ab-mixed.sh ROUNDS SYNOD_A SYNOD_B [SET_REQUESTS [CLIENTS]]
#   e.g. bench/ab-mixed.sh 3 old/synod target/release/synod 100000 25
#
# SYNOD_ARGS="FLAGS" starts every node with those flags (default
# --read-lease; SYNOD_ARGS= for reads by read index).
set -euo pipefail
[ $# -ge 3 ] || {
  echo "usage: bench/ab-mixed.sh ROUNDS SYNOD_A SYNOD_B [SET_REQUESTS [CLIENTS]]" >&2
  exit 2
}
ROUNDS=$1
A=$(realpath "$2")
B=$(realpath "$3")
N=${4:-100000}
C=${5:-25}
for bin in "$A" "$B"; do
  [ -x "$bin" ] || { echo "ab-mixed: $bin is not an executable" >&2; exit 2; }
done
cd "$(dirname "$0")/.."
. bench/cost-lib.sh
ARGS=${SYNOD_ARGS---read-lease}

# local_reads HTTP_PORT -> the node's synod_local_lease_reads_total.
local_reads() {
  { curl -s "http://127.0.0.1:$1/metrics" || true; } |
    awk '$1 == "synod_local_lease_reads_total" {v = $2} END {print v + 0}'
}

# rps_p50 FILE -> "ops/s p50" from redis-benchmark -q output.
rps_p50() {
  tr '\r' '\n' <"$1" | grep 'requests per second' | tail -1 |
    sed -E 's/.*: ([0-9.]+) requests per second, p50=([0-9.]+) msec.*/\1 \2/'
}

one_run() (
  bin=$1 label=$2
  WORK=$(mktemp -d)
  # shellcheck disable=SC2086 # ARGS is a list of flags
  start_leader_cluster "$bin" "$WORK" ${ARGS:+-- $ARGS}
  # start_leader_cluster's base port is 7400: HTTP is 200 above RESP.
  http=$((PORT + 200))
  local0=$(local_reads "$http")
  redis-benchmark -p "$PORT" -q -t set -c "$C" -d 100 -r 100000 -n "$N" >"$WORK/set.txt" 2>&1 &
  setter=$!
  redis-benchmark -p "$PORT" -q -t get -c "$C" -d 100 -r 100000 -n $((2 * N)) >"$WORK/get.txt" 2>&1
  wait "$setter"
  local1=$(local_reads "$http")
  read -r set_rps set_p50 <<<"$(rps_p50 "$WORK/set.txt")"
  read -r get_rps get_p50 <<<"$(rps_p50 "$WORK/get.txt")"
  echo "$label set_rps $set_rps set_p50_ms $set_p50 get_rps $get_rps get_p50_ms $get_p50" \
    "local_get_share $(awk -v l=$((local1 - local0)) -v n=$((2 * N)) 'BEGIN {printf "%.2f", l / n}')"
)

ab_rounds "$ROUNDS" "$A" "$B" one_run
