#!/usr/bin/env python3
"""What deleting a large file does to a log's syncs on the same disk.

A thread writes 4 KiB and fdatasyncs it in a loop, over a 64 MiB file filled
beforehand (as the log's segments are); meanwhile a SIZE_MIB file, written
and synced before, is deleted either by one unlink, or as Synod deletes a
superseded file (synod-storage's trash.rs): cut from its end STEP_MIB at a
time, each cut synced, then unlinked. Prints how long the deletion took and
the loop's sync latency (p50, p99, max). On a file system mounted with online
discard (ext4 -o discard) the unlink's trim lands in one journal commit and
the worst sync shows it.

    bench/unlink-stall.py DIR [SIZE_MIB [STEP_MIB [ROUNDS]]]
    e.g. bench/unlink-stall.py /var/lib/synod 128 4 2

DIR must be on the disk to test; two files are made there and removed.
"""
import os
import sys
import threading
import time


def one(dir_, mode, size, step):
    big = os.path.join(dir_, "unlink-stall.big")
    log_path = os.path.join(dir_, "unlink-stall.log")
    with open(big, "wb") as f:
        block = os.urandom(1 << 20)
        for _ in range(size >> 20):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
    log = os.open(log_path, os.O_RDWR | os.O_CREAT)
    for i in range(64):
        os.pwrite(log, b"\0" * (1 << 20), i << 20)
    os.fsync(log)
    lat, stop = [], []

    def syncer():
        off = 0
        while not stop:
            t = time.perf_counter()
            os.pwrite(log, b"x" * 4096, off)
            os.fdatasync(log)
            lat.append(time.perf_counter() - t)
            off = (off + 4096) % (60 << 20)

    th = threading.Thread(target=syncer)
    th.start()
    time.sleep(0.5)
    t0 = time.perf_counter()
    if mode == "unlink":
        os.unlink(big)
    else:
        fd = os.open(big, os.O_RDWR)
        n = size
        while n > 0:
            n = max(0, n - step)
            os.ftruncate(fd, n)
            os.fdatasync(fd)
        os.close(fd)
        os.unlink(big)
    took = time.perf_counter() - t0
    time.sleep(1.0)
    stop.append(True)
    th.join()
    os.close(log)
    os.unlink(log_path)
    lat.sort()
    ms = lambda x: x * 1e3
    print(f"{mode:6} deletion {ms(took):6.1f} ms; {len(lat)} syncs beside it: "
          f"p50 {ms(lat[len(lat) // 2]):.2f} p99 {ms(lat[int(len(lat) * 0.99)]):.2f} "
          f"max {ms(lat[-1]):.2f} ms")


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: bench/unlink-stall.py DIR [SIZE_MIB [STEP_MIB [ROUNDS]]]")
    dir_ = sys.argv[1]
    size = int(sys.argv[2] if len(sys.argv) > 2 else 128) << 20
    step = int(sys.argv[3] if len(sys.argv) > 3 else 4) << 20
    rounds = int(sys.argv[4] if len(sys.argv) > 4 else 2)
    for _ in range(rounds):
        one(dir_, "unlink", size, step)
        one(dir_, "cut", size, step)


if __name__ == "__main__":
    main()
