#!/usr/bin/env bash
# The cost of TLS on peer links: the same 3-node local cluster and load, once
# with TLS peer links (what `synod cluster` runs by default) and once with
# --insecure-peer-links, alternating ROUNDS times. Prints ops/s from
# `synod bench` and the CPU seconds the three servers used per 1,000 ops.
#
#   cargo build --release --bin synod && [VALUE_SIZE=100] bench/peer-tls.sh [ROUNDS] [CLIENTS] [SECONDS]
set -euo pipefail
SYNOD=${SYNOD:-./target/release/synod}
ROUNDS=${1:-2}
CLIENTS=${2:-50}
SECONDS_RUN=${3:-10}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
TICKS=$(getconf CLK_TCK)

cpu_ticks() { # total utime+stime of the children of the cluster launcher $1
  local total=0
  for pid in $(pgrep -P "$1"); do
    read -r -a f < "/proc/$pid/stat"
    total=$((total + f[13] + f[14]))
  done
  echo "$total"
}

run() { # label, base port, extra server args...
  local label=$1 base=$2; shift 2
  rm -rf "$WORK/$label"
  "$SYNOD" cluster --data-dir "$WORK/$label" --base-port "$base" -- "$@" >"$WORK/$label.log" 2>&1 &
  local launcher=$!
  sleep 3
  local before; before=$(cpu_ticks "$launcher")
  local out; out=$("$SYNOD" bench --addr "127.0.0.1:$((base + 1))" --clients "$CLIENTS" \
    --duration "$SECONDS_RUN" --warmup 2 --value-size "${VALUE_SIZE:-100}")
  local after; after=$(cpu_ticks "$launcher")
  kill -INT "$launcher"; wait "$launcher" || true
  local row; row=$(echo "$out" | grep -A1 '^label' | tail -1)
  local ops; ops=$(echo "$row" | awk '{print $4}')
  local p99; p99=$(echo "$row" | awk '{print $7}')
  # CPU over warmup + measured seconds; ops over the measured ones only.
  local total_s=$((SECONDS_RUN + 2))
  awk -v l="$label" -v o="$ops" -v p="$p99" -v t=$((after - before)) -v hz="$TICKS" -v s="$total_s" \
    'BEGIN { printf "%-9s %8.0f ops/s  p99 %7.3f ms  %6.2f CPU s (3 servers)  %6.3f CPU ms/op\n", l, o, p, t/hz, 1000*(t/hz)/(o*s) }'
}

for round in $(seq "$ROUNDS"); do
  run tls 7600
  run insecure 7700 --insecure-peer-links
done
