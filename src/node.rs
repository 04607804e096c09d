//! The bully algorithm as a pure state machine: no I/O, no clock, no randomness.
//!
//! [`Node::handle`] takes the time and one fact (a message arrived, an ELECT we sent was
//! answered or failed, a timer fired, the GCD answered) and returns requests for the
//! runtime to carry out (send this, arm that timer, re-register, report this event).
//! The runtime only translates between these and sockets, threads and clocks, which is
//! what lets the tests drive whole groups through failures with a fake clock.
//!
//! The rules, from the assignment and the textbook's bully algorithm:
//! - An election asks every higher member with ELECT. With none higher, we win at once.
//! - We decide as soon as every higher member has answered or failed: if all failed
//!   (refused connections are known in milliseconds), we win without waiting.
//! - With no GOT_IT by the election timeout, we win. With one, we wait for
//!   I_AM_LEADER, and start over if none comes within the leader timeout.
//! - Each election has a number; a reply for an older one changes nothing.
//! - ELECT: learn its members, (the runtime already answered GOT_IT), and start an
//!   election unless one is in progress.
//! - Membership news (an ELECT's members, the GCD's list): higher members learned
//!   mid-election are asked in it; a member above our leader learned while idle starts
//!   an election (otherwise a node that missed an announcement could lead alone).
//! - I_AM_LEADER: follow the new leader; if it ranks below us, or below the leader we
//!   followed (a late announcement overtaken by a newer one), elect to find out who is
//!   alive; if we don't know where it listens, ask the GCD.

use crate::identity::ProcessId;
use crate::membership::{Addr, Members};
use std::time::Duration;

/// Time as the runtime measures it: elapsed since an epoch of its choosing.
pub type Time = Duration;

/// The node's timeouts, each validated positive at start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// How long an election waits for any GOT_IT before declaring victory.
    pub elect: Duration,
    /// How long to wait for I_AM_LEADER after a GOT_IT before electing again.
    pub leader: Duration,
}

impl Default for Timeouts {
    /// Close to what classmates' peers use (PROTOCOL.md): 2 s for GOT_IT, 4 s for
    /// I_AM_LEADER.
    fn default() -> Self {
        Timeouts { elect: Duration::from_secs(2), leader: Duration::from_secs(4) }
    }
}

/// How an ELECT we sent ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ElectOutcome {
    GotIt,
    /// Refused, unreachable, silent past the socket timeout, an empty or wrong reply.
    Failed(String),
}

/// A timer the node asked for; it comes back as [`Input::Timer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// Election `n` has waited long enough for GOT_IT.
    Election(u64),
    /// Election `n` got a GOT_IT and has waited long enough for I_AM_LEADER.
    Leader(u64),
}

/// A fact for the node.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// The GCD answered (at start-up or a re-registration) with the group.
    Registered {
        members: Members,
    },
    /// A re-registration failed; the node keeps the members it has.
    RegistrationFailed {
        reason: String,
    },
    /// ELECT arrived (the runtime has answered GOT_IT).
    Elect {
        members: Members,
        sender: Option<ProcessId>,
    },
    /// I_AM_LEADER arrived.
    IAmLeader {
        leader: ProcessId,
        addr: Option<Addr>,
    },
    /// The ELECT we sent to `to` in election `election` ended.
    ElectReply {
        election: u64,
        to: ProcessId,
        outcome: ElectOutcome,
    },
    Timer(Timer),
}

/// A request to the runtime.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Send ELECT with `members` to `to` at `addr`, from a thread of its own, and report
    /// how it ended as [`Input::ElectReply`] with this election number.
    SendElect { election: u64, to: ProcessId, addr: Addr, members: Members },
    /// Send I_AM_LEADER (our id) to `to` at `addr`, without waiting on anything.
    SendLeader { to: ProcessId, addr: Addr },
    /// Deliver `timer` as an input once the time is `at`.
    SetTimer { at: Time, timer: Timer },
    /// Register with the GCD again and report [`Input::Registered`] or
    /// [`Input::RegistrationFailed`].
    Register { reason: String },
    /// Something a person or a tool should know about.
    Event(Event),
}

/// What happened, in the protocol's words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Joined {
        members: usize,
    },
    ElectionStarted {
        election: u64,
        reason: String,
        asking: Vec<ProcessId>,
    },
    GotIt {
        from: ProcessId,
    },
    ElectFailed {
        to: ProcessId,
        reason: String,
    },
    /// Who we follow changed (ourselves included, when we win).
    Leader {
        leader: ProcessId,
        previous: Option<ProcessId>,
    },
    Won {
        election: u64,
        announcing_to: usize,
    },
    NoLeaderAfterGotIt {
        election: u64,
    },
    ElectReceived {
        from: Option<ProcessId>,
        learned: Vec<ProcessId>,
        electing: bool,
    },
    IAmLeaderReceived {
        leader: ProcessId,
    },
    Reregistered {
        members: usize,
        learned: Vec<ProcessId>,
    },
    ReregistrationFailed {
        reason: String,
    },
}

/// Where the node is in the algorithm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Not electing: following `Node::leader` (or nobody yet).
    Idle,
    /// Election `election` is waiting for the higher members in `pending`.
    Electing { election: u64, pending: Vec<ProcessId> },
    /// Election `election` got a GOT_IT and waits for I_AM_LEADER.
    AwaitingLeader { election: u64 },
}

/// One member's view of the election.
#[derive(Clone, Debug)]
pub struct Node {
    me: ProcessId,
    my_addr: Addr,
    timeouts: Timeouts,
    members: Members,
    leader: Option<ProcessId>,
    phase: Phase,
    /// Number of the latest election we started.
    election: u64,
}

impl Node {
    pub fn new(me: ProcessId, my_addr: Addr, timeouts: Timeouts) -> Self {
        let mut members = Members::default();
        members.insert(me, my_addr.clone());
        Node { me, my_addr, timeouts, members, leader: None, phase: Phase::Idle, election: 0 }
    }

    pub fn id(&self) -> ProcessId {
        self.me
    }

    pub fn leader(&self) -> Option<ProcessId> {
        self.leader
    }

    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    pub fn members(&self) -> &Members {
        &self.members
    }

    pub fn is_electing(&self) -> bool {
        self.phase != Phase::Idle
    }

    /// Applies one input at time `now`.
    pub fn handle(&mut self, now: Time, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Registered { members } => self.on_registered(now, members, &mut out),
            Input::RegistrationFailed { reason } => {
                out.push(Action::Event(Event::ReregistrationFailed { reason }));
            }
            Input::Elect { members, sender } => {
                let learned = self.members.merge(&members);
                let electing = self.is_electing();
                out.push(Action::Event(Event::ElectReceived { from: sender, learned: learned.clone(), electing }));
                if electing {
                    self.ask_newcomers(&learned, &mut out);
                } else {
                    let from = sender.map_or("a peer".to_string(), |s| s.to_string());
                    self.start_election(now, format!("ELECT from {from}"), &mut out);
                }
            }
            Input::IAmLeader { leader, addr } => self.on_leader(now, leader, addr, &mut out),
            Input::ElectReply { election, to, outcome } => self.on_reply(now, election, to, outcome, &mut out),
            Input::Timer(timer) => self.on_timer(now, timer, &mut out),
        }
        out
    }

    fn on_registered(&mut self, now: Time, members: Members, out: &mut Vec<Action>) {
        let first = self.election == 0 && self.leader.is_none() && self.phase == Phase::Idle;
        let before = self.members.clone();
        // The GCD is the authority on membership; we stay in it whatever it says.
        self.members = members;
        if !self.members.contains(self.me) {
            self.members.insert(self.me, self.my_addr.clone());
        }
        if first {
            out.push(Action::Event(Event::Joined { members: self.members.len() }));
            self.start_election(now, "joined the group".into(), out);
        } else {
            let learned: Vec<_> = self.members.iter().map(|m| m.pid).filter(|p| !before.contains(*p)).collect();
            out.push(Action::Event(Event::Reregistered { members: self.members.len(), learned: learned.clone() }));
            match self.phase {
                Phase::Electing { .. } => self.ask_newcomers(&learned, out),
                Phase::Idle => {
                    // A member ranking above the leader we follow should lead, if alive.
                    let bar = self.leader.unwrap_or(self.me).max(self.me);
                    if let Some(top) = learned.iter().copied().filter(|p| *p > bar).max() {
                        self.start_election(now, format!("the GCD lists {top}, above our leader {bar}"), out);
                    }
                }
                // Someone higher answered GOT_IT and will announce, or the leader timer fires.
                Phase::AwaitingLeader { .. } => {}
            }
        }
    }

    /// Members learned while an election waits are asked in that same election, so
    /// that it can't be won past a higher member it did not know of when it began.
    fn ask_newcomers(&mut self, learned: &[ProcessId], out: &mut Vec<Action>) {
        let Phase::Electing { election, pending } = &mut self.phase else { return };
        let election = *election;
        for pid in learned.iter().copied().filter(|p| *p > self.me) {
            if let Some(addr) = self.members.get(pid) {
                pending.push(pid);
                out.push(Action::SendElect { election, to: pid, addr: addr.clone(), members: self.members.clone() });
            }
        }
    }

    fn start_election(&mut self, now: Time, reason: String, out: &mut Vec<Action>) {
        self.election += 1;
        let election = self.election;
        let higher: Vec<_> = self.members.higher_than(self.me).cloned().collect();
        out.push(Action::Event(Event::ElectionStarted {
            election,
            reason,
            asking: higher.iter().map(|m| m.pid).collect(),
        }));
        if higher.is_empty() {
            self.win(out);
            return;
        }
        self.phase = Phase::Electing { election, pending: higher.iter().map(|m| m.pid).collect() };
        for m in higher {
            out.push(Action::SendElect { election, to: m.pid, addr: m.addr, members: self.members.clone() });
        }
        out.push(Action::SetTimer { at: now + self.timeouts.elect, timer: Timer::Election(election) });
    }

    fn win(&mut self, out: &mut Vec<Action>) {
        self.phase = Phase::Idle;
        self.follow(self.me, out);
        let others: Vec<_> = self.members.iter().filter(|m| m.pid != self.me).cloned().collect();
        out.push(Action::Event(Event::Won { election: self.election, announcing_to: others.len() }));
        for m in others {
            out.push(Action::SendLeader { to: m.pid, addr: m.addr });
        }
    }

    fn follow(&mut self, leader: ProcessId, out: &mut Vec<Action>) {
        if self.leader != Some(leader) {
            let previous = self.leader.replace(leader);
            out.push(Action::Event(Event::Leader { leader, previous }));
        }
    }

    fn on_reply(&mut self, now: Time, election: u64, to: ProcessId, outcome: ElectOutcome, out: &mut Vec<Action>) {
        // Report every outcome, but let only the current election's count.
        match &outcome {
            ElectOutcome::GotIt => out.push(Action::Event(Event::GotIt { from: to })),
            ElectOutcome::Failed(reason) => out.push(Action::Event(Event::ElectFailed { to, reason: reason.clone() })),
        }
        let Phase::Electing { election: current, pending } = &mut self.phase else {
            return;
        };
        if *current != election {
            return;
        }
        pending.retain(|p| *p != to);
        match outcome {
            ElectOutcome::GotIt => {
                self.phase = Phase::AwaitingLeader { election };
                out.push(Action::SetTimer { at: now + self.timeouts.leader, timer: Timer::Leader(election) });
            }
            ElectOutcome::Failed(_) if pending.is_empty() => self.win(out),
            ElectOutcome::Failed(_) => {}
        }
    }

    fn on_timer(&mut self, now: Time, timer: Timer, out: &mut Vec<Action>) {
        match (timer, &self.phase) {
            (Timer::Election(n), Phase::Electing { election, .. }) if n == *election => self.win(out),
            (Timer::Leader(n), Phase::AwaitingLeader { election }) if n == *election => {
                out.push(Action::Event(Event::NoLeaderAfterGotIt { election: n }));
                self.start_election(now, "no I_AM_LEADER came after GOT_IT".into(), out);
            }
            _ => {} // a timer of an election that already ended
        }
    }

    fn on_leader(&mut self, now: Time, leader: ProcessId, addr: Option<Addr>, out: &mut Vec<Action>) {
        out.push(Action::Event(Event::IAmLeaderReceived { leader }));
        if let (Some(addr), false) = (addr, self.members.contains(leader)) {
            self.members.insert(leader, addr);
        }
        let previous = self.leader;
        self.phase = Phase::Idle;
        self.follow(leader, out);
        if leader < self.me {
            self.start_election(now, format!("{leader} announced itself but ranks below us"), out);
        } else if let Some(higher) = previous.filter(|p| leader < *p) {
            // Announcements travel on separate connections and can arrive out of
            // order: a late one from a lower winner must not demote a higher leader
            // that may still be alive. An election finds out which of them is.
            self.start_election(now, format!("{leader} announced itself but {higher} ranks higher"), out);
        } else if !self.members.contains(leader) {
            out.push(Action::Register { reason: format!("leader {leader} is not in our members") });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(days: u32) -> ProcessId {
        ProcessId::new(days, 1_000_000 + days)
    }

    fn addr(days: u32) -> Addr {
        Addr::new("127.0.0.1", 40_000 + days as u16)
    }

    fn group(days: &[u32]) -> Members {
        days.iter().map(|d| (pid(*d), addr(*d))).collect()
    }

    const S: Duration = Duration::from_secs(1);

    /// A node with id `me` that has registered into a group of `days`.
    fn joined(me: u32, days: &[u32]) -> (Node, Vec<Action>) {
        let mut n = Node::new(pid(me), addr(me), Timeouts::default());
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

    fn leaders_sent(out: &[Action]) -> Vec<ProcessId> {
        out.iter()
            .filter_map(|a| match a {
                Action::SendLeader { to, .. } => Some(*to),
                _ => None,
            })
            .collect()
    }

    fn reply(n: &mut Node, at: Duration, election: u64, to: u32, ok: bool) -> Vec<Action> {
        let outcome = if ok { ElectOutcome::GotIt } else { ElectOutcome::Failed("refused".into()) };
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
        assert_eq!(elects(&out), [(1, pid(7)), (1, pid(9))]);
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
        assert_eq!(elects(&out), [(2, pid(9))]);
        assert!(out.contains(&Action::Event(Event::NoLeaderAfterGotIt { election: 1 })));
    }

    #[test]
    fn stale_replies_from_an_earlier_election_never_count() {
        let (mut n, _) = joined(5, &[5, 9]);
        reply(&mut n, S / 10, 1, 9, true);
        n.handle(5 * S, Input::Timer(Timer::Leader(1))); // election 2 starts
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
    fn a_lower_node_announcing_itself_is_bullied() {
        let (mut n, _) = joined(9, &[1, 5, 9]);
        let out = n.handle(S, Input::IAmLeader { leader: pid(5), addr: None });
        // Noted, then overruled: we are the highest, so we win at once and announce.
        assert_eq!(n.leader(), Some(pid(9)));
        assert!(out.contains(&Action::Event(Event::Leader { leader: pid(5), previous: Some(pid(9)) })));
        assert!(out.contains(&Action::Event(Event::Leader { leader: pid(9), previous: Some(pid(5)) })));
        assert_eq!(leaders_sent(&out), [pid(1), pid(5)]);
    }

    #[test]
    fn a_late_announcement_from_a_lower_winner_is_checked_by_an_election() {
        let (mut n, _) = joined(3, &[3, 6, 9]);
        n.handle(S, Input::IAmLeader { leader: pid(9), addr: None });
        // 6's announcement, sent before 9's, arrives after it.
        let out = n.handle(S, Input::IAmLeader { leader: pid(6), addr: None });
        assert_eq!(elects(&out), [(2, pid(6)), (2, pid(9))]);
        // If 9 is alive it answers and announces again; we follow it.
        reply(&mut n, S, 2, 9, true);
        n.handle(S, Input::IAmLeader { leader: pid(9), addr: None });
        assert_eq!(n.leader(), Some(pid(9)));
        assert_eq!(n.phase(), &Phase::Idle);
        // Announcements from a higher node than the one we follow are simply taken.
        let out = n.handle(2 * S, Input::IAmLeader { leader: pid(12), addr: Some(addr(12)) });
        assert!(elects(&out).is_empty());
    }

    #[test]
    fn learning_of_higher_members_from_the_gcd_reopens_the_question() {
        // Seen on loopback: we registered alone, then two announcements arrived from
        // members whose addresses we did not know yet.
        let (mut n, _) = joined(3, &[3]);
        let out = n.handle(S, Input::IAmLeader { leader: pid(9), addr: None });
        assert!(out.iter().any(|a| matches!(a, Action::Register { .. })));
        let out = n.handle(S, Input::IAmLeader { leader: pid(6), addr: None });
        assert!(elects(&out).is_empty(), "nobody known to ask");
        assert_eq!(n.leader(), Some(pid(3)));
        // The GCD's answer reveals both: an election asks them.
        let out = n.handle(2 * S, Input::Registered { members: group(&[3, 6, 9]) });
        assert_eq!(elects(&out), [(3, pid(6)), (3, pid(9))]);
        // Learning only lower members changes nothing.
        let (mut m, _) = joined(5, &[5]);
        let out = m.handle(S, Input::Registered { members: group(&[1, 5]) });
        assert!(elects(&out).is_empty());
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

    #[test]
    fn a_gcd_list_without_us_still_keeps_us() {
        let mut n = Node::new(pid(5), addr(5), Timeouts::default());
        n.handle(Duration::ZERO, Input::Registered { members: group(&[9]) });
        assert!(n.members().contains(pid(5)));
        let failed = n.handle(S, Input::RegistrationFailed { reason: "down".into() });
        assert_eq!(failed, [Action::Event(Event::ReregistrationFailed { reason: "down".into() })]);
        assert_eq!(n.members().len(), 2);
    }
}
