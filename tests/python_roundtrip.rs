//! Round trip through CPython: what we encode, `pickle.loads` turns into exactly the
//! objects a Python peer would have built, types included. Also measures how big our
//! ELECTs are against CPython's own protocol-4 pickles of the same message.

use bully_node::wire::{encode, pyrepr, Style, Value};
use bully_node::{encode_message, Addr, Layout, Members, Message, ProcessId, RegisterName};
use std::io::Write;
use std::process::{Command, Stdio};

struct Outcome {
    ours: usize,
    cpython: usize,
    cpython_shared: usize,
}

/// Sends `(pickle, expected Python literal)` cases to CPython and returns its verdicts.
fn check_in_python(cases: &[(Vec<u8>, String)]) -> Vec<Outcome> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/check_loads.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 must be installed to run this test");
    {
        let mut stdin = child.stdin.take().unwrap();
        for (bytes, literal) in cases {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            writeln!(stdin, "{hex}\t{literal}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "check_loads.py failed");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), cases.len(), "one verdict per case: {text}");
    lines
        .iter()
        .zip(cases)
        .map(|(line, (_, literal))| {
            let fields: Vec<&str> = line.split(' ').collect();
            assert_eq!(fields[0], "ok", "CPython disagrees on {literal}: {line}");
            let n = |i: usize| fields[i].parse::<usize>().unwrap();
            Outcome { ours: n(1), cpython: n(2), cpython_shared: n(3) }
        })
        .collect()
}

fn members(n: u32, host: &str, layout: Layout) -> Members {
    let mut m = Members::new(layout);
    for d in 1..=n {
        m.insert(ProcessId::new(d.min(365), 1_000_000 + d), Addr::new(host, 40_000 + d as u16));
    }
    m
}

#[test]
fn cpython_loads_our_messages_as_the_objects_a_peer_builds() {
    let me = ProcessId::new(42, 1234567);
    let cases: Vec<(Vec<u8>, String)> = vec![
        (
            encode_message(&Message::Register {
                name: RegisterName::Howdy,
                pid: me,
                addr: Addr::new("127.0.0.1", 40001),
            }),
            "('HOWDY', ((42, 1234567), ('127.0.0.1', 40001)))".into(),
        ),
        (
            encode_message(&Message::Register {
                name: RegisterName::Join,
                pid: me,
                addr: Addr::new("localhost", 65535),
            }),
            "('JOIN', ((42, 1234567), ('localhost', 65535)))".into(),
        ),
        (encode_message(&Message::Probe), "('PROBE', None)".into()),
        (encode_message(&Message::IAmLeader { leader: me, addr: None }), "('I_AM_LEADER', (42, 1234567))".into()),
        (
            encode_message(&Message::Elect {
                members: members(2, "127.0.0.1", Layout::ByPid),
                sender: None,
                rejected: 0,
            }),
            "('ELECT', {(1, 1000001): ('127.0.0.1', 40001), (2, 1000002): ('127.0.0.1', 40002)})".into(),
        ),
        (
            encode_message(&Message::Elect {
                members: members(2, "localhost", Layout::ByAddr),
                sender: None,
                rejected: 0,
            }),
            "('ELECT', {('localhost', 40001): (1, 1000001), ('localhost', 40002): (2, 1000002)})".into(),
        ),
        (encode(&Value::str("GOT_IT"), Style::Compact), "'GOT_IT'".into()),
        (encode(&Value::str("Malformed message"), Style::CPython), "'Malformed message'".into()),
        (
            encode(
                &Value::List(vec![
                    Value::Bool(true),
                    Value::Int(-1),
                    Value::Int(1 << 40),
                    Value::Float(2.5),
                    Value::str("café ☺"),
                    Value::Bytes(vec![0, 255]),
                    Value::tuple([]),
                    Value::Dict(vec![]),
                ]),
                Style::Compact,
            ),
            "[True, -1, 1099511627776, 2.5, 'café ☺', b'\\x00\\xff', (), {}]".into(),
        ),
    ];
    check_in_python(&cases);
}

/// The sizes of an ELECT for groups on one host, ours against CPython's protocol 4.
/// Printed (run with --nocapture to see them) and held to the bound that matters:
/// never larger than CPython's own pickle of the same message with the host shared.
#[test]
fn elects_are_no_larger_than_cpythons_own() {
    let sizes = [10, 20, 50, 60, 100];
    let cases: Vec<(Vec<u8>, String)> = sizes
        .iter()
        .map(|&n| {
            let msg = Message::Elect { members: members(n, "127.0.0.1", Layout::ByPid), sender: None, rejected: 0 };
            (encode_message(&msg), pyrepr::repr(&msg.to_value()))
        })
        .collect();
    let outcomes = check_in_python(&cases);
    println!("members  ours  cpython-p4-shared-host  cpython-p4");
    for (n, o) in sizes.iter().zip(&outcomes) {
        println!("{n:>7} {:>5} {:>23} {:>11}", o.ours, o.cpython_shared, o.cpython);
        assert!(o.ours <= o.cpython_shared, "{n} members: ours {} > CPython's {}", o.ours, o.cpython_shared);
    }
    // 60 members still fit the single recv(1024) that Python peers read with.
    assert!(outcomes[3].ours <= 1024, "60 members take {} bytes", outcomes[3].ours);
}
