# Sourced by the bench scripts: what a set of server processes spent, read
# from /proc, and a local cluster to measure.

# stat_ticks AWK_EXPR PID... -> AWK_EXPR of each /proc/PID/stat's fields,
# summed (utime is $14, stime $15: every thread, live or exited), in clock
# ticks (getconf CLK_TCK per second).
stat_ticks() {
  local expr=$1 sum=0 pid
  shift
  for pid in "$@"; do
    sum=$((sum + $(awk "{print $expr}" "/proc/$pid/stat")))
  done
  echo "$sum"
}

# cpu_ticks PID... -> utime+stime summed.
cpu_ticks() { stat_ticks '$14 + $15' "$@"; }

# user_ticks PID... -> utime summed.
user_ticks() { stat_ticks '$14' "$@"; }

# switches PID... -> voluntary + involuntary context switches summed over the
# threads alive now (an exited thread's count is gone; tokio's blocking
# threads live 10 s idle and etcd's and Redis' threads live as long as the
# process, so a measuring window sees them).
switches() {
  local pid
  for pid in "$@"; do cat /proc/"$pid"/task/*/status 2>/dev/null; done |
    awk '/ctxt_switches/ {s += $2} END {print s + 0}'
}

# requests_of SCRIPT REDIS_BENCHMARK_ARGS... -> the N of their `-n N`; exits
# with a message naming SCRIPT when there is none (a per-request count needs
# it).
requests_of() {
  local script=$1 n
  shift
  n=$(echo "$@" | grep -o -- '-n [0-9]*' | awk '{print $2}')
  [ -n "$n" ] || { echo "$script: pass -n N among the redis-benchmark args" >&2; exit 2; }
  echo "$n"
}

# rss_kib PID -> resident set size in KiB.
rss_kib() {
  awk '/^VmRSS:/ {print $2}' "/proc/$1/status"
}

# cluster_leader BASE_PORT -> the leader's node id once node 1 (RESP port
# BASE_PORT+1) takes a write and names a leader (up to 30 s in all), or
# nothing. A node can acknowledge a write and still say `leader_id:none` for
# a moment (an election right after start-up): it is asked again then.
cluster_leader() {
  local id="" i
  for i in $(seq 1 150); do
    [ "$(redis-cli -p $(($1 + 1)) set ready 1 2>/dev/null)" = OK ] && break
    sleep 0.2
  done
  for _ in $(seq "$i" 150); do
    # redis-cli fails when nothing listens: nothing is printed then.
    id=$({ redis-cli -p $(($1 + 1)) info replication 2>/dev/null || true; } | tr -d '\r' |
      awk -F: '/^leader_id:/ {print $2}')
    case "$id" in
      '' | *[!0-9]*) id="" ;;
      *) break ;;
    esac
    sleep 0.2
  done
  echo "$id"
}

# start_leader_cluster SYNOD_BIN WORK_DIR [-- SERVER_ARGS...] -> starts a
# local 3-node cluster (base port 7400) in the background, stopped (and
# WORK_DIR removed) when the script exits; waits until a write is
# acknowledged and a leader named, warms it up with 50k SETs at 50 clients
# on the leader, and sets CLUSTER (its pid), PORT (the leader's RESP port)
# and LEADER_PID. Exits with the cluster's log when no leader is named in
# 30 s. Used by bench/allocs-per-op.sh, bench/syscalls-per-op.sh,
# bench/ab-cpu.sh, bench/checkpoint-cost.sh and bench/restart-catchup.sh.
start_leader_cluster() {
  "$1" cluster --data-dir "$2/s" --base-port 7400 "${@:3}" >"$2/cluster.log" 2>&1 &
  CLUSTER=$!
  # shellcheck disable=SC2064 # the paths are fixed now
  trap "kill $CLUSTER 2>/dev/null; wait 2>/dev/null; rm -rf '$2'" EXIT
  local leader
  leader=$(cluster_leader 7400)
  [ -n "$leader" ] || {
    echo "the Synod cluster named no leader in 30 s:" >&2
    tail -5 "$2/cluster.log" >&2
    exit 1
  }
  PORT=$((7400 + leader))
  LEADER_PID=$(ss -ltnp | grep ":$PORT " | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
  # Warm up: connections, tables, the allocator's arenas.
  redis-benchmark -p "$PORT" -q -n 50000 -t set -r 100000 -d 100 -c 50 >/dev/null 2>&1
}

# start_cluster_and_redis SYNOD_BIN WORK_DIR [-- SERVER_ARGS...] ->
# start_leader_cluster (SERVER_ARGS go to every node), then
# one Redis (appendonly yes, appendfsync always) on port 6491 with its data
# in WORK_DIR/redis; sets REDIS (its pid) and NODES (the cluster's node
# pids), stops both (and removes WORK_DIR) when the script exits, and
# returns once Redis answers. Used by bench/vs-redis.sh and
# bench/entry-points.sh.
start_cluster_and_redis() {
  start_leader_cluster "$1" "$2" "${@:3}"
  mkdir -p "$2/redis"
  redis-server --port 6491 --bind 127.0.0.1 --dir "$2/redis" --appendonly yes \
    --appendfsync always --save '' --daemonize no >"$2/redis.log" 2>&1 &
  REDIS=$!
  # shellcheck disable=SC2064 # the pids and the path are fixed now
  trap "kill $REDIS $CLUSTER 2>/dev/null; wait 2>/dev/null; rm -rf '$2'" EXIT
  for _ in $(seq 1 50); do redis-cli -p 6491 ping >/dev/null 2>&1 && break; sleep 0.1; done
  NODES=$(pgrep -P "$CLUSTER" | tr '\n' ' ')
}

# preload_ttl PORT KEYS SECONDS -> writes the keys redis-benchmark's
# `-r KEYS` draws (key:000000000000 ..) with 100-byte values and a TTL of
# SECONDS (`SET .. EX`), through `redis-cli --pipe`: a later `-t get` load
# then reads keys that all expire. Used by bench/vs-redis.sh and
# bench/ab-cpu.sh when TTL_KEYS is set.
preload_ttl() {
  awk -v n="$2" -v ttl="$3" 'BEGIN {
    value = sprintf("%100s", ""); gsub(/ /, "v", value)
    for (i = 0; i < n; i++) {
      key = sprintf("key:%012d", i)
      printf "*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$100\r\n%s\r\n$2\r\nEX\r\n$%d\r\n%s\r\n", length(key), key, value, length(ttl), ttl
    }
  }' | redis-cli -p "$1" --pipe >/dev/null
}

# count_on_nodes WORK_DIR EVENTS REDIS_BENCHMARK_ARGS... -> counts EVENTS
# (`perf stat -e`) on every node of the cluster that start_leader_cluster
# started, while redis-benchmark sends the load to the leader: the counts
# are left in WORK_DIR/stat.PID, the load's throughput line in
# WORK_DIR/load.out.
count_on_nodes() {
  local work=$1 events=$2 pid
  shift 2
  local stats=()
  for pid in $(pgrep -P "$CLUSTER"); do
    perf stat -e "$events" -p "$pid" -o "$work/stat.$pid" 2>/dev/null &
    stats+=($!)
  done
  sleep 0.5
  redis-benchmark -p "$PORT" "$@" 2>/dev/null | tr '\r' '\n' | grep "requests per second" | tail -1 >"$work/load.out" || true
  kill -INT "${stats[@]}"
  wait "${stats[@]}" 2>/dev/null || true
}

# ab_rounds ROUNDS BIN_A BIN_B RUN_FN [ARGS...] -> runs `RUN_FN BIN SIDE
# ARGS...` ROUNDS times for each build, alternating the order by round (A B,
# B A, ...) so that a steady drift of the machine's speed favours neither,
# then prints each side's mean of every "name value" pair RUN_FN printed
# after its first word (the side). Used by bench/ab-cpu.sh and
# bench/ab-mixed.sh.
ab_rounds() {
  local rounds=$1 a=$2 b=$3 run=$4 lines round side bin order
  shift 4
  lines=$(mktemp)
  for round in $(seq 1 "$rounds"); do
    order="A B"
    [ $((round % 2)) = 0 ] && order="B A"
    for side in $order; do
      bin=$a
      [ "$side" = B ] && bin=$b
      "$run" "$bin" "$side" "$@" | tee -a "$lines"
    done
  done
  echo "== means over $rounds runs each (A: $a, B: $b)"
  awk '{ n[$1]++; for (i = 2; i < NF; i += 2) s[$1, $i] += $(i + 1); k[$1] = $0 }
    END {
      for (side in n) {
        printf "%s", side
        nf = split(k[side], f, " ")
        for (i = 2; i < nf; i += 2) printf " %s %.3f", f[i], s[side, f[i]] / n[side]
        printf "\n"
      }
    }' "$lines" | sort
  rm -f "$lines"
}
