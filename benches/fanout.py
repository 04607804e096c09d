#!/usr/bin/env python3
"""Times one node's fan-out to a large group, on 127.0.0.1 only.

A `bully-node gcd --serial` coordinator; N scripted members (listening sockets in this
process, registered with the coordinator) of which S are silent (they listen but never
accept: what a SIGSTOPped process looks like from outside); then one bully-node under
test that joins them:

  leader  the node has the highest id: it wins at once and sends I_AM_LEADER to all N.
  elect   the node has the lowest id: it sends ELECT to all N (answering members reply
          GOT_IT; silent ones hold the connection until the node's socket timeout).

Prints, per run: messages delivered, members reached, time from the first delivery to
the last one to an answering member, and the node's peak thread count (/proc, polled
every 2 ms). Every process started here is stopped here.

  python3 benches/fanout.py --bin target/release/bully-node --members 200 --silent 10 --mode leader
"""

import argparse
import os
import pickle
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time

# /proc/PID/status and smaps_rollup as group_rss reads them, and its process helpers.
from group_rss import free_port, status, stop_all, wait_for_port


def name_of(msg):
    if isinstance(msg, tuple) and msg and isinstance(msg[0], str):
        return msg[0]
    if isinstance(msg, tuple) and msg and isinstance(msg[0], tuple) and msg[0] and isinstance(msg[0][0], str):
        return msg[0][0] + "(wrapped)"
    return repr(msg)[:20]


def register(gcd_port, pid, port):
    with socket.create_connection(("127.0.0.1", gcd_port), timeout=10) as s:
        s.sendall(pickle.dumps(("HOWDY", (pid, ("127.0.0.1", port)))))
        s.settimeout(10)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            try:
                return pickle.loads(data)
            except Exception:
                continue
        return pickle.loads(data)


def threads_of(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


def run(args):
    # A `timeout` or Ctrl-C still stops every process started here (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))
    gcd_port = free_port()
    procs = []
    try:
        gcd = subprocess.Popen(
            [args.bin, "gcd", "--serial", "--listen", f"127.0.0.1:{gcd_port}", "-q"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(gcd)
        if not wait_for_port(gcd_port, time.time() + 10):
            sys.exit("the coordinator did not start")
        sel = selectors.DefaultSelector()
        listeners = []
        arrivals = []  # (time, member index, message name)
        lock = threading.Lock()
        for i in range(args.members):
            ls = socket.socket()
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            ls.bind(("127.0.0.1", 0))
            ls.listen(128)
            port = ls.getsockname()[1]
            silent = i < args.silent
            if not silent:
                ls.setblocking(False)
                sel.register(ls, selectors.EVENT_READ, ("listen", i))
            listeners.append(ls)
            # Ids in the middle: the node goes above (leader) or below (elect) all of them.
            register(gcd_port, (100, 2_000_000 + i), port)
        stop = threading.Event()

        def serve():
            while not stop.is_set():
                for key, _ in sel.select(timeout=0.05):
                    kind, i = key.data[0], key.data[1]
                    if kind == "listen":
                        try:
                            conn, _ = key.fileobj.accept()
                        except BlockingIOError:
                            continue
                        conn.setblocking(False)
                        sel.register(conn, selectors.EVENT_READ, ("conn", i, bytearray()))
                        continue
                    conn, buf = key.fileobj, key.data[2]
                    try:
                        chunk = conn.recv(65536)
                    except OSError:
                        chunk = b""
                    if chunk:
                        buf.extend(chunk)
                        try:
                            msg = pickle.loads(bytes(buf))
                        except Exception:
                            continue
                        name = name_of(msg)
                        with lock:
                            arrivals.append((time.time(), i, name))
                        if name in ("ELECT", "PROBE"):
                            try:
                                conn.sendall(pickle.dumps("GOT_IT"))
                            except OSError:
                                pass
                    sel.unregister(conn)
                    conn.close()

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        days = 365 if args.mode == "leader" else 1
        started = time.time()
        node = subprocess.Popen(
            [args.bin, "--gcd", f"127.0.0.1:{gcd_port}", "--su-id", "9999999" if args.mode == "leader" else "1000001",
             "--days", str(days), "--listen", "127.0.0.1:0", "--no-feign", "--no-probe", "--no-leader-check", "-q"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(node)
        peak = 0
        want = "I_AM_LEADER" if args.mode == "leader" else "ELECT"
        answering = args.members - args.silent
        deadline = started + args.wait
        while time.time() < deadline:
            peak = max(peak, threads_of(node.pid))
            with lock:
                reached = {i for _, i, n in arrivals if n == want}
            if len(reached) >= answering:
                break
            time.sleep(0.002)
        # Let stragglers (a second form) arrive, still watching the thread count.
        settle = time.time() + args.settle
        while time.time() < settle:
            peak = max(peak, threads_of(node.pid))
            time.sleep(0.002)
        mem = status(node.pid) or {}
        stop.set()
        server.join()
        with lock:
            got = [a for a in arrivals if a[2].startswith(want)]
        reached = {i for _, i, _ in got}
        first = min((t for t, _, _ in got), default=started)
        last_first_form = max((min(t for t, j, _ in got if j == i) for i in reached), default=first)
        print(
            f"mode={args.mode} members={args.members} silent={args.silent} delivered={len(got)} "
            f"reached={len(reached)}/{answering} start_to_first_ms={1000 * (first - started):.0f} "
            f"spread_ms={1000 * (last_first_form - first):.0f} peak_threads={peak} "
            f"rss_kib={mem.get('VmRSS')} hwm_kib={mem.get('VmHWM')} anon_kib={mem.get('RssAnon')}"
        )
    finally:
        stop_all(procs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--members", type=int, default=50)
    ap.add_argument("--silent", type=int, default=0)
    ap.add_argument("--mode", choices=["leader", "elect"], default="leader")
    ap.add_argument("--wait", type=float, default=20.0)
    ap.add_argument("--settle", type=float, default=1.0)
    run(ap.parse_args())


if __name__ == "__main__":
    main()
