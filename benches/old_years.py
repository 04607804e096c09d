#!/usr/bin/env python3
"""Share of time a mixed group agrees, for the ELECTION / OK / COORDINATOR years (issue 21).

Each run: a JOIN-only stand-in GCD (tests/fixtures/gcd_standin.py), two fixture peers of
one dialect (tests/fixtures/bully_peer.py --dialect D --probe) and two bully-nodes (the
binary given), over loopback. Order "node-highest": the bully-nodes have the higher ids;
"peer-highest": the peers do. Members-dict peers start first, sender-tagged and
three-tuple peers after the bully-nodes (as tests/dialects.rs does). From the moment the
last member started, every 0.2 s for --seconds: the group agrees when all four follow the
highest. Also counts the peers' raises (a shape they do not take) and failed PROBEs (a
reply form they do not read).

usage: nice -n 10 python3 benches/old_years.py --binary target/release/bully-node
           [--seconds 20] [--runs 3] [--dialect members-tuple-ok ...] [--order node-highest ...]
Prints one line per run, then a Markdown table: dialect x order, mean share agreed, raises.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, '..', 'tests', 'fixtures')
DIALECTS = ['members-tuple-ok', 'members-bare-ok', 'sender-tagged', 'three-tuple']
ORDERS = ['node-highest', 'peer-highest']


class Lines:
    """A child process whose stdout and stderr lines are collected by a thread."""

    def __init__(self, cmd):
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        self.thread = threading.Thread(target=self.read, daemon=True)
        self.thread.start()

    def read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip('\n'))

    def wait_for(self, text, limit=15):
        end = time.monotonic() + limit
        while time.monotonic() < end:
            for line in list(self.lines):
                if text in line:
                    return line
            time.sleep(0.05)
        raise SystemExit(f'no {text!r} within {limit} s: {self.lines[-5:]}')

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def leader_of_lines(lines):
    for line in reversed(lines):
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if isinstance(e, dict) and e.get('event') == 'leader' and e.get('leader'):
            return tuple(e['leader'])
    return None


def leader_of_file(path):
    try:
        with open(path) as f:
            return leader_of_lines(f.read().splitlines())
    except OSError:
        return None


def run(binary, dialect, order, seconds, su, start='auto'):
    low, high = [(20, su + 1), (40, su + 2)], [(60, su + 3), (80, su + 4)]
    py, rs = (low, high) if order == 'node-highest' else (high, low)
    want = max(py + rs)
    scratch = tempfile.mkdtemp(prefix='old-years-')
    gcd = Lines([sys.executable, os.path.join(FIXTURES, 'gcd_standin.py'), '--port', '0', '--accept', 'JOIN'])
    port = int(gcd.wait_for('LISTENING').split()[1])
    procs, peers, nodes = [gcd], [], []

    def start_peers():
        for days, su_id in py:
            p = Lines([sys.executable, os.path.join(FIXTURES, 'bully_peer.py'), '--gcd', f'127.0.0.1:{port}',
                       '--days', str(days), '--su-id', str(su_id), '--name', 'JOIN', '--dialect', dialect, '--probe'])
            p.wait_for('"listening"')
            procs.append(p)
            peers.append(p)

    try:
        peers_first = dialect.startswith('members') if start == 'auto' else start == 'peers-first'
        if peers_first:
            start_peers()
        for days, su_id in rs:
            events = os.path.join(scratch, f'{days}-{su_id}.jsonl')
            n = Lines([binary, '--gcd', f'127.0.0.1:{port}', '--days', str(days), '--su-id', str(su_id),
                       '--listen', '127.0.0.1:0', '--events', events, '--no-feign'])
            procs.append(n)
            nodes.append(events)
        if not peers_first:
            start_peers()
        agreed = samples = 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(0.2)
            leaders = [leader_of_lines(p.lines) for p in peers] + [leader_of_file(e) for e in nodes]
            samples += 1
            agreed += all(tuple(l or ()) == want for l in leaders)
        raised = sum(1 for p in peers for l in p.lines if 'FIXTURE PEER RAISED' in l)
        dead = sum(1 for p in peers if p.proc.poll() is not None)
        probes_failed = sum(1 for p in peers for l in p.lines if '"probe_failed"' in l)
        return agreed / samples, raised, dead, probes_failed
    finally:
        for p in reversed(procs):
            p.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--binary', required=True)
    ap.add_argument('--seconds', type=float, default=20)
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--dialect', action='append', choices=DIALECTS)
    ap.add_argument('--order', action='append', choices=ORDERS)
    ap.add_argument('--start', default='auto', choices=['auto', 'peers-first', 'nodes-first'],
                    help='who starts first (auto: members-dict peers first, the others after the nodes)')
    args = ap.parse_args()
    rows = []
    su = 6_100_000
    for dialect in args.dialect or DIALECTS:
        for order in args.order or ORDERS:
            shares, raises, deaths, failed = [], 0, 0, 0
            for r in range(args.runs):
                su += 100
                share, raised, dead, probes_failed = run(args.binary, dialect, order, args.seconds, su, args.start)
                print(f'{dialect:17} {order:13} run {r + 1}: agreed {share:6.1%}, raised {raised}, '
                      f'peers dead {dead}, peer PROBEs failed {probes_failed}', flush=True)
                shares.append(share)
                raises += raised
                deaths += dead
                failed += probes_failed
            rows.append((dialect, order, sum(shares) / len(shares), raises, deaths, failed))
    print('\n| dialect | order | agreed (mean) | peer raises | peers dead | peer PROBEs failed |')
    print('|---|---|---|---|---|---|')
    for dialect, order, share, raises, deaths, failed in rows:
        print(f'| {dialect} | {order} | {share:.0%} | {raises} | {deaths} | {failed} |')


if __name__ == '__main__':
    main()
