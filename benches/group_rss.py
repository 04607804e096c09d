#!/usr/bin/env python3
"""Memory and threads per node in a large group, on 127.0.0.1 only.

Starts `bully-node gcd --serial` (one request at a time, as gcd2.py) and N bully-node
processes joining INTERVAL apart, each the new highest (every join is a full I_AM_LEADER
fan-out), probing on, feigning off. SETTLE seconds after the last join it reads each
node's /proc/PID/status (VmRSS, VmHWM: the peak, Threads) and smaps_rollup
(anonymous vs file-backed resident memory, and PSS: shared pages split among
the processes that map them), prints the mean, median and max per node
and how many nodes exited, then stops every process it started.

  python3 benches/group_rss.py --bin target/release/bully-node --members 200
"""

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, deadline):
    """True once something accepts on 127.0.0.1:port, False if `deadline` (time.time()) passes first."""
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.02)
    return False


def stop_all(procs):
    """SIGTERM every process (newest first), then wait up to 10 s in all before killing what is left."""
    for p in reversed(procs):
        try:
            p.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
    until = time.time() + 10
    for p in reversed(procs):
        try:
            p.wait(timeout=max(0.1, until - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def status(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM", "Threads", "RssAnon", "RssFile"):
                    out[key] = int(rest.split()[0])
    except OSError:
        return None
    # Proportional set size: shared pages (the binary, libc) split among the processes
    # mapping them, so the sum over nodes is what the group really costs.
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("Pss", "Pss_Anon", "Pss_File"):
                    out[key] = int(rest.split()[0])
    except OSError:
        pass
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--members", type=int, default=200)
    ap.add_argument("--interval", type=float, default=0.05)
    ap.add_argument("--settle", type=float, default=10.0)
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE for the nodes")
    ap.add_argument("--max-runnable", type=int, default=100,
                    help="stop starting nodes when more threads than this are runnable at 5 checks in a row "
                         "(the machine is drowning)")
    args = ap.parse_args()
    # A `timeout` or Ctrl-C still stops every process started here (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))
    gcd_port = free_port()
    procs = []
    env = None
    if args.env:
        env = dict(os.environ)
        for kv in args.env:
            k, _, v = kv.partition("=")
            env[k] = v
    try:
        gcd = subprocess.Popen(
            [args.bin, "gcd", "--serial", "--listen", f"127.0.0.1:{gcd_port}", "-q"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(gcd)
        if not wait_for_port(gcd_port, time.time() + 10):
            sys.exit("the coordinator did not start")
        nodes = []
        peak_threads = {}
        started_at = time.time()
        crowded = 0
        for i in range(args.members):
            runnable = int(open("/proc/loadavg").read().split()[3].split("/")[0])
            crowded = crowded + 1 if runnable > args.max_runnable else 0
            if crowded >= 5:
                print(f"stopped starting nodes at {i} of {args.members}: {runnable} threads runnable")
                break
            p = subprocess.Popen(
                [args.bin, "--gcd", f"127.0.0.1:{gcd_port}", "--su-id", str(1_000_000 + i), "--days", "100",
                 "--listen", "127.0.0.1:0", "--no-feign", "-q"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
            )
            procs.append(p)
            nodes.append(p)
            until = time.time() + args.interval
            while time.time() < until:
                for n in nodes[-20:]:
                    s = status(n.pid)
                    if s:
                        peak_threads[n.pid] = max(peak_threads.get(n.pid, 0), s["Threads"])
                time.sleep(0.005)
        until = time.time() + args.settle
        while time.time() < until:
            for n in nodes:
                s = status(n.pid)
                if s:
                    peak_threads[n.pid] = max(peak_threads.get(n.pid, 0), s["Threads"])
            time.sleep(0.05)
        rows = [(n, status(n.pid)) for n in nodes if n.poll() is None]
        rows = [(n, s) for n, s in rows if s]
        exited = sum(1 for n in nodes if n.poll() is not None)
        gcd_status = status(gcd.pid)

        def figs(key):
            vals = [s[key] for _, s in rows]
            return f"mean {statistics.mean(vals) / 1024:.2f} median {statistics.median(vals) / 1024:.2f} max {max(vals) / 1024:.2f} MiB"

        print(f"members={len(nodes)} of {args.members} running={len(rows)} exited={exited} "
              f"joins took {time.time() - started_at - args.settle:.1f} s; load average now "
              f"{open('/proc/loadavg').read().split()[0]}")
        for key in ("VmRSS", "RssAnon", "RssFile", "VmHWM", "Pss", "Pss_Anon", "Pss_File"):
            print(f"  {key:8} {figs(key)}")
        threads = [s["Threads"] for _, s in rows]
        peaks = list(peak_threads.values())
        print(f"  Threads  now mean {statistics.mean(threads):.1f} max {max(threads)}; "
              f"peak seen (polled) mean {statistics.mean(peaks):.1f} max {max(peaks)}")
        names = {}
        for n, _ in rows:
            try:
                for t in os.listdir(f"/proc/{n.pid}/task"):
                    with open(f"/proc/{n.pid}/task/{t}/comm") as f:
                        name = f.read().strip().split("-")[0]
                    names[name] = names.get(name, 0) + 1
            except OSError:
                pass
        print("  threads by name (all nodes): " + ", ".join(f"{k} {v}" for k, v in sorted(names.items(), key=lambda kv: -kv[1])))
        print(f"  total RSS {sum(s['VmRSS'] for _, s in rows) / 1024:.0f} MiB, total PSS "
              f"{sum(s['Pss'] for _, s in rows) / 1024:.0f} MiB; gcd {gcd_status['VmRSS'] / 1024:.1f} MiB")
    finally:
        stop_all(procs)

if __name__ == "__main__":
    main()
