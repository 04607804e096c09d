//! Golden vectors: CPython's own pickles of every protocol shape at protocols 0 to 5
//! (written by tests/golden/gen.py) decode to the values Python built, and read as the
//! protocol messages they are. serde-pickle serves as a second opinion wherever it can
//! decode the file at all.

use bully_node::wire::{decode, read_pickle, DecodeErrorKind, Value, MAX_PICKLE_BYTES};
use bully_node::{Addr, Layout, Message, ProcessId, Reply};
use std::path::PathBuf;

mod common;
use common::{i, s, t};

const PROTOCOLS: std::ops::RangeInclusive<u8> = 0..=5;

fn golden(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (run python3 tests/golden/gen.py)", path.display()))
}

fn pid(days: i64, su: i64) -> Value {
    t([i(days), i(su)])
}
fn addr(host: &str, port: i64) -> Value {
    t([s(host), i(port)])
}

fn by_pid() -> Value {
    Value::Dict(vec![
        (pid(5, 1234567), addr("127.0.0.1", 40001)),
        (pid(200, 7654321), addr("127.0.0.1", 40002)),
        (pid(200, 7654322), addr("localhost", 40003)),
    ])
}

fn by_addr() -> Value {
    let Value::Dict(pairs) = by_pid() else { unreachable!() };
    Value::Dict(pairs.into_iter().map(|(k, v)| (v, k)).collect())
}

/// Every shape gen.py writes, with the value CPython pickled.
fn shapes() -> Vec<(&'static str, Value)> {
    vec![
        ("howdy", t([s("HOWDY"), t([pid(5, 1234567), addr("localhost", 40001)])])),
        ("begin", t([s("BEGIN"), t([pid(5, 1234567), addr("127.0.0.1", 40001)])])),
        ("join", t([s("JOIN"), t([pid(365, 9999999), addr("127.0.0.1", 65535)])])),
        ("members_by_pid", by_pid()),
        ("members_by_addr", by_addr()),
        ("elect", t([s("ELECT"), by_pid()])),
        ("elect_by_addr", t([s("ELECT"), by_addr()])),
        (
            "elect_shared_tuple",
            t([
                s("ELECT"),
                Value::Dict(vec![
                    (pid(5, 1234567), addr("127.0.0.1", 40001)),
                    (pid(6, 1234568), addr("127.0.0.1", 40001)),
                ]),
            ]),
        ),
        (
            "elect_fifty",
            t([
                s("ELECT"),
                Value::Dict((1..=50).map(|d| (pid(d, 1_000_000 + d), addr("127.0.0.1", 40_000 + d))).collect()),
            ]),
        ),
        ("i_am_leader", t([s("I_AM_LEADER"), pid(200, 7654322)])),
        ("probe", t([s("PROBE"), Value::None])),
        ("got_it", s("GOT_IT")),
        ("gcd_refusal", s("Malformed process id, expected (days_to_next_birthday, student_id)")),
        (
            "unknown",
            t([
                s("HELLO"),
                Value::List(vec![
                    i(1),
                    Value::Float(2.5),
                    Value::Bool(true),
                    Value::None,
                    i(-70000),
                    Value::BigInt("1180591620717411303424".into()),
                    s("café ☺"),
                ]),
            ]),
        ),
        ("dialect_elect_sender", t([s("ELECTION"), t([pid(5, 1234567), by_pid()])])),
        ("dialect_wrapped", t([t([s("I_AM_LEADER"), pid(200, 7654322)]), t([pid(5, 1234567), pid(200, 7654322)])])),
        ("dialect_got_it", t([s("GOT_IT"), pid(200, 7654322)])),
    ]
}

#[test]
fn every_shape_at_every_protocol_decodes_to_what_python_built() {
    let mut checked = 0;
    for (name, want) in shapes() {
        for p in PROTOCOLS {
            let bytes = golden(&format!("{name}.p{p}.pickle"));
            let got = decode(&bytes).unwrap_or_else(|e| panic!("{name}.p{p}: {e}"));
            assert_eq!(got, want, "{name}.p{p}");
            // Read from a stream, the framer takes exactly the file: no more, no less.
            let mut stream = &bytes[..];
            assert_eq!(read_pickle(&mut stream, MAX_PICKLE_BYTES).unwrap(), bytes, "{name}.p{p}");
            checked += 1;
        }
    }
    assert_eq!(checked, 17 * 6);
}

#[test]
fn bytes_below_protocol_3_are_refused_as_object_construction() {
    for p in PROTOCOLS {
        let result = decode(&golden(&format!("bytes_value.p{p}.pickle")));
        if p < 3 {
            let err = result.unwrap_err();
            assert!(matches!(err.kind, DecodeErrorKind::Refused(_)), "p{p}: {err}");
        } else {
            assert_eq!(result.unwrap(), t([s("HELLO"), Value::Bytes(vec![0, 0xff])]), "p{p}");
        }
    }
}

#[test]
fn shapes_read_as_the_protocol_messages_they_are() {
    let leader = ProcessId::new(200, 7654322);
    for p in PROTOCOLS {
        let msg = |name: &str| Message::from_value(&decode(&golden(&format!("{name}.p{p}.pickle"))).unwrap()).unwrap();
        let reply = |name: &str| Reply::from_value(decode(&golden(&format!("{name}.p{p}.pickle"))).unwrap());

        assert!(matches!(msg("howdy"), Message::Register { pid, addr, .. }
            if pid == ProcessId::new(5, 1234567) && addr == Addr::new("localhost", 40001)));
        match msg("elect") {
            Message::Elect { members, rejected: 0, sender: None } => {
                assert_eq!(members.len(), 3);
                assert_eq!(members.layout(), Layout::ByPid);
                assert_eq!(members.higher_than(ProcessId::new(200, 7654321)).count(), 1);
            }
            other => panic!("p{p}: {other:?}"),
        }
        assert!(matches!(msg("elect_by_addr"), Message::Elect { members, .. } if members.layout() == Layout::ByAddr));
        // Two pids at one address (one memoized tuple): both read as listed; which is
        // stale is the node's call (a peer's list never removes what the GCD gave).
        assert!(matches!(msg("elect_shared_tuple"), Message::Elect { members, .. }
            if members.len() == 2 && members.get(ProcessId::new(6, 1234568)) == members.get(ProcessId::new(5, 1234567))));
        assert!(matches!(msg("elect_fifty"), Message::Elect { members, .. } if members.len() == 50));
        assert_eq!(msg("i_am_leader"), Message::IAmLeader { leader, addr: None });
        assert_eq!(msg("probe"), Message::Probe);
        assert!(matches!(msg("unknown"), Message::Unknown { name, .. } if name == "HELLO"));
        assert!(
            matches!(msg("dialect_elect_sender"), Message::Elect { sender: Some(s), .. } if s == ProcessId::new(5, 1234567))
        );
        assert_eq!(msg("dialect_wrapped"), Message::IAmLeader { leader, addr: None });
        assert_eq!(reply("got_it"), Reply::GotIt);
        assert_eq!(reply("dialect_got_it"), Reply::GotIt);
        assert!(matches!(reply("members_by_pid"), Reply::Members { members, rejected: 0 } if members.len() == 3));
        assert!(matches!(reply("gcd_refusal"), Reply::Text(t) if t.starts_with("Malformed process id")));
    }
}

#[test]
fn the_gcds_raw_error_is_not_a_pickle() {
    let raw = golden("gcd_raw_error.bin");
    assert!(raw.starts_with(b"Expected a pickled message, got b'GET / HTTP"));
    let mut stream = &raw[..];
    assert!(read_pickle(&mut stream, MAX_PICKLE_BYTES).is_err());
    assert!(decode(&raw).is_err());
}

/// serde-pickle's value, in our model (dict order aside, which our equality ignores).
fn from_serde(v: serde_pickle::Value) -> Value {
    use serde_pickle::Value as S;
    match v {
        S::None => Value::None,
        S::Bool(b) => Value::Bool(b),
        S::I64(n) => Value::Int(n),
        S::Int(n) => Value::BigInt(n.to_string()),
        S::F64(x) => Value::Float(x),
        S::Bytes(b) => Value::Bytes(b),
        S::String(s) => Value::Str(s),
        S::List(v) => Value::List(v.into_iter().map(from_serde).collect()),
        S::Tuple(v) => Value::Tuple(v.into_iter().map(from_serde).collect()),
        S::Set(v) => Value::Set(v.into_iter().map(|h| from_serde(h.into_value())).collect()),
        S::FrozenSet(v) => Value::FrozenSet(v.into_iter().map(|h| from_serde(h.into_value())).collect()),
        S::Dict(m) => Value::Dict(m.into_iter().map(|(k, v)| (from_serde(k.into_value()), from_serde(v))).collect()),
    }
}

#[test]
fn we_agree_with_serde_pickle_wherever_it_decodes() {
    let mut agreed = 0;
    let mut serde_failed = Vec::new();
    for (name, _) in shapes() {
        for p in PROTOCOLS {
            let file = format!("{name}.p{p}.pickle");
            let bytes = golden(&file);
            match serde_pickle::value_from_slice(&bytes, serde_pickle::DeOptions::new()) {
                Ok(theirs) => {
                    assert_eq!(decode(&bytes).unwrap(), from_serde(theirs), "{file}");
                    agreed += 1;
                }
                Err(_) => serde_failed.push(file),
            }
        }
    }
    // serde-pickle must decode most files, or this test compares nothing.
    assert!(agreed >= 90, "only {agreed} files compared; serde-pickle failed on {serde_failed:?}");
}
