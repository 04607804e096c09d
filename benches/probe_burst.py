#!/usr/bin/env python3
"""One node under a burst of PROBEs, on 127.0.0.1 only.

Starts `bully-node gcd` and one bully-node (alone, so it leads; probing, feigning and
the leader's check off), then, ROUNDS times, opens CLIENTS connections at once from one
non-blocking loop, sends each a PROBE as soon as it connects, and waits for every
GOT_IT (or for the node to close the connection unanswered). Per round: the time from
the first connect to the last reply, how many were answered, the node's peak thread
count during the burst (/proc, polled every millisecond from another thread; each
connection has a thread of its own while it is served), and how long after the last
reply its thread count was back to idle.
After the last round: the node's resident memory (VmRSS, VmHWM, anonymous). Every
process started here is stopped here.

  python3 benches/probe_burst.py --bin target/release/bully-node --clients 300
"""

import argparse
import errno
import pickle
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

from fanout import threads_of
from group_rss import free_port, status, stop_all, wait_for_port

PROBE = pickle.dumps(("PROBE", None))


def burst(port, clients, deadline):
    """Returns (seconds from the first connect to the last reply, answered, closed unanswered)."""
    sel = selectors.DefaultSelector()
    started = time.perf_counter()
    for _ in range(clients):
        s = socket.socket()
        s.setblocking(False)
        err = s.connect_ex(("127.0.0.1", port))
        if err not in (0, errno.EINPROGRESS):
            s.close()
            continue
        sel.register(s, selectors.EVENT_WRITE, bytearray())
    answered = unanswered = 0
    last = started
    while sel.get_map() and time.perf_counter() < deadline:
        for key, mask in sel.select(timeout=0.1):
            s, buf = key.fileobj, key.data
            if mask & selectors.EVENT_WRITE:
                try:
                    s.send(PROBE)
                except OSError:
                    unanswered += 1
                    sel.unregister(s)
                    s.close()
                    continue
                sel.modify(s, selectors.EVENT_READ, buf)
                continue
            try:
                chunk = s.recv(1024)
            except OSError:
                chunk = b""
            buf.extend(chunk)
            try:
                reply = pickle.loads(bytes(buf))
            except Exception:
                reply = None
            if reply == "GOT_IT":
                answered += 1
                last = time.perf_counter()
            elif chunk:
                continue  # not all of it yet
            else:
                unanswered += 1
            sel.unregister(s)
            s.close()
    for key in list(sel.get_map().values()):
        key.fileobj.close()
        unanswered += 1
    return last - started, answered, unanswered


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--clients", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))
    gcd_port, node_port = free_port(), free_port()
    procs = []
    try:
        procs.append(subprocess.Popen([args.bin, "gcd", "--listen", f"127.0.0.1:{gcd_port}", "-q"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        if not wait_for_port(gcd_port, time.time() + 10):
            sys.exit("the coordinator did not start")
        node = subprocess.Popen(
            [args.bin, "--gcd", f"127.0.0.1:{gcd_port}", "--su-id", "9999999", "--days", "365",
             "--listen", f"127.0.0.1:{node_port}", "--no-feign", "--no-probe", "--no-leader-check", "-q"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(node)
        if not wait_for_port(node_port, time.time() + 10):
            sys.exit("the node did not start")
        time.sleep(0.5)  # let it win its election and settle
        idle = status(node.pid) or {}
        idle_threads = threads_of(node.pid)
        times, peaks, missed = [], [], 0
        for r in range(args.rounds):
            peak = [threads_of(node.pid)]
            stop = threading.Event()

            def watch():
                while not stop.is_set():
                    peak[0] = max(peak[0], threads_of(node.pid))
                    time.sleep(0.001)

            watcher = threading.Thread(target=watch)
            watcher.start()
            took, answered, unanswered = burst(node_port, args.clients, time.perf_counter() + 30)
            # Threads still ending after their reply count too: wait for idle (10 s at most).
            ended = time.perf_counter()
            while threads_of(node.pid) > idle_threads and time.perf_counter() < ended + 10:
                time.sleep(0.001)
            settled = time.perf_counter() - ended
            stop.set()
            watcher.join()
            times.append(took)
            missed += unanswered
            peaks.append(peak[0])
            print(f"round {r + 1}: {args.clients} PROBEs, answered {answered}, unanswered {unanswered}, "
                  f"all replies in {1000 * took:.1f} ms, peak threads {peak[0]}, "
                  f"back to {threads_of(node.pid)} threads (idle {idle_threads}) {1000 * settled:.0f} ms later")
        mem = status(node.pid) or {}
        print(f"bin={args.bin} clients={args.clients} rounds={args.rounds} "
              f"unanswered={missed} median_ms={1000 * statistics.median(times):.1f} max_ms={1000 * max(times):.1f} "
              f"idle_threads={idle.get('Threads')} peak_threads={max(peaks)} "
              f"idle_rss_kib={idle.get('VmRSS')} rss_kib={mem.get('VmRSS')} hwm_kib={mem.get('VmHWM')} "
              f"anon_kib={mem.get('RssAnon')}")
    finally:
        stop_all(procs)


if __name__ == "__main__":
    main()
