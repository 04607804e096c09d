#!/usr/bin/env python3
"""A PROBE's answer time while a crowd of connections hangs on one node, on 127.0.0.1 only.

Starts `bully-node gcd` and one bully-node (alone, so it leads; probing, feigning and
the leader's check off), then opens CROWD connections to the node that hang: half send
nothing, half send one byte of a pickle and stop (a peer that stalls mid-message). While
they hang, it sends PROBES PROBEs one after another, each on a new connection, and times
each from connect to GOT_IT (a PROBE with no answer within 10 s counts as lost). Prints
the times (median, max), how many were lost, and the node's threads and open descriptors
while the crowd hangs. Then it closes the crowd, and every process it started is stopped.

  python3 benches/silent_crowd.py --bin target/release/bully-node --crowd 600
"""

import argparse
import os
import pickle
import signal
import socket
import statistics
import subprocess
import sys
import time

from fanout import threads_of
from group_rss import free_port, stop_all, wait_for_port

PROBE = pickle.dumps(("PROBE", None))


def probe_once(port, wait):
    """Seconds from connect to GOT_IT, or None when no GOT_IT came within `wait`."""
    started = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
            s.settimeout(max(0.01, wait - (time.perf_counter() - started)))
            s.sendall(PROBE)
            buf = b""
            while True:
                chunk = s.recv(1024)
                if not chunk:
                    return None
                buf += chunk
                try:
                    reply = pickle.loads(buf)
                except Exception:
                    continue
                return time.perf_counter() - started if reply == "GOT_IT" else None
    except OSError:
        return None


def fds_of(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--crowd", type=int, default=300, help="connections that hang")
    ap.add_argument("--probes", type=int, default=20)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))
    gcd_port, node_port = free_port(), free_port()
    procs, crowd = [], []
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
        # Up to 5 s for it to win its election and answer a PROBE.
        deadline = time.time() + 5
        while probe_once(node_port, 1.0) is None and time.time() < deadline:
            time.sleep(0.05)
        idle_threads = threads_of(node.pid)
        for i in range(args.crowd):
            s = socket.create_connection(("127.0.0.1", node_port), timeout=10)
            if i % 2:
                s.sendall(PROBE[:1])
            crowd.append(s)
        times, lost = [], 0
        threads, fds = threads_of(node.pid), fds_of(node.pid)
        for _ in range(args.probes):
            took = probe_once(node_port, 10.0)
            threads, fds = max(threads, threads_of(node.pid)), max(fds, fds_of(node.pid))
            if took is None:
                lost += 1
            else:
                times.append(took)
        median = f"{1000 * statistics.median(times):.1f}" if times else "-"
        worst = f"{1000 * max(times):.1f}" if times else "-"
        print(f"bin={args.bin} crowd={args.crowd} probes={args.probes} lost={lost} "
              f"median_ms={median} max_ms={worst} idle_threads={idle_threads} "
              f"threads_max={threads} fds_max={fds}")
    finally:
        for s in crowd:
            s.close()
        stop_all(procs)


if __name__ == "__main__":
    main()
