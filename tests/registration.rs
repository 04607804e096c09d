//! A real `bully-node` process registering with a GCD over loopback: the Python
//! stand-in for each course year (auto fallback HOWDY -> BEGIN -> JOIN), our own
//! coordinator, and GCDs that refuse, are down, stay silent or answer garbage.

mod common;

use bully_node::wire::{decode, Value};
use bully_node::{encode_message, Message};
use common::{bully_node, python_gcd, rust_gcd, send_raw, Proc};
use std::io::{Read, Write};
use std::net::TcpListener;

fn node(gcd_port: u16, days: &str, su_id: &str, extra: &[&str]) -> Proc {
    let mut cmd = bully_node();
    cmd.args(["--gcd", &format!("127.0.0.1:{gcd_port}"), "--days", days, "--su-id", su_id, "--no-feign"]);
    cmd.args(extra);
    Proc::spawn(&format!("node ({days}, {su_id})"), cmd)
}

/// The port a node reports listening on.
fn listening_port(line: &str) -> u16 {
    let after = line.split("listening at ").nth(1).unwrap();
    after.rsplit(':').next().unwrap().trim().parse().unwrap()
}

#[test]
fn registers_with_every_course_year_by_falling_back() {
    for name in ["HOWDY", "BEGIN", "JOIN"] {
        let (_gcd, port) = python_gcd(name);
        let mut n = node(port, "5", "1234567", &["--listen", "127.0.0.1:0"]);
        let line = n.wait_for("joined", |l| l.contains("joined a group of"));
        assert!(line.contains(&format!("{name} to the GCD")), "{name}: {line}");
        assert!(line.contains("joined a group of 1: (5, 1234567) (us)"), "{line}");
    }
}

#[test]
fn a_second_node_sees_the_first_and_both_keep_serving() {
    let (_gcd, port) = rust_gcd("HOWDY");
    // -v: the PROBEs it answers are detail (a leader of 30 answers one every ~60 ms).
    let mut a = node(port, "5", "1234567", &["-v"]);
    let a_port = listening_port(&a.wait_for("listening", |l| l.contains("listening at")));
    a.wait_for("joined", |l| l.contains("joined a group of 1"));
    let mut b = node(port, "9", "2345678", &[]);
    let line = b.wait_for("joined", |l| l.contains("joined a group of"));
    assert!(line.contains("joined a group of 2: (9, 2345678) (us) at 127.0.0.1:"), "{line}");
    assert!(line.contains(&format!("(5, 1234567) at 127.0.0.1:{a_port}")), "{line}");
    // The first node answers a PROBE with GOT_IT, and says so at -v.
    let reply = send_raw(a_port, &encode_message(&Message::Probe));
    assert_eq!(decode(&reply).unwrap(), Value::str("GOT_IT"));
    a.wait_for("PROBE", |l| l.contains("PROBE from"));
}

#[test]
fn a_fixed_name_the_gcd_refuses_is_shown_verbatim() {
    let (_gcd, port) = python_gcd("JOIN");
    let mut n = node(port, "5", "1234567", &["--gcd-message", "HOWDY"]);
    let (code, out) = n.wait_exit();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("refused us: 'Unexpected message: HOWDY'"), "{out}");
    assert!(out.contains("--gcd-message auto"), "{out}");
}

#[test]
fn a_listen_address_off_the_gcds_host_is_refused_with_advice() {
    let (_gcd, port) = python_gcd("HOWDY");
    let mut n = node(port, "5", "1234567", &["--listen", "127.0.0.2:0"]);
    let (code, out) = n.wait_exit();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("refused us: 'Only local group members currently allowed'"), "{out}");
    assert!(out.contains("--listen"), "{out}");
}

#[test]
fn an_unreachable_gcd_is_one_clear_error() {
    // Port 1 (tcpmux) listens nowhere: a port freed here could be bound by another
    // test's socket before the node connects.
    let closed = 1;
    let mut n = node(closed, "5", "1234567", &["--gcd-wait", "0"]);
    let (code, out) = n.wait_exit();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("cannot reach the GCD at 127.0.0.1:{closed}")), "{out}");
    assert!(!out.contains("waiting for the GCD"), "--gcd-wait 0 tries once: {out}");
}

#[test]
fn ctrl_c_while_waiting_for_the_gcd_stops_at_once_saying_stopped() {
    // The default wait is 30 s; Ctrl-C must not have to sit through it.
    let mut n = node(1, "5", "1234567", &[]);
    n.wait_for("the wait", |l| l.contains("waiting for the GCD at 127.0.0.1:1 for up to 30 s (Ctrl-C stops)"));
    let status = std::process::Command::new("kill").args(["-INT", &n.pid().to_string()]).status().unwrap();
    assert!(status.success());
    let started = std::time::Instant::now();
    let (code, out) = n.wait_exit();
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(code, Some(130), "{out}");
    assert!(out.lines().last().unwrap_or("").contains("stopped (Ctrl-C or SIGTERM during start-up"), "{out}");
}

#[test]
fn what_a_gcd_that_is_not_one_sends_is_escaped_capped_and_explained() {
    let mut junk = b"\x1b[2J\x1b[31mHELLO\x00\x07".to_vec();
    junk.extend([b'z'; 900]);
    let junk: &'static [u8] = junk.leak();
    let (port, server) = fake_gcd(Some(junk));
    let mut n = node(port, "5", "1234567", &[]);
    let (code, out) = n.wait_exit();
    server.join().unwrap();
    assert_eq!(code, Some(1), "{out}");
    assert!(!out.contains('\x1b') && !out.contains('\0') && !out.contains('\x07'), "raw control bytes: {out:?}");
    assert!(out.contains("\\x1b[2J\\x1b[31mHELLO\\0\\x07zzz"), "{out}");
    assert!(out.contains("more characters)"), "capped: {out}");
    assert!(out.contains("is not a pickle") && out.contains("is --gcd really a GCD?"), "{out}");
}

/// A fake GCD that reads one request and answers with `reply` (or nothing, closing;
/// or, with `None`, holding the connection open without a word).
fn fake_gcd(reply: Option<&'static [u8]>) -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf);
        match reply {
            Some(bytes) => {
                let _ = s.write_all(bytes);
            }
            // Silent: keep the connection until the client gives up and closes it.
            None => {
                let _ = s.read(&mut buf);
            }
        }
    });
    (port, handle)
}

#[test]
fn a_gcd_answering_garbage_nothing_or_never_is_an_error_not_a_crash() {
    let cases: [(Option<&'static [u8]>, &str); 4] = [
        (
            Some(b"Expected a pickled message, got b'x'\n"),
            "could not read our request and said: Expected a pickled message",
        ),
        (Some(b""), "closed the connection without answering"),
        (Some(b"\x80\x04K\x05."), "answered with 5, not a members dict"),
        (None, "did not answer in time"),
    ];
    for (reply, want) in cases {
        let (port, server) = fake_gcd(reply);
        let mut n = node(port, "5", "1234567", &[]);
        let (code, out) = n.wait_exit();
        assert_eq!(code, Some(1), "{out}");
        assert!(out.contains(want), "wanted {want:?} in:\n{out}");
        server.join().unwrap();
    }
}

#[test]
fn identities_the_gcd_would_refuse_are_usage_errors() {
    for (args, want) in [
        (vec!["--days", "0", "--su-id", "1234567"], "--days"),
        (vec!["--days", "5", "--su-id", "123"], "--su-id"),
        (vec!["--birthday", "02-30", "--su-id", "1234567"], "MM-DD"),
    ] {
        let mut cmd = bully_node();
        cmd.args(["--gcd", "127.0.0.1:1"]).args(&args);
        let mut p = Proc::spawn("bad identity", cmd);
        let (code, out) = p.wait_exit();
        assert_eq!(code, Some(2), "{args:?}: {out}");
        assert!(out.contains(want), "{args:?}: {out}");
    }
}

/// `bully-node gcd --serial` serves one connection at a time, as gcd2.py does: while a
/// client holds its connection without sending, a registration waits; once that client
/// goes, the registration is answered. (Without --serial it is answered at once.)
#[test]
fn a_serial_coordinator_answers_one_connection_at_a_time() {
    use std::net::TcpStream;
    use std::time::Duration;
    for serial in [true, false] {
        let mut cmd = bully_node();
        cmd.args(["gcd", "--listen", "127.0.0.1:0"]);
        if serial {
            cmd.arg("--serial");
        }
        let mut gcd = Proc::spawn("bully-node gcd", cmd);
        let line = gcd.wait_for("listening on", |l| l.contains("listening on 127.0.0.1:"));
        let port: u16 = line
            .split("127.0.0.1:")
            .nth(1)
            .unwrap()
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
        // The accept queue is first come, first served: the registration connects after
        // the idle connection, so a serial coordinator takes it only once that one ends.
        let howdy = Message::Register {
            name: bully_node::RegisterName::Howdy,
            pid: bully_node::ProcessId::new(5, 1234567),
            addr: bully_node::Addr::new("127.0.0.1", 4000),
        };
        let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        client.write_all(&encode_message(&howdy)).unwrap();
        client.set_read_timeout(Some(Duration::from_millis(1000))).unwrap();
        let mut reply = Vec::new();
        let early = client.read_to_end(&mut reply);
        if serial {
            assert!(early.is_err() && reply.is_empty(), "answered while another connection was being served");
            drop(idle);
            client.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            client.read_to_end(&mut reply).unwrap();
        } else {
            early.expect("a concurrent coordinator answers at once");
        }
        assert!(matches!(decode(&reply).unwrap(), Value::Dict(_)), "{reply:?}");
        gcd.kill();
    }
}

#[test]
fn a_leader_counts_the_probes_it_answers_and_logs_them_only_at_v() {
    // At 30 members a leader answers a PROBE every ~60 ms: a line each is more than a
    // person can follow. The count goes in the summary.
    let (_gcd, port) = rust_gcd("HOWDY");
    let mut n = node(port, "5", "1234567", &[]);
    let node_port = listening_port(&n.wait_for("listening", |l| l.contains("listening at")));
    n.wait_for("leading", |l| l.contains("I am the leader now"));
    for _ in 0..3 {
        let reply = send_raw(node_port, &encode_message(&Message::Probe));
        assert_eq!(decode(&reply).unwrap(), Value::str("GOT_IT"));
    }
    let status = std::process::Command::new("kill").args(["-TERM", &n.pid().to_string()]).status().unwrap();
    assert!(status.success());
    let (code, out) = n.wait_exit();
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("PROBE from"), "{out}");
    assert!(out.contains("PROBEs from others, answered: 3"), "{out}");
}

#[test]
fn what_a_peer_sends_reaches_the_log_escaped_and_capped() {
    let (_gcd, port) = rust_gcd("HOWDY");
    let mut n = node(port, "5", "1234567", &[]);
    let node_port = listening_port(&n.wait_for("listening", |l| l.contains("listening at")));
    n.wait_for("leading", |l| l.contains("I am the leader now"));
    let name = format!("\x1b[2J{}", "A".repeat(5000));
    let junk =
        bully_node::wire::encode(&Value::tuple([Value::str(&name), Value::None]), bully_node::wire::Style::Compact);
    send_raw(node_port, &junk);
    let line = n.wait_for("the warning", |l| l.contains("unknown message"));
    assert!(!line.contains('\x1b'), "{line:?}");
    assert!(line.chars().count() < 500 && line.contains("more characters"), "{line}");
}
