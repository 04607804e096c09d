//! A node on a port anything can connect to: silent and trickling connections, more
//! connections than it serves at once, floods of junk, wrong but well-formed messages,
//! a GCD that is down, and a restart. Real sockets on 127.0.0.1 against a real process;
//! its threads and descriptors are read from /proc.

mod common;

use bully_node::wire::{decode, encode, read_pickle, Style, Value, MAX_PICKLE_BYTES};
use bully_node::{encode_message, register, Addr, Message, NameChoice, ProcessId};
use common::{bully_node, leader_of, rust_gcd, says, send_raw, wait_all_follow, wait_until, Node, Proc, Scratch};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The node's cap on live connection threads (src/runtime/listener.rs).
const MAX_CONNECTIONS: usize = 256;

fn threads(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|l| l.strip_prefix("Threads:")).unwrap().trim().parse().unwrap()
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

/// The port a node listens on, from its start-up line.
fn port_of(node: &mut Node) -> u16 {
    let line = node.proc.wait_for("listening", |l| l.contains("listening at"));
    line.rsplit(':').next().unwrap().trim().parse().unwrap()
}

/// PROBE the node and say how long GOT_IT took (None: no GOT_IT).
fn probe(port: u16) -> Option<Duration> {
    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&encode_message(&Message::Probe)).ok()?;
    let reply = read_pickle(&mut s, 1024).ok()?;
    (decode(&reply).ok()? == Value::str("GOT_IT")).then(|| started.elapsed())
}

/// A node alone (so it leads and its thread count settles), without probing or feigning.
fn lone_node(dir: &Scratch, gcd_port: u16, pid: (u32, u32)) -> (Node, u16) {
    let mut node = Node::start(dir, gcd_port, pid, &["--no-probe"]);
    let port = port_of(&mut node);
    wait_all_follow(&[&node], pid);
    (node, port)
}

/// Waits until the node's threads and descriptors are back to (about) `idle`.
fn wait_idle(node: &Node, idle: (usize, usize)) {
    let pid = node.proc.pid();
    wait_until(
        "threads and descriptors back to idle",
        || threads(pid) <= idle.0 + 1 && fds(pid) <= idle.1 + 1,
        || format!("threads {} (idle {}), fds {} (idle {})", threads(pid), idle.0, fds(pid), idle.1),
    );
}

#[test]
fn silent_and_trickling_connections_cost_a_thread_only_until_the_deadline() {
    let dir = Scratch::new("silent");
    let (_gcd, gcd_port) = rust_gcd("HOWDY");
    let (node, port) = lone_node(&dir, gcd_port, (5, 7000001));
    let pid = node.proc.pid();
    let idle = (threads(pid), fds(pid));
    let silent: Vec<TcpStream> = (0..100).map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
    // Trickle a valid PROBE a byte every 300 ms: it would take 5 s, past the deadline.
    let probe_bytes = encode_message(&Message::Probe);
    let trickles: Vec<_> = (0..20)
        .map(|_| {
            let bytes = probe_bytes.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                for b in bytes {
                    if s.write_all(&[b]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
            })
        })
        .collect();
    // The node holds them all, each on a thread of its own (and a descriptor).
    wait_until(
        "connections held",
        || fds(pid) >= idle.1 + 120 && threads(pid) >= idle.0 + 120,
        || format!("fds {} (idle {}), threads {} (idle {})", fds(pid), idle.1, threads(pid), idle.0),
    );
    assert!(threads(pid) <= idle.0 + 120 + 2, "threads {} (idle {})", threads(pid), idle.0);
    assert!(probe(port).is_some(), "a legitimate PROBE is answered meanwhile");
    let started = Instant::now();
    wait_idle(&node, idle);
    // Each silent connection was closed by the node at its deadline.
    for mut s in silent {
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(s.read(&mut buf).unwrap_or(0), 0);
    }
    trickles.into_iter().for_each(|t| t.join().unwrap());
    println!("idle again {:?} after the connections were opened", started.elapsed());
}

/// Whether the node has closed `s` (EOF or reset) within `wait`.
fn closed_within(s: &TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 1];
    match (&mut &*s).read(&mut buf) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

/// Polls `cond` every 2 ms for up to 20 s (a test of the cap can't wait 50 ms a round:
/// its connections' deadline is 2 s).
fn soon(what: &str, mut cond: impl FnMut() -> bool, describe: impl Fn() -> String) {
    let end = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < end, "{what}: not within 20 s\n{}", describe());
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn past_the_cap_the_oldest_silent_connection_makes_room() {
    let dir = Scratch::new("cap");
    let (_gcd, gcd_port) = rust_gcd("HOWDY");
    let (node, port) = lone_node(&dir, gcd_port, (5, 7100001));
    let pid = node.proc.pid();
    let idle = (threads(pid), fds(pid));
    // More silent connections than the cap, in batches, each taken by the node before
    // the next, so that on a loaded machine too all are open within their 2 s deadline.
    let over = MAX_CONNECTIONS + 88;
    let mut held: Vec<TcpStream> = Vec::new();
    while held.len() < over {
        held.extend((0..64.min(over - held.len())).map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap()));
        let (open, evicted) = (held.len().min(MAX_CONNECTIONS), held.len().saturating_sub(MAX_CONNECTIONS));
        // The node holds the cap's worth, and closed the oldest to make room.
        soon(
            "the batch taken",
            || {
                fds(pid) >= idle.1 + open
                    && (evicted == 0 || closed_within(&held[evicted - 1], Duration::from_millis(1)))
            },
            || format!("{} connected; fds {} (idle {})", held.len(), fds(pid), idle.1),
        );
    }
    assert!(held[..88].iter().all(|s| closed_within(s, Duration::from_millis(1))), "the oldest were not all closed");
    assert!(fds(pid) <= idle.1 + MAX_CONNECTIONS + 2, "cap exceeded: fds {} (idle {})", fds(pid), idle.1);
    // A thread per connection held, never more than the cap's worth.
    let capped = || threads(pid) <= idle.0 + MAX_CONNECTIONS + 2;
    assert!(capped(), "threads {} (idle {})", threads(pid), idle.0);
    // With every slot still taken, a real PROBE is answered (evicting one more), and
    // the newest silent connection, far from its deadline, is still open.
    assert!(probe(port).is_some());
    assert!(closed_within(&held[88], Duration::from_secs(1)), "no room was made for the PROBE");
    assert!(!closed_within(&held[over - 1], Duration::from_millis(1)), "the newest silent connection was closed");
    assert!(capped(), "threads {} (idle {})", threads(pid), idle.0);
    drop(held);
    wait_idle(&node, idle);
    assert!(probe(port).is_some());
}

/// One junk connection of kind `k`.
fn junk(port: u16, k: usize) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let p = |v: Value| encode(&v, Style::Compact);
    let pid = |d: i64, su: i64| Value::tuple([Value::Int(d), Value::Int(su)]);
    let bytes: Vec<u8> = match k % 9 {
        0 => b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        1 => vec![0x80, 0x04, 0x95, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0],
        2 => {
            let mut v = b"\x80\x04\x8d".to_vec();
            v.extend_from_slice(&(70_000u64).to_le_bytes());
            v.extend(std::iter::repeat_n(b'a', 70_000));
            v
        }
        3 => p(Value::tuple([Value::str("ELECT"), Value::Int(5)])),
        4 => p(Value::tuple([Value::str("I_AM_LEADER"), pid(1, 1000001)])),
        5 => p(Value::tuple([Value::str("PROBE"), Value::str("with data")])),
        6 => p(Value::tuple([Value::str("HELLO"), Value::None])),
        7 => p(Value::tuple([
            Value::str("HOWDY"),
            Value::tuple([pid(5, 1234567), Value::tuple([Value::str("x"), Value::Int(1)])]),
        ])),
        _ => b"\x80".to_vec(), // a single byte, then silence until we close
    };
    let _ = s.write_all(&bytes);
    let mut sink = [0u8; 64];
    let _ = s.read(&mut sink);
}

#[test]
fn a_flood_of_junk_does_not_stop_probes_or_elections() {
    let dir = Scratch::new("flood");
    let (_gcd, gcd_port) = rust_gcd("HOWDY");
    let (node, port) = lone_node(&dir, gcd_port, (50, 7200001));
    let pid = node.proc.pid();
    let idle = (threads(pid), fds(pid));
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(Mutex::new(0usize));
    let flooders: Vec<_> = (0..16)
        .map(|t| {
            let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
            std::thread::spawn(move || {
                for k in 0..2000 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    junk(port, t + k);
                    *sent.lock().unwrap() += 1;
                }
            })
        })
        .collect();
    // A legitimate peer PROBEs every 100 ms for 3 s through the flood.
    let mut latencies = Vec::new();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        latencies.push(probe(port).expect("every PROBE is answered during the flood"));
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::SeqCst);
    flooders.into_iter().for_each(|f| f.join().unwrap());
    latencies.sort();
    let sent = *sent.lock().unwrap();
    println!(
        "{sent} junk connections in 3 s; {} PROBEs answered, median {:?}, worst {:?}",
        latencies.len(),
        latencies[latencies.len() / 2],
        latencies.last().unwrap()
    );
    assert!(sent > 600, "the flood was only {sent} connections");
    // Elections still work: a higher node joins and takes over.
    let higher = Node::start(&dir, gcd_port, (300, 7200002), &["--no-probe"]);
    wait_all_follow(&[&node, &higher], (300, 7200002));
    // The lower I_AM_LEADERs in the flood were never followed.
    assert!(!node.events().iter().any(|e| leader_of(e) == Some((1, 1000001))));
    wait_idle(&node, idle);
}

/// A member registered with the GCD whose listener the test controls: it records what
/// it is sent and answers every message with `reply`.
struct FakeMember {
    received: Arc<Mutex<Vec<Value>>>,
    stop: Arc<AtomicBool>,
    port: u16,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeMember {
    fn start(gcd_port: u16, pid: ProcessId, reply: Value) -> FakeMember {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        register(
            &Addr::new("127.0.0.1", gcd_port),
            NameChoice::Auto,
            pid,
            &Addr::new("127.0.0.1", port),
            Duration::from_secs(5),
        )
        .unwrap();
        let (received, stop) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicBool::new(false)));
        let (r, st) = (Arc::clone(&received), Arc::clone(&stop));
        let reply = encode(&reply, Style::Compact);
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut s) = conn else { continue };
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                if let Ok(bytes) = read_pickle(&mut s, MAX_PICKLE_BYTES) {
                    r.lock().unwrap().push(decode(&bytes).unwrap());
                    let _ = s.write_all(&reply);
                }
            }
        });
        FakeMember { received, stop, port, thread: Some(thread) }
    }
}

impl Drop for FakeMember {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        let _ = self.thread.take().unwrap().join();
    }
}

#[test]
fn wrong_but_well_formed_messages_are_each_handled_by_a_rule() {
    let dir = Scratch::new("wrong");
    let (_gcd, gcd_port) = rust_gcd("HOWDY");
    // A higher member that answers ELECT with something other than GOT_IT.
    let fake = FakeMember::start(gcd_port, ProcessId::new(300, 7300009), Value::str("NOPE"));
    // The GCD's word on the unknown higher leader comes at the next leader's check: a short
    // period keeps it well inside the deadline (the default, 10..20 s, raced it).
    let mut node = Node::start(&dir, gcd_port, (5, 7300001), &["--no-probe", "--leader-check", "500ms..1s"]);
    let port = port_of(&mut node);
    wait_all_follow(&[&node], (5, 7300001));
    assert!(
        node.events_of("elect_failed").iter().any(|e| says(e, "reason", "instead of GOT_IT")),
        "a wrong reply is a failed ELECT"
    );
    let before = fake.received.lock().unwrap().len();

    // An ELECT whose members are mostly junk: one usable newcomer among them.
    let pid = |d: i64, su: i64| Value::tuple([Value::Int(d), Value::Int(su)]);
    let addr = |h: &str, p: i64| Value::tuple([Value::str(h), Value::Int(p)]);
    let junk_members = Value::Dict(vec![
        (pid(3, 7300003), addr("127.0.0.1", 1)),
        (pid(999, 7300004), addr("127.0.0.1", 2)),
        (pid(4, 7300005), addr("", 3)),
        (pid(6, 7300006), addr("127.0.0.1", 0)),
        (pid(7, 7300007), Value::tuple([Value::Int(1), Value::Int(2)])),
        (Value::str("not a pid"), addr("127.0.0.1", 4)),
        (pid(8, 12), addr("127.0.0.1", 5)),
    ]);
    let reply = send_raw(port, &encode(&Value::tuple([Value::str("ELECT"), junk_members]), Style::Compact));
    assert_eq!(decode(&reply).unwrap(), Value::str("GOT_IT"));
    // Its election asks the fake member, whose copy of our members holds no junk.
    let is_elect = |v: &Value| matches!(Message::from_value(v), Ok(Message::Elect { .. }));
    let new_elect = || fake.received.lock().unwrap()[before..].iter().find(|v| is_elect(v)).cloned();
    wait_until("a new ELECT", || new_elect().is_some(), || format!("{:?}", fake.received.lock().unwrap()));
    let elect = new_elect().unwrap();
    let Message::Elect { members, rejected, .. } = Message::from_value(&elect).unwrap() else { panic!("{elect}") };
    assert_eq!(rejected, 0, "{elect}");
    let mut pids: Vec<_> = members.iter().map(|m| m.pid.su_id).collect();
    pids.sort();
    assert_eq!(pids, [7300001, 7300003, 7300009], "{elect}");

    // I_AM_LEADER from an unknown lower id: not followed. From an unknown higher id:
    // followed only until the GCD says it is not a member.
    // One after the other: each connection has a thread of its own, so the second could
    // otherwise be taken in first, and the lower one's takeover would then end our
    // following of the higher one before the GCD is asked about it.
    for (leader, su_id) in [(pid(1, 7300010), 7300010), (pid(365, 7300011), 7300011)] {
        send_raw(port, &encode(&Value::tuple([Value::str("I_AM_LEADER"), leader]), Style::Compact));
        let heard = || node.events_of("i_am_leader_received").iter().any(|e| e["leader"][1] == su_id);
        wait_until("the announcement taken in", heard, || format!("{:#?}", node.events()));
    }
    // PROBE with data, an unknown name, HOWDY sent to a peer: answered or ignored.
    let probe_with_data = encode(&Value::tuple([Value::str("PROBE"), Value::str("data")]), Style::Compact);
    assert_eq!(decode(&send_raw(port, &probe_with_data)).unwrap(), Value::str("GOT_IT"));
    assert_eq!(send_raw(port, &encode(&Value::tuple([Value::str("HELLO"), Value::None]), Style::Compact)), b"");
    wait_until(
        "back to leading itself",
        || {
            let events = node.events();
            events.iter().any(|e| says(e, "reason", "is not a member the GCD knows"))
                && events.iter().rev().find_map(leader_of) == Some((5, 7300001))
        },
        || format!("{:#?}", node.events()),
    );
    assert!(!node.events().iter().any(|e| leader_of(e) == Some((1, 7300010))));
    assert!(probe(port).is_some());
}

#[test]
fn a_gcd_that_is_down_at_start_up_is_retried_then_reported() {
    // Nothing listens: it waits (--gcd-wait), saying so, then one clear error.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cmd = bully_node();
    cmd.args(["--gcd", &format!("127.0.0.1:{closed}"), "--days", "5", "--su-id", "7400001", "--no-feign"]);
    cmd.args(["--gcd-wait", "3s"]);
    let mut p = Proc::spawn("node without a GCD", cmd);
    let (code, out) = p.wait_exit();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("(gave up after ") && out.contains(" attempts over 2."), "{out}");
    assert_eq!(out.matches(&format!("waiting for the GCD at 127.0.0.1:{closed}")).count(), 1, "{out}");

    // A GCD that comes up during the retries is joined.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cmd = bully_node();
    cmd.args(["--gcd", &format!("127.0.0.1:{port}"), "--days", "5", "--su-id", "7400001", "--no-feign"]);
    let mut node = Proc::spawn("early node", cmd);
    node.wait_for("a retry", |l| l.contains("waiting for the GCD at"));
    let mut gcd = bully_node();
    gcd.args(["gcd", "--listen", &format!("127.0.0.1:{port}")]);
    let _gcd = Proc::spawn("late gcd", gcd);
    node.wait_for("joined", |l| l.contains("joined a group of 1"));
}

#[test]
fn a_node_restarted_with_the_same_identity_rejoins() {
    let dir = Scratch::new("restart");
    let (_gcd, gcd_port) = rust_gcd("HOWDY");
    let low = Node::start(&dir, gcd_port, (10, 7500001), &[]);
    let mid = Node::start(&dir, gcd_port, (20, 7500002), &[]);
    let mut top = Node::start(&dir, gcd_port, (30, 7500003), &[]);
    wait_all_follow(&[&low, &mid, &top], (30, 7500003));
    let status = std::process::Command::new("kill").args(["-TERM", &top.proc.pid().to_string()]).status().unwrap();
    assert!(status.success());
    top.proc.wait_exit();
    wait_all_follow(&[&low, &mid], (20, 7500002));
    // Same identity, a new port: the GCD replaces its entry and the group takes it back.
    let top = Node::start(&dir, gcd_port, (30, 7500003), &[]);
    wait_all_follow(&[&low, &mid, &top], (30, 7500003));
}
