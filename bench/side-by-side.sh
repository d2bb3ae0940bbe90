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
#   bench/side-by-side.sh [SECONDS_PER_WORKLOAD]     (default 10)
#
# Needs redis-server, redis-tools and etcd-server (apt-get install
# redis-server redis-tools etcd-server), protoc to build `synod bench`'s etcd
# client (protobuf-compiler) and the DejaVu font for the plots
# (fonts-dejavu-core). ZooKeeper is not driven yet (issue 6).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-10}
OUT=bench/report
for tool in redis-server redis-cli redis-benchmark etcd; do
  command -v "$tool" >/dev/null 2>&1 ||
    { echo "side-by-side: $tool not found (apt-get install redis-server redis-tools etcd-server)" >&2; exit 1; }
done
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
run() { # system label args...
  local system=$1 label=$2 addr protocol=resp
  shift 2
  case $system in
    synod) addr=$SYNOD_ADDRS ;;
    redis) addr=$REDIS_ADDR ;;
    etcd) addr=$ETCD_ADDRS protocol=etcd ;;
  esac
  echo "-- $system $label"
  "$SYNOD" bench --protocol "$protocol" --addr "$addr" --duration "$SECONDS_EACH" --warmup 2 \
    --label "$system/$label" --csv "$OUT/results.csv" \
    --json "$OUT/$system-$label.json" "$@"
}
for system in synod redis etcd; do
  for clients in 1 10 50 200; do
    run $system "set-c$clients" --clients $clients --read-ratio 0
    run $system "get-c$clients" --clients $clients --read-ratio 1
  done
  run $system "set-p16" --clients 50 --pipeline 16 --read-ratio 0
done

echo "== redis-benchmark against Synod (cross-check)"
redis-benchmark -p 7001 -t set,get -c 50 -n 200000 -q | tr '\r' '\n' | grep 'requests per second' \
  >"$OUT/redis-benchmark-synod.txt"
redis-benchmark -p 7001 -t set -c 50 -P 16 -n 500000 -q | tr '\r' '\n' | grep 'requests per second' \
  >>"$OUT/redis-benchmark-synod.txt"
cat "$OUT/redis-benchmark-synod.txt"

echo "== plots"
"$SYNOD" bench-plot --csv "$OUT/results.csv" --json-dir "$OUT" --out "$OUT" --cdf-clients 50

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
  echo "Load: \`synod bench\`, closed loop, 100-byte values, 10,000 keys, ${SECONDS_EACH} s per row after 2 s warm-up."
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
