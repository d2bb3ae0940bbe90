#!/usr/bin/env python3
"""The RESP port under abuse (issue 13): three scripted attacks on a real
three-node cluster, each reporting the node's memory and whether it kept
serving. Standard library only.

    scripts/resp-abuse.py target/release/synod [EXTRA SERVER ARGS...]

Node 1 runs under `prlimit --nofile=1024:1024` (the common default) with
--password. The attacks, all against node 1:

1. preauth: 10 unauthenticated connections each slowly send a 60 MB bulk
   argument (1 MiB every 20 ms). Before issue 13 the node buffered all of
   it (620 MB RSS); now each is refused on its `$` header.
2. global: 40 authenticated connections each send most of a 48 MB MSET
   (three 16 MB values) and hold it. Before, 2.4 GB; now the global
   query-buffer cap (--client-query-buffer-total-limit, 512mb) closes the
   growing ones.
3. fds: 1,100 idle sockets while 150 MB of writes go through node 2 (WAL
   segments roll, snapshots are written on node 1). Before, node 1 ran out
   of descriptors opening a WAL segment and stopped; now --max-clients is
   lowered to what 1,024 descriptors allow and the excess is refused.

Exit status 0 when every check holds. On main before issue 13 (debug
build) all three failed: 578 MB and 1,767 MB peak RSS, and node 1 stopped on
"Too many open files" opening WAL segment 2.
"""

import json
import re
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

PASSWORD = "abuse-test-password"
MB = 1 << 20


def resp(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def read_line(sock, timeout=20):
    sock.settimeout(timeout)
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            return data.decode(errors="replace") or None
        data += chunk
    return data[:-2].decode(errors="replace")


def read_reply(sock, timeout=20):
    line = read_line(sock, timeout)
    if line and line.startswith("$") and line != "$-1":
        n = int(line[1:])
        buf = b""
        while len(buf) < n + 2:
            buf += sock.recv(n + 2 - len(buf))
        return buf[:-2].decode(errors="replace")
    return line


def client(port, auth=True):
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    if auth:
        s.sendall(resp("AUTH", PASSWORD))
        assert read_reply(s) == "+OK", "AUTH failed"
    return s


def call(port, *args):
    s = client(port)
    s.sendall(resp(*args))
    reply = read_reply(s, timeout=60)
    s.close()
    return reply


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def info_stats(port):
    s = client(port)
    s.sendall(resp("INFO", "stats"))
    text = read_reply(s)
    s.close()
    return dict(
        line.split(":", 1) for line in text.split("\r\n") if ":" in line
    )


def status(http_port):
    """The node's /status, or a stand-in saying why there is none."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/status", timeout=5) as r:
            return json.loads(r.read())
    except OSError as err:
        return {"applied_instance": -1, "snapshot_instance": -1, "stopped": f"no /status: {err}"}


class Sampler:
    """Samples a process's RSS every 50 ms; keeps the maximum."""

    def __init__(self, pid):
        self.pid, self.max, self.stop = pid, 0.0, False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop:
            try:
                self.max = max(self.max, rss_mb(self.pid))
            except OSError:
                return
            time.sleep(0.05)

    def done(self):
        self.stop = True
        self.thread.join()
        return self.max


def start_cluster(exe, extra, tmp):
    base = 20000 + os.getpid() % 20000
    peers = ",".join(f"{i}=127.0.0.1:{base + 100 + i}" for i in (1, 2, 3))
    procs = []
    for i in (1, 2, 3):
        cmd = [exe, "server", "--id", str(i), "--peers", peers,
               "--resp", f"127.0.0.1:{base + i}", "--http", f"127.0.0.1:{base + 200 + i}",
               "--data-dir", os.path.join(tmp, f"n{i}"), "--init", "--password", PASSWORD,
               # Peer links are not what this script attacks.
               "--insecure-peer-links", *extra]
        if i == 1:
            cmd = ["prlimit", "--nofile=1024:1024", "--", *cmd]
        log = open(os.path.join(tmp, f"n{i}.log"), "w")
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
    ports = [base + i for i in (1, 2, 3)]
    https = [base + 200 + i for i in (1, 2, 3)]
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if all(call(p, "SET", "ready", "1") == "+OK" for p in ports):
                break
        except (OSError, AssertionError):
            pass
        time.sleep(0.2)
    else:
        raise SystemExit("cluster did not start; logs in " + tmp)
    return procs, ports, https


def serves(port):
    return call(port, "SET", "alive", "yes") == "+OK" and call(port, "GET", "alive") == "yes"


def preauth(pid, port):
    before = rss_mb(pid)
    sampler = Sampler(pid)
    results = []

    def attack():
        s = socket.create_connection(("127.0.0.1", port))
        sent = 0
        try:
            s.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$60000000\r\n")
            chunk = b"x" * MB
            while sent < 60_000_000:
                s.sendall(chunk)
                sent += len(chunk)
                time.sleep(0.02)
        except OSError:
            pass
        try:
            reply = read_line(s, timeout=5)
        except OSError:
            reply = None
        results.append((sent, reply))
        s.close()

    threads = [threading.Thread(target=attack) for _ in range(10)]
    for t in threads:
        t.start()
    ok = serves(port)
    for t in threads:
        t.join()
    peak = sampler.done()
    print(f"preauth: RSS {before:.0f} MB before, {peak:.0f} MB peak during 10 x 60 MB "
          f"unauthenticated bulks (main before issue 13, same script: 578 MB)")
    for sent, reply in results[:3]:
        print(f"  a client sent {sent / MB:.0f} MiB; the server answered {reply!r}")
    print(f"  another client served meanwhile: {ok}")
    return ok and peak < before + 100 and all(s < 60_000_000 for s, _ in results)


def global_cap(pid, port):
    before = rss_mb(pid)
    sampler = Sampler(pid)
    socks, closed = [], 0
    value = b"y" * 16_000_000
    request = resp("MSET", "a", value, "b", value, "c", value)
    for _ in range(40):
        socks.append(client(port))
    for step in range(44):
        chunk = request[step * MB:(step + 1) * MB]
        for i, s in enumerate(socks):
            if s is None:
                continue
            try:
                s.sendall(chunk)
            except OSError:
                socks[i] = None
                closed += 1
        time.sleep(0.01)
    ok = serves(port)
    stats = info_stats(port)
    peak = sampler.done()
    for s in socks:
        if s is not None:
            s.close()
    print(f"global: RSS {before:.0f} MB before, {peak:.0f} MB peak with 40 clients sending "
          f"44 MiB of a 48 MB MSET each (main before issue 13, same script: 1,767 MB)")
    print(f"  client_query_buffer_total_limit_disconnections:"
          f"{stats.get('client_query_buffer_total_limit_disconnections')}, "
          f"sends that failed: {closed}; a small client served meanwhile: {ok}")
    return ok and peak < before + 1200


def fds(procs, ports, https, tmp):
    pid = procs[0].pid
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    socks, refused = [], 0
    for _ in range(1100):
        try:
            socks.append(socket.create_connection(("127.0.0.1", ports[0]), timeout=5))
        except OSError:
            refused += 1
    time.sleep(1)
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(64).startswith(b"-ERR max number of clients reached"):
                refused += 1
        except BlockingIOError:
            pass
        except OSError:
            refused += 1
    applied_before = status(https[0])["applied_instance"]
    value = b"z" * MB
    s = client(ports[1])
    for i in range(150):
        s.sendall(resp("SET", f"big{i % 20}", value))
        assert read_reply(s, timeout=60) == "+OK"
    s.close()
    time.sleep(2)
    alive = procs[0].poll() is None
    st1, st2 = status(https[0]), status(https[1])
    for s in socks:
        s.close()
    time.sleep(0.5)
    try:
        ok_after = alive and serves(ports[0])
    except (OSError, AssertionError):
        ok_after = False
    log = open(os.path.join(tmp, "n1.log")).read()
    emfile = "Too many open files" in log
    log = re.sub(r"\x1b\[[0-9;]*m", "", log)
    chosen = [line for line in log.splitlines() if "open file limit" in line]
    print(f"fds: 1,100 idle sockets to node 1 at ulimit -n 1024: {refused} refused with "
          f"'max number of clients reached'")
    print(f"  {chosen[0].split('client_limits:')[-1].strip() if chosen else 'no fd log line'}")
    print(f"  node 1 alive: {alive}; applied {applied_before} -> {st1['applied_instance']} "
          f"(node 2: {st2['applied_instance']}); snapshot_instance {st1['snapshot_instance']}; "
          f"stopped: {st1['stopped']}; 'Too many open files' in its log: {emfile}; "
          f"serves after the sockets close: {ok_after}")
    return (alive and ok_after and not emfile and refused >= 1100 - 900
            and st1["applied_instance"] >= st2["applied_instance"] - 5)


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    exe, extra = sys.argv[1], sys.argv[2:]
    tmp = tempfile.mkdtemp(prefix="resp-abuse-")
    procs, ports, https = start_cluster(exe, extra, tmp)
    try:
        results = {
            "preauth": preauth(procs[0].pid, ports[0]),
            "global": global_cap(procs[0].pid, ports[0]),
            "fds": fds(procs, ports, https, tmp),
        }
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
    print("results:", results, "(logs in " + tmp + ")")
    sys.exit(0 if all(results.values()) else 1)


if __name__ == "__main__":
    main()
