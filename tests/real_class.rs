//! The group a real class runs (issue 10), end to end with real processes over
//! loopback: the GCD on the node's own machine reached by another of its addresses,
//! reused SU IDs and ports, every ELECT shape, classmates' dialects in both directions,
//! a port taken while the node feigned failure, a crowd of hanging connections, and the
//! same identity started twice.

mod common;

use bully_node::wire::{decode, encode, read_pickle, Style, Value};
use bully_node::{encode_message, Addr, Members, Message, ProcessId, Reply};
use common::{bully_node, fixture, i, python_gcd, s, send_raw, t, wait_all_follow, Node, Pid, Proc, PyPeer, Scratch};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

fn pid_value(days: i64, su: i64) -> Value {
    t([i(days), i(su)])
}

fn addr_value(port: u16) -> Value {
    t([s("127.0.0.1"), i(port.into())])
}

/// The port in a node's "listening at HOST:PORT" line.
fn listening_port(line: &str) -> u16 {
    line.rsplit(':').next().unwrap().trim().parse().unwrap()
}

fn node_port(n: &mut Node) -> u16 {
    listening_port(&n.proc.wait_for("listening", |l| l.contains("listening at ")))
}

/// Sends `message` to the node at `port` and decodes its reply (None: empty reply).
fn ask(port: u16, message: &Value) -> Option<Value> {
    let reply = send_raw(port, &encode(message, Style::Compact));
    (!reply.is_empty()).then(|| decode(&reply).unwrap())
}

fn got_it(reply: Option<Value>) -> bool {
    reply.is_some_and(|v| Reply::from_value(v) == Reply::GotIt)
}

/// Registers `pid` at `port` with the GCD on `gcd` and returns the group it lists.
fn register(gcd: u16, pid: (u32, u32), port: u16) -> Members {
    let msg = Message::Register {
        name: bully_node::RegisterName::Howdy,
        pid: ProcessId::new(pid.0, pid.1),
        addr: Addr::new("127.0.0.1", port),
    };
    match Reply::from_value(decode(&send_raw(gcd, &encode_message(&msg))).unwrap()) {
        Reply::Members { members, .. } => members,
        other => panic!("GCD answered {other:?}"),
    }
}

/// Accepts one connection on `listener` and returns the message it carries, answering
/// GOT_IT (as a live member would).
fn accept_one(listener: &TcpListener) -> Message {
    listener.set_nonblocking(false).unwrap();
    let (mut stream, _) = listener.accept().unwrap();
    stream.set_read_timeout(Some(common::DEADLINE)).unwrap();
    let bytes = read_pickle(&mut stream, 64 * 1024).unwrap();
    let _ = stream.write_all(&encode(&Reply::got_it(), Style::Compact));
    Message::from_value(&decode(&bytes).unwrap()).unwrap()
}

/// A network namespace of the test's own, deleted when dropped.
struct Namespace(String);

impl Namespace {
    /// Makes a namespace whose loopback device also carries `extra` (a TEST-NET address
    /// standing for the course server's external one), or None where namespaces can't be
    /// made (not root, no `ip`).
    fn with_address(extra: &str) -> Option<Namespace> {
        let name = format!("bully-test-{}", std::process::id());
        let ip = |args: &[&str]| Command::new("ip").args(args).output().is_ok_and(|o| o.status.success());
        if !ip(&["netns", "add", &name]) {
            return None;
        }
        let ns = Namespace(name);
        let ready = ip(&["-n", &ns.0, "link", "set", "lo", "up"])
            && ip(&["-n", &ns.0, "addr", "add", &format!("{extra}/32"), "dev", "lo"]);
        ready.then_some(ns)
    }

    /// `program args...` to run inside the namespace.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, program]);
        c
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// The course server as it really is: the machine's host name resolves to an address
/// that is not loopback (192.0.2.2 here, in a namespace of the test's own, so the route
/// to it has that address as its source). Before issue 10 the node listened on and
/// registered 192.0.2.2, and the GCD refused it ("Only local group members").
#[test]
fn on_the_course_server_the_node_registers_loopback_not_the_external_address() {
    let Some(ns) = Namespace::with_address("192.0.2.2") else {
        eprintln!("skipped: cannot make a network namespace here (needs root and iproute2)");
        return;
    };
    let mut gcd = Proc::spawn("gcd in the namespace", {
        let mut c = ns.command("python3");
        c.args([fixture("gcd_standin.py").as_str(), "--port", "0", "--host", "0.0.0.0"]);
        c
    });
    let port: u16 = gcd.wait_for("LISTENING", |l| l.starts_with("LISTENING "))["LISTENING ".len()..].parse().unwrap();
    let mut n = Proc::spawn("node in the namespace", {
        let mut c = ns.command(env!("CARGO_BIN_EXE_bully-node"));
        c.args(["--gcd", &format!("192.0.2.2:{port}"), "--days", "5", "--su-id", "1010103", "--no-feign"]);
        c
    });
    let line = n.wait_for("joined", |l| l.contains("joined a group of") || l.contains("error"));
    assert!(line.contains("joined a group of 1: (5, 1010103) (us) at 127.0.0.1:"), "{line}");
    n.kill();
    gcd.kill();
}

#[test]
fn on_the_gcds_own_machine_the_node_registers_loopback_whatever_name_reached_the_gcd() {
    // The course server: the GCD listens on every interface and is reached by an
    // address of this machine that is not 127.0.0.1 (gcd2 refuses such an address).
    let mut cmd = Command::new("python3");
    cmd.args([fixture("gcd_standin.py").as_str(), "--port", "0", "--host", "0.0.0.0"]);
    let mut gcd = Proc::spawn("gcd on all interfaces", cmd);
    let port: u16 = gcd.wait_for("LISTENING", |l| l.starts_with("LISTENING "))["LISTENING ".len()..].parse().unwrap();
    let mut n = Proc::spawn("node", {
        let mut c = bully_node();
        c.args(["--gcd", &format!("127.0.0.2:{port}"), "--days", "5", "--su-id", "1010101", "--no-feign"]);
        c
    });
    let line = n.wait_for("joined", |l| l.contains("joined a group of") || l.contains("error"));
    assert!(line.contains("joined a group of 1: (5, 1010101) (us) at 127.0.0.1:"), "{line}");
    // An explicit --listen is kept as given, and the GCD's refusal is shown.
    let mut m = Proc::spawn("node listening on 127.0.0.2", {
        let mut c = bully_node();
        c.args(["--gcd", &format!("127.0.0.2:{port}"), "--days", "6", "--su-id", "1010102", "--no-feign"]);
        c.args(["--listen", "127.0.0.2:0"]);
        c
    });
    let (code, out) = m.wait_exit();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("Only local group members"), "{out}");
}

#[test]
fn every_elect_shape_gets_got_it() {
    let dir = Scratch::new("shapes");
    let (_gcd, gcd) = python_gcd("HOWDY");
    let mut n = Node::start(&dir, gcd, (5, 2020201), &["--no-probe"]);
    let port = node_port(&mut n);
    n.proc.wait_for("joined", |l| l.contains("joined a group of"));
    let entry = t([pid_value(3, 2020202), addr_value(1)]);
    for data in [
        Value::List(vec![entry.clone()]),
        Value::None,
        i(5),
        t([pid_value(3, 2020202), Value::List(vec![entry])]),
        Value::List(vec![]),
    ] {
        let elect = t([s("ELECT"), data.clone()]);
        assert!(got_it(ask(port, &elect)), "no GOT_IT for ELECT with {data}");
    }
}

#[test]
fn a_peers_stale_ids_never_remove_us_and_a_clash_is_told() {
    let dir = Scratch::new("stale");
    let (_gcd, gcd) = python_gcd("HOWDY");
    // The test is a higher member that answers GOT_IT and never announces.
    let high = TcpListener::bind("127.0.0.1:0").unwrap();
    register(gcd, (300, 3030300), high.local_addr().unwrap().port());
    let me = (5, 3030301);
    let mut n = Node::start(&dir, gcd, me, &["--no-probe", "--leader-timeout", "1s"]);
    let port = node_port(&mut n);
    assert!(matches!(accept_one(&high), Message::Elect { .. }));
    // A classmate's ELECT lists the id we had before a restart (same SU ID, other days)
    // and a stale id at our own address.
    let stale = t([
        s("ELECT"),
        Value::Dict(vec![
            (pid_value(200, 3030301), addr_value(9)),
            (pid_value(150, 3030302), addr_value(port)),
            (pid_value(1, 3030303), addr_value(8)),
        ]),
    ]);
    assert!(got_it(ask(port, &stale)));
    n.proc.wait_for("the SU ID clash", |l| l.contains("(200, 3030301) at 127.0.0.1:9 has our SU ID 3030301"));
    n.proc.wait_for("the address clash", |l| l.contains("(150, 3030302) is listed at our address"));
    // No I_AM_LEADER came: the node asks the GCD and elects again. Its ELECT lists us,
    // and neither stale id.
    let Message::Elect { members, .. } = accept_one(&high) else { panic!("expected ELECT") };
    assert!(members.contains(ProcessId::new(me.0, me.1)), "{members:?}");
    assert!(!members.contains(ProcessId::new(200, 3030301)), "{members:?}");
    assert!(!members.contains(ProcessId::new(150, 3030302)), "{members:?}");
    n.proc
        .wait_for("asking the GCD", |l| l.contains("registering with the GCD again: a GOT_IT came but no I_AM_LEADER"));
}

#[test]
fn the_same_su_id_started_twice_is_told_in_one_line_by_each() {
    let dir = Scratch::new("twice");
    let (_gcd, gcd) = python_gcd("HOWDY");
    let mut a = Node::start(&dir, gcd, (10, 4040401), &["--no-probe"]);
    let a_port = node_port(&mut a);
    a.proc.wait_for("leading", |l| l.contains("I am the leader now"));
    let mut b = Node::start(&dir, gcd, (20, 4040401), &["--no-probe"]);
    let b_port = node_port(&mut b);
    b.proc.wait_for("leading", |l| l.contains("I am the leader now"));
    // The GCD replaced the first: it lists only the second.
    let group = register(gcd, (1, 4040402), 7);
    assert!(group.contains(ProcessId::new(20, 4040401)) && !group.contains(ProcessId::new(10, 4040401)));
    // A classmate's peer that only ever adds members lists both in its ELECTs.
    let both = t([
        s("ELECT"),
        Value::Dict(vec![
            (pid_value(1, 4040402), addr_value(7)),
            (pid_value(10, 4040401), addr_value(a_port)),
            (pid_value(20, 4040401), addr_value(b_port)),
        ]),
    ]);
    assert!(got_it(ask(a_port, &both)));
    assert!(got_it(ask(b_port, &both)));
    a.proc.wait_for("told", |l| l.contains(&format!("(20, 4040401) at 127.0.0.1:{b_port} has our SU ID 4040401")));
    b.proc.wait_for("told", |l| l.contains(&format!("(10, 4040401) at 127.0.0.1:{a_port} has our SU ID 4040401")));
    let told = b.proc.seen.iter().find(|l| l.contains("has our SU ID")).unwrap();
    assert!(told.contains("replaced the other") && told.contains("--su-id"), "{told}");
}

#[test]
fn a_port_taken_while_feigning_is_left_for_another_and_registered() {
    let dir = Scratch::new("taken");
    let (_gcd, gcd) = python_gcd("HOWDY");
    let me = (5, 5050501);
    let mut n = Node::start(
        &dir,
        gcd,
        me,
        &["--no-probe", "--feign-after", "300ms..300ms", "--feign-for", "5s..5s", "--feign-mode", "close"],
    );
    let port = node_port(&mut n);
    n.proc.wait_for("feigning", |l| l.contains("feigning failure"));
    // Someone else takes our port while we are down (the node may not reopen it yet):
    // the failure lasts 5 s, so that a loaded machine still takes it in time.
    let end = Instant::now() + Duration::from_secs(5);
    let squatter = loop {
        match TcpListener::bind(("127.0.0.1", port)) {
            Ok(l) => break l,
            Err(e) => {
                assert!(Instant::now() < end, "could not take port {port}: {e}");
                std::thread::yield_now();
            }
        }
    };
    let line = n.proc.wait_for("moved", |l| l.contains("was taken while we were down: listening at"));
    let new_port = listening_port(line.split(" now,").next().unwrap());
    assert_ne!(new_port, port, "{line}");
    // The GCD lists us at the new port, and the node answers there (between failures).
    common::wait_until(
        "the GCD lists us at the new port",
        || register(gcd, (1, 5050502), 9).get(ProcessId::new(me.0, me.1)).map(|a| a.port) == Some(new_port),
        || n.proc.seen.join("\n"),
    );
    common::wait_until(
        "a PROBE answered at the new port",
        || TcpStream::connect(("127.0.0.1", new_port)).is_ok() && got_it(ask(new_port, &t([s("PROBE"), Value::None]))),
        || n.proc.seen.join("\n"),
    );
    drop(squatter);
    assert!(!n.proc.seen.iter().any(|l| l.contains("stopping")), "{}", n.proc.seen.join("\n"));
}

#[test]
fn a_crowd_of_hanging_connections_cannot_keep_a_probe_out() {
    let dir = Scratch::new("crowd");
    let (_gcd, gcd) = python_gcd("HOWDY");
    let mut n = Node::start(&dir, gcd, (5, 6060601), &["--no-probe"]);
    let port = node_port(&mut n);
    n.proc.wait_for("joined", |l| l.contains("joined a group of"));
    // More connections than the node holds open (256) that send one byte (a pickle's
    // PROTO opcode) and hang.
    let crowd: Vec<TcpStream> = (0..600)
        .map(|_| {
            let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
            c.write_all(&[0x80]).unwrap();
            c
        })
        .collect();
    n.proc.wait_for("the slots full", |l| l.contains("connections open"));
    let reply = ask(port, &t([s("PROBE"), Value::None]));
    assert!(got_it(reply.clone()), "PROBE under a crowd answered {reply:?}");
    drop(crowd);
}

/// Starts Python peers of `dialect` at `py` and bully-nodes at `rs`, in the order
/// given by `py_first`; all must follow `want`.
fn dialect_group(dialect: &str, py: &[Pid], rs: &[Pid], py_first: bool, want: Pid) {
    let dir = Scratch::new(&format!("dialect-{dialect}"));
    let (_gcd, gcd) = python_gcd("HOWDY");
    let start_py = |peers: &mut Vec<PyPeer>| {
        for pid in py {
            peers.push(PyPeer::start_with(gcd, *pid, "HOWDY", &["--dialect", dialect]));
        }
    };
    let mut peers = Vec::new();
    let mut nodes = Vec::new();
    if py_first {
        start_py(&mut peers);
    }
    for pid in rs {
        nodes.push(Node::start(&dir, gcd, *pid, &[]));
    }
    if !py_first {
        start_py(&mut peers);
    }
    wait_all_follow(&nodes.iter().collect::<Vec<_>>(), want);
    for peer in &mut peers {
        peer.wait_follows(want);
    }
}

#[test]
fn bully_nodes_follow_a_wrapped_dialect_leader_started_first() {
    dialect_group("wrapped", &[(300, 7070701)], &[(60, 7070702), (100, 7070703)], true, (300, 7070701));
}

#[test]
fn bully_nodes_follow_a_wrapped_dialect_leader_started_last() {
    dialect_group("wrapped", &[(300, 7171701)], &[(60, 7171702), (100, 7171703)], false, (300, 7171701));
}

#[test]
fn a_wrapped_dialect_peer_follows_a_bully_node_leader_either_way() {
    dialect_group("wrapped", &[(20, 7272701)], &[(300, 7272702), (60, 7272703)], true, (300, 7272702));
    dialect_group("wrapped", &[(20, 7373701)], &[(300, 7373702)], false, (300, 7373702));
}

#[test]
fn sender_tuple_dialect_peers_and_bully_nodes_agree_both_ways() {
    dialect_group("sender", &[(300, 7474701)], &[(60, 7474702)], true, (300, 7474701));
    dialect_group("sender", &[(20, 7575701)], &[(300, 7575702)], true, (300, 7575702));
}
