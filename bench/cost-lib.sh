# Sourced by bench/side-by-side.sh and bench/cost-per-op.sh: what a set of
# server processes spent, read from /proc.

# cpu_ticks PID... -> utime+stime summed (every thread, live or exited), in
# clock ticks (getconf CLK_TCK per second).
cpu_ticks() {
  local sum=0 pid
  for pid in "$@"; do
    sum=$((sum + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$sum"
}

# switches PID... -> voluntary + involuntary context switches summed over the
# threads alive now (an exited thread's count is gone; tokio's blocking
# threads live 10 s idle and etcd's and Redis' threads live as long as the
# process, so a measuring window sees them).
switches() {
  local pid
  for pid in "$@"; do cat /proc/"$pid"/task/*/status 2>/dev/null; done |
    awk '/ctxt_switches/ {s += $2} END {print s + 0}'
}

# rss_kib PID -> resident set size in KiB.
rss_kib() {
  awk '/^VmRSS:/ {print $2}' "/proc/$1/status"
}
