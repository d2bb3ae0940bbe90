#!/usr/bin/env bash
# Side by side, on this machine, in one run: a 3-node Synod cluster (fsync on),
# a single Redis with appendonly yes / appendfsync always, and a 3-member etcd
# cluster (default fsync), data on the same disk, driven by the same load
# generator (`synod bench`, RESP for Synod and Redis, etcd's v3 gRPC API for
# etcd): SET and GET at 1, 10, 50 and 200 clients, and SET pipelined 16 deep;
# then redis-benchmark against Synod as an external cross-check. Writes
# bench/report/results.csv, one JSON per run, throughput.png and
# latency-cdf.png (`synod bench-plot`), and bench/report/REPORT.md (with
# ratios Synod/Redis and Synod/etcd).
#
#   bench/side-by-side.sh [SECONDS_PER_WORKLOAD] [KEYS]   (defaults 10, 1000000)
#
# Every row also gets the servers' cost: CPU (utime+stime from /proc/PID/stat)
# and context switches (summed over /proc/PID/task/*/status) per request,
# summed over all the processes of the system (3 Synod nodes, 1 Redis, 3 etcd
# members). At the end KEYS keys of 100 B are loaded into Synod and Redis and
# the RSS of every process is reported.
#
# Needs redis-server, redis-tools and etcd-server (apt-get install
# redis-server redis-tools etcd-server), protoc to build `synod bench`'s etcd
# client (protobuf-compiler) and the DejaVu font for the plots
# (fonts-dejavu-core). ZooKeeper is not driven yet (issue 6).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-10}
KEYS_LOADED=${2:-1000000}
OUT=bench/report
for tool in redis-server redis-cli redis-benchmark etcd; do
  command -v "$tool" >/dev/null 2>&1 ||
    { echo "side-by-side: $tool not found (apt-get install redis-server redis-tools etcd-server)" >&2; exit 1; }
done
# REPORT_ONLY=1 rewrites REPORT.md from the files of the last run.
if [ -z "${REPORT_ONLY:-}" ]; then
mkdir -p "$OUT"
rm -f "$OUT/results.csv" "$OUT"/*.json "$OUT"/*.png

cargo build --release --locked --features etcd --bin synod
SYNOD=target/release/synod
WORK=$(mktemp -d "${TMPDIR:-/tmp}/synod-side-by-side.XXXXXX")
ETCD_PIDS=()
cleanup() {
  # Best effort, every step: etcd re-raises SIGTERM, so its `wait` is 143,
  # and under `set -e` that would end the cleanup before the rest.
  set +e
  [ -n "${CLUSTER:-}" ] && kill -TERM "$CLUSTER" 2>/dev/null && wait "$CLUSTER" 2>/dev/null
  [ -n "${REDIS:-}" ] && kill -TERM "$REDIS" 2>/dev/null && wait "$REDIS" 2>/dev/null
  for pid in "${ETCD_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${ETCD_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== starting Synod (3 nodes), Redis (AOF always) and etcd (3 members) in $WORK"
"$SYNOD" cluster --data-dir "$WORK/synod" --base-port 7000 >"$WORK/cluster.log" 2>&1 &
CLUSTER=$!
mkdir -p "$WORK/redis"
redis-server --port 6390 --bind 127.0.0.1 --dir "$WORK/redis" --appendonly yes \
  --appendfsync always --save "" --daemonize no >"$WORK/redis.log" 2>&1 &
REDIS=$!
# etcd member i: clients on 127.0.0.1:i2379, peers on 127.0.0.1:i2380 (the
# ports of etcd's own Procfile), clear of Synod (7001-7203) and Redis (6390).
ETCD_CLUSTER=""
for i in 1 2 3; do
  ETCD_CLUSTER="$ETCD_CLUSTER${ETCD_CLUSTER:+,}etcd-$i=http://127.0.0.1:${i}2380"
done
for i in 1 2 3; do
  etcd --name "etcd-$i" --data-dir "$WORK/etcd/etcd-$i" \
    --listen-client-urls "http://127.0.0.1:${i}2379" --advertise-client-urls "http://127.0.0.1:${i}2379" \
    --listen-peer-urls "http://127.0.0.1:${i}2380" --initial-advertise-peer-urls "http://127.0.0.1:${i}2380" \
    --initial-cluster "$ETCD_CLUSTER" --initial-cluster-state new --initial-cluster-token side-by-side \
    >"$WORK/etcd-$i.log" 2>&1 &
  ETCD_PIDS+=($!)
done
ETCD_ADDRS=127.0.0.1:12379,127.0.0.1:22379,127.0.0.1:32379
for _ in $(seq 1 100); do
  [ "$(redis-cli -p 7001 set ready 1 2>/dev/null)" = OK ] &&
    [ "$(redis-cli -p 6390 ping 2>/dev/null)" = PONG ] && break
  sleep 0.2
done
# etcd is ready when a write succeeds (a leader is elected); one short
# `synod bench` is the probe, so no etcdctl is needed.
for _ in $(seq 1 30); do
  "$SYNOD" bench --protocol etcd --addr 127.0.0.1:12379 --clients 1 --duration 1 --warmup 0 \
    >/dev/null 2>&1 && break
  sleep 0.5
done

SYNOD_ADDRS=127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003
SYNOD_LEADER=$(redis-cli -p 7001 info replication 2>/dev/null | tr -d '\r' | awk -F: '/^leader_id:/ {print $2}') || true
REDIS_ADDR=127.0.0.1:6390
# The server processes of each system, for the cost columns: CPU and context
# switches are read from /proc over the measured part of each row (after the
# warm-up) and divided by the requests the row counted.
# shellcheck source=bench/cost-lib.sh
. bench/cost-lib.sh
TICK=$(getconf CLK_TCK)
SYNOD_PIDS=$(pgrep -P "$CLUSTER" | tr '\n' ' ')
echo "label,cpu_ticks,context_switches" >"$OUT/cost.csv"
run() { # system label args...
  local system=$1 label=$2 addr protocol=resp pids
  shift 2
  case $system in
    synod) addr=$SYNOD_ADDRS pids=$SYNOD_PIDS ;;
    redis) addr=$REDIS_ADDR pids=$REDIS ;;
    etcd) addr=$ETCD_ADDRS protocol=etcd pids="${ETCD_PIDS[*]}" ;;
  esac
  echo "-- $system $label"
  "$SYNOD" bench --protocol "$protocol" --addr "$addr" --duration "$SECONDS_EACH" --warmup 2 \
    --label "$system/$label" --csv "$OUT/results.csv" \
    --json "$OUT/$system-$label.json" "$@" &
  local bench=$! c0 s0
  sleep 2
  # shellcheck disable=SC2086
  c0=$(cpu_ticks $pids); s0=$(switches $pids)
  wait "$bench"
  # shellcheck disable=SC2086
  echo "$system/$label,$(( $(cpu_ticks $pids) - c0 )),$(( $(switches $pids) - s0 ))" >>"$OUT/cost.csv"
}
# Row by row, the three systems one after another: this machine's speed
# drifts by 10-30% within minutes (Redis's own rows moved by up to 45%
# between runs that measured each system's rows in one stretch), so a ratio
# is only worth quoting between rows measured within seconds of each other.
for clients in 1 10 50 200; do
  for system in synod redis etcd; do
    run $system "set-c$clients" --clients $clients --read-ratio 0
  done
  for system in synod redis etcd; do
    run $system "get-c$clients" --clients $clients --read-ratio 1
  done
done
for system in synod redis etcd; do
  run $system "set-p16" --clients 50 --pipeline 16 --read-ratio 0
done

echo "== redis-benchmark against Synod (cross-check)"
redis-benchmark -p 7001 -t set,get -c 50 -n 200000 -q | tr '\r' '\n' | grep 'requests per second' \
  >"$OUT/redis-benchmark-synod.txt"
redis-benchmark -p 7001 -t set -c 50 -P 16 -n 500000 -q | tr '\r' '\n' | grep 'requests per second' \
  >>"$OUT/redis-benchmark-synod.txt"
cat "$OUT/redis-benchmark-synod.txt"

echo "== RSS after loading $KEYS_LOADED keys of 100 B (redis-benchmark, pipelined 32 deep)"
LEADER_PORT=$((7000 + ${SYNOD_LEADER:-1}))
for port in $LEADER_PORT 6390; do
  redis-benchmark -p "$port" -q -t set -c 50 -P 32 -d 100 -r "$KEYS_LOADED" -n $((KEYS_LOADED * 3)) >/dev/null
done
sleep 2
{
  echo "| process | keys | RSS MiB |"
  echo "| --- | ---: | ---: |"
  i=0
  for pid in $SYNOD_PIDS; do
    i=$((i + 1))
    echo "| Synod node $i | $(redis-cli -p $((7000 + i)) dbsize) | $(( $(rss_kib "$pid") / 1024 )) |"
  done
  echo "| Redis | $(redis-cli -p 6390 dbsize) | $(( $(rss_kib "$REDIS") / 1024 )) |"
} >"$OUT/rss.md"
cat "$OUT/rss.md"

echo "== plots"
"$SYNOD" bench-plot --csv "$OUT/results.csv" --json-dir "$OUT" --out "$OUT" --cdf-clients 50

else
  TICK=$(getconf CLK_TCK)
  SYNOD=target/release/synod
  SYNOD_LEADER=$(sed -n 's/.*node \([0-9]*\) led at the start.*/\1/p' "$OUT/REPORT.md" 2>/dev/null | head -1)
fi

echo "== report"
{
  echo "# Synod side by side"
  echo
  echo "Generated by \`bench/side-by-side.sh $SECONDS_EACH\` on $(date -u +%Y-%m-%d)."
  echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr);"
  echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')."
  echo "Synod: 3 nodes on loopback, fsync on (group commit), linearizable reads by read index (a heartbeat round, no log entry);"
  echo "node ${SYNOD_LEADER:-?} led at the start. Clients are spread over the three nodes in turn, so the 1-client rows talk to"
  echo "node 1 (through a round trip to the leader when node 1 is a follower)."
  echo "Redis $(redis-server --version | grep -o 'v=[0-9.]*' | cut -d= -f2): one node, appendonly yes, appendfsync always."
  echo "etcd $(etcd --version | awk '/^etcd Version/ {print $3}'): 3 members on loopback, default settings (WAL fsync before a write is acknowledged),"
  echo "linearizable reads (Range with the default consistency); driven over gRPC, one HTTP/2 connection per client,"
  echo "pipelined requests as concurrent streams on it."
  echo "Load: \`synod bench\`, closed loop, 100-byte values, 10,000 keys, ${SECONDS_EACH} s per row after 2 s warm-up;"
  echo "each workload runs on Synod, Redis and etcd one right after another, so each ratio compares runs seconds apart."
  echo
  echo "| workload | Synod ops/s | Synod p50 ms | Synod p99 ms | Redis ops/s | Redis p50 ms | Redis p99 ms | etcd ops/s | etcd p50 ms | etcd p99 ms | Synod/Redis throughput | Synod/etcd throughput |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  awk -F, 'function cells(sys, w) {
      if (!((sys, w) in ops)) return "- | - | -";
      return sprintf("%.0f | %.2f | %.2f", ops[sys, w], p50[sys, w], p99[sys, w])
    }
    function ratio(sys, w) {
      return (ops[sys, w] > 0) ? sprintf("%.2f", ops["synod", w] / ops[sys, w]) : "-"
    }
    NR > 1 {
      split($1, parts, "/"); sys = parts[1]; w = parts[2];
      if (!(w in seen)) { order[++n] = w; seen[w] = 1 }
      ops[sys, w] = $9; p50[sys, w] = $10; p99[sys, w] = $12
    }
    END {
      for (i = 1; i <= n; i++) {
        w = order[i];
        printf "| %s | %s | %s | %s | %s | %s |\n", w, cells("synod", w), cells("redis", w),
          cells("etcd", w), ratio("redis", w), ratio("etcd", w)
      }
    }' "$OUT/results.csv"
  echo
  echo "Server cost per request, summed over every process of the system (Synod: 3 nodes; Redis: 1;"
  echo "etcd: 3 members), over the measured part of each row (CPU: user + system time):"
  echo
  echo "| workload | Synod CPU µs | Redis CPU µs | etcd CPU µs | Synod switches | Redis switches | etcd switches | Synod/Redis CPU | Synod/etcd CPU |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  awk -F, -v tick="$TICK" 'FNR == 1 { file++; next }
    file == 1 { requests[$1] = $7 }
    file == 2 { split($1, parts, "/"); sys = parts[1]; w = parts[2];
      if (!(w in seen)) { order[++n] = w; seen[w] = 1 }
      if (requests[$1] > 0) {
        cpu[sys, w] = $2 / tick / requests[$1] * 1e6; sw[sys, w] = $3 / requests[$1]; have[sys, w] = 1
      }
    }
    function c(sys, w) { return ((sys, w) in have) ? sprintf("%.1f", cpu[sys, w]) : "-" }
    function s(sys, w) { return ((sys, w) in have) ? sprintf("%.2f", sw[sys, w]) : "-" }
    function r(sys, w) {
      if (!((sys, w) in have) || !(("synod", w) in have) || cpu[sys, w] <= 0) return "-";
      return sprintf("%.1f", cpu["synod", w] / cpu[sys, w])
    }
    END {
      for (i = 1; i <= n; i++) {
        w = order[i];
        printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", w, c("synod", w), c("redis", w),
          c("etcd", w), s("synod", w), s("redis", w), s("etcd", w), r("redis", w), r("etcd", w)
      }
    }' "$OUT/results.csv" "$OUT/cost.csv"
  echo
  echo "Resident memory after loading $KEYS_LOADED random keys of 100 B (\`redis-benchmark -P 32 -r $KEYS_LOADED\`, so"
  echo "about 95% of them distinct) into Synod (through the leader) and into Redis:"
  echo
  cat "$OUT/rss.md"
  echo
  echo "![Throughput against clients, SET and GET](throughput.png)"
  echo
  echo "![Latency CDF at 50 clients, SET and GET](latency-cdf.png)"
  echo
  echo "redis-benchmark against Synod node 1 (50 clients; last line pipelined 16 deep):"
  echo
  echo '```'
  cat "$OUT/redis-benchmark-synod.txt"
  echo '```'
  echo
  echo "Raw rows: \`results.csv\`; per-run JSON with the latency CDF: \`*.json\`; plots drawn by"
  echo "\`synod bench-plot\`."
} >"$OUT/REPORT.md"
cat "$OUT/REPORT.md"
