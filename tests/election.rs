//! Elections end to end: real bully-node processes on loopback with `bully-node gcd`,
//! each one's --events file read to see whom it follows.

mod common;

use bully_node::{register, Addr, NameChoice, ProcessId};
use common::{leader_of, rust_gcd, wait_all_follow, wait_until, Node, Pid, Scratch};
use std::io::Read;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A permutation of 0..n from a seed (printed, so a failing order can be replayed).
fn shuffled(n: usize, mut seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        order.swap(i, (seed >> 33) as usize % (i + 1));
    }
    order
}

#[test]
fn five_nodes_in_random_order_settle_on_the_highest() {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let ids: [Pid; 5] = [(30, 3000004), (200, 3000002), (90, 3000003), (200, 3000001), (10, 3000005)];
    let order = shuffled(ids.len(), seed);
    println!("seed {seed}: start order {:?}", order.iter().map(|i| ids[*i]).collect::<Vec<_>>());
    let dir = Scratch::new("five");
    let (_gcd, port) = rust_gcd("HOWDY");
    let nodes: Vec<Node> = order.iter().map(|i| Node::start(&dir, port, ids[*i], &[])).collect();
    // (200, 3000002) beats (200, 3000001) on the SU ID.
    wait_all_follow(&nodes.iter().collect::<Vec<_>>(), (200, 3000002));
}

#[test]
fn a_higher_node_joining_later_takes_over() {
    let dir = Scratch::new("later");
    let (_gcd, port) = rust_gcd("HOWDY");
    let mut nodes: Vec<Node> = [(30, 3100001), (90, 3100002), (60, 3100003)]
        .into_iter()
        .map(|pid| Node::start(&dir, port, pid, &[]))
        .collect();
    wait_all_follow(&nodes.iter().collect::<Vec<_>>(), (90, 3100002));
    nodes.push(Node::start(&dir, port, (300, 3100004), &[]));
    wait_all_follow(&nodes.iter().collect::<Vec<_>>(), (300, 3100004));
    // The old leader learned of the newcomer (it was not in its members) and follows.
    let old = &nodes[1];
    assert!(old.events().iter().any(|e| leader_of(e) == Some((300, 3100004))));
}

/// A member that registered with the GCD and then accepts connections and never
/// answers them. Counts the connections it took.
fn silent_member(gcd_port: u16, pid: ProcessId) -> (Arc<AtomicUsize>, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = Addr::new("127.0.0.1", listener.local_addr().unwrap().port());
    let gcd_addr = Addr::new("127.0.0.1", gcd_port);
    register(&gcd_addr, NameChoice::Auto, pid, &addr, Duration::from_secs(5)).unwrap();
    let taken = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&taken);
    let handle = std::thread::spawn(move || {
        // Hold the first connection open until the client gives up on it.
        let (mut s, _) = listener.accept().unwrap();
        counter.fetch_add(1, Ordering::SeqCst);
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    });
    (taken, handle)
}

fn event_time(e: &serde_json::Value) -> u64 {
    e["t"].as_u64().unwrap_or_else(|| panic!("no time: {e}"))
}

#[test]
fn a_silent_higher_member_costs_an_election_no_more_than_its_timeout() {
    let dir = Scratch::new("silent");
    let (_gcd, port) = rust_gcd("HOWDY");
    let (taken, silent) = silent_member(port, ProcessId::new(365, 3200009));
    // The socket timeout is far longer than the election timeout: the election must
    // end on the election timer, not wait for the socket.
    let node = Node::start(&dir, port, (5, 3200001), &["--elect-timeout", "1s", "--socket-timeout", "30s"]);
    wait_all_follow(&[&node], (5, 3200001));
    // The kernel takes the connection before the member's thread accepts and counts it.
    wait_until("the ELECT reached the silent member", || taken.load(Ordering::SeqCst) == 1, String::new);
    let events = node.events();
    let started = events.iter().find(|e| e["event"] == "election_started").unwrap();
    let won = events.iter().find(|e| e["event"] == "leader").unwrap();
    let took = event_time(won) - event_time(started);
    // 1 s timer; 30 s would mean it waited for the socket, ~0 that it took silence for
    // failure. The bounds are loose: "t" is wall-clock time, which drifts here.
    assert!((500..10_000).contains(&took), "election took {took} ms");
    drop(node);
    silent.join().unwrap();
}

#[test]
fn a_stopped_node_says_so() {
    let dir = Scratch::new("stop");
    let (_gcd, port) = rust_gcd("HOWDY");
    let mut node = Node::start(&dir, port, (5, 3300001), &[]);
    wait_all_follow(&[&node], (5, 3300001));
    let status = std::process::Command::new("kill").args(["-TERM", &node.proc.pid().to_string()]).status().unwrap();
    assert!(status.success());
    let (code, out) = node.proc.wait_exit();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("stopped"), "{out}");
    assert_eq!(node.events().last().unwrap()["event"], "stopped");
}

#[test]
fn quiet_keeps_leader_changes_and_verbose_adds_connections() {
    let dir = Scratch::new("quiet");
    let (_gcd, port) = rust_gcd("HOWDY");
    let mut quiet = Node::start(&dir, port, (5, 3400001), &["-q"]);
    quiet.proc.wait_for("leader line", |l| l.contains("I am the leader now"));
    // Started after the first has registered, the second asks it with ELECT.
    let mut verbose = Node::start(&dir, port, (4, 3400002), &["-v"]);
    wait_all_follow(&[&quiet, &verbose], (5, 3400001));
    // Verbose shows each ELECT it sends, with its size, and each connection it takes.
    verbose.proc.wait_for("ELECT detail", |l| l.contains("ELECT #1 to (5, 3400001) at 127.0.0.1:"));
    verbose.proc.wait_for("connection detail", |l| l.contains("connection from 127.0.0.1:"));
    quiet.proc.kill();
    let (_, out) = quiet.proc.wait_exit();
    assert!(!out.contains("election #"), "-q printed election detail:\n{out}");
    assert!(!out.contains("listening at"), "-q printed start-up detail:\n{out}");
}
