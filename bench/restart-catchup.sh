#!/usr/bin/env bash
# How long a follower killed under load takes to catch up after its restart:
# a local 3-node cluster takes 3M pipelined SETs of 100-byte values over
# KEYS random keys (~950k distinct at 1M), then SET at 50 clients on the
# leader; after 3 s one follower is killed (SIGKILL), stays down DOWN
# seconds and restarts from its data directory with its own command line.
# Prints the seconds from its restart until its applied point is within 5
# instances of the leader's (from /metrics), the snapshots written for a peer
# and the reads back from the log for a peer on each node, the snapshots the
# follower installed, and the applied log bytes the leader holds in memory.
#
#   bench/restart-catchup.sh [DOWN] [KEYS] [-- extra synod server args]
#   e.g. bench/restart-catchup.sh 8 1000000 -- --log-memory-bytes 67108864
#
# SYNOD=<binary> picks the server (default target/release/synod). Needs
# redis-benchmark, redis-cli, curl, ss. The cluster is bench/cost-lib.sh's
# (ports 7401-7403, 7501-7503, 7601-7603).
set -euo pipefail
cd "$(dirname "$0")/.."
DOWN=${1:-3}
KEYS=${2:-1000000}
shift $(( $# > 2 ? 2 : $# ))
[ "${1:-}" = "--" ] && shift
SYNOD=${SYNOD:-target/release/synod}
[ -x "$SYNOD" ] || cargo build --release --locked --bin synod
. bench/cost-lib.sh
W=$(mktemp -d /tmp/restart-catchup.XXXX)
start_leader_cluster "$SYNOD" "$W" -- "$@"
leader=$((PORT - 7400))
LOAD=""
# The restarted follower is no child of the cluster: stop it too.
# shellcheck disable=SC2064 # the paths are fixed now
trap "[ -n \"\$LOAD\" ] && kill \$LOAD 2>/dev/null; kill $CLUSTER 2>/dev/null; pkill -f -- '$W/s' 2>/dev/null; wait 2>/dev/null; rm -rf '$W'" EXIT
metric() { curl -s "http://127.0.0.1:760$1/metrics" | awk -v k="$2" '$1 == k {print $2}'; }
redis-benchmark -p "$PORT" -q -t set -c 50 -P 32 -d 100 -r "$KEYS" -n 3000000 >/dev/null
f=$(( leader % 3 + 1 ))
pid=$(ss -ltnp | grep ":740$f " | grep -o 'pid=[0-9]*' | cut -d= -f2)
cwd=$(readlink "/proc/$pid/cwd")
mapfile -d '' args < "/proc/$pid/cmdline"
redis-benchmark -p "$PORT" -q -t set -c 50 -d 100 -r "$KEYS" -n 100000000 >/dev/null 2>&1 &
LOAD=$!
sleep 3
kill -9 "$pid"
sleep "$DOWN"
(cd "$cwd" && "${args[@]}" >>"$W/follower.log" 2>&1 &)
t0=$(date +%s.%N)
for _ in $(seq 1 1200); do
  a=$(metric "$f" synod_applied_instance); l=$(metric "$leader" synod_applied_instance)
  if [ -n "$a" ] && [ -n "$l" ] && [ $((l - a)) -le 5 ]; then break; fi
  sleep 0.1
done
t1=$(date +%s.%N)
echo "down ${DOWN}s: caught up $(python3 -c "print(round($t1 - $t0, 2))") s after its restart;" \
  "snapshots for peers (nodes 1,2,3): $(metric 1 synod_snapshots_for_peers_total),$(metric 2 synod_snapshots_for_peers_total),$(metric 3 synod_snapshots_for_peers_total);" \
  "reads back from the log for peers: $(metric 1 synod_log_reads_for_peers_total),$(metric 2 synod_log_reads_for_peers_total),$(metric 3 synod_log_reads_for_peers_total);" \
  "installed by node $f: $(metric "$f" synod_snapshots_installed_total);" \
  "leader $leader holds $(metric "$leader" synod_log_memory_bytes) bytes of applied log"
