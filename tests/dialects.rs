//! Issue 21: the peers of the ELECTION / OK / COORDINATOR years (fall 2019 to fall
//! 2024) and bully-nodes in one group agree, and nothing a bully-node sends makes one of
//! them raise. Each group is two fixture peers of one dialect (tests/fixtures/
//! bully_peer.py, which raises on any shape its years' peers would not take) and two
//! bully-nodes, on a GCD that takes only JOIN, in both orders: a bully-node highest, then
//! a peer highest.

mod common;

use common::{python_gcd, wait_all_follow, Node, Pid, PyPeer, Scratch};
use std::time::{Duration, Instant};

/// How long agreement must hold once reached (a few of the peers' PROBE rounds, which
/// come every 0.5 to 3 s), so a reply form they misread shows.
const HOLD: Duration = Duration::from_secs(4);

/// Lines that show a fixture peer raised on something it was sent.
fn raised(peer: &PyPeer) -> Vec<&String> {
    // The marker line, once per raise (the "raised" event says the same).
    peer.proc.seen.iter().filter(|l| l.contains("FIXTURE PEER RAISED")).collect()
}

/// Takes every line a peer printed so far.
fn drain(peer: &mut PyPeer) {
    while let Ok(line) = peer.proc.lines.try_recv() {
        peer.proc.seen.push(line);
    }
}

/// The leader a peer follows, per its latest leader line.
fn follows(peer: &PyPeer) -> Option<Pid> {
    peer.proc.seen.iter().rev().find_map(|l| common::leader_in(l))
}

/// Two peers of `dialect` at `py` and bully-nodes at `rs` on a JOIN GCD; the peers first
/// when `py_first`. All must come to follow the highest and keep following it for
/// [`HOLD`], and no peer may raise more than `wrong_tries` times (a bully-node's tries of
/// their years' forms before it heard the peer's own).
fn old_group(dialect: &str, py: [Pid; 2], rs: [Pid; 2], py_first: bool, wrong_tries: usize) {
    let want = *py.iter().chain(&rs).max().unwrap();
    let dir = Scratch::new(&format!("old-{dialect}"));
    let (_gcd, gcd) = python_gcd("JOIN");
    let start_py = |peers: &mut Vec<PyPeer>| {
        for pid in py {
            peers.push(PyPeer::start_with(gcd, pid, "JOIN", &["--dialect", dialect, "--probe"]));
        }
    };
    let (mut peers, mut nodes) = (Vec::new(), Vec::new());
    if py_first {
        start_py(&mut peers);
    }
    for pid in rs {
        nodes.push(Node::start(&dir, gcd, pid, &[]));
    }
    if !py_first {
        start_py(&mut peers);
    }
    wait_all_follow(&nodes.iter().collect::<Vec<_>>(), want);
    for peer in &mut peers {
        peer.wait_follows(want);
    }
    if let Some(leader) = nodes.iter_mut().find(|n| n.pid == want) {
        if dialect == "members-bare-ok" {
            // Our first OK is ('OK', None); these peers' failed PROBEs teach the leader.
            leader.proc.wait_for("the bare OK learned", |l| l.contains("'OK' from now on"));
        }
    }
    let probes_failed = |peer: &PyPeer| peer.proc.seen.iter().filter(|l| l.contains(r#""probe_failed""#)).count();
    let failed_before: Vec<usize> = peers
        .iter_mut()
        .map(|p| {
            drain(p);
            probes_failed(p)
        })
        .collect();
    let until = Instant::now() + HOLD;
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
        for peer in &mut peers {
            drain(peer);
            assert_eq!(
                follows(peer),
                Some(want),
                "{dialect}: peer {:?} left {want:?}:\n{}",
                peer.pid,
                peer.proc.seen.join("\n")
            );
        }
        for node in &nodes {
            assert_eq!(node.leader(), Some(want), "{dialect}: node {:?} left {want:?}", node.pid);
        }
    }
    for (peer, before) in peers.iter_mut().zip(failed_before) {
        drain(peer);
        // A PROBE answered in a form it does not read counts as failed.
        assert_eq!(
            probes_failed(peer),
            before,
            "{dialect}: peer {:?} PROBEs failed:\n{}",
            peer.pid,
            peer.proc.seen.join("\n")
        );
        let raised = raised(peer).len();
        assert!(
            raised <= wrong_tries,
            "{dialect}: peer {:?} raised {raised} times:\n{}",
            peer.pid,
            peer.proc.seen.join("\n")
        );
    }
}

fn both_orders(dialect: &str, su: u32, py_first: bool, wrong_tries: usize) {
    // A bully-node highest, then a peer highest.
    old_group(dialect, [(20, su + 1), (40, su + 2)], [(60, su + 3), (80, su + 4)], py_first, wrong_tries);
    old_group(dialect, [(60, su + 11), (80, su + 12)], [(20, su + 13), (40, su + 14)], py_first, wrong_tries);
}

#[test]
fn members_dict_peers_that_read_tuple_oks_agree_with_bully_nodes() {
    both_orders("members-tuple-ok", 8_100_000, true, 0);
}

#[test]
fn members_dict_peers_that_read_bare_oks_agree_with_bully_nodes() {
    both_orders("members-bare-ok", 8_200_000, true, 0);
}

/// Started after the bully-nodes: their first message tells their dialect (the JOIN
/// era's first try, the members dict, is not theirs).
#[test]
fn sender_tagged_peers_agree_with_bully_nodes() {
    both_orders("sender-tagged", 8_300_000, false, 2);
}

#[test]
fn three_part_peers_agree_with_bully_nodes() {
    both_orders("three-tuple", 8_400_000, false, 4);
}

/// Started before the bully-nodes, these peers never speak to them first: each
/// bully-node tries their years' forms in turn (the members dict, the sender-tagged, the
/// three-part), each wrong one making the peer raise once, and keeps the one answered.
#[test]
fn peers_of_other_old_forms_started_first_are_found_out_at_a_bounded_cost() {
    // Per peer: at most the wrong forms before its own, from each of the two bully-nodes.
    both_orders("sender-tagged", 8_800_000, true, 2);
    old_group("three-tuple", [(60, 8_800_111), (80, 8_800_112)], [(20, 8_800_113), (40, 8_800_114)], true, 4);
}

/// The port in a node's "listening at HOST:PORT" line.
fn node_port(n: &mut Node) -> u16 {
    let line = n.proc.wait_for("listening", |l| l.contains("listening at "));
    line.rsplit(':').next().unwrap().trim().parse().unwrap()
}

/// A three-part ELECTION is answered with `('OK', None)` on a new connection to where its
/// sender listens. A sender above us elects downwards (the least id wins): it is named
/// once in the log, however often it elects, and its ELECTIONs start no election of ours.
#[test]
fn a_three_part_election_is_answered_on_a_new_connection_and_a_downward_one_named_once() {
    use bully_node::wire::{decode, encode, read_pickle, Style, Value};
    use common::{i, s, send_raw, t};
    let dir = Scratch::new("old-three-part");
    let (_gcd, gcd) = python_gcd("JOIN");
    let mut node = Node::start(&dir, gcd, (50, 8_500_001), &[]);
    let port = node_port(&mut node);
    node.proc.wait_for("its first election won", |l| l.contains("I am the leader"));
    let answers = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let back = answers.local_addr().unwrap().port();
    let me = t([i(90), i(8_500_002)]);
    let members = Value::Dict(vec![(me.clone(), t([s("127.0.0.1"), i(back.into())]))]);
    for _ in 0..3 {
        let reply = send_raw(port, &encode(&t([s("ELECTION"), me.clone(), members.clone()]), Style::Compact));
        assert!(reply.is_empty(), "answered on the ELECTION's own connection: {reply:?}");
        let (mut conn, _) = answers.accept().unwrap();
        conn.set_read_timeout(Some(common::DEADLINE)).unwrap();
        let ok = decode(&read_pickle(&mut conn, 1024).unwrap()).unwrap();
        assert_eq!(ok, t([s("OK"), Value::None]));
    }
    // The OK goes out before the node would be told: every line about the three is written.
    node.proc.kill();
    while let Ok(line) = node.proc.lines.recv_timeout(common::DEADLINE) {
        node.proc.seen.push(line);
    }
    let seen = node.proc.seen.join("\n");
    assert_eq!(seen.matches("elects downwards").count(), 1, "{seen}");
    assert!(seen.contains("speaks the 2019–2022 ELECTION/OK/COORDINATOR protocol"), "{seen}");
    assert!(!seen.contains("ELECT from"), "an ELECTION from a downward member reached the election rules:\n{seen}");
}

/// The next message that arrives at `listener` within the deadline, decoded; a PROBE is
/// answered `('OK', None)`, as a members-dict peer does, and skipped.
fn next_message(listener: &std::net::TcpListener) -> bully_node::wire::Value {
    use bully_node::wire::{encode, Style, Value};
    loop {
        let (mut conn, message) = next_connection(listener);
        match message.as_pair() {
            Some((name, _)) if name.as_str() == Some("PROBE") => {
                let ok = encode(&Value::tuple([Value::str("OK"), Value::None]), Style::Compact);
                std::io::Write::write_all(&mut conn, &ok).unwrap();
            }
            _ => return message,
        }
    }
}

fn next_connection(listener: &std::net::TcpListener) -> (std::net::TcpStream, bully_node::wire::Value) {
    listener.set_nonblocking(true).unwrap();
    let end = Instant::now() + common::DEADLINE;
    let mut conn = loop {
        match listener.accept() {
            Ok((conn, _)) => break conn,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("no message within {:?}: {e}", common::DEADLINE),
        }
    };
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(common::DEADLINE)).unwrap();
    let message = bully_node::wire::decode(&bully_node::wire::read_pickle(&mut conn, 64 * 1024).unwrap()).unwrap();
    (conn, message)
}

/// A lower member with our days that announces itself over us again after we elected
/// over it compares only the days: named once, and not fought again.
#[test]
fn a_lower_member_with_our_days_that_keeps_announcing_is_named_once_and_not_fought() {
    use bully_node::wire::{encode, Style, Value};
    use bully_node::{Addr, Message, ProcessId, RegisterName};
    use common::{i, s, send_raw, t};
    let dir = Scratch::new("old-days-only");
    let (_gcd, gcd) = python_gcd("JOIN");
    // The lower member, registered first so the node announces to it.
    let ours = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let ours_port = ours.local_addr().unwrap().port();
    let join = Message::Register {
        name: RegisterName::Join,
        pid: ProcessId::new(50, 8_700_001),
        addr: Addr::new("127.0.0.1", ours_port),
    };
    assert!(!send_raw(gcd, &bully_node::encode_message(&join)).is_empty(), "the GCD did not answer");
    let mut node = Node::start(&dir, gcd, (50, 8_700_002), &[]);
    let port = node_port(&mut node);
    let won = |v: &Value| matches!(v, Value::Tuple(items) if items.first() == Some(&s("COORDINATOR")));
    assert!(won(&next_message(&ours)), "no announcement at start");
    let at = t([s("127.0.0.1"), i(ours_port.into())]);
    let coordinator = encode(&t([s("COORDINATOR"), t([i(50), i(8_700_001)]), at.clone()]), Style::Compact);
    send_raw(port, &coordinator);
    // The first time, the node elects over it and announces itself again.
    assert!(won(&next_message(&ours)), "the node did not elect over the first announcement");
    for _ in 0..2 {
        send_raw(port, &coordinator);
    }
    // Then an ELECTION from above (answered on a new connection): once its OK is here, the
    // node has handled every message before it.
    let above = t([i(90), i(8_700_003)]);
    let members = Value::Dict(vec![(above.clone(), at)]);
    send_raw(port, &encode(&t([s("ELECTION"), above, members]), Style::Compact));
    assert_eq!(next_message(&ours), t([s("OK"), Value::None]), "an election, not the OK, came");
    node.proc.kill();
    while let Ok(line) = node.proc.lines.recv_timeout(common::DEADLINE) {
        node.proc.seen.push(line);
    }
    let seen = node.proc.seen.join("\n");
    assert_eq!(seen.matches("compares only the days").count(), 1, "{seen}");
    assert_eq!(seen.matches("won election").count(), 2, "elected over it more than once:\n{seen}");
}

/// Issue 20 item 4: a bully-node announces to a bully-node once. The first announcement
/// to a member of unknown dialect also goes in the wrapped form (a wrapped-dialect peer
/// drops the standard one), once ever; a bully-node keeps the form it heard first and
/// drops the other as a copy (whichever came first), so it hears one announcement and
/// never flips its belief.
#[test]
fn a_bully_node_hears_one_announcement_from_another_and_keeps_its_dialect() {
    let dir = Scratch::new("one-announcement");
    let (_gcd, gcd) = python_gcd("HOWDY");
    let mut low = Node::start(&dir, gcd, (20, 8_600_001), &["-v"]);
    let high = Node::start(&dir, gcd, (90, 8_600_002), &[]);
    wait_all_follow(&[&low, &high], high.pid);
    // The two forms come on two connections, served in either order: the second is
    // the copy, dropped.
    low.proc.wait_for("the copy dropped", |l| l.contains("copy of (90, 8600002)'s announcement"));
    let heard = low.events_of("i_am_leader_received").len();
    assert_eq!(heard, 1, "announcements heard: {:?}", low.events_of("i_am_leader_received"));
    while let Ok(line) = low.proc.lines.try_recv() {
        low.proc.seen.push(line);
    }
    assert!(!low.proc.seen.iter().any(|l| l.contains("also spoke")), "{}", low.proc.seen.join("\n"));
    // The copy named where the leader listens: its first PROBE needs no look-up at the GCD.
    low.proc.wait_for("a PROBE of the leader answered", |l| l.contains("PROBE to leader") && l.contains("GOT_IT"));
    assert!(low.events_of("reregistered").is_empty(), "{:?}", low.events_of("reregistered"));
}

/// The same, with the two forms served in the other order (the connections' threads
/// race): the wrapped announcement first, then its standard copy, which is dropped.
#[test]
fn a_standard_copy_after_the_wrapped_announcement_is_dropped() {
    use bully_node::wire::{encode, Style, Value};
    use common::{i, s, send_raw, t};
    let dir = Scratch::new("copy-order");
    let (_gcd, gcd) = python_gcd("HOWDY");
    let mut low = Node::start(&dir, gcd, (20, 8_600_011), &["-v", "--no-probe"]);
    let port = node_port(&mut low);
    low.proc.wait_for("leading itself", |l| l.contains("I am the leader now"));
    // A higher bully-node's announcement, as it sends it to a member of unknown dialect.
    let leader = t([i(90), i(8_600_012)]);
    let members = Value::Dict(vec![(leader.clone(), t([s("127.0.0.1"), i(9)]))]);
    let wrapped = t([t([s("I_AM_LEADER"), members]), t([leader.clone(), t([i(20), i(8_600_011)])])]);
    send_raw(port, &encode(&wrapped, Style::Compact));
    send_raw(port, &encode(&t([s("I_AM_LEADER"), leader]), Style::Compact));
    low.proc.wait_for("the copy dropped", |l| l.contains("standard copy of (90, 8600012)'s announcement"));
    assert_eq!(low.events_of("i_am_leader_received").len(), 1, "{:?}", low.events_of("i_am_leader_received"));
    while let Ok(line) = low.proc.lines.try_recv() {
        low.proc.seen.push(line);
    }
    assert!(!low.proc.seen.iter().any(|l| l.contains("also spoke")), "{}", low.proc.seen.join("\n"));
}
