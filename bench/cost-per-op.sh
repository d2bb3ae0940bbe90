#!/usr/bin/env bash
# Cost per operation, side by side in one run: server CPU and context switches
# per acknowledged request, summed over every server process (the three Synod
# nodes; the one Redis), for redis-benchmark loads; then RSS per process after
# loading KEYS keys of 100 bytes pipelined.
#
#   bench/cost-per-op.sh [REQUESTS] [KEYS] [-- extra synod server args]
#       (defaults: 200000 requests per row, 4x that pipelined, a twentieth
#       with one client; 1000000 keys)
#
# Writes bench/report/cost.md (a markdown table) and prints it. CPU is
# utime+stime from /proc/PID/stat (every thread, live or exited); context
# switches are voluntary+involuntary summed over /proc/PID/task/*/status
# (threads alive at the end of the row: tokio's blocking threads live 10 s
# idle, so a row sees them). Needs redis-server and redis-benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/cost-lib.sh
. bench/cost-lib.sh
REQUESTS=${1:-200000}
KEYS=${2:-1000000}
shift $(( $# > 2 ? 2 : $# ))
[ "${1:-}" = "--" ] && shift
EXTRA=("$@")
OUT=bench/report
mkdir -p "$OUT"
for tool in redis-server redis-benchmark redis-cli; do
  command -v "$tool" >/dev/null 2>&1 || { echo "cost-per-op: $tool not found" >&2; exit 1; }
done
SYNOD=${SYNOD:-target/release/synod}
[ -x "$SYNOD" ] || cargo build --release --locked --bin synod
WORK=$(mktemp -d "${TMPDIR:-/tmp}/synod-cost.XXXXXX")
cleanup() {
  set +e
  [ -n "${CLUSTER:-}" ] && kill -TERM "$CLUSTER" 2>/dev/null && wait "$CLUSTER" 2>/dev/null
  [ -n "${REDIS:-}" ] && kill -TERM "$REDIS" 2>/dev/null && wait "$REDIS" 2>/dev/null
  [ -n "${LEASE_CLUSTER:-}" ] && kill -TERM "$LEASE_CLUSTER" 2>/dev/null && wait "$LEASE_CLUSTER" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

"$SYNOD" cluster --data-dir "$WORK/synod" --base-port 7400 -- "${EXTRA[@]}" >"$WORK/cluster.log" 2>&1 &
CLUSTER=$!
mkdir -p "$WORK/redis"
redis-server --port 6490 --bind 127.0.0.1 --dir "$WORK/redis" --appendonly yes \
  --appendfsync always --save "" --daemonize no >"$WORK/redis.log" 2>&1 &
REDIS=$!
for _ in $(seq 1 150); do
  [ "$(redis-cli -p 6490 ping 2>/dev/null)" = PONG ] && break
  sleep 0.2
done
LEADER=$(cluster_leader 7400)
SYNOD_PIDS=$(pgrep -P "$CLUSTER" | tr '\n' ' ' || true)
[ -n "$LEADER" ] || { echo "cost-per-op: the Synod cluster did not start:" >&2; tail -5 "$WORK/cluster.log" >&2; exit 1; }
LEADER_PORT=$((7400 + LEADER))
TICK=$(getconf CLK_TCK)

ROWS=()
measure() { # label port pids -- redis-benchmark args...
  local label=$1 port=$2 pids=$3
  shift 4
  # shellcheck disable=SC2086
  local c0 s0 c1 s1 out rps p50 n
  c0=$(cpu_ticks $pids); s0=$(switches $pids)
  out=$(redis-benchmark -p "$port" -q "$@" | tr '\r' '\n' | grep 'requests per second' | tail -1)
  c1=$(cpu_ticks $pids); s1=$(switches $pids)
  rps=$(echo "$out" | awk '{print $2}')
  p50=$(echo "$out" | sed -n 's/.*p50=\([0-9.]*\) msec.*/\1/p')
  # The requests the row sent: its -n.
  n=$(echo "$@" | sed -n 's/.*-n \([0-9]*\).*/\1/p')
  ROWS+=("$(awk -v l="$label" -v c=$((c1 - c0)) -v s=$((s1 - s0)) -v n="$n" -v t="$TICK" -v r="$rps" \
    -v p="$p50" 'BEGIN {printf "| %s | %.0f | %.3f | %.1f | %.2f |", l, r, p, c / t / n * 1e6, s / n}')")
  echo "${ROWS[-1]}"
}

# Each row runs on Synod and at once on Redis, so that the two sides of a
# ratio are measured within seconds of each other (this machine's speed
# drifts by 10-30% over minutes); the table lists Synod's rows first.
side_by_side() { # name -- redis-benchmark args...
  local name=$1
  shift
  measure "synod $name" "$LEADER_PORT" "$SYNOD_PIDS" "$@"
  measure "redis $name" 6490 "$REDIS" "$@"
}
echo "== Synod leader is node $LEADER (port $LEADER_PORT); node pids $SYNOD_PIDS; redis pid $REDIS"
# A warm-up, unmeasured, on both: the first row ran on a cluster just
# elected (followers' first catch-up, segments preallocated, connections
# opened) and on a leader that had not yet seen its clients' cohort.
for port in "$LEADER_PORT" 6490; do
  redis-benchmark -p "$port" -q -t set -c 50 -d 100 -r 100000 -n 20000 >/dev/null
done
side_by_side "set c50" -- -t set -c 50 -d 100 -r 100000 -n "$REQUESTS"
side_by_side "get c50" -- -t get -c 50 -d 100 -r 100000 -n "$REQUESTS"
# Pipelined rows run 4x the requests: at REQUESTS alone they were over in
# well under a second, too short for a steady rate.
side_by_side "set c50 P16" -- -t set -c 50 -P 16 -d 100 -r 100000 -n $((REQUESTS * 4))
side_by_side "set c1" -- -t set -c 1 -d 100 -r 100000 -n $((REQUESTS / 20))
side_by_side "get c1" -- -t get -c 1 -d 100 -r 100000 -n $((REQUESTS / 20))
# The one-client latency target's yardsticks: a loopback round trip (PING to
# Redis, one client) and one fdatasync of a small append in this file system.
RTT_P50=$(redis-benchmark -p 6490 -q -t ping_inline -c 1 -n 20000 | tr '\r' '\n' |
  sed -n 's/.*p50=\([0-9.]*\) msec.*/\1/p' | tail -1)
FSYNC_P50=$(python3 - "$WORK" <<'PY'
import os, statistics, sys, time
fd = os.open(os.path.join(sys.argv[1], "fsync-probe"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
times = []
for _ in range(500):
    os.write(fd, b"x" * 200)
    start = time.perf_counter()
    os.fdatasync(fd)
    times.append(time.perf_counter() - start)
print(f"{statistics.median(times) * 1000:.3f}")
PY
)

# Leader read leases (issue 15): a second cluster, the same binary with
# --read-lease, answers the GET row; loaded first with the same 100k keys.
# (Base port 8400: the first cluster's HTTP ports are 7601-7603, where a base
# of 7500 would put this one's peer ports.)
"$SYNOD" cluster --data-dir "$WORK/lease" --base-port 8400 -- --read-lease "${EXTRA[@]}" \
  >"$WORK/lease.log" 2>&1 &
LEASE_CLUSTER=$!
LEASE_LEADER=$(cluster_leader 8400)
LEASE_PIDS=$(pgrep -P "$LEASE_CLUSTER" | tr '\n' ' ' || true)
if [ -z "$LEASE_LEADER" ]; then
  echo "cost-per-op: the --read-lease cluster did not start; no lease row:" >&2
  tail -5 "$WORK/lease.log" >&2
  ROWS+=("| synod get c50 --read-lease | (cluster did not start) | | | |")
else
  redis-benchmark -p $((8400 + LEASE_LEADER)) -q -t set -c 50 -P 16 -d 100 -r 100000 -n 400000 >/dev/null
  # Each lease row is followed at once by Redis' row of the same load (as
  # side_by_side does), listed with the lease rows.
  for clients in 50 1; do
    n=$REQUESTS
    [ $clients = 1 ] && n=$((REQUESTS / 20))
    measure "synod get c$clients --read-lease" $((8400 + LEASE_LEADER)) "$LEASE_PIDS" -- \
      -t get -c $clients -d 100 -r 100000 -n $n
    measure "redis get c$clients (beside --read-lease)" 6490 "$REDIS" -- \
      -t get -c $clients -d 100 -r 100000 -n $n
  done
fi
kill -TERM "$LEASE_CLUSTER" 2>/dev/null && wait "$LEASE_CLUSTER" 2>/dev/null || true

echo "== loading $KEYS keys of 100 B (pipelined 32 deep)"
for port in $LEADER_PORT 6490; do
  redis-benchmark -p "$port" -q -t set -c 50 -P 32 -d 100 -r "$KEYS" -n $((KEYS * 3)) >/dev/null
done
sleep 2
SYN_KEYS=$(redis-cli -p "$LEADER_PORT" dbsize)
RED_KEYS=$(redis-cli -p 6490 dbsize)
RSS_ROWS=()
for pid in $SYNOD_PIDS; do RSS_ROWS+=("| synod pid $pid | $SYN_KEYS | $(( $(rss_kib "$pid") / 1024 )) |"); done
RSS_ROWS+=("| redis | $RED_KEYS | $(( $(rss_kib "$REDIS") / 1024 )) |")

{
  echo "### Cost per operation ($(date -u +%Y-%m-%d), $(nproc) cores, \`bench/cost-per-op.sh $REQUESTS $KEYS\`)"
  echo
  echo "Synod: 3 nodes (fsync on), load sent to the leader; CPU and switches summed over the three processes."
  echo "Redis: appendonly yes, appendfsync always. Every row: redis-benchmark, 100-byte values, 100k random keys;"
  echo "each row ran on Synod, then on Redis at once; pipelined rows send 4x the requests."
  echo
  echo "| row | ops/s | p50 ms | server CPU µs/op | context switches/op |"
  echo "| --- | ---: | ---: | ---: | ---: |"
  # Synod's rows, Redis' rows, then the lease rows (measured in that order
  # of systems only within each row: see side_by_side).
  printf '%s\n' "${ROWS[@]}" | grep '^| synod' | grep -v -- '--read-lease' || true
  printf '%s\n' "${ROWS[@]}" | grep '^| redis' | grep -v -- '--read-lease' || true
  printf '%s\n' "${ROWS[@]}" | grep -- '--read-lease' || true
  echo
  echo "One-client yardsticks: loopback round trip p50 $RTT_P50 ms (PING to Redis, one client);"
  echo "fdatasync of a 200-byte append p50 $FSYNC_P50 ms; so 2 x (fsync + round trip) = $(awk -v a="$FSYNC_P50" -v b="$RTT_P50" 'BEGIN {printf "%.3f", 2 * (a + b)}') ms."
  echo
  echo "| process | keys | RSS MiB |"
  echo "| --- | ---: | ---: |"
  printf '%s\n' "${RSS_ROWS[@]}"
} >"$OUT/cost.md"
cat "$OUT/cost.md"
