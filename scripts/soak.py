#!/usr/bin/env python3
"""Soak test (minutes; not run by CI): a group of bully-node processes with feigned
failures on, under a flood of junk connections, with each node's threads and open file
descriptors printed every few seconds from /proc. At the end the nodes are stopped and
the figures summed up.

usage: python3 scripts/soak.py [--minutes 2] [--nodes 5] [--rate 200] [--binary PATH]
Needs a built bully-node (cargo build --release). All traffic goes to 127.0.0.1.
"""
import argparse
import os
import pickle
import random
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time


def start(cmd):
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_line(proc, pattern, timeout=20):
    """The first output line matching pattern (bounded by a deadline)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        match = re.search(pattern, line)
        if match:
            return match
    raise SystemExit(f'no line matching {pattern!r} from {proc.args}')


def drain(proc):
    """Keeps reading a process's output so its pipe never fills."""
    for _ in proc.stdout:
        pass


def threads_and_fds(pid):
    try:
        with open(f'/proc/{pid}/status') as f:
            threads = int(re.search(r'Threads:\s+(\d+)', f.read()).group(1))
        return threads, len(os.listdir(f'/proc/{pid}/fd'))
    except (OSError, AttributeError):
        return 0, 0


JUNK = [
    b'GET / HTTP/1.1\r\n\r\n',
    b'\x80\x04\x95\xff\xff\xff\xff\x00\x00\x00\x00',
    b'\x80\x04\x8d' + (70_000).to_bytes(8, 'little') + b'a' * 70_000,
    pickle.dumps(('ELECT', 5)),
    pickle.dumps(('I_AM_LEADER', (1, 1000001))),
    pickle.dumps(('PROBE', 'with data')),
    pickle.dumps(('HELLO', None)),
    pickle.dumps(('ELECT', {(999, 12): ('', 0), 'x': None})),
    b'\x80',  # one byte, then silence until we close
]


def flood(ports, rate, stop, sent):
    interval = 1.0 / rate
    while not stop.is_set():
        try:
            with socket.create_connection(('127.0.0.1', random.choice(ports)), timeout=0.5) as s:
                s.sendall(random.choice(JUNK))
                s.settimeout(0.05)
                try:
                    s.recv(64)
                except OSError:
                    pass
            sent[0] += 1
        except OSError:
            pass
        time.sleep(interval)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--minutes', type=float, default=2)
    parser.add_argument('--nodes', type=int, default=5)
    parser.add_argument('--rate', type=int, default=200, help='junk connections a second, in all')
    parser.add_argument('--binary', default='target/release/bully-node')
    args = parser.parse_args()
    if not os.path.exists(args.binary):
        raise SystemExit(f'{args.binary} not found: cargo build --release')

    gcd = start([args.binary, 'gcd', '--listen', '127.0.0.1:0'])
    gcd_port = int(wait_line(gcd, r'listening on 127\.0\.0\.1:(\d+)').group(1))
    threading.Thread(target=drain, args=(gcd,), daemon=True).start()
    tmp = tempfile.mkdtemp(prefix='bully-soak-')
    nodes, ports = [], []
    for i in range(args.nodes):
        node = start([args.binary, '--gcd', f'127.0.0.1:{gcd_port}', '--days', str(10 + 50 * i),
                      '--su-id', str(8_000_001 + i), '--listen', '127.0.0.1:0',
                      '--events', os.path.join(tmp, f'{i}.jsonl'), '--seed', str(i)])
        ports.append(int(wait_line(node, r'listening at 127\.0\.0\.1:(\d+)').group(1)))
        threading.Thread(target=drain, args=(node,), daemon=True).start()
        nodes.append(node)

    stop, sent = threading.Event(), [0]
    flooders = [threading.Thread(target=flood, args=(ports, max(1, args.rate // 8), stop, sent), daemon=True)
                for _ in range(8)]
    for f in flooders:
        f.start()
    print(f'{args.nodes} nodes (feigning), flood of ~{args.rate} junk connections/s, {args.minutes} min')
    print('   time  ' + '  '.join(f'node{i}: thr  fd' for i in range(args.nodes)))
    started = time.monotonic()
    peaks = [(0, 0)] * args.nodes
    while time.monotonic() - started < args.minutes * 60:
        time.sleep(10)
        counts = [threads_and_fds(n.pid) for n in nodes]
        peaks = [(max(a, c[0]), max(b, c[1])) for (a, b), c in zip(peaks, counts)]
        row = '  '.join(f'{t:>10} {f:>3}' for t, f in counts)
        print(f'{time.monotonic() - started:>6.0f}s  {row}', flush=True)
    stop.set()
    for f in flooders:
        f.join()
    time.sleep(3)  # connections still open reach their deadline
    after = [threads_and_fds(n.pid) for n in nodes]
    for n in nodes:
        n.send_signal(signal.SIGTERM)
    for n in nodes:
        n.wait(timeout=10)
    gcd.kill()
    alive = sum(1 for n in nodes if n.returncode == 0)
    print(f'{sent[0]} junk connections sent; nodes that stopped cleanly: {alive} of {args.nodes}')
    for i, ((pt, pf), (at, af)) in enumerate(zip(peaks, after)):
        print(f'node{i}: peak {pt} threads / {pf} fds; 3 s after the flood {at} threads / {af} fds')
    print(f'events in {tmp}')


if __name__ == '__main__':
    main()
