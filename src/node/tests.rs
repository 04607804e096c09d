//! The node's unit tests, driven by a fake clock: the election, probing, feigned
//! failure and the leader's check.

use super::*;

pub(super) fn pid(days: u32) -> ProcessId {
    ProcessId::new(days, 1_000_000 + days)
}

pub(super) fn addr(days: u32) -> Addr {
    Addr::new("127.0.0.1", 40_000 + days as u16)
}

pub(super) fn group(days: &[u32]) -> Members {
    days.iter().map(|d| (pid(*d), addr(*d))).collect()
}

pub(super) const S: Duration = Duration::from_secs(1);

/// Elections only: no probes, no feigned failures.
pub(super) fn plain() -> Settings {
    Settings { probe: None, feign: None, ..Settings::default() }
}

/// A node with id `me` that has registered into a group of `days`.
fn joined(me: u32, days: &[u32]) -> (Node, Vec<Action>) {
    let mut n = Node::new(pid(me), addr(me), plain(), 0);
    let out = n.handle(Duration::ZERO, Input::Registered { members: group(days) });
    (n, out)
}

fn elects(out: &[Action]) -> Vec<(u64, ProcessId)> {
    out.iter()
        .filter_map(|a| match a {
            Action::SendElect { election, to, .. } => Some((*election, *to)),
            _ => None,
        })
        .collect()
}

pub(super) fn leaders_sent(out: &[Action]) -> Vec<ProcessId> {
    out.iter()
        .filter_map(|a| match a {
            Action::SendLeader { to, .. } => Some(*to),
            _ => None,
        })
        .collect()
}

/// How an ELECT or PROBE to a member that is down ends.
pub(super) fn refused() -> Outcome {
    Outcome::Failed(Failure::Refused { addr: addr(0) })
}

fn reply(n: &mut Node, at: Duration, election: u64, to: u32, ok: bool) -> Vec<Action> {
    let outcome = if ok { Outcome::GotIt } else { refused() };
    n.handle(at, Input::ElectReply { election, to: pid(to), outcome })
}

#[test]
fn the_highest_wins_at_once_and_tells_everyone() {
    let (n, out) = joined(9, &[1, 5, 9]);
    assert_eq!(n.leader(), Some(pid(9)));
    assert_eq!(n.phase(), &Phase::Idle);
    assert!(elects(&out).is_empty());
    assert_eq!(leaders_sent(&out), [pid(1), pid(5)]);
    assert!(out.contains(&Action::Event(Event::Leader { leader: pid(9), previous: None })));
}

#[test]
fn an_election_asks_only_higher_members_with_all_members() {
    let (n, out) = joined(5, &[1, 5, 7, 9]);
    assert_eq!(elects(&out), [(1, pid(9)), (1, pid(7))], "all at once, highest first");
    let Some(Action::SendElect { members, .. }) = out.iter().find(|a| matches!(a, Action::SendElect { .. })) else {
        panic!()
    };
    assert_eq!(members.len(), 4, "ELECT carries every member, ourselves included");
    assert!(out.contains(&Action::SetTimer { at: 2 * S, timer: Timer::Election(1) }));
    assert!(n.is_electing());
}

#[test]
fn decides_early_when_every_higher_member_has_failed() {
    let (mut n, _) = joined(5, &[1, 5, 7, 9]);
    assert!(reply(&mut n, Duration::from_millis(3), 1, 7, false)
        .iter()
        .all(|a| !matches!(a, Action::SendLeader { .. })));
    let out = reply(&mut n, Duration::from_millis(4), 1, 9, false);
    assert_eq!(n.leader(), Some(pid(5)), "won at 4 ms, not at the 2 s timeout");
    assert_eq!(leaders_sent(&out), [pid(1), pid(7), pid(9)]);
    // The election timer, when it fires later, changes nothing.
    assert!(n.handle(2 * S, Input::Timer(Timer::Election(1))).is_empty());
}

#[test]
fn no_got_it_by_the_timeout_wins() {
    let (mut n, _) = joined(5, &[5, 9]);
    let out = n.handle(2 * S, Input::Timer(Timer::Election(1)));
    assert_eq!(n.leader(), Some(pid(5)));
    assert_eq!(leaders_sent(&out), [pid(9)]);
}

#[test]
fn got_it_then_silence_starts_a_new_election() {
    let (mut n, _) = joined(5, &[5, 9]);
    let out = reply(&mut n, S / 10, 1, 9, true);
    assert_eq!(n.phase(), &Phase::AwaitingLeader { election: 1 });
    let leader_deadline = S / 10 + 4 * S;
    assert!(out.contains(&Action::SetTimer { at: leader_deadline, timer: Timer::Leader(1) }));
    // The election timer of election 1 no longer declares victory.
    assert!(n.handle(2 * S, Input::Timer(Timer::Election(1))).is_empty());
    assert_eq!(n.leader(), None);
    let out = n.handle(leader_deadline, Input::Timer(Timer::Leader(1)));
    assert!(out.contains(&Action::Event(Event::NoLeaderAfterGotIt { election: 1 })));
    // The GCD is asked who is really in the group before the next election.
    assert!(elects(&out).is_empty(), "{out:?}");
    assert!(out.iter().any(|a| matches!(a, Action::Register { .. })));
    let out = n.handle(leader_deadline, Input::Registered { members: group(&[5, 9]) });
    assert_eq!(elects(&out), [(2, pid(9))]);
}

#[test]
fn stale_replies_from_an_earlier_election_never_count() {
    let (mut n, _) = joined(5, &[5, 9]);
    reply(&mut n, S / 10, 1, 9, true);
    n.handle(5 * S, Input::Timer(Timer::Leader(1))); // asks the GCD, then election 2 starts
    n.handle(5 * S, Input::Registered { members: group(&[5, 9]) });
    // Election 1's late failure must not make us win election 2.
    reply(&mut n, 5 * S, 1, 9, false);
    assert_eq!(n.phase(), &Phase::Electing { election: 2, pending: vec![pid(9)] });
    assert_eq!(n.leader(), None);
    // Election 1's timers are stale too.
    assert!(n.handle(6 * S, Input::Timer(Timer::Election(1))).is_empty());
    assert!(n.handle(6 * S, Input::Timer(Timer::Leader(1))).is_empty());
    reply(&mut n, 5 * S, 2, 9, false);
    assert_eq!(n.leader(), Some(pid(5)));
}

#[test]
fn i_am_leader_ends_the_election() {
    let (mut n, _) = joined(5, &[5, 9]);
    reply(&mut n, S / 10, 1, 9, true);
    let out = n.handle(S / 5, Input::IAmLeader { leader: pid(9), addr: None });
    assert_eq!(n.leader(), Some(pid(9)));
    assert_eq!(n.phase(), &Phase::Idle);
    assert!(out.contains(&Action::Event(Event::Leader { leader: pid(9), previous: None })));
    // Its leader timer is now stale.
    assert!(n.handle(5 * S, Input::Timer(Timer::Leader(1))).is_empty());
    // The same announcement again is not a change of leader.
    let out = n.handle(6 * S, Input::IAmLeader { leader: pid(9), addr: None });
    assert!(!out.iter().any(|a| matches!(a, Action::Event(Event::Leader { .. }))));
}

#[test]
fn the_address_a_copy_of_the_announcement_names_is_taken_for_the_leader_we_follow_only() {
    let (mut n, _) = joined(5, &[5]);
    n.handle(S, Input::IAmLeader { leader: pid(9), addr: None });
    assert_eq!(n.leader(), Some(pid(9)));
    assert!(!n.members().contains(pid(9)));
    // Not the leader we follow: nothing is taken in.
    let out = n.handle(S, Input::LeaderAddress { leader: pid(8), addr: addr(8) });
    assert!(out.is_empty() && !n.members().contains(pid(8)), "{out:?}");
    // The leader's: its address is known from now on (its PROBE needs no look-up),
    // and nothing else happens: no second announcement, no election.
    let out = n.handle(S, Input::LeaderAddress { leader: pid(9), addr: addr(9) });
    assert_eq!(n.members().get(pid(9)), Some(&addr(9)));
    assert!(
        !out.iter()
            .any(|a| matches!(a, Action::Event(Event::IAmLeaderReceived { .. } | Event::ElectionStarted { .. }))),
        "{out:?}"
    );
}

#[test]
fn a_lower_node_announcing_itself_is_bullied() {
    let (mut n, _) = joined(9, &[1, 5, 9]);
    let out = n.handle(S, Input::IAmLeader { leader: pid(5), addr: None });
    // Not followed; overruled once 5's own announcements have landed: we are the
    // highest, so we win at once and announce.
    assert!(!out.iter().any(|a| matches!(a, Action::Event(Event::Leader { .. }))), "{out:?}");
    assert_eq!(n.leader(), Some(pid(9)));
    assert_eq!(timers(&out), [(S + SETTLE_WINDOW, Timer::Deferred(1))]);
    let out = n.handle(S + SETTLE_WINDOW, Input::Timer(Timer::Deferred(1)));
    assert_eq!(n.leader(), Some(pid(9)));
    assert_eq!(leaders_sent(&out), [pid(1), pid(5)]);
    // An unknown lower id, with an address, is not taken in either.
    let out = n.handle(2 * S, Input::IAmLeader { leader: pid(2), addr: Some(addr(2)) });
    assert!(!n.members().contains(pid(2)));
    assert_eq!(timers(&out).len(), 1);
}

#[test]
fn a_late_announcement_from_a_lower_winner_is_checked_by_an_election() {
    let (mut n, _) = joined(3, &[3, 6, 9]);
    n.handle(S, Input::IAmLeader { leader: pid(9), addr: None });
    // 6's announcement comes a PROBE period later (9 may have died meanwhile): 9 is
    // probed first; alive, it may lead: an election asks it (and 6, at once).
    let out = n.handle(2 * S, Input::IAmLeader { leader: pid(6), addr: None });
    assert!(elects(&out).is_empty());
    let probe = probe_sent(&out, 9);
    let out = n.handle(2 * S, Input::ProbeReply { probe, outcome: Outcome::GotIt });
    assert_eq!(elects(&out), [(2, pid(9)), (2, pid(6))]);
    // If 9 is alive it answers and announces again; we follow it.
    reply(&mut n, 2 * S, 2, 9, true);
    n.handle(2 * S, Input::IAmLeader { leader: pid(9), addr: None });
    assert_eq!(n.leader(), Some(pid(9)));
    assert_eq!(n.phase(), &Phase::Idle);
    // Announcements from a higher node than the one we follow are simply taken.
    let out = n.handle(3 * S, Input::IAmLeader { leader: pid(12), addr: Some(addr(12)) });
    assert!(elects(&out).is_empty());
}

#[test]
fn an_announcement_that_crossed_a_higher_ones_in_flight_is_ignored() {
    // Members joining one after another: 6 won, then 9; 6's announcement, sent before
    // 9's, arrives just after it. Neither a PROBE nor an election: 9 announced itself
    // a moment ago.
    let (mut n, _) = joined(3, &[3, 6, 9]);
    n.handle(S, Input::IAmLeader { leader: pid(9), addr: None });
    let late = S + CROSSED_IN_FLIGHT - ms(1);
    let out = n.handle(late, Input::IAmLeader { leader: pid(6), addr: Some(addr(6)) });
    assert_eq!(n.leader(), Some(pid(9)));
    assert!(!out.iter().any(|a| matches!(a, Action::SendProbe { .. } | Action::SendElect { .. })), "{out:?}");
    assert!(out.contains(&Action::Event(Event::LateAnnouncement { leader: pid(6), following: pid(9) })), "{out:?}");
    // From the window's end on, it is checked (see above): a PROBE of 9.
    let out = n.handle(S + CROSSED_IN_FLIGHT, Input::IAmLeader { leader: pid(6), addr: None });
    assert_eq!(n.leader(), Some(pid(6)));
    probe_sent(&out, 9);
}

/// The number of the PROBE `out` sends to `to`.
fn probe_sent(out: &[Action], to: u32) -> u64 {
    match out.iter().find(|a| matches!(a, Action::SendProbe { .. })) {
        Some(Action::SendProbe { probe, to: t, .. }) if *t == pid(to) => *probe,
        _ => panic!("no PROBE to {to}: {out:?}"),
    }
}

#[test]
fn a_late_announcement_after_the_former_leader_died_is_simply_followed() {
    // A failover: every follower hears the new leader while still following the
    // dead one. A PROBE of the dead one settles it, without an election.
    let (mut n, _) = joined(3, &[3, 6, 9]);
    n.handle(S, Input::IAmLeader { leader: pid(9), addr: None });
    let out = n.handle(2 * S, Input::IAmLeader { leader: pid(6), addr: None });
    assert_eq!(n.leader(), Some(pid(6)));
    let probe = probe_sent(&out, 9);
    let out = n.handle(2 * S, Input::ProbeReply { probe, outcome: refused() });
    assert!(elects(&out).is_empty() && !out.iter().any(|a| matches!(a, Action::Register { .. })), "{out:?}");
    assert_eq!((n.leader(), n.phase()), (Some(pid(6)), &Phase::Idle));
}

#[test]
fn learning_of_higher_members_from_the_gcd_reopens_the_question() {
    // Seen on loopback: we registered alone, then two announcements arrived from
    // members whose addresses we did not know yet.
    let (mut n, _) = joined(3, &[3]);
    let out = n.handle(S, Input::IAmLeader { leader: pid(9), addr: None });
    assert!(out.iter().any(|a| matches!(a, Action::Register { .. })));
    // (Later than CROSSED_IN_FLIGHT: sooner, it would be ignored.)
    let out = n.handle(2 * S, Input::IAmLeader { leader: pid(6), addr: None });
    assert!(elects(&out).is_empty(), "nobody known to ask yet");
    assert_eq!(n.leader(), Some(pid(6)));
    // The GCD's answer reveals both: an election asks them.
    let out = n.handle(3 * S, Input::Registered { members: group(&[3, 6, 9]) });
    assert_eq!(elects(&out), [(2, pid(9)), (2, pid(6))]);
    // Learning only lower members changes nothing.
    let (mut m, _) = joined(5, &[5]);
    let out = m.handle(S, Input::Registered { members: group(&[1, 5]) });
    assert!(elects(&out).is_empty());
}

#[test]
fn members_the_gcd_lists_above_our_leader_are_waited_for_then_asked_highest_first() {
    // Every follower that asks the GCD learns the same newcomers above its leader: at
    // 200 members each asked all of them at once, and the group stormed (issue 20).
    // They joined after us, seeing everyone: they announce themselves, so we wait the
    // leader timeout for that first.
    let (mut n, _) = joined(3, &[3, 6]);
    n.handle(S, Input::IAmLeader { leader: pid(6), addr: None });
    let out = n.handle(2 * S, Input::Registered { members: group(&[3, 6, 7, 8, 9]) });
    assert!(elects(&out).is_empty(), "{out:?}");
    let (at, timer) = deferred(&out);
    assert_eq!(at, 2 * S + Timeouts::default().leader);
    let mut quiet = n.clone();
    // 9 announces itself: nothing more to do.
    n.handle(2 * S + ms(20), Input::IAmLeader { leader: pid(9), addr: None });
    assert!(elects(&n.handle(at, Input::Timer(timer))).is_empty());
    assert_eq!(n.leader(), Some(pid(9)));
    // Only 8 announces (9's announcement lost): still waiting for 9, then asking it
    // first (paced), and nobody else once it answers.
    quiet.handle(2 * S + ms(20), Input::IAmLeader { leader: pid(8), addr: None });
    let out = quiet.handle(at, Input::Timer(timer));
    assert!(
        out.iter().any(|a| matches!(
            a,
            Action::Event(Event::ElectionStarted { reason: Why::GcdListsAbove { .. }, higher: 4, .. })
        )),
        "{out:?}"
    );
    assert_eq!(elects(&out), [(2, pid(9))]);
    let out = reply(&mut quiet, at + ms(5), 2, 9, true);
    assert!(elects(&out).is_empty(), "{out:?}");
    let out = quiet.handle(at + ELECT_PACE, Input::Timer(Timer::Pace(2)));
    assert!(elects(&out).is_empty(), "{out:?}");
}

#[test]
fn members_learned_mid_election_are_asked_in_it() {
    let (mut n, _) = joined(5, &[5, 7]);
    let out = n.handle(S / 10, Input::Elect { members: group(&[1, 5, 7, 9]), sender: None });
    assert_eq!(elects(&out), [(1, pid(9))]);
    // 7 failing no longer wins the election: 9 is still pending.
    reply(&mut n, S / 5, 1, 7, false);
    assert_eq!(n.leader(), None);
    reply(&mut n, S / 5, 1, 9, false);
    assert_eq!(n.leader(), Some(pid(5)));
    // Newcomers from the GCD join an election in progress the same way.
    let (mut m, _) = joined(5, &[5, 7]);
    let out = m.handle(S / 10, Input::Registered { members: group(&[5, 7, 8]) });
    assert_eq!(elects(&out), [(1, pid(8))]);
}

fn with(probe: Option<Span>, feign: Option<Feign>) -> Settings {
    Settings { probe, feign, ..Settings::default() }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn timers(out: &[Action]) -> Vec<(Time, Timer)> {
    out.iter()
        .filter_map(|a| match a {
            Action::SetTimer { at, timer } => Some((*at, *timer)),
            _ => None,
        })
        .collect()
}

/// A follower of 9 that probes every 500..3000 ms and never feigns.
fn prober() -> Node {
    let mut n = Node::new(pid(5), addr(5), with(Some(Span::new(ms(500), ms(3000))), None), 42);
    n.handle(Duration::ZERO, Input::Registered { members: group(&[5, 9]) });
    n.handle(ms(1), Input::ElectReply { election: 1, to: pid(9), outcome: Outcome::GotIt });
    n
}

/// Fires the pending probe timer of `n` and returns the probe's number.
fn fire_probe(n: &mut Node, out: &[Action]) -> u64 {
    let (at, timer) = timers(out).into_iter().find(|(_, t)| matches!(t, Timer::Probe(_))).expect("a probe armed");
    let sent = n.handle(at, Input::Timer(timer));
    match sent.as_slice() {
        [Action::SendProbe { probe, to, .. }] if *to == pid(9) => *probe,
        other => panic!("{other:?}"),
    }
}

#[test]
fn followers_probe_the_leader_at_random_waits_within_the_interval() {
    let mut n = prober();
    let out = n.handle(ms(2), Input::IAmLeader { leader: pid(9), addr: None });
    let (at, _) = timers(&out).into_iter().find(|(_, t)| matches!(t, Timer::Probe(_))).unwrap();
    assert!((ms(502)..=ms(3002)).contains(&at), "{at:?}");
    let probe = fire_probe(&mut n, &out);
    // GOT_IT: reported, and the next probe is armed.
    let out = n.handle(ms(3100), Input::ProbeReply { probe, outcome: Outcome::GotIt });
    assert_eq!(out[0], Action::Event(Event::ProbeOk { leader: pid(9) }));
    assert!(timers(&out).iter().any(|(_, t)| matches!(t, Timer::Probe(_))));
    // The leader itself never probes.
    let mut leader = Node::new(pid(9), addr(9), with(Some(Span::new(ms(500), ms(3000))), None), 1);
    let out = leader.handle(Duration::ZERO, Input::Registered { members: group(&[5, 9]) });
    assert_eq!(leader.leader(), Some(pid(9)));
    assert!(timers(&out).iter().all(|(_, t)| !matches!(t, Timer::Probe(_))), "{out:?}");
}

/// Member 1 of a group of members 1..=`size`, following `size`, whose PROBE of it
/// failed; returns the node, and what it did when the GCD then answered (at 10 s).
fn detector(size: u32) -> (Node, Vec<Action>) {
    let days: Vec<u32> = (1..=size).collect();
    let mut n = Node::new(pid(1), addr(1), with(Some(Span::new(ms(500), ms(3000))), None), 7);
    let out = n.handle(Duration::ZERO, Input::Registered { members: group(&days) });
    assert_eq!(elects(&out).len(), size as usize - 1, "a join's election asks everyone at once");
    reply(&mut n, ms(1), 1, size, true);
    let out = n.handle(ms(2), Input::IAmLeader { leader: pid(size), addr: None });
    let (at, timer) = timers(&out).into_iter().find(|(_, t)| matches!(t, Timer::Probe(_))).expect("probing");
    let Some(Action::SendProbe { probe, .. }) = n.handle(at, Input::Timer(timer)).into_iter().next() else {
        panic!("no PROBE")
    };
    let out = n.handle(at, Input::ProbeReply { probe, outcome: refused() });
    assert!(out.iter().any(|a| matches!(a, Action::Register { .. })), "{out:?}");
    let out = n.handle(10 * S, Input::Registered { members: group(&days) });
    (n, out)
}

fn asked(out: &[Action]) -> Vec<ProcessId> {
    elects(out).into_iter().map(|(_, to)| to).collect()
}

#[test]
fn a_failed_probes_election_goes_highest_first_in_doubling_rounds() {
    let (mut n, out) = detector(20);
    let t0 = 10 * S;
    assert_eq!(asked(&out), [pid(20)], "the highest first, alone");
    assert!(out.contains(&Action::SetTimer { at: t0 + ELECT_PACE, timer: Timer::Pace(2) }), "{out:?}");
    // Each round sends twice as many as the last, highest first, and arms the next.
    let out = n.handle(t0 + ELECT_PACE, Input::Timer(Timer::Pace(2)));
    assert_eq!(asked(&out), [pid(19), pid(18)]);
    assert!(out.contains(&Action::SetTimer { at: t0 + 2 * ELECT_PACE, timer: Timer::Pace(2) }));
    let out = n.handle(t0 + 2 * ELECT_PACE, Input::Timer(Timer::Pace(2)));
    assert_eq!(asked(&out), [17, 16, 15, 14].map(pid));
    // A failure sends the next at once, and arms no round of its own.
    let out = reply(&mut n, t0 + 2 * ELECT_PACE, 2, 20, false);
    assert_eq!(asked(&out), [pid(13)]);
    assert!(!timers(&out).iter().any(|(_, t)| matches!(t, Timer::Pace(_))), "{out:?}");
    // While ELECTs remain unsent, an election timeout wins nothing.
    assert!(n.handle(t0 + 5 * S, Input::Timer(Timer::Election(2))).is_empty());
    assert_eq!(n.leader(), Some(pid(20)));
}

#[test]
fn a_got_it_from_the_highest_live_member_stops_the_rounds() {
    let (mut n, _) = detector(20);
    let t0 = 10 * S;
    let out = reply(&mut n, t0, 2, 20, false);
    assert_eq!(asked(&out), [pid(19)], "the dead leader refused: 19 at once");
    reply(&mut n, t0 + ms(5), 2, 19, true);
    assert_eq!(n.phase(), &Phase::AwaitingLeader { election: 2 });
    let out = n.handle(t0 + ELECT_PACE, Input::Timer(Timer::Pace(2)));
    assert!(elects(&out).is_empty(), "19 takes it from here: {out:?}");
}

#[test]
fn a_got_it_below_an_unanswered_member_does_not_stop_the_rounds_but_the_end_does() {
    let (mut n, _) = detector(20);
    let t0 = 10 * S;
    // 20 is silent (its ELECT still out), 19 answers.
    let out = n.handle(t0 + ELECT_PACE, Input::Timer(Timer::Pace(2)));
    assert_eq!(asked(&out), [pid(19), pid(18)]);
    let out = reply(&mut n, t0 + ms(60), 2, 19, true);
    assert_eq!(n.phase(), &Phase::AwaitingLeader { election: 2 });
    assert!(timers(&out).contains(&(t0 + ms(60) + 4 * S, Timer::Leader(2))), "{out:?}");
    // 20 may be alive: every higher member is still asked while the election lasts.
    let out = n.handle(t0 + 2 * ELECT_PACE, Input::Timer(Timer::Pace(2)));
    assert_eq!(asked(&out), [17, 16, 15, 14].map(pid));
    // 20 announces: the election is over, and so is the sending.
    n.handle(t0 + 2 * ELECT_PACE + ms(10), Input::IAmLeader { leader: pid(20), addr: None });
    assert_eq!((n.leader(), n.phase()), (Some(pid(20)), &Phase::Idle));
    let out = n.handle(t0 + 3 * ELECT_PACE, Input::Timer(Timer::Pace(2)));
    assert!(elects(&out).is_empty(), "{out:?}");
}

#[test]
fn a_silent_group_is_all_asked_within_log2_n_rounds_then_the_timeout_runs_from_the_last() {
    let (mut n, out) = detector(40);
    let t0 = 10 * S;
    let mut sent = asked(&out);
    let (mut t, mut rounds, mut last) = (t0, 0, None);
    while sent.len() < 39 {
        t += ELECT_PACE;
        rounds += 1;
        assert!(rounds <= 6, "39 ELECTs not sent after {rounds} rounds");
        let out = n.handle(t, Input::Timer(Timer::Pace(2)));
        sent.extend(asked(&out));
        last = timers(&out).into_iter().find(|(_, t)| matches!(t, Timer::Election(2)));
        assert_eq!(n.leader(), Some(pid(40)), "won before asking everyone");
    }
    // 1 + 2 + 4 + 8 + 16 = 31 < 39 <= 63: five rounds after the first ELECT.
    assert_eq!(rounds, 5);
    let expect: Vec<ProcessId> = (2..=40).rev().map(pid).collect();
    assert_eq!(sent, expect, "each member once, highest first");
    // The election timeout counts from the last ELECT.
    assert_eq!(last, Some((t + 2 * S, Timer::Election(2))));
    let out = n.handle(t + 2 * S, Input::Timer(Timer::Election(2)));
    assert_eq!(n.leader(), Some(pid(1)), "nobody answered: we win");
    assert_eq!(leaders_sent(&out).len(), 39);
}

#[test]
fn a_failed_probe_asks_the_gcd_then_elects() {
    let mut n = prober();
    let out = n.handle(ms(2), Input::IAmLeader { leader: pid(9), addr: None });
    let probe = fire_probe(&mut n, &out);
    let out = n.handle(S * 4, Input::ProbeReply { probe, outcome: refused() });
    assert!(matches!(out[0], Action::Event(Event::ProbeFailed { leader, .. }) if leader == pid(9)));
    assert!(out.iter().any(|a| matches!(a, Action::Register { .. })));
    assert!(elects(&out).is_empty(), "not before the GCD answers");
    assert!(timers(&out).is_empty(), "no probing while waiting for the GCD");
    let out = n.handle(S * 4, Input::Registered { members: group(&[5, 9]) });
    assert_eq!(elects(&out), [(2, pid(9))]);
    // With the GCD down, the members we have are used.
    let mut m = prober();
    let out = m.handle(ms(2), Input::IAmLeader { leader: pid(9), addr: None });
    let probe = fire_probe(&mut m, &out);
    m.handle(S * 4, Input::ProbeReply { probe, outcome: Outcome::Failed(Failure::NoReply { after: S }) });
    let out = m.handle(S * 4, Input::RegistrationFailed { reason: "GCD down".into() });
    assert_eq!(elects(&out), [(2, pid(9))]);
}

#[test]
fn a_stale_probe_reply_changes_nothing() {
    let mut n = prober();
    let out = n.handle(ms(2), Input::IAmLeader { leader: pid(9), addr: None });
    let probe = fire_probe(&mut n, &out);
    // An election began meanwhile (ELECT from a lower node): the late failure of
    // the probe must not start another one or ask the GCD.
    n.handle(S, Input::Elect { members: group(&[1, 5, 9]), sender: None });
    let out = n.handle(S, Input::ProbeReply { probe, outcome: refused() });
    assert!(!out.iter().any(|a| matches!(a, Action::Register { .. })));
    let out = n.handle(S, Input::ProbeReply { probe: probe + 7, outcome: Outcome::Failed(Failure::ClosedSilently) });
    assert!(out.is_empty());
}

fn feigner(mode: FeignMode, seed: u64) -> (Node, Vec<Action>) {
    let feign = Feign { after: Span::new(ms(0), ms(10_000)), lasting: Span::new(ms(1000), ms(4000)), mode };
    let mut n = Node::new(pid(5), addr(5), with(None, Some(feign)), seed);
    let out = n.handle(Duration::ZERO, Input::Registered { members: group(&[5, 9]) });
    (n, out)
}

fn fail_timer(out: &[Action]) -> (Time, Timer) {
    timers(out).into_iter().find(|(_, t)| matches!(t, Timer::Fail(_))).expect("a failure armed")
}

#[test]
fn feigned_failure_goes_deaf_then_recovers_registers_and_elects() {
    let (mut n, out) = feigner(FeignMode::Close, 1);
    let (at, timer) = fail_timer(&out);
    assert!(at <= ms(10_000));
    let out = n.handle(at, Input::Timer(timer));
    assert!(n.is_down());
    let lasting = match out[0] {
        Action::Event(Event::Failed { mode: FeignMode::Close, lasting }) => lasting,
        ref other => panic!("{other:?}"),
    };
    assert!((ms(1000)..=ms(4000)).contains(&lasting));
    assert_eq!(out[1], Action::Listen(Listening::Closed));
    let recover = timers(&out)[0];
    assert_eq!(recover.0, at + lasting);
    // Deaf: the election under way, ELECT, I_AM_LEADER, replies all do nothing.
    for input in [
        Input::Elect { members: group(&[1, 5, 9]), sender: None },
        Input::IAmLeader { leader: pid(1), addr: None },
        Input::ElectReply { election: 1, to: pid(9), outcome: Outcome::Failed(Failure::ClosedSilently) },
        Input::Timer(Timer::Election(1)),
    ] {
        assert!(n.handle(at, input).is_empty());
    }
    assert_eq!(n.leader(), None);
    let out = n.handle(recover.0, Input::Timer(recover.1));
    assert!(!n.is_down());
    assert_eq!(&out[..2], [Action::Event(Event::Recovered), Action::Listen(Listening::Open)]);
    assert!(out.iter().any(|a| matches!(a, Action::Register { .. })));
    assert!(timers(&out).iter().any(|(_, t)| matches!(t, Timer::Fail(_))), "the next failure is armed");
    let out = n.handle(recover.0, Input::Registered { members: group(&[5, 9]) });
    assert_eq!(elects(&out), [(2, pid(9))]);
}

#[test]
fn ignore_mode_keeps_the_port_open() {
    let (mut n, out) = feigner(FeignMode::Ignore, 1);
    let (at, timer) = fail_timer(&out);
    let out = n.handle(at, Input::Timer(timer));
    assert_eq!(out[1], Action::Listen(Listening::Ignoring));
}

#[test]
fn a_seed_fixes_every_random_choice() {
    let schedule = |seed| {
        let (mut n, out) = feigner(FeignMode::Close, seed);
        let (at, timer) = fail_timer(&out);
        (at, timers(&n.handle(at, Input::Timer(timer))))
    };
    assert_eq!(schedule(3), schedule(3));
    assert_ne!(schedule(3), schedule(4));
}

#[test]
fn feigning_can_be_turned_off() {
    let (mut n, out) = feigner(FeignMode::Close, 1);
    let (at, timer) = fail_timer(&out);
    assert!(n.set_feign(S, None).is_empty());
    assert!(n.handle(at, Input::Timer(timer)).is_empty(), "the armed failure is stale");
    assert!(!n.is_down());
}

#[test]
fn feigning_turned_off_while_down_still_recovers_and_fails_no_more() {
    let (mut n, out) = feigner(FeignMode::Close, 1);
    let (at, timer) = fail_timer(&out);
    let down = n.handle(at, Input::Timer(timer));
    let (back, recover) = timers(&down).into_iter().find(|(_, t)| matches!(t, Timer::Recover(_))).unwrap();
    assert!(n.set_feign(at, None).is_empty());
    assert!(n.is_down());
    let out = n.handle(back, Input::Timer(recover));
    assert!(!n.is_down());
    assert!(out.contains(&Action::Listen(Listening::Open)), "{out:?}");
    assert!(!timers(&out).iter().any(|(_, t)| matches!(t, Timer::Fail(_))), "{out:?}");
}

#[test]
fn elects_arriving_while_settling_are_merged_into_one_election() {
    let (mut n, _) = joined(5, &[5, 9]);
    n.handle(ms(5), Input::ElectReply { election: 1, to: pid(9), outcome: Outcome::GotIt });
    n.handle(ms(10), Input::IAmLeader { leader: pid(9), addr: None });
    // Three ELECTs from lower members within the window: no election yet, one deferred.
    let mut deferred = Vec::new();
    for t in [20, 40, 60] {
        let out = n.handle(ms(t), Input::Elect { members: group(&[1, 5, 9]), sender: None });
        assert!(elects(&out).is_empty(), "{out:?}");
        deferred.extend(timers(&out));
    }
    // 9 ranks above us: we wait a window longer than 9 does, for its announcement.
    assert_eq!(deferred, [(ms(10) + 2 * SETTLE_WINDOW, Timer::Deferred(1))]);
    let out = n.handle(ms(10) + 2 * SETTLE_WINDOW, Input::Timer(Timer::Deferred(1)));
    assert_eq!(elects(&out), [(2, pid(9))]);
    // A higher leader announcing itself meanwhile makes the deferred election moot.
    let (mut m, _) = joined(5, &[5, 9]);
    m.handle(ms(10), Input::IAmLeader { leader: pid(9), addr: None });
    let out = m.handle(ms(20), Input::Elect { members: group(&[1, 5, 9]), sender: None });
    let (at, timer) = timers(&out)[0];
    m.handle(ms(30), Input::IAmLeader { leader: pid(9), addr: None });
    assert!(m.handle(at, Input::Timer(timer)).is_empty());
    // Outside the window, ELECT starts an election at once, as the assignment says.
    let out = m.handle(S, Input::Elect { members: group(&[1, 5, 9]), sender: None });
    assert_eq!(elects(&out), [(2, pid(9))]);
}

#[test]
fn an_announcer_we_cannot_reach_yet_is_looked_up_before_the_election() {
    // Seed 1153: we follow 9, which has died; 6 joined after our registration and
    // announces itself. Electing at once would ask only the dead 9 and win.
    let (mut n, _) = joined(3, &[3, 9]);
    n.handle(S, Input::IAmLeader { leader: pid(9), addr: None });
    let out = n.handle(2 * S, Input::IAmLeader { leader: pid(6), addr: None });
    assert!(elects(&out).is_empty(), "{out:?}");
    // 9 is probed; it answers (say it feigns in a way a PROBE can't tell): the GCD
    // is asked where 6 listens before the election.
    let probe = probe_sent(&out, 9);
    let out = n.handle(2 * S, Input::ProbeReply { probe, outcome: Outcome::GotIt });
    assert!(elects(&out).is_empty(), "{out:?}");
    assert!(out.iter().any(|a| matches!(a, Action::Register { .. })));
    let out = n.handle(2 * S, Input::Registered { members: group(&[3, 6, 9]) });
    assert_eq!(elects(&out), [(2, pid(9)), (2, pid(6))]);
}

#[test]
fn a_gcd_that_did_not_answer_is_asked_again_until_it_does() {
    // Seed 2402: recovered while the GCD was down; a higher member joined meanwhile.
    let (mut n, _) = joined(5, &[5]);
    let out = n.handle(S, Input::RegistrationFailed { reason: "GCD down".into() });
    let retry = timers(&out);
    assert_eq!(retry, [(S + REGISTER_RETRY, Timer::Reregister(1))]);
    let out = n.handle(retry[0].0, Input::Timer(retry[0].1));
    assert!(out.iter().any(|a| matches!(a, Action::Register { .. })));
    let out = n.handle(retry[0].0, Input::Registered { members: group(&[5, 9]) });
    assert!(timers(&out).iter().all(|(_, t)| !matches!(t, Timer::Reregister(_))), "no more retries");
    // The newcomer above us is given the leader timeout to announce itself, then asked.
    assert!(elects(&out).is_empty(), "{out:?}");
    let (at, timer) = deferred(&out);
    let out = n.handle(at, Input::Timer(timer));
    assert_eq!(elects(&out), [(2, pid(9))], "the newcomer above us is asked");
}

/// The deferred election `out` arms: when, and its timer.
fn deferred(out: &[Action]) -> (Duration, Timer) {
    timers(out).into_iter().find(|(_, t)| matches!(t, Timer::Deferred(_))).expect("a deferred election")
}

#[test]
fn a_leader_announces_itself_to_members_it_learns_of() {
    // Seed 10322: 5 won while we were down; we recovered alone during a GCD outage.
    let (mut n, _) = joined(9, &[9]);
    let out = n.handle(S, Input::Registered { members: group(&[9, 5]) });
    assert_eq!(leaders_sent(&out), [pid(5)]);
    assert!(elects(&out).is_empty());
}

#[test]
fn an_announcer_the_gcd_does_not_know_is_not_followed_for_long() {
    let (mut n, _) = joined(5, &[5, 9]);
    n.handle(S, Input::ElectReply { election: 1, to: pid(9), outcome: Outcome::GotIt });
    n.handle(S, Input::IAmLeader { leader: pid(9), addr: None });
    let out = n.handle(2 * S, Input::IAmLeader { leader: pid(300), addr: None });
    assert!(out.iter().any(|a| matches!(a, Action::Register { .. })));
    let out = n.handle(2 * S, Input::Registered { members: group(&[5, 9]) });
    assert_eq!(elects(&out), [(2, pid(9))], "{out:?}");
}

#[test]
fn elect_while_electing_only_learns_members() {
    let (mut n, _) = joined(5, &[5, 9]);
    let out = n.handle(S / 10, Input::Elect { members: group(&[1, 5, 9, 3]), sender: Some(pid(1)) });
    assert!(elects(&out).is_empty(), "already electing: no new election");
    assert!(n.members().contains(pid(3)));
    assert!(out.contains(&Action::Event(Event::ElectReceived {
        from: Some(pid(1)),
        learned: vec![pid(1), pid(3)],
        electing: true
    })));
    // When idle, ELECT starts an election, which asks the members just learned.
    let (mut idle, _) = joined(5, &[5]);
    let out = idle.handle(S, Input::Elect { members: group(&[1, 5, 7]), sender: Some(pid(1)) });
    assert_eq!(elects(&out), [(2, pid(7))]);
}

#[test]
fn an_unknown_leader_address_sends_us_to_the_gcd() {
    let (mut n, _) = joined(5, &[5, 9]);
    let out = n.handle(S, Input::IAmLeader { leader: pid(12), addr: None });
    assert_eq!(n.leader(), Some(pid(12)));
    assert!(out.iter().any(|a| matches!(a, Action::Register { .. })));
    let out = n.handle(2 * S, Input::Registered { members: group(&[5, 9, 12]) });
    assert!(n.members().contains(pid(12)));
    assert!(out.contains(&Action::Event(Event::Reregistered { members: 3, learned: vec![pid(12)] })));
    // A dialect that names the address needs no GCD.
    let (mut m, _) = joined(5, &[5]);
    let out = m.handle(S, Input::IAmLeader { leader: pid(12), addr: Some(addr(12)) });
    assert!(!out.iter().any(|a| matches!(a, Action::Register { .. })));
    assert_eq!(m.members().get(pid(12)), Some(&addr(12)));
}

/// A member of `days` whose SU ID is `su`.
fn other(days: u32, su: u32) -> ProcessId {
    ProcessId::new(days, su)
}

#[test]
fn an_elect_listing_another_id_with_our_su_id_never_removes_us() {
    let (mut n, _) = joined(5, &[5, 9]);
    n.handle(S, Input::ElectReply { election: 1, to: pid(9), outcome: Outcome::GotIt });
    n.handle(S, Input::IAmLeader { leader: pid(9), addr: None });
    // A classmate's ELECT still lists the id we had before a restart (same SU ID,
    // other days), and a stale id at our own address.
    let stale_us = other(200, pid(5).su_id);
    let at_our_port = other(150, 3_333_333);
    let elect: Members =
        [(pid(1), addr(1)), (stale_us, addr(77)), (at_our_port, addr(5)), (pid(9), addr(9))].into_iter().collect();
    let out = n.handle(10 * S, Input::Elect { members: elect, sender: Some(pid(1)) });
    assert!(n.members().contains(pid(5)), "we are still in our members: {:?}", n.members());
    assert!(!n.members().contains(stale_us) && !n.members().contains(at_our_port));
    // Our next ELECT lists us, and neither stale id is passed on. The id with our SU
    // ID may be a live twin (issue 20, item 3): it is asked, highest first, and a
    // refusal forgets it; the id at our own address is never asked.
    let sent = |out: &[Action]| -> Vec<(ProcessId, Members)> {
        out.iter()
            .filter_map(|a| match a {
                Action::SendElect { to, members, .. } => Some((*to, members.clone())),
                _ => None,
            })
            .collect()
    };
    let first = sent(&out);
    assert_eq!(first.iter().map(|(to, _)| *to).collect::<Vec<_>>(), [stale_us]);
    let refused = n.handle(10 * S + ms(1), Input::ElectReply { election: 2, to: stale_us, outcome: refused() });
    let second = sent(&refused);
    assert_eq!(second.iter().map(|(to, _)| *to).collect::<Vec<_>>(), [pid(9)]);
    for (_, members) in first.iter().chain(&second) {
        assert!(members.contains(pid(5)) && !members.contains(stale_us) && !members.contains(at_our_port));
    }
    // Each clash is told once, in its own words.
    let clashes: Vec<_> = out
        .iter()
        .filter_map(|a| match a {
            Action::Event(Event::IdentityClash { other, clash, .. }) => Some((*other, *clash)),
            _ => None,
        })
        .collect();
    assert_eq!(clashes, [(stale_us, Clash::SuId), (at_our_port, Clash::Address)]);
    let again: Members = [(stale_us, addr(77))].into_iter().collect();
    let out = n.handle(20 * S, Input::Elect { members: again, sender: None });
    assert!(!out.iter().any(|a| matches!(a, Action::Event(Event::IdentityClash { .. }))));
}

#[test]
fn a_peers_elect_never_removes_members_the_gcd_gave() {
    let (mut n, _) = joined(5, &[1, 5, 9]);
    // The peer lists 9's SU ID under old days, and another id at 9's address.
    let stale: Members = [(other(3, pid(9).su_id), addr(30)), (other(4, 4_444_444), addr(9))].into_iter().collect();
    n.handle(S / 10, Input::Elect { members: stale, sender: None });
    assert_eq!(n.members().get(pid(9)), Some(&addr(9)));
    assert!(n.members().contains(pid(1)));
}

#[test]
fn a_stale_id_answering_through_a_live_member_cannot_stall_elections() {
    // 3 is alive and ranks below us; a peer's ELECT still lists the stale id 300 at
    // 3's address: ELECT to "300" reaches 3, which answers GOT_IT and never announces.
    let (mut n, _) = joined(5, &[3, 5]);
    assert_eq!(n.leader(), Some(pid(5)));
    let stale = other(300, 3_000_300);
    let elect: Members = [(pid(1), addr(1)), (stale, addr(3))].into_iter().collect();
    let out = n.handle(S, Input::Elect { members: elect.clone(), sender: None });
    assert_eq!(elects(&out), [(2, stale)]);
    n.handle(S, Input::ElectReply { election: 2, to: stale, outcome: Outcome::GotIt });
    let out = n.handle(5 * S, Input::Timer(Timer::Leader(2)));
    assert!(out.iter().any(|a| matches!(a, Action::Register { .. })));
    // An ELECT arriving before the GCD answers waits for it: electing now would
    // ask the stale id again.
    let out = n.handle(5 * S, Input::Elect { members: elect.clone(), sender: None });
    assert!(elects(&out).is_empty(), "{out:?}");
    // The GCD does not list 300: only what it lists is asked (nobody ranks above
    // us there, so we win), and peers' ELECTs can't bring 300 back.
    let out = n.handle(5 * S, Input::Registered { members: group(&[1, 3, 5]) });
    assert!(elects(&out).is_empty(), "{out:?}");
    assert_eq!(n.leader(), Some(pid(5)));
    let out = n.handle(10 * S, Input::Elect { members: elect, sender: None });
    assert!(!n.members().contains(stale));
    assert!(elects(&out).is_empty(), "{out:?}");
    // Once the GCD lists it again (it really re-registered), it is a member again.
    let back: Members = [(pid(3), addr(3)), (pid(5), addr(5)), (stale, addr(30))].into_iter().collect();
    let out = n.handle(20 * S, Input::Registered { members: back });
    assert!(n.members().contains(stale));
    let (at, timer) = deferred(&out);
    let out = n.handle(at, Input::Timer(timer));
    assert_eq!(elects(&out).iter().map(|(_, to)| *to).collect::<Vec<_>>(), [stale]);
}

#[test]
fn two_live_processes_of_another_student_are_both_asked_once() {
    // 5 led us; its student started a second process (9 days, 5's SU ID) that the GCD
    // lists in 5's place, so neither of the two ever sees the other in its answers.
    let (mut n, _) = joined(1, &[1, 5]);
    n.handle(ms(5), Input::IAmLeader { leader: pid(5), addr: None });
    let twin = other(9, pid(5).su_id);
    n.handle(S, Input::IAmLeader { leader: twin, addr: None });
    assert_eq!(n.leader(), Some(twin));
    // We know both: our election asks both, and its ELECTs tell each of the other.
    let gcd: Members = [(pid(1), addr(1)), (twin, addr(9))].into_iter().collect();
    let out = n.handle(2 * S, Input::Registered { members: gcd.clone() });
    let mut asked_now = asked(&out);
    asked_now.sort();
    assert_eq!(asked_now, [pid(5), twin], "{out:?}");
    let Some(Action::SendElect { members, .. }) = out.iter().find(|a| matches!(a, Action::SendElect { .. })) else {
        panic!("{out:?}")
    };
    assert!(members.contains(pid(5)) && members.contains(twin));
    // Once: each registration of either flips the GCD's entry, and we register again.
    n.handle(2 * S + ms(5), Input::ElectReply { election: 2, to: twin, outcome: Outcome::GotIt });
    n.handle(2 * S + ms(9), Input::IAmLeader { leader: twin, addr: None });
    let out = n.handle(3 * S, Input::Registered { members: gcd });
    assert!(elects(&out).is_empty(), "{out:?}");
    // Two followers of one student harm nobody (our leader tells both): no election.
    let (mut f, _) = joined(1, &[1, 5, 12]);
    f.handle(ms(5), Input::IAmLeader { leader: pid(12), addr: None });
    let both: Members = [(pid(1), addr(1)), (twin, addr(9)), (pid(12), addr(12))].into_iter().collect();
    let out = f.handle(S, Input::Registered { members: both });
    assert!(elects(&out).is_empty() && f.members().contains(pid(5)), "{out:?}");
    // The same SU ID at one address is a restart, not two processes: the old id is
    // gone, and only the new one is asked.
    let (mut m, _) = joined(1, &[1, 5]);
    m.handle(ms(5), Input::IAmLeader { leader: pid(5), addr: None });
    let restarted: Members = [(pid(1), addr(1)), (twin, addr(5))].into_iter().collect();
    let out = m.handle(S, Input::Registered { members: restarted });
    assert_eq!(asked(&out), [twin], "{out:?}");
    assert!(!m.members().contains(pid(5)));
}

#[test]
fn a_gcd_list_showing_our_id_elsewhere_is_told() {
    let mut n = Node::new(pid(5), addr(5), plain(), 0);
    let out = n.handle(Duration::ZERO, Input::Registered { members: [(pid(5), addr(6))].into_iter().collect() });
    assert!(out.iter().any(|a| matches!(a, Action::Event(Event::IdentityClash { clash: Clash::SameId, .. }))));
    assert_eq!(n.members().get(pid(5)), Some(&addr(5)));
    // An announcement from another id with our SU ID is told too.
    let out = n.handle(S, Input::IAmLeader { leader: other(9, pid(5).su_id), addr: None });
    assert!(out.iter().any(|a| matches!(a, Action::Event(Event::IdentityClash { clash: Clash::SuId, .. }))));
}

#[test]
fn moving_to_another_port_registers_it() {
    let (mut n, _) = joined(5, &[5, 9]);
    let out = n.handle(S, Input::Moved { addr: addr(55) });
    assert_eq!(out[0], Action::Event(Event::Moved { from: addr(5), to: addr(55) }));
    assert!(out.iter().any(|a| matches!(a, Action::Register { .. })));
    assert_eq!(n.members().get(pid(5)), Some(&addr(55)));
    // The GCD's next answer (which still has us at the new port) keeps us there.
    n.handle(S, Input::Registered { members: [(pid(5), addr(55)), (pid(9), addr(9))].into_iter().collect() });
    assert_eq!(n.members().get(pid(5)), Some(&addr(55)));
}

#[test]
fn a_gcd_list_without_us_still_keeps_us() {
    let mut n = Node::new(pid(5), addr(5), plain(), 0);
    n.handle(Duration::ZERO, Input::Registered { members: group(&[9]) });
    assert!(n.members().contains(pid(5)));
    let failed = n.handle(S, Input::RegistrationFailed { reason: "down".into() });
    assert_eq!(failed[0], Action::Event(Event::ReregistrationFailed { reason: "down".into() }));
    assert_eq!(n.members().len(), 2);
}

#[cfg(test)]
mod leader_check_tests {
    //! The leader's check, driven by a fake clock.
    use super::*;
    // No probes, no feigned failures, the default check: the election tests' settings.
    use super::{addr, group, leaders_sent, pid, plain as checking, refused, S};

    fn check_timer(out: &[Action]) -> Option<(Time, Timer)> {
        out.iter().find_map(|a| match a {
            Action::SetTimer { at, timer: timer @ Timer::LeaderCheck(_) } => Some((*at, *timer)),
            _ => None,
        })
    }

    fn elects(out: &[Action]) -> Vec<(ProcessId, usize)> {
        out.iter()
            .filter_map(|a| match a {
                Action::SendElect { to, members, .. } => Some((*to, members.len())),
                _ => None,
            })
            .collect()
    }

    fn registers(out: &[Action]) -> usize {
        out.iter().filter(|a| matches!(a, Action::Register { .. })).count()
    }

    fn checked(out: &[Action]) -> Option<&Event> {
        out.iter().find_map(|a| match a {
            Action::Event(e @ Event::LeaderChecked { .. }) => Some(e),
            _ => None,
        })
    }

    /// 9 has joined {1, 5, 9} and leads; returns it and the time its first check fires.
    fn leader_of(days: &[u32], me: u32, seed: u64) -> (Node, Time, Timer) {
        let mut n = Node::new(pid(me), addr(me), checking(), seed);
        let out = n.handle(Duration::ZERO, Input::Registered { members: group(days) });
        assert_eq!(n.leader(), Some(pid(me)));
        let (at, timer) = check_timer(&out).expect("a leader arms its check");
        (n, at, timer)
    }

    /// Fires the check and answers it with the GCD's list `gcd`.
    fn check_with(n: &mut Node, at: Time, timer: Timer, gcd: &[u32]) -> Vec<Action> {
        let out = n.handle(at, Input::Timer(timer));
        assert_eq!(registers(&out), 1, "{out:?}");
        assert!(check_timer(&out).is_none(), "one check at a time");
        n.handle(at + S / 10, Input::Registered { members: group(gcd) })
    }

    #[test]
    fn only_the_leader_checks_every_10_to_20_seconds() {
        let mut waits = Vec::new();
        for seed in 0..50 {
            let (mut n, at, timer) = leader_of(&[1, 5, 9], 9, seed);
            waits.push(at);
            // The first check of a term tells everyone listed that we lead.
            let out = check_with(&mut n, at, timer, &[1, 5, 9]);
            assert_eq!(leaders_sent(&out), [pid(1), pid(5)]);
            let (at, timer) = check_timer(&out).expect("the next check");
            // Nothing new: the next check is armed 10..20 s after the answer.
            let out = check_with(&mut n, at, timer, &[1, 5, 9]);
            assert_eq!(
                checked(&out),
                Some(&Event::LeaderChecked {
                    members: 3,
                    learned: vec![],
                    forgot: 0,
                    electing_for: None,
                    announced_to: vec![]
                })
            );
            let (next, _) = check_timer(&out).expect("the next check");
            assert!((at + S / 10 + 10 * S..=at + S / 10 + 20 * S).contains(&next), "{next:?}");
        }
        assert!(waits.iter().all(|w| (10 * S..=20 * S).contains(w)), "{waits:?}");
        assert!(waits.iter().any(|w| *w != waits[0]), "jittered");
        // A follower never runs the leader's check (its own: see the next test); nor
        // does a leader with the check turned off.
        let mut f = Node::new(pid(5), addr(5), checking(), 0);
        let out = f.handle(Duration::ZERO, Input::Registered { members: group(&[1, 5, 9]) });
        let out2 = f.handle(S, Input::IAmLeader { leader: pid(9), addr: None });
        assert!(check_timer(&out).is_none() && check_timer(&out2).is_none());
        let mut off = Node::new(pid(9), addr(9), Settings { leader_check: None, ..checking() }, 0);
        let out = off.handle(Duration::ZERO, Input::Registered { members: group(&[1, 5, 9]) });
        assert_eq!(off.leader(), Some(pid(9)));
        assert!(check_timer(&out).is_none());
    }

    fn follower_timer(out: &[Action]) -> Option<(Time, Timer)> {
        out.iter().find_map(|a| match a {
            Action::SetTimer { at, timer: timer @ Timer::FollowerCheck(_) } => Some((*at, *timer)),
            _ => None,
        })
    }

    #[test]
    fn a_follower_registers_again_rarely_and_only_to_be_listed() {
        // 5 follows 9 in {1, 5, 9}: two members besides the leader, so its check comes
        // every 2 x 2 x (10..20 s), and the group's followers together ask the GCD half
        // as often as its leader.
        let mut waits = Vec::new();
        for seed in 0..20 {
            let mut f = Node::new(pid(5), addr(5), checking(), seed);
            f.handle(Duration::ZERO, Input::Registered { members: group(&[1, 5, 9]) });
            let out = f.handle(S, Input::IAmLeader { leader: pid(9), addr: None });
            let (at, timer) = follower_timer(&out).expect("a follower arms its check");
            waits.push(at - S);
            let out = f.handle(at, Input::Timer(timer));
            assert!(out.contains(&Action::Register { reason: RegisterWhy::FollowerCheck }), "{out:?}");
            assert!(follower_timer(&out).is_none(), "one check at a time");
            // The GCD lists a member above our leader that we did not know: gcd2.py never
            // drops a dead one, and the leader's check elects for a live one. Nothing
            // happens but the next check.
            let out = f.handle(at + S / 10, Input::Registered { members: group(&[1, 5, 9, 12]) });
            assert!(f.members().contains(pid(12)));
            assert!(elects(&out).is_empty() && registers(&out) == 0, "{out:?}");
            assert!(!out.iter().any(|a| matches!(a, Action::SetTimer { timer: Timer::Deferred(_), .. })), "{out:?}");
            assert_eq!((f.leader(), f.phase()), (Some(pid(9)), &Phase::Idle));
            let (next, timer) = follower_timer(&out).expect("the next check");
            // Four members now: 2 x 3 x (10..20 s).
            assert!((at + S / 10 + 60 * S..=at + S / 10 + 120 * S).contains(&next), "{next:?}");
            // A GCD that does not answer is asked again at the next check, not retried.
            f.handle(next, Input::Timer(timer));
            let out = f.handle(next + S, Input::RegistrationFailed { reason: "refused".into() });
            assert!(!out.iter().any(|a| matches!(a, Action::SetTimer { timer: Timer::Reregister(_), .. })), "{out:?}");
            assert!(follower_timer(&out).is_some(), "{out:?}");
        }
        assert!(waits.iter().all(|w| (40 * S..=80 * S).contains(w)), "{waits:?}");
        assert!(waits.iter().any(|w| *w != waits[0]), "jittered");
        // Its answer comes after we won an election meanwhile: a member it lists above us
        // is waited for as ever, never told that we lead.
        let mut f = Node::new(pid(5), addr(5), checking(), 0);
        f.handle(Duration::ZERO, Input::Registered { members: group(&[1, 5, 9]) });
        f.handle(S / 10, Input::ElectReply { election: 1, to: pid(9), outcome: Outcome::GotIt });
        let out = f.handle(S, Input::IAmLeader { leader: pid(9), addr: None });
        let (at, timer) = follower_timer(&out).expect("a follower arms its check");
        f.handle(at, Input::Timer(timer));
        f.handle(at, Input::Elect { members: group(&[1, 5]), sender: None });
        let out = f.handle(at, Input::ElectReply { election: 2, to: pid(9), outcome: refused() });
        assert_eq!(f.leader(), Some(pid(5)), "{out:?}");
        let out = f.handle(at + S, Input::Registered { members: group(&[1, 5, 9, 12]) });
        assert!(!leaders_sent(&out).contains(&pid(12)), "{out:?}");
        assert!(out.iter().any(|a| matches!(a, Action::SetTimer { timer: Timer::Deferred(_), .. })), "{out:?}");
        // The leader does not run it, nor a follower with the checks turned off.
        let (_, out) = {
            let mut l = Node::new(pid(9), addr(9), checking(), 0);
            let out = l.handle(Duration::ZERO, Input::Registered { members: group(&[1, 5, 9]) });
            (l, out)
        };
        assert!(follower_timer(&out).is_none());
        let mut off = Node::new(pid(5), addr(5), Settings { leader_check: None, ..checking() }, 0);
        off.handle(Duration::ZERO, Input::Registered { members: group(&[1, 5, 9]) });
        let out = off.handle(S, Input::IAmLeader { leader: pid(9), addr: None });
        assert!(follower_timer(&out).is_none());
    }

    #[test]
    fn after_a_gcd_restart_a_higher_newcomer_is_elected_and_told_of_everyone() {
        // The GCD restarted; 300 joined it alone and leads itself. Our check registers
        // us again, so the GCD lists just the two of us.
        let (mut n, at, timer) = leader_of(&[1, 5, 9], 9, 3);
        let out = check_with(&mut n, at, timer, &[300, 9]);
        assert_eq!(
            checked(&out),
            Some(&Event::LeaderChecked {
                members: 2,
                learned: vec![pid(300)],
                forgot: 2,
                electing_for: Some(pid(300)),
                announced_to: vec![]
            })
        );
        // Our followers are kept, and the ELECT carries them to 300.
        assert_eq!(elects(&out), [(pid(300), 4)]);
        assert!(n.members().contains(pid(1)) && n.members().contains(pid(5)));
        // A lower newcomer instead hears that we lead, and so do the followers the GCD
        // forgot (one may have missed our announcement, and nobody else would tell it).
        let (mut m, at, timer) = leader_of(&[1, 5, 9], 9, 4);
        let out = check_with(&mut m, at, timer, &[3, 9]);
        assert!(elects(&out).is_empty());
        assert_eq!(leaders_sent(&out), [pid(3), pid(1), pid(5)]);
        let (at, timer) = check_timer(&out).expect("still leading: the next check is armed");
        // Once: the next check with the same list tells nobody.
        let out = check_with(&mut m, at, timer, &[3, 9]);
        assert_eq!(leaders_sent(&out), [], "{out:?}");
        // A member listed at a new address is told once, as a listed one.
        let (mut k, at, timer) = leader_of(&[1, 5, 9], 9, 5);
        k.handle(at, Input::Timer(timer));
        let moved: Members =
            [(pid(3), addr(3)), (pid(9), addr(9)), (pid(5), Addr::new("127.0.0.1", 41_005))].into_iter().collect();
        let out = k.handle(at + S / 10, Input::Registered { members: moved });
        let mut told = leaders_sent(&out);
        told.sort();
        assert_eq!(told, [pid(1), pid(3), pid(5)], "{out:?}");
    }

    #[test]
    fn a_higher_member_listed_is_asked_once_per_term_or_when_the_gcd_restarted() {
        // 12 was found dead in our election. gcd2.py never drops anyone: the first check
        // of our term asks 12, later ones with the same list do not (no election every
        // period for a stale entry).
        let mut n = Node::new(pid(9), addr(9), checking(), 1);
        n.handle(Duration::ZERO, Input::Registered { members: group(&[1, 5, 9, 12]) });
        let out = n.handle(S / 10, Input::ElectReply { election: 1, to: pid(12), outcome: refused() });
        assert_eq!(n.leader(), Some(pid(9)));
        let (at, timer) = check_timer(&out).expect("the new leader arms its check");
        let out = check_with(&mut n, at, timer, &[1, 5, 9, 12]);
        assert_eq!(elects(&out), [(pid(12), 4)]);
        let out = n.handle(
            at + S,
            Input::ElectReply { election: 2, to: pid(12), outcome: Outcome::Failed(Failure::ClosedSilently) },
        );
        assert_eq!(n.leader(), Some(pid(9)));
        let (at, timer) = check_timer(&out).expect("the next check");
        let mut again = n.clone();
        let out = check_with(&mut n, at, timer, &[1, 5, 9, 12]);
        assert!(elects(&out).is_empty(), "{out:?}");
        // A GCD that restarted since, and lists 12 (registered since, maybe with only
        // part of the group in view), makes us ask it again.
        let out = check_with(&mut again, at, timer, &[12, 9]);
        assert_eq!(elects(&out), [(pid(12), 4)]);
    }

    #[test]
    fn an_overtaken_leader_tells_the_newcomer_of_its_followers() {
        // We lead {1, 5}; 9 joined a restarted GCD that listed us, won, and announced
        // itself to us alone. We don't know where 9 listens: the GCD is asked, and its
        // partial answer merged, so that our ELECT carries 1 to 9.
        let mut n = Node::new(pid(5), addr(5), checking(), 0);
        n.handle(Duration::ZERO, Input::Registered { members: group(&[1, 5]) });
        assert_eq!(n.leader(), Some(pid(5)));
        let out = n.handle(S, Input::IAmLeader { leader: pid(9), addr: None });
        assert_eq!(n.leader(), Some(pid(9)));
        assert_eq!(registers(&out), 1);
        let out = n.handle(S + S / 10, Input::Registered { members: group(&[9, 5]) });
        assert_eq!(elects(&out), [(pid(9), 3)]);
        // A GCD that still lists everyone gave 9 the whole group when it joined: no
        // election (it would only double every join's announcements).
        let mut m = Node::new(pid(5), addr(5), checking(), 0);
        m.handle(Duration::ZERO, Input::Registered { members: group(&[1, 5]) });
        let out = m.handle(S, Input::IAmLeader { leader: pid(9), addr: Some(addr(9)) });
        assert_eq!(registers(&out), 1);
        let out = m.handle(S + S / 10, Input::Registered { members: group(&[1, 5, 9]) });
        assert!(elects(&out).is_empty(), "{out:?}");
        assert_eq!(m.leader(), Some(pid(9)));
        // Members joining one after another: by the time the GCD answers, 10 and 11
        // joined above 9. They saw the whole group and announce themselves: no election
        // for them either (at 200 members, one per join fed a storm).
        let mut j = Node::new(pid(5), addr(5), checking(), 0);
        j.handle(Duration::ZERO, Input::Registered { members: group(&[1, 5]) });
        j.handle(S, Input::IAmLeader { leader: pid(9), addr: Some(addr(9)) });
        let out = j.handle(S + S / 10, Input::Registered { members: group(&[1, 5, 9, 10, 11]) });
        assert!(elects(&out).is_empty(), "{out:?}");
        assert_eq!(j.leader(), Some(pid(9)));
        // A member above the new leader that we knew before is waited for, as any
        // follower waits for one the GCD lists above its leader: we may have missed its
        // announcement (12 did not answer our election in time, and won), so without
        // one within the leader timeout we elect, asking it first.
        let mut k = Node::new(pid(5), addr(5), checking(), 0);
        k.handle(Duration::ZERO, Input::Registered { members: group(&[1, 5, 12]) });
        let slow = Outcome::Failed(Failure::ConnectTimeout { after: Duration::from_millis(1500) });
        k.handle(S / 10, Input::ElectReply { election: 1, to: pid(12), outcome: slow });
        assert_eq!(k.leader(), Some(pid(5)));
        k.handle(S, Input::IAmLeader { leader: pid(9), addr: Some(addr(9)) });
        let out = k.handle(S + S / 10, Input::Registered { members: group(&[1, 5, 9, 12]) });
        assert!(elects(&out).is_empty(), "{out:?}");
        let (at, timer) = deferred(&out);
        assert_eq!(at, S + S / 10 + k.settings.timeouts.leader);
        let mut heard = k.clone();
        let out = k.handle(at, Input::Timer(timer));
        assert_eq!(asked(&out), [pid(12)], "{out:?}");
        // Its announcement within that time drops the election.
        heard.handle(2 * S, Input::IAmLeader { leader: pid(12), addr: Some(addr(12)) });
        assert!(elects(&heard.handle(at, Input::Timer(timer))).is_empty());
        assert_eq!(heard.leader(), Some(pid(12)));
        // A leader with nobody to tell of, and a follower, simply follow.
        let mut alone = Node::new(pid(5), addr(5), checking(), 0);
        alone.handle(Duration::ZERO, Input::Registered { members: group(&[5]) });
        let out = alone.handle(S, Input::IAmLeader { leader: pid(9), addr: Some(addr(9)) });
        assert!(elects(&out).is_empty());
        let out = m.handle(2 * S, Input::IAmLeader { leader: pid(12), addr: Some(addr(12)) });
        assert!(elects(&out).is_empty(), "following 9, not leading");
    }

    #[test]
    fn a_check_the_gcd_does_not_answer_waits_for_the_next_period() {
        let (mut n, at, timer) = leader_of(&[1, 5, 9], 9, 7);
        n.handle(at, Input::Timer(timer));
        let out = n.handle(at + S, Input::RegistrationFailed { reason: "refused".into() });
        assert_eq!(out[0], Action::Event(Event::LeaderCheckFailed { reason: "refused".into() }));
        // No 2 s retry (that is for members without a leader): the next check.
        let timers: Vec<_> = out.iter().filter(|a| matches!(a, Action::SetTimer { .. })).collect();
        assert_eq!(timers.len(), 1, "{out:?}");
        let (next, _) = check_timer(&out).unwrap();
        assert!(next >= at + S + 10 * S);
        // A check that fires while we no longer lead asks nothing.
        let (mut m, at, timer) = leader_of(&[1, 5, 9], 9, 8);
        m.handle(S, Input::IAmLeader { leader: pid(12), addr: Some(addr(12)) });
        assert_eq!(registers(&m.handle(at, Input::Timer(timer))), 0);
    }

    #[test]
    fn a_restarted_gcd_s_short_list_does_not_make_us_forget_members() {
        let mut n = Node::new(pid(5), addr(5), checking(), 0);
        n.handle(Duration::ZERO, Input::Registered { members: group(&[1, 5, 9]) });
        n.handle(S, Input::IAmLeader { leader: pid(9), addr: None });
        // A re-registration of any cause, to a GCD that restarted and has since seen
        // only 12 and us: 1 and 9 listen at addresses it lacks, and are kept.
        n.handle(2 * S, Input::Registered { members: group(&[12, 5]) });
        let mut known: Vec<_> = n.members().iter().map(|m| m.pid).collect();
        known.sort();
        assert_eq!(known, [pid(1), pid(5), pid(9), pid(12)]);
        // A member at an address the GCD lists under another id is replaced, as before.
        let moved: Members = [(pid(5), addr(5)), (pid(7), addr(1))].into_iter().collect();
        n.handle(3 * S, Input::Registered { members: moved });
        assert!(!n.members().contains(pid(1)) && n.members().contains(pid(7)));
    }

    #[test]
    fn a_leader_the_gcd_does_not_list_twice_is_asked_about_again_after_a_check_period() {
        // We follow 5; 9, which the GCD does not list, announces itself.
        let mut n = Node::new(pid(1), addr(1), checking(), 0);
        n.handle(Duration::ZERO, Input::Registered { members: group(&[1, 5]) });
        n.handle(S / 10, Input::IAmLeader { leader: pid(5), addr: None });
        let doubt = |out: &[Action]| {
            out.iter().find_map(|a| match a {
                Action::SetTimer { at, timer: t @ Timer::Doubt(_) } => Some((*at, *t)),
                _ => None,
            })
        };
        let announce = |n: &mut Node, t: Time| {
            n.handle(t, Input::IAmLeader { leader: pid(9), addr: None });
            n.handle(t, Input::Registered { members: group(&[1, 5]) })
        };
        // The first time: elect, as for any announcer the GCD does not know.
        let out = announce(&mut n, S);
        assert_eq!(elects(&out).len(), 1, "{out:?}");
        n.handle(S, Input::IAmLeader { leader: pid(9), addr: None });
        // Again: it may be a real leader a restarted GCD forgot; wait for its check.
        let out = n.handle(2 * S, Input::Registered { members: group(&[1, 5]) });
        assert!(elects(&out).is_empty(), "{out:?}");
        let (at, timer) = doubt(&out).expect("asks again later");
        assert_eq!(at, 2 * S + LEADER_CHECK.max);
        assert!(elects(&announce(&mut n, 3 * S)).is_empty(), "still waiting");
        assert_eq!(registers(&n.handle(at, Input::Timer(timer))), 1);
        // Still unlisted after its check would have registered it: elect.
        let out = n.handle(at + S, Input::Registered { members: group(&[1, 5]) });
        assert_eq!(elects(&out).len(), 1, "{out:?}");
    }

    /// A tiny fake network: members that answer each other at once, a GCD that can be
    /// wiped, and a fake clock that jumps from timer to timer.
    struct Net {
        days: Vec<u32>,
        nodes: Vec<Node>,
        gcd: Members,
        timers: Vec<(Time, usize, Timer)>,
        now: Time,
    }

    impl Net {
        fn idx(&self, p: ProcessId) -> usize {
            self.days.iter().position(|d| pid(*d) == p).unwrap()
        }

        /// Delivers `input` to member `i` and everything it causes, at once.
        fn run(&mut self, i: usize, input: Input) {
            let mut queue = vec![(i, input)];
            let mut steps = 0;
            while let Some((i, input)) = queue.pop() {
                steps += 1;
                assert!(steps < 10_000, "a storm");
                let me = pid(self.days[i]);
                for action in self.nodes[i].handle(self.now, input) {
                    match action {
                        Action::SendElect { election, to, members, .. } => {
                            queue.push((i, Input::ElectReply { election, to, outcome: Outcome::GotIt }));
                            queue.push((self.idx(to), Input::Elect { members, sender: Some(me) }));
                        }
                        Action::SendLeader { to, .. } => {
                            queue.push((self.idx(to), Input::IAmLeader { leader: me, addr: None }))
                        }
                        Action::Register { .. } => {
                            self.gcd.insert(me, addr(self.days[i]));
                            queue.push((i, Input::Registered { members: self.gcd.clone() }));
                        }
                        Action::SetTimer { at, timer } => self.timers.push((at, i, timer)),
                        _ => {}
                    }
                }
            }
        }

        fn join(&mut self, i: usize) {
            self.gcd.insert(pid(self.days[i]), addr(self.days[i]));
            let members = self.gcd.clone();
            self.run(i, Input::Registered { members });
        }

        /// Fires timers in order until `done` holds (true) or the next is past `until`.
        fn until(&mut self, until: Time, done: impl Fn(&[Node]) -> bool) -> bool {
            loop {
                if done(&self.nodes) {
                    return true;
                }
                self.timers.sort_by_key(|t| t.0);
                if self.timers.first().is_none_or(|t| t.0 > until) {
                    return false;
                }
                let (at, i, timer) = self.timers.remove(0);
                self.now = at;
                self.run(i, Input::Timer(timer));
            }
        }
    }

    /// 1, 5 and 9 settle on 9; the GCD restarts; `newcomer` joins it. Returns how long
    /// after the newcomer joined every member followed the highest, if within 2 minutes.
    fn heal_time(seed: u64, newcomer: u32, settings: Settings) -> Option<Duration> {
        let days = vec![1, 5, 9, newcomer];
        let nodes = days.iter().enumerate().map(|(i, d)| Node::new(pid(*d), addr(*d), settings, seed * 10 + i as u64));
        let mut net = Net { nodes: nodes.collect(), days, gcd: Members::default(), timers: Vec::new(), now: S / 10 };
        (0..3).for_each(|i| net.join(i));
        net.until(7 * S, |_| false);
        assert!(net.nodes[..3].iter().all(|n| n.leader() == Some(pid(9))));
        net.gcd = Members::default();
        net.now = 8 * S;
        net.join(3);
        let top = pid(newcomer.max(9));
        let joined = net.now;
        net.until(joined + 120 * S, |nodes| nodes.iter().all(|n| n.leader() == Some(top))).then(|| net.now - joined)
    }

    #[test]
    fn a_group_split_by_a_gcd_restart_heals_within_30_seconds() {
        let mut worst = Duration::ZERO;
        for seed in 0..200 {
            for newcomer in [300, 3] {
                let t = heal_time(seed, newcomer, checking()).unwrap_or_else(|| panic!("seed {seed}: never healed"));
                worst = worst.max(t);
            }
        }
        assert!(worst <= 30 * S, "worst {worst:?}");
        assert!(worst > 10 * S, "only a check heals it, and none comes within 10 s: {worst:?}");
        // Without the check, the higher newcomer leads alone for good.
        let off = Settings { leader_check: None, ..checking() };
        assert_eq!(heal_time(1, 300, off), None);
    }
}

#[cfg(test)]
mod reason_tests {
    use super::pid;
    use super::*;

    /// The log and the events' `"reason"` read as they did when reasons were sentences.
    #[test]
    fn reasons_read_as_sentences_and_group_by_kind() {
        let (a, b) = (pid(3), pid(9));
        let elections = [
            (Why::JoinedGroup, "joined the group", "joined"),
            (Why::ElectFrom { sender: Some(a) }, "ELECT from (3, 1000003)", "elect"),
            (Why::ElectFrom { sender: None }, "ELECT from a peer", "elect"),
            (
                Why::AboveAnnouncer { leader: a, higher: b },
                "(3, 1000003) announced itself but (9, 1000009) ranks higher",
                "above_announcer",
            ),
            (
                Why::GcdListsAbove { top: b, leader: a },
                "the GCD lists (9, 1000009), above our leader (3, 1000003)",
                "gcd_lists_above",
            ),
            (
                Why::CheckListsAbove { top: b },
                "leader's check: the GCD lists (9, 1000009) above us",
                "check_lists_above",
            ),
            (
                Why::SharedSuId { kept: a, listed: b },
                "(3, 1000003) and (9, 1000009) share an SU ID, and neither may know of the other",
                "shared_su_id",
            ),
        ];
        for (why, text, kind) in elections {
            assert_eq!((why.to_string().as_str(), why.kind()), (text, kind));
        }
        assert_eq!(RegisterWhy::LeaderUnknown { leader: b }.to_string(), "leader (9, 1000009) is not in our members");
        let refused = Failure::Refused { addr: Addr::new("127.0.0.1", 5001) };
        assert_eq!(refused.to_string(), "refused: nothing listens at 127.0.0.1:5001");
        assert_eq!(Failure::NoReply { after: Duration::from_millis(1500) }.to_string(), "no reply within 1.5s");
    }
}

/// Issue 20: a member that an ELECT reaches elects, but asks the highest member first
/// and stops at its GOT_IT: the members between are not asked, so one ELECT costs the
/// members above its receiver one election, not one each.
#[test]
fn an_elect_starts_a_paced_election_that_ends_at_the_highest_members_got_it() {
    let mut n = Node::new(pid(5), addr(5), plain(), 0);
    n.handle(Duration::ZERO, Input::Registered { members: group(&[5]) });
    let out = n.handle(S, Input::Elect { members: group(&[1, 5, 7, 8, 9]), sender: None });
    assert_eq!(asked(&out), [pid(9)], "the highest first, alone: {out:?}");
    assert!(timers(&out).contains(&(S + ELECT_PACE, Timer::Pace(2))), "{out:?}");
    reply(&mut n, S + ms(5), 2, 9, true);
    assert_eq!(n.phase(), &Phase::AwaitingLeader { election: 2 });
    let out = n.handle(S + ELECT_PACE, Input::Timer(Timer::Pace(2)));
    assert!(elects(&out).is_empty(), "9 answered with nobody above it: {out:?}");
    n.handle(S + ms(60), Input::IAmLeader { leader: pid(9), addr: None });
    // A refusal from the highest asks the next at once.
    let out = n.handle(S + 10 * S, Input::Elect { members: group(&[1, 5, 7, 8, 9]), sender: None });
    assert_eq!(asked(&out), [pid(9)], "{out:?}");
    let out = reply(&mut n, S + 10 * S + ms(1), 3, 9, false);
    assert_eq!(asked(&out), [pid(8)], "{out:?}");
}

/// Issue 20: a timeout is only suspicion. The former leader whose PROBE timed out is
/// asked again after a jittered wait (boundedly); alive, an election finds out who leads.
#[test]
fn a_former_leader_that_timed_out_is_probed_again_and_elected_against_if_alive() {
    let (mut n, _) = joined(3, &[3, 6, 9]);
    n.handle(S, Input::IAmLeader { leader: pid(9), addr: None });
    let out = n.handle(2 * S, Input::IAmLeader { leader: pid(6), addr: None });
    let probe = probe_sent(&out, 9);
    let slow = Outcome::Failed(Failure::ConnectTimeout { after: Duration::from_millis(1500) });
    let out = n.handle(3 * S, Input::ProbeReply { probe, outcome: slow.clone() });
    assert_eq!(n.leader(), Some(pid(6)), "followed meanwhile");
    let said = out.iter().find_map(|a| match a {
        Action::Event(Event::FormerLeaderProbeFailed { former, leader, again, .. }) => Some((*former, *leader, *again)),
        _ => None,
    });
    assert_eq!(said, Some((pid(9), Some(pid(6)), true)), "{out:?}");
    assert!(!out.iter().any(|a| matches!(a, Action::Event(Event::ProbeFailed { .. }))), "{out:?}");
    let (at, timer) = timers(&out).into_iter().find(|(_, t)| matches!(t, Timer::Suspect(_))).expect("asks again");
    assert!((3 * S + SUSPECT_WAIT..=3 * S + 2 * SUSPECT_WAIT).contains(&at), "{at:?}");
    let out = n.handle(at, Input::Timer(timer));
    let probe = probe_sent(&out, 9);
    let out = n.handle(at + ms(10), Input::ProbeReply { probe, outcome: Outcome::GotIt });
    assert_eq!(asked(&out), [pid(9), pid(6)], "alive: an election asks it: {out:?}");
    // Bounded: a former leader that only ever times out is given up.
    let (mut n, _) = joined(3, &[3, 6, 9]);
    n.handle(S, Input::IAmLeader { leader: pid(9), addr: None });
    let mut out = n.handle(2 * S, Input::IAmLeader { leader: pid(6), addr: None });
    let mut tries = 0;
    loop {
        let probe = probe_sent(&out, 9);
        tries += 1;
        let reply = n.handle(100 * tries * S, Input::ProbeReply { probe, outcome: slow.clone() });
        let Some((at, timer)) = timers(&reply).into_iter().find(|(_, t)| matches!(t, Timer::Suspect(_))) else { break };
        out = n.handle(at, Input::Timer(timer));
    }
    assert_eq!(tries, 1 + SUSPECT_RETRIES);
    assert_eq!(n.leader(), Some(pid(6)));
}

/// Issue 22, item 10: a PROBE answered or failed for a leader we no longer follow says
/// nothing about ours, and starts nothing.
#[test]
fn a_probe_of_a_leader_we_no_longer_follow_is_not_reported_as_our_leaders() {
    let mut n = Node::new(pid(5), addr(5), with(Some(Span::new(ms(500), ms(3000))), None), 42);
    n.handle(Duration::ZERO, Input::Registered { members: group(&[5, 6, 9]) });
    reply(&mut n, ms(1), 1, 9, false);
    reply(&mut n, ms(2), 1, 6, true);
    let out = n.handle(S, Input::IAmLeader { leader: pid(6), addr: None });
    assert_eq!(n.leader(), Some(pid(6)));
    let (at, timer) = timers(&out).into_iter().find(|(_, t)| matches!(t, Timer::Probe(_))).expect("probes");
    let out = n.handle(at, Input::Timer(timer));
    let probe = probe_sent(&out, 6);
    // A higher member takes over while the PROBE is out; then the PROBE fails.
    n.handle(at + ms(1), Input::IAmLeader { leader: pid(9), addr: None });
    let out = n.handle(at + ms(2), Input::ProbeReply { probe, outcome: refused() });
    assert_eq!(n.leader(), Some(pid(9)));
    assert!(
        !out.iter().any(|a| matches!(a, Action::Event(Event::ProbeFailed { .. }) | Action::Register { .. })),
        "{out:?}"
    );
}

/// Issue 20, item 3: another live process with our SU ID at another address is asked
/// when it ranks above us, and told when we win: the two settle by the bully rule.
#[test]
fn a_twin_with_our_su_id_above_us_is_asked_and_followed() {
    let (mut n, _) = joined(5, &[1, 5]);
    assert_eq!(n.leader(), Some(pid(5)));
    let twin = other(50, pid(5).su_id);
    let listed: Members = [(pid(1), addr(1)), (twin, addr(50))].into_iter().collect();
    let out = n.handle(S, Input::Elect { members: listed.clone(), sender: None });
    let told =
        out.iter().filter(|a| matches!(a, Action::Event(Event::IdentityClash { clash: Clash::SuId, .. }))).count();
    assert_eq!(told, 1, "{out:?}");
    assert_eq!(asked(&out), [twin], "the twin ranks above us: asked, {out:?}");
    reply(&mut n, S + ms(5), 2, 50, true);
    n.handle(S + ms(10), Input::IAmLeader { leader: twin, addr: None });
    assert_eq!(n.leader(), Some(twin));
    // Reported once, and probed where it listens.
    let out = n.handle(2 * S, Input::Elect { members: listed, sender: None });
    assert!(!out.iter().any(|a| matches!(a, Action::Event(Event::IdentityClash { .. }))), "{out:?}");
    // A twin that refuses is gone: the next election does not ask it.
    let (mut n, _) = joined(5, &[1, 5]);
    let out = n.handle(S, Input::Elect { members: [(twin, addr(50))].into_iter().collect(), sender: None });
    assert_eq!(asked(&out), [twin]);
    let out = reply(&mut n, S + ms(1), 2, 50, false);
    assert_eq!(n.leader(), Some(pid(5)), "{out:?}");
    let out = n.handle(10 * S, Input::Elect { members: group(&[1]), sender: None });
    assert!(asked(&out).is_empty(), "{out:?}");
}

/// A twin below us hears our victory, so that it follows us.
#[test]
fn a_twin_with_our_su_id_below_us_is_told_when_we_win() {
    let (mut n, _) = joined(5, &[1, 5]);
    let twin = other(3, pid(5).su_id);
    let out = n.handle(S, Input::Elect { members: [(twin, addr(3))].into_iter().collect(), sender: None });
    assert!(leaders_sent(&out).contains(&twin), "{out:?}");
}

/// The same id announcing itself from elsewhere: another process runs with our very id
/// (same SU ID, same days). Said once, and it changes nothing here.
#[test]
fn an_i_am_leader_with_our_own_id_is_reported_once_and_ignored() {
    let (mut n, _) = joined(5, &[1, 5, 9]);
    reply(&mut n, ms(1), 1, 9, true);
    let out = n.handle(S, Input::IAmLeader { leader: pid(5), addr: Some(addr(55)) });
    let clash = out.iter().find_map(|a| match a {
        Action::Event(Event::IdentityClash { clash, addr, .. }) => Some((*clash, addr.clone())),
        _ => None,
    });
    assert_eq!(clash, Some((Clash::SameId, Some(addr(55)))), "{out:?}");
    assert_eq!(n.phase(), &Phase::AwaitingLeader { election: 1 }, "still waiting for 9");
    let out = n.handle(2 * S, Input::IAmLeader { leader: pid(5), addr: None });
    assert!(!out.iter().any(|a| matches!(a, Action::Event(Event::IdentityClash { .. }))), "{out:?}");
}

/// Issue 20: a timeout is only suspicion. A win over a higher member that only timed
/// out (a busy machine) asks it again later, boundedly, without announcing again.
#[test]
fn a_win_over_a_member_that_only_timed_out_asks_it_again_boundedly() {
    let (mut n, _) = joined(5, &[1, 5, 9]);
    let slow = Outcome::Failed(Failure::NoReply { after: Duration::from_millis(1500) });
    let out = n.handle(2 * S, Input::ElectReply { election: 1, to: pid(9), outcome: slow });
    assert_eq!(n.leader(), Some(pid(5)), "won: {out:?}");
    let mut rechecks = 0;
    let mut out = out;
    while let Some((at, timer)) = timers(&out).into_iter().find(|(_, t)| matches!(t, Timer::Recheck(_))) {
        out = n.handle(at, Input::Timer(timer));
        assert_eq!(asked(&out), [pid(9)], "{out:?}");
        assert!(leaders_sent(&out).is_empty(), "no new announcement: {out:?}");
        rechecks += 1;
    }
    assert_eq!(rechecks, SUSPECT_RETRIES);
    // Refused is certain: no recheck.
    let (mut n, _) = joined(5, &[1, 5, 9]);
    let out = reply(&mut n, S, 1, 9, false);
    assert!(!timers(&out).iter().any(|(_, t)| matches!(t, Timer::Recheck(_))), "{out:?}");
}

/// An election that could not ask the higher leader we follow (its address unknown,
/// the GCD not answering) would be won against it: it waits for the GCD's answer.
#[test]
fn without_the_gcd_no_election_is_won_against_a_leader_we_cannot_reach() {
    let (mut n, _) = joined(3, &[3]);
    n.handle(S, Input::IAmLeader { leader: pid(9), addr: None });
    n.handle(S + S / 2, Input::Elect { members: group(&[1]), sender: None });
    let out = n.handle(2 * S, Input::RegistrationFailed { reason: "timed out".into() });
    assert!(!out.iter().any(|a| matches!(a, Action::Event(Event::ElectionStarted { .. }))), "{out:?}");
    assert_eq!(n.leader(), Some(pid(9)));
    let (at, timer) = timers(&out).into_iter().find(|(_, t)| matches!(t, Timer::Reregister(_))).expect("retries");
    let out = n.handle(at, Input::Timer(timer));
    assert!(out.iter().any(|a| matches!(a, Action::Register { .. })), "{out:?}");
    let out = n.handle(at + ms(5), Input::Registered { members: group(&[1, 3, 9]) });
    assert_eq!(asked(&out), [pid(9)], "the election, once it can ask 9: {out:?}");
}

#[test]
fn an_elect_cannot_demote_a_leader_just_heard_whose_address_nobody_lists() {
    // Simulator seed 49031: after a GCD restart the GCD does not list the leader until
    // its next check, and a standard I_AM_LEADER carries no address. A lower member's
    // ELECT made us elect with nobody to ask, and we won against the live leader.
    let registered = |n: &mut Node, at: Duration| n.handle(at, Input::Registered { members: group(&[1, 3]) });
    let (mut n, _) = joined(3, &[1, 3]);
    // 9 joined after the GCD restarted and won; the GCD lost its entry in a second one.
    n.handle(S, Input::IAmLeader { leader: pid(9), addr: None });
    registered(&mut n, S); // our leader's check after it: the GCD does not list 9
    assert_eq!(n.leader(), Some(pid(9)));
    let elect = |n: &mut Node, at: Duration| n.handle(at, Input::Elect { members: group(&[1, 3]), sender: None });
    let out = elect(&mut n, 2 * S);
    assert!(out.iter().any(|a| matches!(a, Action::Register { .. })), "the GCD is asked first: {out:?}");
    let out = registered(&mut n, 2 * S);
    assert!(leaders_sent(&out).is_empty(), "won against the leader heard a second ago: {out:?}");
    assert!(out.contains(&Action::Event(Event::WaitingForLeader { election: 2, leader: pid(9) })), "{out:?}");
    assert_eq!((n.leader(), n.phase()), (Some(pid(9)), &Phase::AwaitingLeader { election: 2 }));
    let timer = out
        .iter()
        .find_map(|a| match a {
            Action::SetTimer { at, timer: timer @ Timer::Leader(2) } => Some((*at, *timer)),
            _ => None,
        })
        .expect("the leader timeout is armed");
    assert_eq!(timer.0, 2 * S + Timeouts::default().leader);
    // Its announcement ends the wait.
    let mut heard = n.clone();
    heard.handle(3 * S, Input::IAmLeader { leader: pid(9), addr: None });
    assert_eq!((heard.leader(), heard.phase()), (Some(pid(9)), &Phase::Idle));
    // Silence: the GCD is asked again, and the election after it is won (the leader
    // may have died meanwhile).
    let out = n.handle(timer.0, Input::Timer(timer.1));
    assert!(out.iter().any(|a| matches!(a, Action::Register { .. })), "{out:?}");
    let out = registered(&mut n, timer.0);
    assert_eq!(leaders_sent(&out), [pid(1)], "{out:?}");
    assert_eq!(n.leader(), Some(pid(3)));
}
