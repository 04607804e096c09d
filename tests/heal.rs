//! Healing a split group end to end (issue 15), real processes on loopback: three
//! bully-nodes settle, the Python stand-in for gcd2.py is killed and restarted on the
//! same port (its membership wiped, as the course's GCD loses it), and a higher member
//! joins it alone. The leader's check (short here, so the test takes seconds; the
//! default 10-20 s bound is tested in the simulator) heals the group.

mod common;

use common::{fixture, pid_json, wait_all_follow, wait_until, Node, Pid, Proc, Scratch};
use std::process::Command;

/// The stand-in on `port` (0: any free one), logging each registration it answers.
fn standin(port: u16) -> (Proc, u16) {
    let mut cmd = Command::new("python3");
    cmd.args([fixture("gcd_standin.py").as_str(), "--port", &port.to_string()]);
    let mut p = Proc::spawn("python gcd", cmd);
    let line = p.wait_for("LISTENING", |l| l.starts_with("LISTENING "));
    (p, line["LISTENING ".len()..].trim().parse().unwrap())
}

/// Whom the GCD answered, per its log so far.
fn requests(gcd: &mut Proc) -> Vec<Pid> {
    while let Ok(line) = gcd.lines.try_recv() {
        gcd.seen.push(line);
    }
    gcd.seen
        .iter()
        .filter_map(|l| {
            let mut words = l.strip_prefix("REQUEST ")?.split_whitespace();
            Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?))
        })
        .collect()
}

const CHECK: [&str; 2] = ["--leader-check", "500ms..1s"];

fn split_by_a_gcd_restart(newcomer: Pid, top: Pid) {
    let dir = Scratch::new("heal");
    let (mut gcd, port) = standin(0);
    let old: Vec<Node> =
        [(100, 4300001), (200, 4300002), (250, 4300003)].iter().map(|p| Node::start(&dir, port, *p, &CHECK)).collect();
    wait_all_follow(&old.iter().collect::<Vec<_>>(), (250, 4300003));
    let checks = |n: &Node| n.events_of("leader_checked").len();
    let followers_checks: Vec<usize> = old[..2].iter().map(checks).collect();
    // The GCD's log lines reach us through a pipe and a thread: count from when each
    // member's registration is in, not from when the nodes say they follow.
    let gcd_cell = std::cell::RefCell::new(&mut gcd);
    wait_until(
        "the three registrations in the GCD's log",
        || {
            let seen = requests(&mut gcd_cell.borrow_mut());
            old.iter().all(|n| seen.contains(&n.pid))
        },
        || format!("{:?}", gcd_cell.borrow().seen),
    );
    // A follower that joined before the leader learns where it listens from the GCD,
    // once, at its first PROBE (a standard I_AM_LEADER carries no address): wait until
    // both followers have PROBEd the leader and the GCD's log shows those look-ups.
    wait_until(
        "each follower PROBEd the leader",
        || old[..2].iter().all(|n| !n.events_of("probe_ok").is_empty()),
        || format!("{:?}", gcd_cell.borrow().seen),
    );
    let look_ups: usize = old[..2].iter().map(|n| n.events_of("reregistered").len()).sum();
    wait_until(
        "the followers' look-ups in the GCD's log",
        || {
            let followers = [old[0].pid, old[1].pid];
            requests(&mut gcd_cell.borrow_mut()).iter().filter(|p| followers.contains(p)).count() >= 2 + look_ups
        },
        || format!("{:?}", gcd_cell.borrow().seen),
    );
    // From then on the leader asks the GCD again every check period, and a follower
    // only at its own rare check (every 2 x 2 periods here, 4-8 s: nobody failed, so
    // nobody had another reason to): wait for two of the leader's checks, and see that
    // no follower asked more than once meanwhile.
    let settled = requests(&mut gcd_cell.borrow_mut()).len();
    let leader_asked = |gcd: &mut Proc| requests(gcd)[settled..].iter().filter(|p| **p == (250, 4300003)).count();
    wait_until(
        "two leader's checks",
        || leader_asked(&mut gcd_cell.borrow_mut()) >= 2,
        || format!("{:?}", gcd_cell.borrow().seen),
    );
    let window = requests(&mut gcd)[settled..].to_vec();
    for follower in [old[0].pid, old[1].pid] {
        assert!(window.iter().filter(|p| **p == follower).count() <= 1, "{window:?}: {:?}", gcd.seen);
    }
    // The GCD restarts on the same port, knowing nobody; the newcomer joins it.
    gcd.kill();
    let (_gcd, again) = standin(port);
    assert_eq!(again, port);
    let newcomer = Node::start(&dir, port, newcomer, &CHECK);
    let everyone: Vec<&Node> = old.iter().chain([&newcomer]).collect();
    wait_all_follow(&everyone, top);
    // One side's check told it of the other (the old leader learning of the newcomer,
    // or the newcomer of the old leader, whichever asked the GCD after both were in it),
    // unless the newcomer's own registration already listed the old leader.
    let learned_of = |n: &Node, other: Pid| {
        let other = pid_json(other);
        n.events_of("leader_checked").iter().any(|e| {
            ["learned", "announced_to"].iter().any(|k| e[k].as_array().is_some_and(|a| a.contains(&other)))
                || e["electing_for"] == other
        })
    };
    let joined_seeing_it = newcomer.events_of("joined").iter().any(|e| e["members"] == 2);
    assert!(
        learned_of(&old[2], newcomer.pid) || learned_of(&newcomer, old[2].pid) || joined_seeing_it,
        "{:?}\n{:?}",
        old[2].events(),
        newcomer.events()
    );
    let now: Vec<usize> = old[..2].iter().map(checks).collect();
    assert_eq!(now, followers_checks, "followers never run the leader's check");
}

#[test]
fn a_higher_member_joining_a_restarted_gcd_ends_up_leading_everyone() {
    split_by_a_gcd_restart((300, 4300009), (300, 4300009));
}

#[test]
fn a_lower_member_joining_a_restarted_gcd_ends_up_following_the_old_leader() {
    split_by_a_gcd_restart((50, 4300008), (250, 4300003));
}
