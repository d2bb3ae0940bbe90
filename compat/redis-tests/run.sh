#!/usr/bin/env bash
# Runs Redis 7.0.15's own Tcl test suite (external-server mode) against a
# 3-node Synod cluster and against a real redis-server, and prints a table.
#
#   run.sh SYNOD_BIN BASE_PORT [unit ...]
#
# SYNOD_BIN  path to the synod binary (it is copied, so a rebuild can't swap it mid-run)
# BASE_PORT  Synod cluster base port: RESP base+1..3, Paxos base+101.., HTTP base+201..
#
# Environment (defaults in brackets):
#   SUITE            folder with tests/ and runtest [suite/ next to this script]
#   REDIS_PORT       port for our own real redis-server [21300]
#   HARNESS_BASEPORT runtest --baseport (test server listens at baseport-32..-1) [21382]
#   WORK             scratch dir [/tmp/redis-suite-work]
#   SYNOD_DATA / REDIS_DATA  data dirs, wiped at start [/tmp/suite-synod, /tmp/suite-redis]
#   SYNOD_NODES      Synod nodes to run every unit against [1 2] ("follower": a node that
#                    is a follower at that time; a Synod addition to this runner)
#   SYNOD_NODES_STRING_ONLY  extra nodes that only get unit/type/string [3]
#                    ("leader" means: whichever node is leader at that time)
#   PER_FILE_TIMEOUT seconds per unit file [600]
#   NO_PROGRESS_TIMEOUT runtest --timeout (seconds without progress) [240]
#   TAGS             runtest --tags [-needs:debug -needs:repl ... see below]
#   SKIP_REDIS=1     don't run the real-Redis calibration
#   RAW=1            turn off the switchable shims S1-S4 (see patch-harness.py)
#
# The harness is patched minimally (patch-harness.py next to this script):
# FUNCTION FLUSH in per-block setup and start_server CONFIG overrides are
# tolerated when they fail, and the port probe stays in our range. The same
# patched harness is used for real Redis.
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
SYNOD_SRC_BIN="${1:?usage: run.sh SYNOD_BIN BASE_PORT [unit ...]}"
BASE="${2:?usage: run.sh SYNOD_BIN BASE_PORT [unit ...]}"
shift 2
UNITS=("$@")
if [ ${#UNITS[@]} -eq 0 ]; then
  UNITS=(unit/type/string unit/type/incr unit/expire unit/keyspace unit/type/hash
         unit/type/list unit/type/list-2 unit/type/list-3 unit/multi unit/protocol
         unit/auth unit/info-command unit/quit)
fi
SUITE="${SUITE:-$HERE/suite}"   # Redis 7.0.15's tests/ and runtest (BSD-3, see suite/COPYING)
REDIS_PORT="${REDIS_PORT:-21300}"
HARNESS_BASEPORT="${HARNESS_BASEPORT:-21382}"
WORK="${WORK:-/tmp/redis-suite-work}"
SYNOD_NODES="${SYNOD_NODES:-1 2}"
SYNOD_NODES_STRING_ONLY="${SYNOD_NODES_STRING_ONLY:-3}"
PER_FILE_TIMEOUT="${PER_FILE_TIMEOUT:-600}"
NO_PROGRESS_TIMEOUT="${NO_PROGRESS_TIMEOUT:-240}"
TAGS="${TAGS:--needs:debug -needs:repl -needs:config-maxmemory -needs:config-resetstat -needs:reset -needs:save -needs:latency -needs:local-process -needs:pfdebug}"
export TERM=dumb
if [ -z "${RAW:-}" ]; then export SUITE_SHIM_ENCODING_CONFIG=1 SUITE_RECONNECT_ON_FAIL=1 SUITE_CONTINUE_BLOCKS=1; fi

HARNESS="$WORK/harness"
LOGS="$WORK/logs"
DATA="${SYNOD_DATA:-/tmp/suite-synod}"
RDATA="${REDIS_DATA:-/tmp/suite-redis}"
rm -rf "$LOGS" "$DATA" "$RDATA"
mkdir -p "$WORK" "$LOGS" "$DATA" "$RDATA"

# ---------- harness ----------
rm -rf "$HARNESS"; mkdir -p "$HARNESS"
cp -r "$SUITE/tests" "$SUITE/runtest" "$HARNESS/" || exit 1
mkdir -p "$HARNESS/src"
python3 "$HERE/patch-harness.py" "$HARNESS" || exit 1
for b in redis-cli redis-benchmark redis-server redis-check-aof; do
  [ -e "$HARNESS/src/$b" ] || ln -sf "$(command -v $b)" "$HARNESS/src/$b"
done

# ---------- processes ----------
SYNOD_BIN="$WORK/synod"
cp "$SYNOD_SRC_BIN" "$SYNOD_BIN" || exit 1
CLUSTER_PID=""
REDIS_PID=""
cleanup() {
  if [ -n "$CLUSTER_PID" ] && kill -0 "$CLUSTER_PID" 2>/dev/null; then
    kill -TERM "$CLUSTER_PID"
    for _ in $(seq 1 50); do kill -0 "$CLUSTER_PID" 2>/dev/null || break; sleep 0.2; done
  fi
  # any node that outlived its parent (by recorded PID only)
  for p in $NODE_PIDS; do kill -0 "$p" 2>/dev/null && kill -TERM "$p"; done
  if [ -n "$REDIS_PID" ] && kill -0 "$REDIS_PID" 2>/dev/null; then kill -TERM "$REDIS_PID"; fi
}
NODE_PIDS=""
trap cleanup EXIT
trap 'exit 130' INT TERM

setsid "$SYNOD_BIN" cluster --nodes 3 --base-port "$BASE" --data-dir "$DATA" > "$WORK/cluster.out" 2>&1 &
CLUSTER_PID=$!
ok=""
for _ in $(seq 1 120); do
  if [ "$(redis-cli -p $((BASE+1)) set suite-probe y 2>/dev/null)" = "OK" ]; then ok=1; break; fi
  sleep 0.5
done
[ -n "$ok" ] || { echo "Synod cluster did not come up"; cat "$WORK/cluster.out"; exit 1; }
redis-cli -p $((BASE+1)) del suite-probe >/dev/null
NODE_PIDS="$(pgrep -P "$CLUSTER_PID" | tr '\n' ' ')"
echo "synod cluster pid $CLUSTER_PID, node pids: $NODE_PIDS"

# A fresh real redis-server for every unit: some units CONFIG SET the external
# server and never restore it (unit/type/list sets proto-max-bulk-len to 10GB,
# after which unit/protocol's "Out of range multibulk payload length" hangs).
start_redis() {
  stop_redis
  rm -f "$RDATA/redis.pid"
  redis-server --port "$REDIS_PORT" --save '' --appendonly no --daemonize yes --dir "$RDATA" \
      --pidfile "$RDATA/redis.pid" --logfile "$RDATA/redis.log" || exit 1
  for _ in $(seq 1 50); do [ -s "$RDATA/redis.pid" ] && redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.2; done
  REDIS_PID="$(cat "$RDATA/redis.pid")"
}
stop_redis() {
  if [ -n "$REDIS_PID" ] && kill -0 "$REDIS_PID" 2>/dev/null; then
    kill -TERM "$REDIS_PID"
    for _ in $(seq 1 50); do kill -0 "$REDIS_PID" 2>/dev/null || break; sleep 0.1; done
  fi
  REDIS_PID=""
}
[ -z "${SKIP_REDIS:-}" ] && echo "real redis: $(redis-server --version | awk '{print $3}'), restarted for every unit on port $REDIS_PORT"

role_of() { redis-cli -p $((BASE+$1)) info replication 2>/dev/null | tr -d '\r' | awk -F: '$1=="role"{print $2}'; }
leader_node() { for n in 1 2 3; do [ "$(role_of $n)" = leader ] && { echo $n; return; }; done; echo 1; }
# (Synod addition) "follower" in SYNOD_NODES: the first node that is not the leader now.
follower_node() { for n in 1 2 3; do [ "$(role_of $n)" = follower ] && { echo $n; return; }; done; echo 2; }

# ---------- running ----------
SUMMARY="$WORK/summary.tsv"
: > "$SUMMARY"
health() {   # prints a note if a Synod node died or stopped answering, or logged a panic
  local note=""
  for p in $NODE_PIDS; do kill -0 "$p" 2>/dev/null || note="$note node-pid-$p-DEAD"; done
  for n in 1 2 3; do
    r="$(timeout 5 redis-cli -p $((BASE+n)) ping 2>&1)"; [ "$r" = PONG ] || note="$note node$n-ping:$r"
  done
  if grep -qiE 'panick|panic' "$DATA"/node-*.log 2>/dev/null; then note="$note PANIC-IN-LOG"; fi
  echo "$note"
}
run_unit() {   # target port unit
  local target="$1" port="$2" unit="$3"
  local log="$LOGS/$target/${unit//\//_}.log"
  mkdir -p "$LOGS/$target"
  local t0=$(date +%s)
  ( cd "$HARNESS" && timeout -k 10 "$PER_FILE_TIMEOUT" ./runtest --host 127.0.0.1 --port "$port" \
      --baseport "$HARNESS_BASEPORT" --singledb --durable --ignore-encoding --ignore-digest \
      --timeout "$NO_PROGRESS_TIMEOUT" --tags "$TAGS" --single "$unit" ) > "$log" 2>&1
  local rc=$?
  local secs=$(( $(date +%s) - t0 ))
  local okc errc ign skip exc tmo blk
  okc=$(grep -c '^\[ok\]:' "$log")
  errc=$(grep -c '^\[err\]:' "$log")
  blk=$(grep '^\[err\]:' "$log" | grep -vc ' in tests/.*\.tcl$')   # block-level aborts (error outside any test)
  ign=$(grep -c '^\[ignore\]:' "$log")
  skip=$(grep -c '^\[skip\]:' "$log")
  exc=$(grep -c '^\[exception\]:' "$log")
  tmo=$(grep -c 'TIMEOUT' "$log")
  local note=""
  [ $rc -eq 124 ] && note="$note FILE-TIMEOUT"
  [ $exc -gt 0 ] && note="$note exception"
  [ $tmo -gt 0 ] && note="$note harness-timeout"
  local shim; shim=$(grep -c "SUITE-SHIM: 'config set" "$log"); [ "$shim" -gt 0 ] && note="$note shim-config-set=$shim"
  shim=$(grep -c "SUITE-SHIM: 'memory usage" "$log"); [ "$shim" -gt 0 ] && note="$note shim-memory-usage=$shim"
  shim=$(grep "SUITE-SHIM: block-level" "$log" | grep -vc "'function flush'"); [ "$shim" -gt 0 ] && note="$note shim-block-level-unknown-cmd=$shim"
  if [ "$target" != redis ]; then note="$note$(health)"; fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$unit" "$target" "$okc" "$((errc-blk))" "$blk" "$ign" "$skip" "$exc" "$secs" "$rc" "${note# }" >> "$SUMMARY"
  printf '%-20s %-14s ok=%-4s err=%-4s blockabort=%-2s ignored=%-4s skipped=%-3s exc=%s %ss rc=%s %s\n' \
      "$unit" "$target" "$okc" "$((errc-blk))" "$blk" "$ign" "$skip" "$exc" "$secs" "$rc" "$note"
}

echo "roles at start: n1=$(role_of 1) n2=$(role_of 2) n3=$(role_of 3)"
for unit in "${UNITS[@]}"; do
  # Real Redis gets a fresh process per unit; the Synod cluster is shared, so
  # each unit starts from a fresh server's cluster-wide settings (a unit that
  # failed before its own `config set maxmemory 0` must not OOM the next).
  redis-cli -p $((BASE+1)) config set maxmemory 0 >/dev/null 2>&1 || true
  for n in $SYNOD_NODES; do
    [ "$n" = follower ] && n=$(follower_node)
    run_unit "synod-n$n-$(role_of $n)" $((BASE+n)) "$unit"
  done
  if [ "$unit" = unit/type/string ]; then
    for n in $SYNOD_NODES_STRING_ONLY; do
      [ "$n" = leader ] && n=$(leader_node)
      run_unit "synod-n$n-$(role_of $n)" $((BASE+n)) "$unit"
    done
  fi
  if [ -z "${SKIP_REDIS:-}" ]; then start_redis; run_unit redis "$REDIS_PORT" "$unit"; stop_redis; fi
done

echo
echo "| unit | target | passed | failed | block aborts | ignored (tags) | skipped | exceptions | secs | notes |"
echo "|---|---|---|---|---|---|---|---|---|---|"
awk -F'\t' '{printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",$1,$2,$3,$4,$5,$6,$7,$8,$9,$11}' "$SUMMARY"
echo
echo "Compact view (passed/failed; 'not run' = tests that ran on real Redis but not here, e.g. after a block abort):"
python3 - "$SUMMARY" <<'PY'
import sys, collections
rows=[l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
units=[]; data=collections.defaultdict(dict); targets=[]
for u,t,ok,err,blk,ign,skip,exc,secs,rc,note in rows:
    if u not in units: units.append(u)
    if t not in targets: targets.append(t)
    data[u][t]=(int(ok),int(err)+int(blk),note)
targets=[t for t in targets if t!="redis"]+(["redis"] if any("redis" in d for d in data.values()) else [])
print("| unit | "+" | ".join(targets)+" |"); print("|---"*(len(targets)+1)+"|")
for u in units:
    ref=data[u].get("redis"); cells=[]
    for t in targets:
        if t not in data[u]: cells.append("-"); continue
        ok,fail,note=data[u][t]; c=f"{ok} / {fail}"
        if ref and t!="redis":
            notrun=(ref[0]+ref[1])-(ok+fail)
            if notrun>0: c+=f" ({notrun} not run)"
        if any(k in note for k in ("TIMEOUT","timeout","exception","DEAD","PANIC","ping")): c+=" **"+note+"**"
        cells.append(c)
    print(f"| {u} | "+" | ".join(cells)+" |")
tot=collections.defaultdict(lambda:[0,0])
for u in units:
    for t,(ok,fail,_) in data[u].items(): tot[t][0]+=ok; tot[t][1]+=fail
print("| **total** | "+" | ".join(f"{tot[t][0]} / {tot[t][1]}" for t in targets)+" |")
PY
for t in "$LOGS"/*; do
  tn="$(basename "$t")"; [ "$tn" = redis ] && continue
  python3 "$HERE/analyze.py" "$LOGS" "$tn" > "$WORK/analysis-$tn.txt" 2>&1
done
echo "(per-failure analysis: $WORK/analysis-<target>.txt)"
echo
echo "panic/ERROR lines in Synod node logs:"
grep -iE 'panic|error' "$DATA"/node-*.log | head -20 || true
echo "(logs per file under $LOGS; node logs under $DATA)"
