#!/usr/bin/env python3
"""Clients that think between commands: closed-loop SETs with a pause.

    python3 bench/think-time.py PORT CLIENTS THINK_MS SECONDS

CLIENTS threads, each on its own connection to 127.0.0.1:PORT, send
`SET key:N <100 bytes>` (N random below 100,000), wait for the reply, then
sleep THINK_MS x uniform(0.5, 1.5) ms (0: no pause), for SECONDS. Prints the
requests answered, their rate and the p50/p90/p99 latency; exits with an
error if the server closes a connection or answers anything but +OK.
Standard library only. Used for the cohort-hold trade-off in the README (`--batch-hold-ms`):
clients that do not come back together.
"""
import random
import socket
import sys
import threading
import time


def main():
    port, clients = int(sys.argv[1]), int(sys.argv[2])
    think_ms, seconds = float(sys.argv[3]), float(sys.argv[4])
    latencies, failures = [], []
    lock = threading.Lock()

    def client():
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        value = b"v" * 100
        mine = []
        end = time.time() + seconds
        while time.time() < end:
            key = b"key:%d" % random.randrange(100000)
            request = b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$100\r\n%s\r\n" % (len(key), key, value)
            start = time.perf_counter()
            sock.sendall(request)
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = sock.recv(100)
                if not chunk:
                    with lock:
                        failures.append("connection closed by the server")
                    return
                reply += chunk
            if reply != b"+OK\r\n":
                with lock:
                    failures.append(reply.decode(errors="replace").strip())
                return
            mine.append(time.perf_counter() - start)
            if think_ms > 0:
                time.sleep(think_ms * random.uniform(0.5, 1.5) / 1000)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        sys.exit(f"think-time: {len(failures)} clients failed, first: {failures[0]}")
    latencies.sort()
    n = len(latencies)
    if n == 0:
        sys.exit("think-time: no request answered")
    p = lambda q: latencies[min(n - 1, int(n * q))] * 1e3
    print(f"n {n} ops/s {n / seconds:.0f} p50 {p(0.5):.2f} ms p90 {p(0.9):.2f} p99 {p(0.99):.2f}")


if __name__ == "__main__":
    main()
