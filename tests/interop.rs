//! Interoperation with CPython: mixed groups of bully-node processes and the Python
//! reference peer (tests/fixtures/bully_peer.py, written from the assignment: pickled
//! messages, one per connection, a single recv(1024)) settle on the right leader,
//! whichever kind the highest member is, under the Python GCD stand-in and under
//! `bully-node gcd`.

mod common;

use common::{python_gcd, rust_gcd, wait_all_follow, Node, Pid, Proc, PyPeer, Scratch};

fn gcd(kind: &str) -> (Proc, u16) {
    match kind {
        "python" => python_gcd("HOWDY"),
        _ => rust_gcd("HOWDY"),
    }
}

/// Python peers at `py`, bully-nodes at `rs`, started interleaved; all must follow `want`.
fn mixed_group(gcd_kind: &str, py: &[Pid], rs: &[Pid], want: Pid) {
    let dir = Scratch::new(&format!("mixed-{gcd_kind}"));
    let (_gcd, port) = gcd(gcd_kind);
    let mut peers = Vec::new();
    let mut nodes = Vec::new();
    for i in 0..py.len().max(rs.len()) {
        if let Some(pid) = py.get(i) {
            peers.push(PyPeer::start(port, *pid, "HOWDY"));
        }
        if let Some(pid) = rs.get(i) {
            nodes.push(Node::start(&dir, port, *pid, &[]));
        }
    }
    wait_all_follow(&nodes.iter().collect::<Vec<_>>(), want);
    for peer in &mut peers {
        peer.wait_follows(want);
    }
}

#[test]
fn a_bully_node_leads_python_peers_under_the_python_gcd() {
    mixed_group("python", &[(20, 4000001), (100, 4000002)], &[(60, 4000003), (300, 4000004)], (300, 4000004));
}

#[test]
fn a_python_peer_leads_bully_nodes_under_the_python_gcd() {
    mixed_group("python", &[(20, 4100001), (300, 4100002)], &[(60, 4100003), (100, 4100004)], (300, 4100002));
}

#[test]
fn a_bully_node_leads_python_peers_under_bully_node_gcd() {
    mixed_group("rust", &[(300, 4200001), (20, 4200002)], &[(301, 4200003), (60, 4200004)], (301, 4200003));
}

#[test]
fn a_python_peer_leads_bully_nodes_under_bully_node_gcd() {
    mixed_group("rust", &[(100, 4300001), (350, 4300002)], &[(349, 4300003), (200, 4300004)], (350, 4300002));
}
