#!/usr/bin/env python3
"""Writes CPython's pickles of every message shape of the bully protocol, at protocols
0 to 5, into this folder. The Rust tests (tests/golden.rs) decode each file and compare
it with the value they expect, so the decoder is checked against the real thing.

Run it with the Python the course uses (3.8+): python3 tests/golden/gen.py
The output is deterministic for a given CPython version; the committed files came
from CPython 3.11.
"""
import os
import pickle

HERE = os.path.dirname(os.path.abspath(__file__))

# One host string object shared by every member, as a peer that builds its members
# from one variable would have it: CPython memoizes it and refers back with BINGET.
HOST = '127.0.0.1'

BY_PID = {(5, 1234567): (HOST, 40001), (200, 7654321): (HOST, 40002), (200, 7654322): ('localhost', 40003)}
BY_ADDR = {addr: pid for pid, addr in BY_PID.items()}

# The same (host, port) tuple object referenced twice: valid CPython output that
# serde-pickle 1.2.0 refuses ("recursive structure found").
SHARED_ADDR = (HOST, 40001)
SHARED_TUPLE = {(5, 1234567): SHARED_ADDR, (6, 1234568): SHARED_ADDR}

FIFTY = {(d, 1_000_000 + d): (HOST, 40_000 + d) for d in range(1, 51)}

SHAPES = {
    'howdy': ('HOWDY', ((5, 1234567), ('localhost', 40001))),
    'begin': ('BEGIN', ((5, 1234567), ('127.0.0.1', 40001))),
    'join': ('JOIN', ((365, 9999999), ('127.0.0.1', 65535))),
    'members_by_pid': BY_PID,
    'members_by_addr': BY_ADDR,
    'elect': ('ELECT', BY_PID),
    'elect_by_addr': ('ELECT', BY_ADDR),
    'elect_shared_tuple': ('ELECT', SHARED_TUPLE),
    'elect_fifty': ('ELECT', FIFTY),
    'i_am_leader': ('I_AM_LEADER', (200, 7654322)),
    'probe': ('PROBE', None),
    'got_it': 'GOT_IT',
    'gcd_refusal': 'Malformed process id, expected (days_to_next_birthday, student_id)',
    'unknown': ('HELLO', [1, 2.5, True, None, -70000, 2**70, 'caf\u00e9 \u263a']),
    # Below protocol 3, CPython pickles bytes as a call to codecs.encode, which a
    # decoder that constructs no objects must refuse; from protocol 3 it is BINBYTES.
    'bytes_value': ('HELLO', b'\x00\xff'),
    'dialect_elect_sender': ('ELECTION', ((5, 1234567), BY_PID)),
    'dialect_wrapped': (('I_AM_LEADER', (200, 7654322)), ((5, 1234567), (200, 7654322))),
    'dialect_got_it': ('GOT_IT', (200, 7654322)),
}


def main():
    for name, value in SHAPES.items():
        for protocol in range(0, pickle.HIGHEST_PROTOCOL + 1):
            data = pickle.dumps(value, protocol)
            with open(os.path.join(HERE, f'{name}.p{protocol}.pickle'), 'wb') as f:
                f.write(data)
    # What the GCD sends back, unpickled, for bytes that are not a pickle.
    garbage = b'GET / HTTP/1.1\r\n\r\n'
    with open(os.path.join(HERE, 'gcd_raw_error.bin'), 'wb') as f:
        f.write(bytes('Expected a pickled message, got ' + str(garbage)[:100] + '\n', 'utf-8'))
    print(f'wrote {len(SHAPES)} shapes x {pickle.HIGHEST_PROTOCOL + 1} protocols to {HERE}')


if __name__ == '__main__':
    main()
