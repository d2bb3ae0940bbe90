#!/usr/bin/env python3
"""Clients that think between commands: closed-loop SETs with a pause.

    python3 bench/think-time.py PORT CLIENTS THINK_MS SECONDS

CLIENTS threads, each on its own connection to 127.0.0.1:PORT, send
`SET key:N <100 bytes>` (N random below 100,000), wait for the reply, then
sleep THINK_MS x uniform(0.5, 1.5) ms (0: no pause), for SECONDS. Prints the
requests answered, their rate and the p50/p90/p99 latency. Standard library
only. Used for the cohort-hold trade-off in the README (`--batch-hold-ms`):
clients that do not come back together.
"""
import socket, threading, time, sys, random
port=int(sys.argv[1]); nthreads=int(sys.argv[2]); think_ms=float(sys.argv[3]); dur=float(sys.argv[4])
lat=[]; lock=threading.Lock()
def worker(i):
    s=socket.create_connection(("127.0.0.1",port)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY,1)
    val=b"v"*100; mine=[]
    end=time.time()+dur
    while time.time()<end:
        k=b"key:%d" % random.randrange(100000)
        cmd=b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$100\r\n%s\r\n" % (len(k),k,val)
        t=time.perf_counter(); s.sendall(cmd)
        buf=b""
        while not buf.endswith(b"\r\n"): buf+=s.recv(100)
        mine.append(time.perf_counter()-t)
        if think_ms>0: time.sleep(think_ms*random.uniform(0.5,1.5)/1000)
    with lock: lat.extend(mine)
ts=[threading.Thread(target=worker,args=(i,)) for i in range(nthreads)]
[t.start() for t in ts]; [t.join() for t in ts]
lat.sort(); n=len(lat)
print("n %d ops/s %.0f p50 %.2f ms p90 %.2f p99 %.2f" % (n, n/dur, lat[n//2]*1e3, lat[int(n*.9)]*1e3, lat[int(n*.99)]*1e3))
