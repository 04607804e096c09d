//! `bully-node gcd` answers every kind of request byte-for-byte as gcd2.py does: the
//! same sequence of requests goes to the Python stand-in (tests/fixtures/gcd_standin.py)
//! and to ours, and every reply must be identical, including the membership they build.

mod common;

use bully_node::wire::{encode, Style, Value};
use common::{i, python_gcd, rust_gcd, s, send_raw, t};

fn p(v: &Value) -> Vec<u8> {
    encode(v, Style::Compact)
}
fn reg(name: &str, days: Value, su: Value, host: Value, port: Value) -> Vec<u8> {
    p(&t([s(name), t([t([days, su]), t([host, port])])]))
}

/// Requests covering PROTOCOL.md's list: valid joins and re-joins, each refusal, the
/// membership rules, garbage, oversize, a pid sent as a list, and other names.
fn requests(name: &str, other: &str) -> Vec<(&'static str, Vec<u8>)> {
    let ok = |days: i64, su: i64, host: &str, port: i64| reg(name, i(days), i(su), s(host), i(port));
    let mut oversize = b"\x80\x04X".to_vec();
    oversize.extend_from_slice(&1500u32.to_le_bytes());
    oversize.extend(std::iter::repeat_n(b'x', 1500));
    oversize.push(b'.');
    vec![
        ("first join", ok(5, 1_234_567, "localhost", 40001)),
        ("second join", ok(10, 2_345_678, "127.0.0.1", 40002)),
        ("same SU ID, new days", ok(7, 1_234_567, "127.0.0.1", 40003)),
        ("same address, new member", ok(300, 3_456_789, "127.0.0.1", 40002)),
        ("same pid again, new port", ok(300, 3_456_789, "localhost", 40004)),
        ("as a list", p(&Value::List(vec![s(name), t([t([i(8), i(4_567_890)]), t([s("127.0.0.1"), i(40005)])])]))),
        ("not a pair", p(&i(5))),
        ("a triple", p(&t([s(name), i(1), i(2)]))),
        ("other name", reg(other, i(5), i(1_234_567), s("localhost"), i(1))),
        ("int name", p(&t([i(42), i(0)]))),
        ("bytes name", p(&t([Value::Bytes(b"HOWDY".to_vec()), i(0)]))),
        ("two-char str", p(&s("ab"))),
        ("data not a pair", p(&t([s(name), i(5)]))),
        ("pid not a pair", p(&t([s(name), t([t([i(5)]), t([s("localhost"), i(1)])])]))),
        ("days 0", ok(0, 1_234_567, "localhost", 1)),
        ("days 366", ok(366, 1_234_567, "localhost", 1)),
        ("su_id short", ok(5, 999_999, "localhost", 1)),
        ("su_id long", ok(5, 10_000_000, "localhost", 1)),
        ("days a bool", reg(name, Value::Bool(true), i(1_234_567), s("localhost"), i(1))),
        ("su_id a str", reg(name, i(5), s("1234567"), s("localhost"), i(1))),
        ("days a float", reg(name, Value::Float(5.0), i(1_234_567), s("localhost"), i(1))),
        ("port 0", ok(5, 1_234_567, "localhost", 0)),
        ("port 65536", ok(5, 1_234_567, "localhost", 65536)),
        ("port a str", reg(name, i(5), i(1_234_567), s("localhost"), s("80"))),
        ("remote host", ok(5, 1_234_567, "8.8.8.8", 4000)),
        ("wildcard host", ok(5, 1_234_567, "0.0.0.0", 4000)),
        ("empty host", ok(5, 1_234_567, "", 4000)),
        ("host an int", reg(name, i(5), i(1_234_567), i(7), i(4000))),
        ("unknown host", ok(5, 1_234_567, "no-such-host.invalid", 4000)),
        ("garbage", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("binary garbage", vec![0, 1, 2, 255, 254, b'\'', b'"', b'\\']),
        ("oversize", oversize),
        ("last join", ok(200, 5_678_901, "localhost", 40006)),
    ]
}

fn compare(name: &str, other: &str) {
    let (_py, py_port) = python_gcd(name);
    let (_rs, rs_port) = rust_gcd(name);
    let mut replies = 0;
    for (what, bytes) in requests(name, other) {
        let theirs = send_raw(py_port, &bytes);
        let ours = send_raw(rs_port, &bytes);
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&theirs),
            "{name}: {what}: bully-node gcd answered {ours:?}, gcd2.py's stand-in {theirs:?}"
        );
        replies += usize::from(!theirs.is_empty());
    }
    // Every request but none is answered by both: the comparison compared replies.
    assert!(replies >= 30, "only {replies} replies");
}

#[test]
fn howdy_coordinators_answer_alike() {
    compare("HOWDY", "BEGIN");
}

#[test]
fn begin_and_join_coordinators_answer_alike() {
    compare("BEGIN", "HOWDY");
    compare("JOIN", "HOWDY");
}

#[test]
fn a_pid_sent_as_a_list_gets_no_reply_from_either() {
    let bytes =
        p(&t([s("HOWDY"), Value::List(vec![Value::List(vec![i(5), i(1_234_567)]), t([s("localhost"), i(1)])])]));
    let (_py, py_port) = python_gcd("HOWDY");
    let (_rs, rs_port) = rust_gcd("HOWDY");
    assert_eq!(send_raw(py_port, &bytes), b"");
    assert_eq!(send_raw(rs_port, &bytes), b"");
}
