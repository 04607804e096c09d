//! The bully algorithm as a pure state machine: no I/O, no clock, and randomness only
//! from a generator seeded by the caller, so every run can be replayed.
//!
//! [`Node::handle`] takes the time and one fact (a message arrived, an ELECT we sent was
//! answered or failed, a timer fired, the GCD answered) and returns requests for the
//! runtime to carry out (send this, arm that timer, re-register, report this event).
//! The runtime only translates between these and sockets, threads and clocks, which is
//! what lets the tests drive whole groups through failures with a fake clock.
//!
//! The rules, from the assignment and the textbook's bully algorithm:
//! - An election asks every higher member with ELECT. With none higher, we win at once.
//!   The elections that come in crowds are paced [`ELECT_PACE`]: those started by a
//!   failed PROBE (every follower detects a dead leader), by an ELECT (every member
//!   an election asks elects in turn), and by a member the GCD lists above the
//!   leader (every follower that asks the GCD learns it). They ask the higher members highest first in
//!   doubling rounds, the next at once when one fails; the sending stops when the
//!   election ends, or when a member with nobody above it unanswered (the highest live
//!   one we know) answers GOT_IT: it elects in turn. The others (a join, a recovery,
//!   the healing ones) ask everyone at once: they spread membership, and each is one
//!   member's, so the group's cost stays O(n) (see `Node::start_election`). An
//!   election while we follow a higher leader whose address we never asked the GCD
//!   for asks it first.
//! - We decide as soon as every higher member has answered or failed: if all failed
//!   (refused connections are known in milliseconds), we win without waiting.
//! - A refused connection is certain death; a timeout is only suspicion (a busy
//!   machine). A win over higher members that only timed out sends them our ELECT
//!   again after jittered, doubling waits, at most [`SUSPECT_RETRIES`] times, while we
//!   lead; a former leader whose PROBE timed out is PROBEd again the same way.
//! - With no GOT_IT by the election timeout, we win. With one, we wait for
//!   I_AM_LEADER, and start over if none comes within the leader timeout.
//! - Each election has a number; a reply for an older one changes nothing.
//! - ELECT: learn its members, (the runtime already answered GOT_IT), and start an
//!   election unless one is in progress or due once the GCD answers.
//! - Membership news (an ELECT's members, the GCD's list): higher members learned
//!   mid-election are asked in it; a member above our leader learned while idle starts
//!   an election (otherwise a node that missed an announcement could lead alone).
//! - I_AM_LEADER: from a member below us, ignored but answered by taking over; otherwise
//!   follow it; if it ranks below the leader we followed: within [`CROSSED_IN_FLIGHT`]
//!   of that leader's own announcement, it crossed it in flight and is ignored;
//!   later (a failover, most likely), PROBE the former leader: alive, elect to find
//!   out who leads. If we don't know where the announcer listens, a node that probes asks
//!   the GCD at its next PROBE (asking at once cost the GCD a request per member per
//!   join); one that never probes asks at once.
//! - PROBE (when following another node and not electing): after a random wait, ask
//!   the leader; a failed probe re-registers with the GCD, then elects.
//! - Feigned failure: after a random time the node goes deaf for a random time
//!   (listener closed, or open but ignoring), abandoning whatever it was doing; on
//!   recovery it listens again, re-registers, and elects.
//! - The leader's check (heals a split group, e.g. after the GCD restarted and forgot
//!   everyone): the leader asks the GCD again every 10 to 20 s and takes in its list
//!   (merging: the GCD may have forgotten members we know). Of the members that
//!   registered since our last check (all, at a term's first check or after the GCD
//!   restarted), one above us starts an election; those below us get I_AM_LEADER.
//!   Followers register again too, each every 2 x (members - 1) such periods, to be
//!   listed again after a restart (see `keep_checking`).
//! - Any re-registration keeps known members at addresses the GCD no longer lists (only
//!   a restarted GCD forgets), and a leader the GCD does not list is followed, the
//!   second time, until the GCD is asked again a check period later. A node that
//!   probes counts its first look-up as that second time (it comes up to a PROBE
//!   period late, when a leader a restarted GCD forgot may have settled the group).
//! - A higher member announcing itself while we lead may not know our followers (it
//!   joined a GCD that had forgotten them): we elect, and our ELECT tells it of them
//!   (unless an ELECT of ours has reached it since).
//! - Another live process with our SU ID at another address (the GCD keeps one id per
//!   SU ID) is kept aside as our twin: asked in our elections when above us, told when
//!   we win, and forgotten when it refuses. An I_AM_LEADER with our very id is reported
//!   once and ignored. A PROBE reply for a leader we no longer follow is dropped.
//! - Two live processes of one SU ID other than ours, one of them our leader (the GCD
//!   lists one, we keep the other): neither ever sees the other in the GCD's answers,
//!   so we elect once for that SU ID, and our ELECTs or our win tell both (see
//!   `shared_su_id`).

mod election;
mod event;
mod feign;
mod io;
mod leader_check;
mod probing;
mod registration;
mod settings;

pub use event::{Clash, Event, RegisterWhy, Why};
pub use io::{Action, Failure, Input, Listening, Outcome, Timer};
pub use settings::{Feign, FeignMode, Settings, Span, Timeouts, LEADER_CHECK};

use crate::identity::ProcessId;
use crate::membership::{Addr, Member, Members};
use election::Election;
use feign::Feigning;
use leader_check::LeaderCheck;
use probing::Probing;
use rand::rngs::StdRng;
use rand::SeedableRng;
use registration::Registration;
use std::time::Duration;

/// Time as the runtime measures it: elapsed since an epoch of its choosing.
pub type Time = Duration;

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
    settings: Settings,
    rng: StdRng,
    members: Members,
    leader: Option<ProcessId>,
    election: Election,
    feigning: Feigning,
    probing: Probing,
    registration: Registration,
    /// Set after a GOT_IT with no I_AM_LEADER: the next GCD answer shows which members
    /// it no longer lists.
    doubting: bool,
    /// Ids learned from peers that answered GOT_IT (or were listed at an address that
    /// did) without ever announcing, and that the GCD does not list: peers' messages
    /// can't bring them back until the GCD lists them again. At most
    /// [`MAX_DOUBTED`], oldest forgotten first.
    doubted: Vec<ProcessId>,
    /// Ids we have said clash with our identity (each is told once).
    clashes_told: Vec<ProcessId>,
    /// Other members' SU IDs that we found held by two live processes (see
    /// `on_registered`): each is elected for once.
    shared_su_ids: Vec<u32>,
    /// Another live process with our SU ID at another address (a student restarted
    /// with another birthday while the old process runs): the GCD and our members keep
    /// one id per SU ID, so it is kept here, asked in our elections when it ranks above
    /// us and told when we win, so that the two settle by the bully rule like any pair.
    /// Forgotten when it refuses a connection.
    rival: Option<Member>,
    /// A rival ranking above the leader we follow was just found: elect (it is asked).
    rival_above: bool,
    check: LeaderCheck,
}

/// The most ids a node remembers as doubted, and as clashing with its identity.
pub const MAX_DOUBTED: usize = 256;

/// Adds `x` to `list` unless it is there, forgetting the oldest past [`MAX_DOUBTED`].
fn remember<T: PartialEq>(list: &mut Vec<T>, x: T) {
    if !list.contains(&x) {
        if list.len() >= MAX_DOUBTED {
            list.remove(0);
        }
        list.push(x);
    }
}

/// How long after a failed re-registration the node asks the GCD again. It goes on with
/// the members it has meanwhile; the retry is what lets a node that recovered during a
/// GCD outage learn of members that joined while it was down (found by the simulator:
/// it otherwise led itself, unseen, for good).
pub const REGISTER_RETRY: Duration = Duration::from_secs(2);

/// How long after an election ends ELECT-triggered elections are held back and merged
/// into one (at most; a quarter of the leader timeout when that is shorter).
///
/// Found by the simulator: a node that wins at once re-announces to every member on
/// each ELECT it gets while idle, each announcement returns electing nodes to idle,
/// and the ELECTs still in flight then start elections there again: with tens of
/// members joining together, elections multiplied without end. Holding ELECT-started
/// elections for a moment after settling caps each node at one per window; the
/// deferred election is dropped if a higher leader announces itself meanwhile, since
/// that announcement reaches the ELECT's sender too. The leader's deferred election
/// ends first, the others' a window later, so that its announcement usually ends theirs.
pub const SETTLE_WINDOW: Duration = Duration::from_millis(300);

/// How soon after a higher leader's announcement a lower member's is taken as one that
/// crossed it in flight, and ignored: we keep following the higher leader, and do not
/// even PROBE it.
///
/// Announcements travel on connections of their own, a thread each, so two winners'
/// fan-outs reach a member in any order. When members join one after another, each
/// the new highest, and leaders' checks make the last few winners announce again,
/// members hear them out of order all the time. Following the lower one and then
/// probing the higher (alive: an election) cost every such member a PROBE and an
/// election per join, and at 200 members next to the gcd2.py stand-in the group never
/// settled (issue 20). Measured in that run, with this rule: 3,396 crossed
/// announcements, half within 61 ms of the higher one's, the slowest 314 ms. A leader
/// heard this recently is taken to be alive; if it died meanwhile, our next PROBE
/// finds out, and the lower winner, which checks the GCD's list as leader, meets any
/// higher member that is alive. A real failover comes later than this: the follower
/// that detects it waits a PROBE period (at least 500 ms by default) first.
pub const CROSSED_IN_FLIGHT: Duration = Duration::from_millis(600);

/// How often, at most, a node PROBEs again a higher former leader whose PROBE timed out
/// while a lower member's announcement was being checked (see `on_verified`), and the
/// first wait (doubling, plus up to as much again of jitter).
pub const SUSPECT_RETRIES: u32 = 3;
pub const SUSPECT_WAIT: Duration = Duration::from_secs(1);

/// The gap between the rounds of ELECTs of an election started by a failed PROBE. Such
/// elections come in crowds (every follower detects a dead leader), and the textbook's
/// bully algorithm then costs about n^2/2 ELECTs, each asked member electing in turn.
/// So a detector asks the higher members highest first: one ELECT, then, each gap,
/// twice as many as the round before, and one more at once whenever an ELECT fails (a
/// refused connection is known in milliseconds). Every higher member is still asked
/// unless the election has ended (a higher member's I_AM_LEADER) or a GOT_IT came from
/// a member with none above it still unanswered: the highest live member we know, which
/// elects in turn, and the leader timeout covers it dying before it announces. In the
/// usual failover the dead leader refuses and the next highest answers: two ELECTs per
/// detector, O(n) messages per failover. An election with every higher
/// member silent has asked them all within log2(n) gaps, and waits the election timeout
/// from its last ELECT. Elections started by an ELECT are paced the same way; the
/// others (a join, a recovery, the healing ones) ask everyone at once: they spread
/// membership (see `start_election`).
pub const ELECT_PACE: Duration = Duration::from_millis(50);

impl Node {
    /// A node that has not joined yet; `seed` fixes every random choice it makes.
    pub fn new(me: ProcessId, my_addr: Addr, settings: Settings, seed: u64) -> Self {
        let mut members = Members::default();
        members.insert(me, my_addr.clone());
        Node {
            me,
            my_addr,
            settings,
            rng: StdRng::seed_from_u64(seed),
            members,
            leader: None,
            election: Election::default(),
            feigning: Feigning::default(),
            probing: Probing::default(),
            registration: Registration::default(),
            doubting: false,
            doubted: Vec::new(),
            clashes_told: Vec::new(),
            shared_su_ids: Vec::new(),
            rival: None,
            rival_above: false,
            check: LeaderCheck::default(),
        }
    }

    /// Whether the node is feigning failure.
    pub fn is_down(&self) -> bool {
        self.feigning.down
    }

    pub fn id(&self) -> ProcessId {
        self.me
    }

    pub fn leader(&self) -> Option<ProcessId> {
        self.leader
    }

    pub fn phase(&self) -> &Phase {
        &self.election.phase
    }

    pub fn members(&self) -> &Members {
        &self.members
    }

    pub fn is_electing(&self) -> bool {
        self.election.phase != Phase::Idle
    }

    /// Applies one input at time `now`.
    pub fn handle(&mut self, now: Time, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        if self.feigning.down {
            // Failed: deaf to all but the end of the failure.
            if let Input::Timer(Timer::Recover(n)) = input {
                if self.feigning.is_recovery(n) {
                    self.recover(now, &mut out);
                }
            }
            return out;
        }
        let gcd_answer = matches!(input, Input::Registered { .. } | Input::RegistrationFailed { .. });
        let follower_check = gcd_answer && std::mem::take(&mut self.check.follower_asking);
        if gcd_answer {
            self.registration.looking_up = false;
            // An election it starts has just heard the GCD's word (see `elect`).
            self.election.asked_before_electing = true;
        }

        match input {
            Input::Registered { members } if self.check.asking => self.on_check_answer(now, members, &mut out),
            Input::RegistrationFailed { reason } if self.check.asking => self.on_check_failed(now, reason, &mut out),
            Input::Registered { members } => self.on_registered(now, members, follower_check, &mut out),
            Input::RegistrationFailed { reason } => {
                out.push(Action::Event(Event::ReregistrationFailed { reason }));
                // A follower's check that failed is asked again at the next one, unless
                // an election waits for the answer.
                if !follower_check || self.election.after_registration.is_some() {
                    out.push(self.registration.arm_retry(now));
                    self.elect_without_the_gcd(now, &mut out);
                }
            }
            Input::ProbeReply { probe, outcome } => self.on_probe_reply(now, probe, outcome, &mut out),
            Input::Moved { addr } => {
                let from = std::mem::replace(&mut self.my_addr, addr.clone());
                self.members.insert(self.me, addr.clone());
                out.push(Action::Event(Event::Moved { from, to: addr }));
                out.push(Action::Register { reason: RegisterWhy::Moved });
            }
            Input::Elect { members, sender } => {
                let source = format!("ELECT from {}", sender.map_or("a peer".to_string(), |s| s.to_string()));
                let learned = self.learn_from_peer(&members, &source, &mut out);
                let electing = self.is_electing();
                out.push(Action::Event(Event::ElectReceived { from: sender, learned: learned.clone(), electing }));
                if electing {
                    self.ask_newcomers(&learned, &mut out);
                } else if self.election.after_registration.is_some() {
                    // An election is due when the GCD answers (a failed PROBE, a
                    // recovery, a GOT_IT that led nowhere, ...): it is this ELECT's
                    // too, and it asks whom the GCD lists (after a GOT_IT that led
                    // nowhere, an election now would ask the same stale id again).
                } else if let Some(until) = self.settling_until().filter(|until| now < *until) {
                    // Only the leader fires at the window's end; everyone else waits a
                    // window longer, so that the leader's announcement comes first and
                    // makes theirs moot. (Not "whoever has nobody above": with the
                    // highest member dead, that made the live leader wait as long as
                    // everyone, and each window ended in a new wave of elections.)
                    let at = if self.leader == Some(self.me) { until } else { until.max(now) + self.settle_window() };
                    self.defer_election(at, Why::WhileSettling, &mut out);
                } else {
                    self.start_election(now, Why::ElectFrom { sender }, &mut out);
                }
            }
            Input::IAmLeader { leader, addr } => self.on_leader(now, leader, addr, &mut out),
            Input::LeaderAddress { leader, addr } => {
                // Only a leader we follow and above us (the announcement was heard and
                // taken); an address we already know stays.
                if self.leader == Some(leader) && leader > self.me && !self.members.contains(leader) {
                    let announced: Members = [(leader, addr)].into_iter().collect();
                    self.learn_from_peer(&announced, &format!("I_AM_LEADER from {leader}"), &mut out);
                }
            }
            Input::ElectReply { election, to, outcome } => self.on_reply(now, election, to, outcome, &mut out),
            Input::Timer(timer) => self.on_timer(now, timer, &mut out),
        }
        if gcd_answer {
            self.election.asked_before_electing = false;
        }
        if std::mem::take(&mut self.rival_above) && self.election.phase == Phase::Idle {
            if let Some(other) = self.rival.as_ref().map(|r| r.pid) {
                if self.election.after_registration.is_none() && self.leader.is_none_or(|l| l < other) {
                    self.start_election(now, Why::SuIdTwinAbove { other }, &mut out);
                }
            }
        }
        self.keep_probing(now, &mut out);
        self.keep_checking(now, &mut out);
        out
    }

    /// Feigns failures from `now` on as `feign` says, or stops feigning with `None` (a
    /// failure under way still recovers). A setting, not a fact of the protocol: the
    /// simulator and the tests call it (the runtime fixes `Settings::feign` at start-up).
    pub fn set_feign(&mut self, now: Time, feign: Option<Feign>) -> Vec<Action> {
        let mut out = Vec::new();
        let was = self.settings.feign.is_some();
        self.settings.feign = feign;
        if self.feigning.down {
            return out; // the recovery arms the next failure
        }
        if !was {
            self.arm_failure(now, &mut out);
        } else if feign.is_none() {
            self.feigning.stale(); // the armed failure timer is now stale
        }
        self.keep_probing(now, &mut out);
        self.keep_checking(now, &mut out);
        out
    }

    /// Says so, once per id, when `m` claims our identity; true if it does.
    fn check_identity(&mut self, m: &Member, source: &str, out: &mut Vec<Action>) -> bool {
        let clash = if m.pid == self.me {
            if m.addr.same_listener(&self.my_addr) {
                return false;
            }
            Clash::SameId
        } else if m.pid.su_id == self.me.su_id {
            Clash::SuId
        } else if m.addr.same_listener(&self.my_addr) {
            Clash::Address
        } else {
            return false;
        };
        if clash == Clash::SuId && !m.addr.same_listener(&self.my_addr) && self.rival.as_ref() != Some(m) {
            self.rival = Some(m.clone());
            self.rival_above = m.pid > self.leader.unwrap_or(self.me).max(self.me);
        }
        if !self.clashes_told.contains(&m.pid) && self.clashes_told.len() < MAX_DOUBTED {
            self.clashes_told.push(m.pid);
            out.push(Action::Event(Event::IdentityClash {
                other: m.pid,
                addr: Some(m.addr.clone()),
                clash,
                source: source.to_string(),
            }));
        }
        true
    }

    /// Takes in the members a peer's message lists. Nothing we know is removed; left
    /// out are ids that clash with ours (a stale entry at our address or with our SU ID
    /// is never asked or forwarded), and ids in doubt.
    fn learn_from_peer(&mut self, members: &Members, source: &str, out: &mut Vec<Action>) -> Vec<ProcessId> {
        let mut clashing = Vec::new();
        for m in members.iter() {
            if self.check_identity(m, source, out) {
                clashing.push(m.pid);
            }
        }
        let doubted = &self.doubted;
        self.members.learn(members, |m| clashing.contains(&m.pid) || doubted.contains(&m.pid))
    }

    /// Where `pid` listens: a member, or our SU ID's twin (see `rival`).
    fn address_of(&self, pid: ProcessId) -> Option<Addr> {
        self.members.get(pid).or(self.rival.as_ref().filter(|r| r.pid == pid).map(|r| &r.addr)).cloned()
    }

    /// Whether we know where `pid` listens.
    fn knows(&self, pid: ProcessId) -> bool {
        self.address_of(pid).is_some()
    }

    /// Arms a deferred election unless one is pending already (it will elect anyway).
    fn defer_election(&mut self, at: Time, reason: Why, out: &mut Vec<Action>) {
        if self.election.deferred.is_none() {
            self.election.deferrals += 1;
            self.election.deferred = Some((self.election.deferrals, reason));
            out.push(Action::SetTimer { at, timer: Timer::Deferred(self.election.deferrals) });
        }
    }

    /// The end of the window after our last election in which ELECTs are merged.
    fn settling_until(&self) -> Option<Time> {
        self.election.settled_at.map(|t| t + self.settle_window())
    }

    fn settle_window(&self) -> Duration {
        SETTLE_WINDOW.min(self.settings.timeouts.leader / 4)
    }

    /// Whether the node should be probing: following another node, not electing, not
    /// waiting for the GCD before an election.
    fn should_probe(&self) -> bool {
        !self.feigning.down
            && self.election.phase == Phase::Idle
            && self.leader.is_some_and(|l| l != self.me)
            && self.election.after_registration.is_none()
    }

    /// Arms the next probe when one is due and none is pending or in flight.
    fn keep_probing(&mut self, now: Time, out: &mut Vec<Action>) {
        let Some(span) = self.settings.probe else { return };
        if self.probing.armed || self.probing.in_flight.is_some() || !self.should_probe() {
            return;
        }
        let timer = self.probing.arm();
        out.push(Action::SetTimer { at: now + span.draw(&mut self.rng), timer: Timer::Probe(timer) });
    }

    fn send_probe(&mut self, out: &mut Vec<Action>) {
        self.probing.armed = false;
        if !self.should_probe() || self.probing.in_flight.is_some() {
            return; // an election or a failure came first; probing resumes after it
        }
        let leader = self.leader.expect("should_probe checked it");
        if let Some(addr) = self.address_of(leader) {
            let probe = self.probing.send(leader);
            out.push(Action::SendProbe { probe, to: leader, addr: addr.clone() });
        } else {
            self.look_up(leader, out);
        }
    }

    /// Asks the GCD where `leader` listens, unless a registration of ours is in flight
    /// or due: its answer tells us (or shows the GCD does not list it: the doubt rules).
    /// Called at PROBE time, the only time we need the address: in a group that grows
    /// fast, one answer teaches the whole group, and most later announcers are known by
    /// the next PROBE; asking at each announcement cost the serial GCD one request per
    /// member per join (issue 13: 200 members joining made gcd2.py stop answering).
    fn look_up(&mut self, leader: ProcessId, out: &mut Vec<Action>) {
        if self.registration.looking_up
            || self.check.asking
            || self.registration.retry_pending()
            || self.election.after_registration.is_some()
        {
            return;
        }
        self.registration.looking_up = true;
        out.push(Action::Register { reason: RegisterWhy::LeaderUnknown { leader } });
    }

    fn on_probe_reply(&mut self, now: Time, probe: u64, outcome: Outcome, out: &mut Vec<Action>) {
        let Some((number, leader)) = self.probing.in_flight else { return };
        if number != probe {
            return;
        }
        self.probing.in_flight = None;
        if let Some((_, reason)) = self.probing.verifying.take_if(|(v, _)| *v == probe) {
            return self.on_verified(now, leader, outcome, reason, out);
        }
        if self.leader != Some(leader) {
            // A PROBE to a leader we no longer follow (a newer one announced itself
            // while it was out): its answer says nothing about our leader, and saying
            // "asking the GCD, then electing" would be false (issue 22, item 10).
            return;
        }
        match outcome {
            Outcome::GotIt => out.push(Action::Event(Event::ProbeOk { leader })),
            Outcome::Failed(reason) => {
                out.push(Action::Event(Event::ProbeFailed { leader, reason }));
                if self.leader == Some(leader) && self.election.phase == Phase::Idle {
                    self.election.after_registration = Some(Why::ProbeFailed { leader });
                    self.election.pace_after_registration = true;
                    out.push(Action::Register { reason: RegisterWhy::ProbeFailed { leader } });
                }
            }
        }
    }

    /// A lower member announced itself while we followed `higher`, and we probed
    /// `higher`: alive, it may still lead and we elect to find out (asking the GCD first
    /// where the announcer listens, if we don't know); failed, we follow the announcer.
    fn on_verified(&mut self, now: Time, higher: ProcessId, outcome: Outcome, reason: Why, out: &mut Vec<Action>) {
        match outcome {
            Outcome::GotIt => {
                out.push(Action::Event(Event::ProbeOk { leader: higher }));
                if self.election.phase != Phase::Idle || self.election.after_registration.is_some() {
                    return; // an election is under way or due anyway
                }
                // Not knowing where the announcer listens, it asks the GCD first (`elect`).
                self.start_election(now, reason, out);
            }
            Outcome::Failed(why) => {
                // Refused: it is down, and we follow the announcer. A timeout is only
                // suspicion (a busy machine): we follow the announcer meanwhile and ask
                // again after a jittered, doubling wait, a bounded number of times (found
                // by the simulator's overload: a member whose PROBE of the live leader
                // timed out followed a lower one for good).
                let attempts = match self.probing.suspect.take() {
                    Some((p, _, n)) if p == higher => n + 1,
                    _ => 1,
                };
                if why.is_timeout() && attempts <= SUSPECT_RETRIES {
                    let wait = SUSPECT_WAIT * (1 << (attempts - 1));
                    let jitter = Span::new(Duration::ZERO, wait).draw(&mut self.rng);
                    self.probing.suspect = Some((higher, reason, attempts));
                    self.probing.suspect_timer += 1;
                    out.push(Action::SetTimer {
                        at: now + wait + jitter,
                        timer: Timer::Suspect(self.probing.suspect_timer),
                    });
                }
                let again = self.probing.suspect.is_some();
                out.push(Action::Event(Event::FormerLeaderProbeFailed {
                    former: higher,
                    leader: self.leader,
                    reason: why,
                    again,
                }));
            }
        }
    }

    /// Asks again a higher former leader whose PROBE timed out, if we still follow a
    /// member below it and are not electing.
    fn on_suspect_timer(&mut self, out: &mut Vec<Action>) {
        let Some((higher, reason, n)) = self.probing.suspect.take() else { return };
        let below = self.leader.is_some_and(|l| l < higher);
        if below && self.election.phase == Phase::Idle && self.election.after_registration.is_none() {
            self.probing.suspect = Some((higher, reason, n));
            if !self.verify(higher, reason, out) {
                self.probing.suspect = None;
            }
        }
    }

    /// A late announcement from `leader`, below the `higher` leader we followed: we
    /// PROBE `higher` (see `on_verified`) rather than elect at once. In a failover every
    /// follower gets the new leader's announcement while still following the dead one;
    /// an election there cost each follower an ELECT to the new leader, and the new
    /// leader one more fan-out of announcements (6n messages per failover in the
    /// simulator at 50 members; a refused PROBE each costs n).
    fn verify(&mut self, higher: ProcessId, reason: Why, out: &mut Vec<Action>) -> bool {
        let Some(addr) = self.members.get(higher).cloned() else { return false };
        let number = match self.probing.in_flight {
            Some((n, p)) if p == higher => n,
            _ => {
                let probe = self.probing.send(higher);
                out.push(Action::SendProbe { probe, to: higher, addr });
                probe
            }
        };
        self.probing.verifying = Some((number, reason));
        true
    }

    fn arm_failure(&mut self, now: Time, out: &mut Vec<Action>) {
        let Some(feign) = self.settings.feign else { return };
        let failure = self.feigning.arm();
        out.push(Action::SetTimer { at: now + feign.after.draw(&mut self.rng), timer: Timer::Fail(failure) });
    }

    fn go_down(&mut self, now: Time, out: &mut Vec<Action>) {
        let Some(feign) = self.settings.feign else { return };
        let lasting = feign.lasting.draw(&mut self.rng);
        // Abandon everything: elections, probes, pending re-registrations. Their
        // replies and timers arrive while down (ignored) or carry stale numbers.
        self.election.abandon();
        self.probing.abandon();
        self.registration.abandon();
        self.check.abandon();
        let failure = self.feigning.go_down();
        out.push(Action::Event(Event::Failed { mode: feign.mode, lasting }));
        out.push(Action::Listen(match feign.mode {
            FeignMode::Close => Listening::Closed,
            FeignMode::Ignore => Listening::Ignoring,
        }));
        out.push(Action::SetTimer { at: now + lasting, timer: Timer::Recover(failure) });
    }

    fn recover(&mut self, now: Time, out: &mut Vec<Action>) {
        self.feigning.recover();
        out.push(Action::Event(Event::Recovered));
        out.push(Action::Listen(Listening::Open));
        self.election.after_registration = Some(Why::Recovered);
        out.push(Action::Register { reason: RegisterWhy::Recovered });
        self.arm_failure(now, out);
    }

    /// `follower_check`: the answer to a follower's check (see `keep_checking`).
    fn on_registered(&mut self, now: Time, members: Members, follower_check: bool, out: &mut Vec<Action>) {
        self.registration.answered();
        let first = self.election.number == 0 && self.leader.is_none() && self.election.phase == Phase::Idle;
        let before = self.members.clone();
        for m in members.iter() {
            self.check_identity(m, "the GCD's list", out);
        }
        // After a GOT_IT that no I_AM_LEADER followed: an id the GCD does not list, at an
        // address or with an SU ID it lists under another id, is in doubt (a stale id at
        // a live member's address answers GOT_IT through that member and never
        // announces). An id whose address the GCD does not know at all is not: only a
        // restarted GCD forgets a member, and that member may be alive.
        if std::mem::take(&mut self.doubting) {
            let replaced = |m: &Member| {
                members.iter().any(|g| g.pid != m.pid && (g.addr.same_listener(&m.addr) || g.pid.su_id == m.pid.su_id))
            };
            for m in before.iter().filter(|m| m.pid != self.me && !members.contains(m.pid) && replaced(m)) {
                remember(&mut self.doubted, m.pid);
            }
        }
        self.doubted.retain(|p| !members.contains(*p));
        // The GCD is the authority on membership; we stay in it whatever it says, and
        // anyone else it shows at our address or with our SU ID is gone. Members it
        // forgot (it restarted) are kept, unless in doubt.
        let listed = members.clone();
        self.members = members;
        self.members.insert(self.me, self.my_addr.clone());
        self.keep_members_the_gcd_forgot(&before);
        if first {
            out.push(Action::Event(Event::Joined { members: self.members.len() }));
            self.arm_failure(now, out);
            self.start_election(now, Why::JoinedGroup, out);
        } else {
            let learned: Vec<_> = self.members.iter().map(|m| m.pid).filter(|p| !before.contains(*p)).collect();
            out.push(Action::Event(Event::Reregistered { members: self.members.len(), learned: learned.clone() }));
            if let Some(why) = self.election.after_registration.take() {
                self.start_election(now, why, out);
                return;
            }
            // We followed an announcement from an id the GCD does not list: not a
            // member (a confused or hostile peer), so we find the real leader.
            if let Some(fake) = self.leader.filter(|l| *l != self.me && !self.knows(*l)) {
                // A prober asks at PROBE time (or later, when the GCD was down), up to
                // a PROBE period after the announcement: the leader may have won after
                // the GCD restarted, and its next check will register it. An election
                // now could not ask it (we don't know where it listens) and would be won
                // against a live leader after the group had settled (simulator seeds
                // 12777, 18181): so it counts as the second sighting of the doubt
                // rules, and we ask again a check period later. A node that never
                // probes asked at the announcement, and elects at once as before.
                if self.settings.probe.is_some() && self.check.unlisted.is_none_or(|(l, _)| l != fake) {
                    self.check.unlisted = Some((fake, 1));
                }
                if !self.is_electing() && self.doubt_leader(now, fake, out) {
                    return;
                }
                if !self.is_electing() {
                    self.start_election(now, Why::LeaderUnknownToGcd { leader: fake }, out);
                    return;
                }
            }
            match self.election.phase {
                Phase::Electing { .. } => self.ask_newcomers(&learned, out),
                Phase::Idle => {
                    if let Some((kept, listed)) =
                        self.shared_su_id(&listed).filter(|_| self.election.deferred.is_none())
                    {
                        remember(&mut self.shared_su_ids, kept.su_id);
                        return self.start_election(now, Why::SharedSuId { kept, listed }, out);
                    }
                    // A member ranking above the leader we follow should lead, if alive.
                    let bar = self.leader.unwrap_or(self.me).max(self.me);
                    // The answer to a follower's check, while we still follow, does not
                    // start this election: the GCD lists dead members above the leader
                    // (gcd2.py never drops one), and the leader's own check elects for
                    // live newcomers above it and tells those below, us among them,
                    // that it leads. (Leading by now, we wait for them as ever.)
                    let follower = follower_check && self.leader != Some(self.me);
                    let above = learned.iter().copied().filter(|p| *p > bar && !follower).max();
                    if let Some(top) = above {
                        // It registered after us, so with the whole group in view: it won
                        // its join election (or one above it did) and announces itself. An
                        // election now made it announce again: at 200 members joining 50 ms
                        // apart, every follower's look-up did so, and the group stormed
                        // (issue 20). We elect only if no announcement from it, or from one
                        // above it, comes within the leader timeout (one may be lost).
                        let at = now + self.settings.timeouts.leader;
                        self.defer_election(at, Why::GcdListsAbove { top, leader: bar }, out);
                    } else if self.leader == Some(self.me) {
                        // We lead, and these members never heard it (they joined while
                        // we were down or unknown to us): tell them, or a lower one that
                        // won meanwhile goes on leading itself (found by the simulator).
                        let newcomers: Vec<_> =
                            self.members.iter().filter(|m| learned.contains(&m.pid)).cloned().collect();
                        if !newcomers.is_empty() {
                            out.push(Action::Event(Event::AnnouncedTo {
                                members: newcomers.iter().map(|m| m.pid).collect(),
                            }));
                        }
                        for m in newcomers {
                            out.push(Action::SendLeader { to: m.pid, addr: m.addr });
                        }
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
        let Phase::Electing { election, pending } = &mut self.election.phase else { return };
        let election = *election;
        let mut asking = Vec::new();
        let mut sends = Vec::new();
        for pid in learned.iter().copied().filter(|p| *p > self.me) {
            if let Some(addr) = self.members.get(pid) {
                pending.push(pid);
                asking.push(pid);
                if self.election.unsent.is_empty() {
                    sends.push(Action::SendElect {
                        election,
                        to: pid,
                        addr: addr.clone(),
                        members: self.members.clone(),
                    });
                } else {
                    // Still pacing: it takes its place in the order, highest first.
                    self.election.unsent.push(Member { pid, addr: addr.clone() });
                    self.election.unsent.sort_by_key(|m| m.pid);
                }
            }
        }
        if !asking.is_empty() {
            out.push(Action::Event(Event::ElectionWidened { election, asking }));
            out.extend(sends);
        }
    }

    /// Starts an election. One started by an ELECT (or by ELECTs merged while settling)
    /// is paced like a failed PROBE's (see [`ELECT_PACE`]), and so is one for a member
    /// the GCD lists above the leader, which every follower that asks the GCD learns
    /// (at 200 members, each asked everyone above it at once and fed the storm of issue
    /// 20). Pacing the elections for a former leader alive above a lower announcer too
    /// broke the duplicated-SU-ID scenario (the innocent member changed leaders every
    /// leader's check); those are rare since [`CROSSED_IN_FLIGHT`]. Every member an election
    /// asks elects in turn, and asking everyone above at once made each ELECT cost the
    /// members above it an election each (n^2/2 ELECTs per disturbance, and under load
    /// the storm of issue 20). Paced, it asks the highest member first, whose GOT_IT
    /// ends the sending: one ELECT per asked member, O(n) per disturbance.
    ///
    /// The others send every higher member our ELECT, and with it our members, at once.
    /// These spread membership, and some come after a GCD restart split the group's
    /// knowledge: were they paced, the election would usually end before the members
    /// between us and the leader heard of ours, and one that never learned where the
    /// leader listens went on winning the elections of those below it (simulator seeds
    /// 34, 3005, 3596, 5410, 5976, 8957, 12718: a lower member and the leader took turns
    /// announcing; pacing them too failed 9 of 20,000 seeds, 1109 among them). Each is
    /// one member's reaction to its own change, so their fan-out is O(n) per disturbance.
    fn start_election(&mut self, now: Time, reason: Why, out: &mut Vec<Action>) {
        let paced = matches!(reason, Why::ElectFrom { .. } | Why::WhileSettling | Why::GcdListsAbove { .. });
        self.elect(now, reason, paced, out);
    }

    fn elect(&mut self, now: Time, reason: Why, paced: bool, out: &mut Vec<Action>) {
        // The election due after the GCD's answer is paced: a failed PROBE's.
        let paced = paced || std::mem::take(&mut self.election.pace_after_registration);
        // We follow a higher leader whose address we have not asked the GCD for yet
        // (see `look_up`): an election could not ask it, and would be won against it.
        // Ask first, once; the election starts when the GCD answers.
        if self.leader.is_some_and(|l| l > self.me && !self.knows(l))
            && !std::mem::take(&mut self.election.asked_before_electing)
        {
            self.election.asked_before_electing = true;
            self.election.after_registration = Some(reason);
            self.election.pace_after_registration = paced;
            self.election.deferred = None;
            if !self.registration.looking_up && !self.check.asking && !self.registration.retry_pending() {
                self.registration.looking_up = true;
                let leader = self.leader.expect("checked");
                out.push(Action::Register { reason: RegisterWhy::LeaderUnknown { leader } });
            }
            return;
        }
        self.election.asked_before_electing = false;
        self.election.number += 1;
        let election = self.election.number;
        self.election.after_registration = None;
        self.election.deferred = None;
        self.election.asked_from_below = matches!(reason, Why::ElectFrom { .. } | Why::WhileSettling);
        let mut higher: Vec<_> = self.members.higher_than(self.me).cloned().collect();
        higher.extend(self.rival.clone().filter(|r| r.pid > self.me && !self.members.contains(r.pid)));
        let started = out.len();
        if higher.is_empty() {
            out.push(Action::Event(Event::ElectionStarted { election, reason, asking: Vec::new(), higher: 0 }));
            self.win(now, out);
            return;
        }
        self.election.timed_out.clear();
        self.election.phase = Phase::Electing { election, pending: higher.iter().map(|m| m.pid).collect() };
        let count = higher.len();
        self.election.unsent = higher;
        self.election.unsent.sort_by_key(|m| m.pid);
        self.election.batch = 1;
        let first = if paced { 1 } else { count };
        let asking = self.send_elects(now, first, true, out);
        // The event comes before its ELECTs, and names only those sent now.
        out.insert(started, Action::Event(Event::ElectionStarted { election, reason, asking, higher: count }));
    }

    /// The leader above us that we follow, when a lower member's ELECT made us elect,
    /// the leader announced itself within the leader timeout, and we don't know where
    /// it listens (the GCD restarted and has not heard from it since; a standard
    /// I_AM_LEADER carries no address). The election could not ask it, and is decided
    /// for it as if it had answered GOT_IT: winning would demote a live leader, which
    /// announces again at the next ELECT that reaches it (simulator seed 49031: a member
    /// that rejoined after a GCD restart won two elections against the leader it had
    /// just heard, and the group changed leaders twice). Once the leader timeout passes
    /// without a word from it, the next election is won as before, so a leader that died
    /// meanwhile costs a leader timeout more. Elections for other reasons are won as
    /// ever: they doubt the leader (the GCD does not list it, a PROBE failed, ...).
    fn unreachable_live_leader(&self, now: Time) -> Option<ProcessId> {
        if !self.election.asked_from_below {
            return None;
        }
        let leader = self.leader.filter(|l| *l > self.me && !self.knows(*l))?;
        let heard = self.election.settled_at?;
        (now < heard + self.settings.timeouts.leader).then_some(leader)
    }

    /// Sends the current election's next round of ELECTs (see [`Node::send_elects`]) and
    /// says so: only a paced election has rounds after its first.
    fn next_round(&mut self, now: Time, count: usize, pace: bool, out: &mut Vec<Action>) {
        let at = out.len();
        let election = self.election.number;
        let asking = self.send_elects(now, count, pace, out);
        if !asking.is_empty() {
            out.insert(at, Action::Event(Event::ElectionRound { election, asking }));
        }
    }

    /// Sends the current election's next `count` ELECTs, highest first; once all are
    /// sent, arms the election timeout; otherwise, for a round (`pace`), the next round.
    /// Returns whom it sent ELECT.
    fn send_elects(&mut self, now: Time, count: usize, pace: bool, out: &mut Vec<Action>) -> Vec<ProcessId> {
        let (election, awaiting) = match self.election.phase {
            Phase::Electing { election, .. } => (election, false),
            Phase::AwaitingLeader { election } => (election, true),
            Phase::Idle => {
                self.election.unsent.clear();
                return Vec::new();
            }
        };
        let mut sent = Vec::new();
        if self.election.unsent.is_empty() {
            return sent;
        }
        for _ in 0..count {
            let Some(m) = self.election.unsent.pop() else { break };
            self.check.told_overtaker |= self.check.overtaken_by == Some(m.pid);
            sent.push(m.pid);
            out.push(Action::SendElect { election, to: m.pid, addr: m.addr, members: self.members.clone() });
        }
        if self.election.unsent.is_empty() {
            // Once a GOT_IT came, the leader timeout runs instead.
            if !awaiting {
                out.push(Action::SetTimer { at: now + self.settings.timeouts.elect, timer: Timer::Election(election) });
            }
        } else if pace {
            out.push(Action::SetTimer { at: now + ELECT_PACE, timer: Timer::Pace(election) });
        }
        sent
    }

    /// Election `election` waits the leader timeout for a higher member's announcement.
    fn await_leader(&mut self, now: Time, election: u64, out: &mut Vec<Action>) {
        self.election.phase = Phase::AwaitingLeader { election };
        out.push(Action::SetTimer { at: now + self.settings.timeouts.leader, timer: Timer::Leader(election) });
    }

    fn win(&mut self, now: Time, out: &mut Vec<Action>) {
        if let Some(leader) = self.unreachable_live_leader(now) {
            let election = self.election.number;
            out.push(Action::Event(Event::WaitingForLeader { election, leader }));
            self.election.unsent.clear();
            self.await_leader(now, election, out);
            return;
        }
        self.election.phase = Phase::Idle;
        self.election.settled_at = Some(now);
        self.election.deferred = None;
        self.follow(self.me, out);
        let mut others: Vec<_> = self.members.iter().filter(|m| m.pid != self.me).cloned().collect();
        others.extend(self.rival.clone());
        out.push(Action::Event(Event::Won { election: self.election.number, announcing_to: others.len() }));
        for m in others {
            out.push(Action::SendLeader { to: m.pid, addr: m.addr });
        }
        let timed_out = std::mem::take(&mut self.election.timed_out);
        if !timed_out.is_empty() {
            self.election.recheck = Some((timed_out, 0));
            self.arm_recheck(now, out);
        }
    }

    /// Arms the next time to ask again the higher members that only timed out in the
    /// election we won: after a jittered wait that doubles each time.
    fn arm_recheck(&mut self, now: Time, out: &mut Vec<Action>) {
        let Some((_, attempts)) = &self.election.recheck else { return };
        let wait = SUSPECT_WAIT * (1 << attempts);
        let jitter = Span::new(Duration::ZERO, wait).draw(&mut self.rng);
        self.election.recheck_timer += 1;
        out.push(Action::SetTimer { at: now + wait + jitter, timer: Timer::Recheck(self.election.recheck_timer) });
    }

    /// A timeout is only suspicion: we won over higher members that did not answer in
    /// time (a busy machine), and they may be alive and lead a part of the group that
    /// never heard us (found by the simulator's overload: two leaders for good). While
    /// we still lead, we send them our ELECT again: one that is alive answers and
    /// elects in turn (and learns of our members); the GOT_IT changes nothing here (the
    /// election it answers is over). At most [`SUSPECT_RETRIES`] times.
    fn recheck(&mut self, now: Time, out: &mut Vec<Action>) {
        let Some((members, attempts)) = self.election.recheck.take() else { return };
        if !self.leads_idle() {
            return;
        }
        for m in &members {
            let members = self.members.clone();
            out.push(Action::SendElect { election: self.election.number, to: m.pid, addr: m.addr.clone(), members });
        }
        if attempts + 1 < SUSPECT_RETRIES {
            self.election.recheck = Some((members, attempts + 1));
            self.arm_recheck(now, out);
        }
    }

    fn follow(&mut self, leader: ProcessId, out: &mut Vec<Action>) {
        if self.leader != Some(leader) {
            let previous = self.leader.replace(leader);
            out.push(Action::Event(Event::Leader { leader, previous }));
        }
    }

    fn on_reply(&mut self, now: Time, election: u64, to: ProcessId, outcome: Outcome, out: &mut Vec<Action>) {
        // Report every outcome, but let only the current election's count.
        match &outcome {
            Outcome::GotIt => out.push(Action::Event(Event::GotIt { from: to })),
            Outcome::Failed(reason) => out.push(Action::Event(Event::ElectFailed { to, reason: reason.clone() })),
        }
        if let Outcome::Failed(Failure::Refused { .. }) = outcome {
            self.rival = self.rival.take().filter(|r| r.pid != to); // it is gone
        }
        let Phase::Electing { election: current, pending } = &mut self.election.phase else {
            return;
        };
        if *current != election {
            return;
        }
        pending.retain(|p| *p != to);
        if let Outcome::Failed(failure) = &outcome {
            let addr = if failure.is_timeout() { self.members.get(to).cloned() } else { None };
            let addr = addr.or_else(|| {
                self.rival.as_ref().filter(|r| failure.is_timeout() && r.pid == to).map(|r| r.addr.clone())
            });
            if let Some(addr) = addr {
                self.election.timed_out.push(Member { pid: to, addr });
            }
        }
        match outcome {
            Outcome::GotIt => {
                // The sending goes on (see ELECT_PACE) while a member above the one
                // that answered may still be alive; else that one is the highest alive
                // we know, and it elects in turn (the leader timeout covers its death).
                if !pending.iter().any(|p| *p > to) {
                    self.election.unsent.clear();
                }
                self.await_leader(now, election, out);
            }
            Outcome::Failed(_) if pending.is_empty() => self.win(now, out),
            // The next one at once, without waiting for the round: the usual failover
            // runs through the dead leader to the next highest in milliseconds.
            Outcome::Failed(_) => self.next_round(now, 1, false, out),
        }
    }

    fn on_timer(&mut self, now: Time, timer: Timer, out: &mut Vec<Action>) {
        match (timer, &self.election.phase) {
            (Timer::Probe(n), _) if self.probing.is_due(n) => self.send_probe(out),
            (Timer::LeaderCheck(n), _) if n == self.check.timer && self.check.armed => self.ask_gcd_as_leader(out),
            (Timer::FollowerCheck(n), _) if n == self.check.follower_timer && self.check.follower_armed => {
                self.ask_gcd_as_follower(out)
            }
            (Timer::Doubt(n), _) if n == self.check.doubt_timer => self.on_doubt_timer(out),
            (Timer::Suspect(n), _) if n == self.probing.suspect_timer => self.on_suspect_timer(out),
            (Timer::Recheck(n), _) if n == self.election.recheck_timer => self.recheck(now, out),
            (Timer::Fail(n), _) if self.feigning.is_failure(n) => self.go_down(now, out),
            (Timer::Election(n), Phase::Electing { election, .. })
                if n == *election && self.election.unsent.is_empty() =>
            {
                self.win(now, out)
            }
            (Timer::Pace(n), Phase::Electing { election, .. } | Phase::AwaitingLeader { election })
                if n == *election =>
            {
                self.election.batch = (self.election.batch * 2).min(1 << 16);
                self.next_round(now, self.election.batch, true, out);
            }
            (Timer::Reregister(n), _) if self.registration.take_retry(n) => {
                // Asking again as an overtaken leader: its answer is merged (see `overtaken`).
                self.check.asking |= self.check.overtaken_by.is_some_and(|l| self.leader == Some(l));
                out.push(Action::Register { reason: RegisterWhy::Retry });
            }
            (Timer::Deferred(n), Phase::Idle) if self.election.deferred.as_ref().is_some_and(|(d, _)| *d == n) => {
                let (_, reason) = self.election.deferred.take().expect("checked above");
                self.start_election(now, reason, out);
            }
            (Timer::Leader(n), Phase::AwaitingLeader { election }) if n == *election => {
                out.push(Action::Event(Event::NoLeaderAfterGotIt { election: n }));
                // Ask the GCD who is really in the group first: a member we know only
                // from peers may be a stale id whose GOT_IT came from someone else.
                self.election.phase = Phase::Idle;
                self.doubting = true;
                self.election.after_registration = Some(Why::NoLeaderAfterGotIt);
                out.push(Action::Register { reason: RegisterWhy::NoLeaderAfterGotIt });
            }
            _ => {} // a timer of an election that already ended
        }
    }

    fn on_leader(&mut self, now: Time, leader: ProcessId, addr: Option<Addr>, out: &mut Vec<Action>) {
        out.push(Action::Event(Event::IAmLeaderReceived { leader }));
        if leader == self.me {
            // We never announce to ourselves: another process runs with our very id
            // (same SU ID, same days). Said once; it changes nothing here, and peers
            // see one leader id whichever of us they hear.
            if !self.clashes_told.contains(&leader) {
                self.clashes_told.push(leader);
                out.push(Action::Event(Event::IdentityClash {
                    other: leader,
                    addr: addr.filter(|a| !a.same_listener(&self.my_addr)),
                    clash: Clash::SameId,
                    source: "an I_AM_LEADER with our own id".to_string(),
                }));
            }
            return;
        }
        if leader < self.me {
            // A lower member can't lead while we are alive: we neither follow it nor
            // take in what it says (it may not even be a member), and we take over,
            // but only after the announcer's own I_AM_LEADERs have landed: peers that
            // believe whichever announcement came last (most Python peers do) must
            // hear ours after its. The interop tests caught a Python peer ending up
            // with the lower leader when our correction overtook the announcement.
            if !self.is_electing() {
                self.defer_election(now + self.settle_window(), Why::AnnouncerBelow { leader }, out);
            }
            return;
        }
        if let Some(following) = self.crossed_announcement(now, leader) {
            // Taken as late, nothing changes: not even its address is learned (a
            // member that only announces itself reaches us again, or the GCD lists it).
            out.push(Action::Event(Event::LateAnnouncement { leader, following }));
            return;
        }
        if let (Some(addr), false) = (addr, self.members.contains(leader)) {
            let announced: Members = [(leader, addr)].into_iter().collect();
            self.learn_from_peer(&announced, &format!("I_AM_LEADER from {leader}"), out);
        } else if leader.su_id == self.me.su_id && leader != self.me {
            // Our SU ID under another id, at an address we may not know.
            let addr = self.members.get(leader).cloned().unwrap_or_else(|| self.my_addr.clone());
            self.check_identity(&Member { pid: leader, addr }, &format!("I_AM_LEADER from {leader}"), out);
        }
        let previous = self.leader;
        self.election.phase = Phase::Idle;
        self.election.settled_at = Some(now);
        // Its announcement reaches the ELECTs' senders too; a member the GCD listed above
        // our leader is waited for until it (or one above it) announces itself.
        let waits_for_higher =
            matches!(self.election.deferred, Some((_, Why::GcdListsAbove { top, .. })) if leader < top);
        if leader > self.me && !waits_for_higher {
            self.election.deferred = None;
        }
        self.follow(leader, out);
        let unknown = !self.knows(leader);
        if leader > self.me
            && previous == Some(self.me)
            && self.members.iter().any(|m| m.pid != self.me && m.pid != leader)
        {
            return self.overtaken(leader, out);
        }
        if let Some(higher) = previous.filter(|p| leader < *p) {
            // Announcements travel on separate connections and can arrive out of
            // order: a late one from a lower winner must not demote a higher leader
            // that may still be alive. An election finds out which of them is, and it
            // must be able to ask the announcer: if we don't know where it listens,
            // the GCD is asked first (the simulator found a group split in two when
            // an election asked only the dead former leader and was won).
            let reason = Why::AboveAnnouncer { leader, higher };
            // Decided when the PROBE ends, if we can PROBE it.
            if !self.verify(higher, reason, out) {
                self.start_election(now, reason, out);
            }
        } else if unknown && self.settings.probe.is_none() {
            // Never probing, we never need its address; we ask only to know whether the
            // GCD lists it (the doubt rules).
            self.look_up(leader, out);
        }
        // Otherwise its address is asked of the GCD at our next PROBE (`send_probe`).
    }

    /// The higher leader we follow, if `leader`'s announcement (below it) came within
    /// [`CROSSED_IN_FLIGHT`] of that leader's own: taken as one that crossed it in
    /// flight, and ignored (see there).
    fn crossed_announcement(&self, now: Time, leader: ProcessId) -> Option<ProcessId> {
        let following = self.leader.filter(|l| leader < *l && *l != self.me)?;
        let heard = self.election.settled_at?;
        (now < heard + CROSSED_IN_FLIGHT).then_some(following)
    }

    /// Keeps the members of `before` that listen at an address the GCD's list lacks
    /// altogether. gcd2.py never drops a member, so only a restarted GCD lacks one, and
    /// it lists just who registered since: taking its list whole would forget members
    /// that are alive and follow us (found by the simulator: a leader that re-registered
    /// after a GCD restart forgot its follower, and a newcomer never learned of it).
    fn keep_members_the_gcd_forgot(&mut self, before: &Members) {
        for m in before.iter() {
            // Never an id that clashes with ours (stale: the GCD replaced it) or one in doubt.
            let clashes = m.pid.su_id == self.me.su_id || m.addr.same_listener(&self.my_addr);
            if clashes || self.doubted.contains(&m.pid) {
                continue;
            }
            if !self.members.iter().any(|g| g.addr.same_listener(&m.addr)) {
                // Kept beside an id the GCD lists with the same SU ID, if any: two
                // processes of one student, both alive (the GCD keeps the later), must
                // both be asked and told, or they never settle (issue 20, item 3).
                let one: Members = [(m.pid, m.addr.clone())].into_iter().collect();
                self.members.learn(&one, |_| false);
            }
        }
    }

    /// Two live processes of one student, other than us: the GCD lists `listed`, and we
    /// keep `kept`, with the same SU ID at an address the GCD no longer lists (see
    /// `keep_members_the_gcd_forgot`). The GCD keeps one id per SU ID, so neither ever
    /// sees the other in its answers, and the one that led before the other joined may
    /// lead alone for good without ever reporting the clash (the clash benchmark, when
    /// the first had run a while). We know both: our election asks those above us, and
    /// carries both to them, or our win tells them both. Only when one of the two is
    /// the leader we follow (two followers of one student harm nobody: the leader tells
    /// both), and once per SU ID: each registration of either flips the GCD's entry.
    fn shared_su_id(&self, listed: &Members) -> Option<(ProcessId, ProcessId)> {
        let kept = self.members.iter().filter(|m| m.pid != self.me && !listed.contains(m.pid));
        kept.filter(|k| !self.shared_su_ids.contains(&k.pid.su_id)).find_map(|k| {
            let other = listed.iter().find(|g| g.pid.su_id == k.pid.su_id && g.pid != self.me)?;
            let leads = self.leader == Some(k.pid) || self.leader == Some(other.pid);
            (leads && !other.addr.same_listener(&k.addr)).then_some((k.pid, other.pid))
        })
    }

    /// The leader we follow is not in the GCD's list. The first time, the caller elects
    /// to find the real leader. If the same leader announces itself again and the GCD
    /// still does not list it, it may be a real leader that a restarted GCD forgot, and
    /// its next leader's check will register it: we follow it and ask the GCD once more
    /// after the check's longest period, electing only if it is still unlisted then
    /// (found by the simulator: a member that never learned where the leader listens
    /// elected on every one of its announcements, for as long as the GCD did not list
    /// it). Returns whether to hold the election.
    fn doubt_leader(&mut self, now: Time, leader: ProcessId, out: &mut Vec<Action>) -> bool {
        let span = self.settings.leader_check.unwrap_or(LEADER_CHECK);
        let seen = match self.check.unlisted {
            Some((l, n)) if l == leader => n,
            _ => 0,
        };
        match seen {
            1 => {
                self.check.unlisted = Some((leader, 2));
                self.check.doubt_timer += 1;
                out.push(Action::SetTimer { at: now + span.max, timer: Timer::Doubt(self.check.doubt_timer) });
                true
            }
            2 => true, // still waiting to ask again
            // Asked again after the wait and still unlisted: elect; the next time, wait again.
            _ => {
                self.check.unlisted = Some((leader, 1));
                false
            }
        }
    }

    fn on_doubt_timer(&mut self, out: &mut Vec<Action>) {
        let Some((leader, 2)) = self.check.unlisted else { return };
        if self.leader == Some(leader) && self.election.phase == Phase::Idle {
            self.check.unlisted = Some((leader, 3));
            // The answer to an overtaken leader's question is merged, as a check's is.
            self.check.asking |= self.check.overtaken_by == Some(leader);
            out.push(Action::Register { reason: RegisterWhy::AskAgain { leader } });
        } else {
            self.check.unlisted = None; // moved on: the next doubt starts afresh
        }
    }

    /// Whether we lead and are not electing: the only state that runs the leader's check.
    fn leads_idle(&self) -> bool {
        !self.feigning.down && self.election.phase == Phase::Idle && self.leader == Some(self.me)
    }

    /// Arms the leader's next check when we lead and none is pending or in flight, and
    /// a follower's when we follow.
    ///
    /// Followers check too, each every `2 x (members - 1)` leader's periods, so that
    /// together they ask the GCD half as often as the leader does, whatever the group's
    /// size. A follower's check heals what no message can show: after a GCD restart, a
    /// member that restarted on its old port with another birthday (or with a fresh
    /// memory) leads alone, answers the PROBEs of the old process's followers, and
    /// neither side ever learns of the other (simulator seed 93661: a follower followed
    /// the old id for good). The follower's check puts it back in the GCD's list, and the
    /// new leader's next check tells it that it leads. The answer is taken in as any
    /// re-registration's, except that it starts no election for members it lists above
    /// our leader (see `on_registered`).
    fn keep_checking(&mut self, now: Time, out: &mut Vec<Action>) {
        if self.leader != Some(self.me) {
            self.check.last_listed = None; // the next term's first check considers everyone
        }
        let Some(span) = self.settings.leader_check else { return };
        if !self.check.follower_armed && !self.check.follower_asking && self.follows_idle() {
            let followers = self.members.len().saturating_sub(1).clamp(1, 1 << 16) as u32;
            self.check.follower_timer += 1;
            self.check.follower_armed = true;
            let at = now + span.draw(&mut self.rng) * (2 * followers);
            out.push(Action::SetTimer { at, timer: Timer::FollowerCheck(self.check.follower_timer) });
        }
        if self.check.armed || self.check.asking || !self.leads_idle() {
            return;
        }
        self.check.timer += 1;
        self.check.armed = true;
        out.push(Action::SetTimer { at: now + span.draw(&mut self.rng), timer: Timer::LeaderCheck(self.check.timer) });
    }

    /// Whether we follow another member and are not electing.
    fn follows_idle(&self) -> bool {
        !self.feigning.down && self.election.phase == Phase::Idle && self.leader.is_some_and(|l| l != self.me)
    }

    fn ask_gcd_as_follower(&mut self, out: &mut Vec<Action>) {
        self.check.follower_armed = false;
        // Leading, electing, or a registration of ours is in flight or due: its answer
        // serves as well. The next check is armed after it.
        if !self.follows_idle()
            || self.registration.looking_up
            || self.check.asking
            || self.registration.retry_pending()
            || self.election.after_registration.is_some()
        {
            return;
        }
        self.registration.looking_up = true;
        self.check.follower_asking = true;
        out.push(Action::Register { reason: RegisterWhy::FollowerCheck });
    }

    fn ask_gcd_as_leader(&mut self, out: &mut Vec<Action>) {
        self.check.armed = false;
        // No longer leading, or a registration of another cause is pending: skip this
        // one; the next is armed once we lead again.
        if !self.leads_idle() || self.election.after_registration.is_some() || self.registration.retry_pending() {
            return;
        }
        self.check.asking = true;
        out.push(Action::Register { reason: RegisterWhy::LeaderCheck });
    }

    /// The GCD answered a leader's check (or the registration of an overtaken leader).
    fn on_check_answer(&mut self, now: Time, gcd: Members, out: &mut Vec<Action>) {
        self.check.asking = false;
        for m in gcd.iter() {
            self.check_identity(m, "the GCD's list", out);
        }
        // gcd2.py never drops a member, so a list that lacks one we know (at any id on
        // its address) comes from a GCD that restarted: those it lists may have joined
        // it seeing only part of the group.
        let forgotten: Vec<ProcessId> = self
            .members
            .iter()
            .filter(|m| m.pid != self.me && !gcd.iter().any(|g| g.addr.same_listener(&m.addr)))
            .map(|m| m.pid)
            .collect();
        let forgot = forgotten.len();
        let mut learned = Vec::new();
        for m in gcd.iter() {
            if !self.members.contains(m.pid) {
                learned.push(m.pid);
            }
            self.members.insert(m.pid, m.addr.clone()); // the GCD knows current addresses
        }
        self.members.insert(self.me, self.my_addr.clone());
        learned.retain(|p| self.members.contains(*p) && *p != self.me);
        // Who registered since our last check (everyone, at the first check of our
        // term or when the GCD restarted since) may have joined seeing only part of the
        // group, or may lead a part of it: we elect if one ranks above us, and tell
        // those below that we lead.
        let listed: Vec<ProcessId> = gcd.iter().map(|m| m.pid).filter(|p| *p != self.me).collect();
        let mut previous = self.check.last_listed.replace(listed.clone());
        if previous.as_ref().is_some_and(|before| before.iter().any(|p| !listed.contains(p))) {
            previous = None; // it lost someone since our last check: it restarted since
        }
        let mut fresh: Vec<ProcessId> = listed
            .into_iter()
            .filter(|p| self.members.contains(*p))
            .filter(|p| learned.contains(p) || previous.as_ref().is_none_or(|before| !before.contains(p)))
            .collect();
        // Then the members below us that the GCD forgot hear it too (those we still
        // know, once each): one may have missed our announcement (lost under load) and
        // follow a lower member that answers its PROBEs, and nobody else would ever tell
        // it (simulator seed 49931). A forgotten member stays known, dead ones too, so
        // each term's first check tells them again: n-1 messages per term at most.
        if previous.is_none() {
            let told: Vec<ProcessId> = forgotten
                .into_iter()
                .filter(|p| *p < self.me && self.members.contains(*p) && !fresh.contains(p))
                .collect();
            fresh.extend(told);
        }
        let bar = self.leader.unwrap_or(self.me).max(self.me);
        let top = fresh.iter().copied().filter(|p| *p > bar).max();
        // A process with our SU ID above us (the GCD lists it, not us): the election
        // that the rival rule starts asks it (see `rival`); announcing now would only
        // flip our followers to us and back.
        let twin_above = self.rival_above && self.rival.as_ref().is_some_and(|r| r.pid > bar);
        let pending = self.election.after_registration.take();
        // Overtaken while leading: now that the GCD told us where the new leader listens.
        let overtaken =
            self.check.overtaken_by.take().filter(|l| self.leader == Some(*l) && self.election.phase == Phase::Idle);
        // Unless an ELECT of ours has reached it since: it carried our members.
        let told = std::mem::take(&mut self.check.told_overtaker);
        let tell = overtaken.filter(|l| self.members.contains(*l) && forgot > 0 && !told);
        if let Some(l) = overtaken.filter(|l| !self.knows(*l)) {
            // The GCD does not list the new leader either: a restarted GCD it has not
            // checked in with yet. Ask again once its check will have (see `doubt_leader`).
            if self.check.unlisted == Some((l, 3)) {
                self.check.unlisted = None;
                self.start_election(now, Why::LeaderUnknownToGcd { leader: l }, out);
                return;
            }
            self.check.unlisted = Some((l, 1));
            self.check.overtaken_by = Some(l);
            self.doubt_leader(now, l, out);
        }
        // Overtaken, we follow: a member the GCD lists above our new leader is waited
        // for as any follower waits for one (see `on_registered`).
        let above_successor = top.filter(|_| overtaken.is_some());
        let top = top.filter(|_| overtaken.is_none());
        let (electing_for, announced_to) = match (&pending, &self.election.phase, top.or(tell)) {
            (None, Phase::Idle, Some(top)) => (Some(top), Vec::new()),
            (None, Phase::Idle, None) if self.leader == Some(self.me) && !twin_above => (None, fresh.clone()),
            _ => (None, Vec::new()),
        };
        out.push(Action::Event(Event::LeaderChecked {
            members: gcd.len(),
            learned: learned.clone(),
            forgot,
            electing_for,
            announced_to: announced_to.clone(),
        }));
        if let Some(why) = pending {
            self.start_election(now, why, out);
        } else if let (Some(leader), None) = (tell, top) {
            self.start_election(now, Why::TookOver { leader }, out);
        } else if let Some(top) = electing_for {
            self.start_election(now, Why::CheckListsAbove { top }, out);
        } else if let Some(top) = above_successor.filter(|_| self.election.phase == Phase::Idle) {
            self.defer_election(now + self.settings.timeouts.leader, Why::GcdListsAbove { top, leader: bar }, out);
        } else if matches!(self.election.phase, Phase::Electing { .. }) {
            self.ask_newcomers(&learned, out);
        } else {
            for pid in announced_to {
                if let Some(addr) = self.members.get(pid) {
                    out.push(Action::SendLeader { to: pid, addr: addr.clone() });
                }
            }
        }
    }

    fn on_check_failed(&mut self, now: Time, reason: String, out: &mut Vec<Action>) {
        self.check.asking = false;
        // Without the new leader's address an election could not ask it, and would
        // wrongly win: we go on following it, and ask again soon if it overtook us
        // (with paced ELECTs, nobody else may ever tell it of members that joined while
        // it was away: found by the simulator, seed 288, the GCD down at the takeover).
        self.check.overtaken_by = self.check.overtaken_by.filter(|l| self.leader == Some(*l));
        out.push(Action::Event(Event::LeaderCheckFailed { reason }));
        // Following a leader whose address we don't know, we can't probe it: ask again
        // soon, as after any failed registration (found by the simulator).
        if self.check.overtaken_by.is_some() || self.leader.is_some_and(|l| !self.knows(l)) {
            out.push(self.registration.arm_retry(now));
        }
        self.elect_without_the_gcd(now, out);
    }

    /// The GCD did not answer (the retry is armed): the election due after its answer
    /// starts now, unless we follow a higher leader whose address we don't know. That
    /// election could not ask it and would be won against it (found by the simulator's
    /// overload: a GCD request timed out and a member flipped the settled group to
    /// itself); it waits for the retry's answer instead.
    fn elect_without_the_gcd(&mut self, now: Time, out: &mut Vec<Action>) {
        if self.leader.is_some_and(|l| l > self.me && !self.knows(l)) && self.registration.retry_pending() {
            return;
        }
        if let Some(why) = self.election.after_registration.take() {
            self.start_election(now, why, out);
        }
    }

    /// `leader`, above us, announced itself while we led. If it joined a GCD that had
    /// forgotten our followers, nobody else will tell it of them, and they would go on
    /// following us. So we ask the GCD (merging its answer, which also says where the
    /// new leader listens): if it has forgotten members we know, our ELECT carries them
    /// to the new leader, and its answer (an election it wins) announces it to them. An
    /// intact GCD gave the new leader everyone when it joined: we just follow it (an
    /// election then would only double every join's announcements).
    fn overtaken(&mut self, leader: ProcessId, out: &mut Vec<Action>) {
        self.check.overtaken_by = Some(leader);
        self.check.told_overtaker = false;
        if !self.check.asking {
            self.check.asking = true;
            out.push(Action::Register { reason: RegisterWhy::Overtaken { leader } });
        }
    }
}

#[cfg(test)]
mod tests;
