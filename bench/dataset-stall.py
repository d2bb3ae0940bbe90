#!/usr/bin/env python3
"""Does a big dataset stall the consensus loop? (issue 13, item 8)

Starts a 3-node `synod cluster`, loads N keys (pipelined MSET), then runs
`KEYS *` on the leader, while a probe client sends one SET every few ms to
the leader and records each latency. Reports, per phase (load, keys):
SET p50/p99/max latency, the elections seen (increase of
synod_leader_changes_total summed over the nodes, and any change of
leader), the snapshots taken, the KEYS time, and each node's resident memory
per key.

    bench/dataset-stall.py [--keys 3000000] [--synod target/release/synod]

Exit status 0 when no election happened and both p99 are under --p99-ms
(default 50), 1 otherwise. Needs only Python 3 (raw RESP over sockets).
"""

import argparse
import json
import re
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request


def command(*args):
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


class Conn:
    """A RESP connection that reads replies without building them."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.pos = 0

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("connection closed")
        self.buf = self.buf[self.pos:] + chunk
        self.pos = 0

    def _line(self):
        while True:
            end = self.buf.find(b"\r\n", self.pos)
            if end >= 0:
                line = self.buf[self.pos:end]
                self.pos = end + 2
                return line
            self._fill()

    def _skip(self, n):
        while len(self.buf) - self.pos < n:
            self._fill()
        data = self.buf[self.pos:self.pos + n]
        self.pos += n
        return data

    def reply(self):
        """One reply: str for simple/error/integer, bytes for bulk, an
        element count for arrays (the elements are read and dropped)."""
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b":"):
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self._skip(n + 2)
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            for _ in range(max(n, 0)):
                self.reply()
            return n
        raise RuntimeError("unexpected reply %r" % line[:80])

    def call(self, *args):
        self.send(command(*args))
        return self.reply()


def http_get(port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
        return r.read().decode()


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


class Cluster:
    def __init__(self, synod, base_port, data_dir, extra):
        self.base = base_port
        self.data_dir = data_dir
        self.proc = subprocess.Popen(
            [synod, "cluster", "--nodes", "3", "--base-port", str(base_port),
             "--data-dir", data_dir, "--"] + extra,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)

    def http(self, i):
        return self.base + 200 + i

    def resp(self, i):
        return self.base + i

    def status(self, i):
        return json.loads(http_get(self.http(i), "/status"))

    def leader(self):
        for i in (1, 2, 3):
            try:
                st = self.status(i)
            except OSError:
                continue
            lead = st.get("leader")
            if lead:
                return int(lead)
        return None

    def leader_changes(self):
        return sum(metric(http_get(self.http(i), "/metrics"), "synod_leader_changes_total")
                   for i in (1, 2, 3))

    def promised_rounds(self):
        return {i: self.status(i)["promised"]["round"] for i in (1, 2, 3)}

    def snapshots(self):
        return sum(metric(http_get(self.http(i), "/metrics"), "synod_snapshots_total")
                   for i in (1, 2, 3))

    def rss_bytes(self):
        """Resident memory of each node, found by its data directory."""
        out = {}
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    cmd = f.read().split(b"\0")
                with open("/proc/%s/status" % pid) as f:
                    status = f.read()
            except OSError:
                continue
            if b"server" not in cmd or b"--data-dir" not in cmd:
                continue
            d = cmd[cmd.index(b"--data-dir") + 1].decode()
            if not d.startswith(self.data_dir):
                continue
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    out[d] = int(line.split()[1]) * 1024
        return out

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGINT)
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)


class Probe(threading.Thread):
    """One SET at a time on its own connection, every `interval_s`."""

    def __init__(self, port, interval_s):
        super().__init__(daemon=True)
        self.conn = Conn(port)
        self.interval_s = interval_s
        self.phase = "idle"
        self.samples = {}
        self.errors = {}
        self.stopped = False

    def run(self):
        i = 0
        while not self.stopped:
            i += 1
            start = time.perf_counter()
            try:
                self.conn.call("SET", "probe:%d" % (i % 1000), "x")
                took = time.perf_counter() - start
                self.samples.setdefault(self.phase, []).append(took)
            except (RuntimeError, OSError) as err:
                self.errors.setdefault(self.phase, []).append(str(err))
            time.sleep(self.interval_s)


def summary(samples):
    if not samples:
        return {"count": 0}
    s = sorted(samples)

    def pct(p):
        return round(s[min(len(s) - 1, int(p * len(s)))] * 1000, 2)

    return {"count": len(s), "p50_ms": pct(0.50), "p99_ms": pct(0.99),
            "max_ms": round(s[-1] * 1000, 2)}


def load(port, total, value, batch, depth, conns):
    """MSET `batch` keys per command, `depth` commands per pipeline."""
    per_conn = (total + conns - 1) // conns

    def worker(c):
        conn = Conn(port)
        start, end = c * per_conn, min(total, (c + 1) * per_conn)
        k = start
        while k < end:
            cmds = []
            for _ in range(depth):
                if k >= end:
                    break
                hi = min(end, k + batch)
                args = ["MSET"]
                for j in range(k, hi):
                    args.append("key:%010d" % j)
                    args.append(value)
                cmds.append(command(*args))
                k = hi
            conn.send(b"".join(cmds))
            for _ in cmds:
                conn.reply()

    threads = [threading.Thread(target=worker, args=(c,)) for c in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keys", type=int, default=3_000_000)
    ap.add_argument("--value-bytes", type=int, default=16)
    ap.add_argument("--synod", default="target/release/synod")
    ap.add_argument("--base-port", type=int, default=7400)
    ap.add_argument("--p99-ms", type=float, default=50.0)
    ap.add_argument("--keep", action="store_true", help="keep the data directory")
    ap.add_argument("--load-conns", type=int, default=2,
                    help="loading connections (each pipelines --load-depth MSETs of 100 keys)")
    ap.add_argument("--load-depth", type=int, default=10)
    ap.add_argument("server_args", nargs="*",
                    help="extra `synod server` arguments (default: a checkpoint every 16 MiB "
                         "of log, so the load takes several snapshots of the growing dataset)")
    args = ap.parse_args()
    if not args.server_args:
        args.server_args = ["--snapshot-log-bytes", str(16 << 20)]

    data_dir = tempfile.mkdtemp(prefix="synod-stall-")
    cluster = Cluster(args.synod, args.base_port, data_dir, args.server_args)
    result = {"keys": args.keys}
    ok = False
    try:
        deadline = time.time() + 60
        leader = None
        while time.time() < deadline and leader is None:
            time.sleep(0.5)
            try:
                leader = cluster.leader()
            except OSError:
                pass
        if leader is None:
            raise SystemExit("no leader within 60 s")
        Conn(cluster.resp(leader)).call("SET", "warmup", "1")
        time.sleep(1)
        rss_before = cluster.rss_bytes()
        changes_before = cluster.leader_changes()
        rounds_before = cluster.promised_rounds()
        result["leader_before"] = leader

        probe = Probe(cluster.resp(leader), 0.005)
        probe.start()
        probe.phase = "load"
        started = time.time()
        load(cluster.resp(leader), args.keys, "v" * args.value_bytes, 100, args.load_depth,
             args.load_conns)
        result["load_s"] = round(time.time() - started, 1)
        # Let the checkpoints that the load triggered finish under the probe.
        probe.phase = "settle"
        time.sleep(3)
        rss_after = cluster.rss_bytes()
        result["rss_bytes_per_key"] = {
            os.path.basename(d): round((rss_after[d] - rss_before.get(d, 0)) / args.keys)
            for d in sorted(rss_after)}
        dbsize = int(Conn(cluster.resp(leader)).call("DBSIZE"))
        result["dbsize"] = dbsize

        probe.phase = "keys"
        started = time.time()
        n = Conn(cluster.resp(leader)).call("KEYS", "*")
        result["keys_s"] = round(time.time() - started, 2)
        result["keys_returned"] = n
        probe.phase = "after"
        time.sleep(1)
        probe.stopped = True
        probe.join(timeout=10)

        # A new ballot round anywhere means someone ran for leader.
        rounds_after = cluster.promised_rounds()
        result["ballot_rounds"] = {"before": rounds_before, "after": rounds_after}
        result["elections"] = max(cluster.leader_changes() - changes_before,
                                  sum(1 for i in rounds_after
                                      if rounds_after[i] != rounds_before[i]))
        result["leader_after"] = cluster.leader()
        result["snapshots"] = cluster.snapshots()
        for phase in ("load", "settle", "keys", "after"):
            result["set_" + phase] = summary(probe.samples.get(phase, []))
            if probe.errors.get(phase):
                result["set_" + phase]["errors"] = len(probe.errors[phase])
        with open(os.path.join(data_dir, "node-1.log"), errors="replace") as f:
            lines = [line.strip() for line in f
                     if "snapshot taken" in line or "checkpoint written" in line
                     or "slow" in line or "leader changed" in line]
        result["node1_log_lines"] = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in lines[-8:]]
        worst = max(result["set_load"].get("p99_ms", 0), result["set_settle"].get("p99_ms", 0),
                    result["set_keys"].get("p99_ms", 0))
        ok = (result["elections"] == 0 and result["leader_after"] == leader
              and worst < args.p99_ms and n >= args.keys)
        result["pass"] = ok
    finally:
        cluster.stop()
        if args.keep:
            result["data_dir"] = data_dir
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
