//! A deterministic group simulator: many [`Node`]s over a simulated network and clock.
//!
//! Everything random (group size, identities, join times, message delays, crashes,
//! restarts, feigned failures, GCD outages and restarts) is drawn from one seed, so a run that breaks
//! an invariant can be replayed exactly. The nodes are the real state machine; only the
//! sockets are simulated, with the outcomes the runtime reports: a closed or crashed
//! peer refuses at once, a peer feigning in `ignore` mode times out after the socket
//! timeout, a live one answers GOT_IT after a network delay.
//!
//! After a chaos phase, feigning is switched off; once the last failure is over (the
//! quiet time) the group must agree on the highest live member within [`Scenario::bound`]
//! and stay agreed. [`run`] reports what it saw; the invariants are checked by the tests.

// Each test crate that includes this module uses a part of it.
#![allow(dead_code)]

use bully_node::{
    Action, Addr, Event, Failure, Feign, FeignMode, Input, Listening, Members, Node, Outcome, ProcessId, Settings,
    Span, Time,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

/// One simulated run's plan, drawn from a seed.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub seed: u64,
    pub pids: Vec<ProcessId>,
    pub settings: Vec<Settings>,
    pub joins: Vec<Time>,
    /// (member, crash time, restart time if it rejoins)
    pub crashes: Vec<(usize, Time, Option<Time>)>,
    /// Members that restart as a student does in class: another birthday (days), the
    /// same SU ID, the same port. Peers' lists then hold a stale id, with our SU ID, at
    /// a live member's address.
    pub rebirths: Vec<(usize, u32)>,
    /// GCD outages: (from, until)
    pub gcd_outages: Vec<(Time, Time)>,
    /// GCD restarts on the same address: it forgets every member (the course's GCD
    /// keeps its list only in memory).
    pub gcd_restarts: Vec<Time>,
    /// When feigning is switched off everywhere.
    pub chaos_end: Time,
    pub socket_timeout: Duration,
    /// One-way network delay range.
    pub delay: Span,
    /// Feigned failures forced on a member, listener closed: (member, from, lasting).
    pub feigns: Vec<(usize, Time, Duration)>,
    /// ELECTs from outside the simulated group (a checker, a peer that then leaves) to a
    /// member: (member, when), carrying the GCD's list at that time.
    pub outside_elects: Vec<(usize, Time)>,
    /// Spells of overload (a busy machine): while one lasts, deliveries are slower and
    /// some connections time out.
    pub overloads: Vec<Overload>,
}

/// A spell of overload: from `from` until `until`, every one-way delay is `slowdown`
/// times the usual (a message slower than the socket timeout is still delivered, but
/// its sender gives up on the reply), and a connection (ELECT, I_AM_LEADER, PROBE, a
/// GCD request) times out with probability `timeouts`.
#[derive(Clone, Copy, Debug)]
pub struct Overload {
    pub from: Time,
    pub until: Time,
    pub slowdown: u32,
    pub timeouts: f64,
}

const MS: Duration = Duration::from_millis(1);

impl Scenario {
    /// A random scenario of 2 to `max_nodes` members (mostly small groups, some large).
    pub fn random(seed: u64, max_nodes: usize) -> Scenario {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = if rng.random_bool(0.75) {
            rng.random_range(2..=8.min(max_nodes))
        } else {
            rng.random_range(2..=max_nodes)
        };
        let chaos_end = Duration::from_secs(rng.random_range(5..=20));
        let mut su_ids: Vec<u32> = (0..n as u32).map(|i| 1_000_000 + i * 7919 % 8_999_999).collect();
        su_ids.sort_unstable();
        su_ids.dedup();
        let pids: Vec<ProcessId> = su_ids
            .iter()
            .map(|su| ProcessId::new(if rng.random_bool(0.2) { 100 } else { rng.random_range(1..=365) }, *su))
            .collect();
        let n = pids.len();
        let settings = (0..n)
            .map(|_| {
                let feign = rng.random_bool(0.5).then(|| Feign {
                    after: Span::new(Duration::ZERO, Duration::from_secs(10)),
                    lasting: Span::new(Duration::from_secs(1), Duration::from_secs(4)),
                    mode: if rng.random_bool(0.5) { FeignMode::Close } else { FeignMode::Ignore },
                });
                Settings { feign, ..Settings::default() }
            })
            .collect();
        let joins =
            (0..n).map(|_| Duration::from_millis(rng.random_range(0..=chaos_end.as_millis() as u64 / 2))).collect();
        let mut crashes = Vec::new();
        for i in 0..n {
            if rng.random_bool(0.15) {
                let at = Duration::from_millis(rng.random_range(0..chaos_end.as_millis() as u64));
                let restart = rng.random_bool(0.6).then(|| at + Duration::from_millis(rng.random_range(100..5000)));
                crashes.push((i, at, restart));
            }
        }
        // Drawn from a stream of their own, so every other draw stays as it was.
        let mut reborn = StdRng::seed_from_u64(seed ^ 0xb127_4da5);
        let mut rebirths = Vec::new();
        for (i, _, restart) in &crashes {
            if restart.is_some() && reborn.random_bool(0.5) {
                rebirths.push((*i, reborn.random_range(1..=365)));
            }
        }
        let mut gcd_outages = Vec::new();
        if rng.random_bool(0.2) {
            let from = Duration::from_millis(rng.random_range(0..chaos_end.as_millis() as u64));
            gcd_outages.push((from, from + Duration::from_millis(rng.random_range(500..5000))));
        }
        // Drawn from a generator of their own, so that every other choice a seed made
        // before GCD restarts existed stays the same.
        let mut restarts_rng = StdRng::seed_from_u64(seed ^ 0x6cd_4e57a47);
        let mut gcd_restarts = Vec::new();
        if restarts_rng.random_bool(0.2) {
            for _ in 0..restarts_rng.random_range(1..=2) {
                gcd_restarts.push(Duration::from_millis(restarts_rng.random_range(0..chaos_end.as_millis() as u64)));
            }
            gcd_restarts.sort_unstable();
            // Not healed, and left out: a member that restarts (with a fresh memory)
            // between two PROBEs of its followers, after the GCD forgot them, is a
            // leader that nobody tells of them; only followers asking the GCD, at a
            // cost that grows with the group, would find them. With GCD restarts, a
            // crashed member stays down past the longest wait between PROBEs.
            let slowest = Duration::from_millis(3500);
            for (_, at, restart) in crashes.iter_mut() {
                if let Some(r) = restart.as_mut() {
                    *r = (*r).max(*at + slowest);
                }
            }
        }
        // Drawn from a stream of their own, so every other draw stays as it was.
        let mut busy = StdRng::seed_from_u64(seed ^ 0x0e41_10ad);
        let mut overloads = Vec::new();
        if busy.random_bool(0.2) {
            let from = Duration::from_millis(busy.random_range(0..chaos_end.as_millis() as u64));
            overloads.push(Overload {
                from,
                until: from + Duration::from_millis(busy.random_range(1000..20_000)),
                slowdown: busy.random_range(2..=100),
                timeouts: busy.random_range(0.0..0.5),
            });
        }
        Scenario {
            seed,
            pids,
            settings,
            joins,
            crashes,
            rebirths,
            gcd_outages,
            gcd_restarts,
            chaos_end,
            socket_timeout: bully_node::SOCKET_TIMEOUT,
            delay: Span::new(MS, 20 * MS),
            feigns: Vec::new(),
            outside_elects: Vec::new(),
            overloads,
        }
    }

    /// How long after the quiet time every live member must follow the highest live
    /// one: a probe's longest wait, a silent leader's socket timeout, then at worst an
    /// election whose GOT_IT leads nowhere (election and leader timeouts) and a second
    /// election, plus the network's delays.
    pub fn bound(&self) -> Duration {
        let s = &self.settings[0];
        let mut detect = s.probe.map_or(Duration::ZERO, |p| p.max);
        // After a GCD restart a split group is found by the leader's check instead of a
        // probe, and so is an I_AM_LEADER lost to an overload (nothing resends it, and
        // a member following a live lower leader probes that one): the check's longest
        // wait takes the probe's place.
        // Two live processes with one SU ID: the GCD keeps only the later, and the
        // earlier finds it by its check too.
        let twins = self.pids.iter().enumerate().any(|(i, p)| self.pids[..i].iter().any(|q| q.su_id == p.su_id));
        if !self.gcd_restarts.is_empty() || !self.overloads.is_empty() || twins {
            detect = detect.max(s.leader_check.map_or(Duration::ZERO, |c| c.max));
        }
        detect + self.socket_timeout + 2 * s.timeouts.elect + s.timeouts.leader + Duration::from_secs(1)
    }
}

/// What a run saw.
#[derive(Debug, Default)]
pub struct Report {
    pub members: usize,
    /// When the last failure ended or the last member joined, crashed or restarted.
    pub quiet_at: Time,
    /// When the run ended.
    pub ended_at: Time,
    /// Each live member's leader at the end, and who should lead.
    pub final_leaders: Vec<(ProcessId, Option<ProcessId>)>,
    pub expected_leader: Option<ProcessId>,
    /// From when on (after quiet) every sample found every live member following the
    /// highest live member, and none electing.
    pub agreed_at: Option<Time>,
    /// Leader changes after that (should be none).
    pub changes_after_agreement: usize,
    /// ELECT, GOT_IT and I_AM_LEADER messages in the run's last bound, when the group
    /// has been quiet for at least the bound and agreed: an idle group's rate.
    pub idle_messages: usize,
    /// Times a member followed a leader that never registered (should be none).
    pub unknown_leaders: usize,
    /// The longest a member up for the bound followed someone below the highest
    /// member up for the bound, counted from the last disturbance.
    pub longest_wrong: Duration,
    /// For each episode (a disturbance followed by at least the bound without another):
    /// the ELECT, GOT_IT and I_AM_LEADER messages it took, and the elections started.
    pub episodes: Vec<Episode>,
    pub elections_started: usize,
    pub messages: usize,
    /// When a member asked the GCD (joins not counted): the coordinator's load.
    pub gcd_requests: Vec<Time>,
    /// IdentityClash events reported, and leader changes seen, by each member (in the
    /// order of the scenario's ids).
    pub clashes_told: Vec<usize>,
    pub leader_changes: Vec<Vec<Time>>,
    /// Events processed, and whether the run hit [`MAX_EVENTS`] before its end.
    pub events: usize,
    pub exhausted: bool,
}

/// One disturbance and the election traffic until the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Episode {
    pub messages: usize,
    pub elections: usize,
    /// Whether an overload lasted into it: its elections answer a cause still present.
    pub overloaded: bool,
}

/// A run processes at most this many events: a storm of messages that never settles
/// is reported instead of running forever.
pub const MAX_EVENTS: usize = 500_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    NotJoined,
    Up,
    Down(FeignMode),
    Crashed,
}

struct Member {
    pid: ProcessId,
    addr: Addr,
    node: Option<Node>,
    state: State,
    incarnation: u32,
    /// Since when it has been continuously up (None when not up).
    up_since: Option<Time>,
}

#[derive(Debug)]
enum Ev {
    Deliver { to: usize, incarnation: u32, input: Input },
    Join(usize),
    Crash(usize),
    Restart(usize),
    StopFeigning,
    GcdBack,
    GcdRestart,
    Sample,
    Feign(usize, Duration),
    StopFeign(usize),
    OutsideElect(usize),
    OverloadBegins,
    OverloadEnds,
}

/// An event in the queue, ordered by time and then by when it was queued (which makes
/// runs deterministic); the event itself takes no part in the order.
#[derive(Debug)]
struct Scheduled {
    at: Time,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

struct Sim<'a> {
    sc: &'a Scenario,
    now: Time,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    members: Vec<Member>,
    by_addr: HashMap<Addr, usize>,
    gcd: Members,
    registered: Vec<ProcessId>,
    rng: StdRng,
    report: Report,
    last_disturbance: Time,
    disturbances: Vec<Time>,
    /// Times of ELECT, GOT_IT and I_AM_LEADER messages, and of elections started.
    election_messages: Vec<Time>,
    election_starts: Vec<Time>,
    leader_changes: Vec<Time>,
    /// (time, every live member follows the highest live member)
    samples: Vec<(Time, bool)>,
    last_sample: Time,
    wrong_since: Vec<Option<Time>>,
    reasons: HashMap<&'static str, usize>,
}

/// Runs `sc` to the end and reports what happened.
pub fn run(sc: &Scenario) -> Report {
    let members: Vec<Member> = sc
        .pids
        .iter()
        .enumerate()
        .map(|(i, pid)| Member {
            pid: *pid,
            addr: Addr::new("127.0.0.1", 20_000 + i as u16),
            node: None,
            state: State::NotJoined,
            incarnation: 0,
            up_since: None,
        })
        .collect();
    let by_addr = members.iter().enumerate().map(|(i, m)| (m.addr.clone(), i)).collect();
    let n = members.len();
    let mut sim = Sim {
        sc,
        now: Duration::ZERO,
        seq: 0,
        queue: BinaryHeap::new(),
        members,
        by_addr,
        gcd: Members::default(),
        registered: Vec::new(),
        rng: StdRng::seed_from_u64(sc.seed ^ 0x5eed),
        report: Report {
            members: n,
            clashes_told: vec![0; n],
            leader_changes: vec![Vec::new(); n],
            ..Report::default()
        },
        last_disturbance: Duration::ZERO,
        disturbances: Vec::new(),
        election_messages: Vec::new(),
        election_starts: Vec::new(),
        leader_changes: Vec::new(),
        samples: Vec::new(),
        last_sample: Duration::ZERO,
        wrong_since: vec![None; n],
        reasons: HashMap::new(),
    };
    for (i, at) in sc.joins.iter().enumerate() {
        sim.at(*at, Ev::Join(i));
    }
    for (i, at, restart) in &sc.crashes {
        sim.at(*at, Ev::Crash(*i));
        if let Some(r) = restart {
            sim.at(*r, Ev::Restart(*i));
        }
    }
    sim.at(sc.chaos_end, Ev::StopFeigning);
    for (_, until) in &sc.gcd_outages {
        sim.at(*until, Ev::GcdBack);
    }
    for at in &sc.gcd_restarts {
        sim.at(*at, Ev::GcdRestart);
    }
    for (i, at, lasting) in &sc.feigns {
        sim.at(*at, Ev::Feign(*i, *lasting));
    }
    for (i, at) in &sc.outside_elects {
        sim.at(*at, Ev::OutsideElect(*i));
    }
    for o in &sc.overloads {
        // Over once the last message it slowed has landed.
        sim.at(o.until + sc.delay.max * o.slowdown, Ev::OverloadEnds);
    }
    for o in &sc.overloads {
        sim.at(o.from, Ev::OverloadBegins);
    }
    sim.at(Duration::from_millis(250), Ev::Sample);
    // Chaos; restarts up to 5 s and failures up to 4 s after it; then the bound, and
    // as long again to see that agreement holds.
    let mut end = sc.chaos_end;
    while let Some(Reverse(Scheduled { at: t, ev, .. })) = sim.queue.pop() {
        end = sim.last_disturbance.max(sc.chaos_end + Duration::from_secs(10)) + 2 * sc.bound();
        if t > end {
            break;
        }
        sim.report.events += 1;
        if sim.report.events > MAX_EVENTS {
            sim.report.exhausted = true;
            break;
        }
        if std::env::var_os("SIM_TRACE").is_some() && sim.report.events % 200_000 == 0 {
            eprintln!(
                "{} events at {t:?}: queue {}, elections {}, messages {}",
                sim.report.events,
                sim.queue.len(),
                sim.report.elections_started,
                sim.report.messages
            );
        }
        sim.now = t;
        sim.step(ev);
    }
    sim.now = end;
    sim.finish()
}

impl Sim<'_> {
    fn at(&mut self, t: Time, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled { at: t, seq: self.seq, ev }));
    }

    fn deliver(&mut self, after: Duration, to: usize, input: Input) {
        let incarnation = self.members[to].incarnation;
        self.at(self.now + after, Ev::Deliver { to, incarnation, input });
    }

    /// A one-way delay: drawn from the scenario's range, times an overload's slowdown.
    fn delay(&mut self) -> Duration {
        let (lo, hi) = (self.sc.delay.min.as_micros() as u64, self.sc.delay.max.as_micros() as u64);
        let slowdown = self.overload().map_or(1, |o| o.slowdown);
        Duration::from_micros(self.rng.random_range(lo..=hi)) * slowdown
    }

    fn overload(&self) -> Option<Overload> {
        self.sc.overloads.iter().copied().find(|o| (o.from..o.until).contains(&self.now))
    }

    /// Whether a connection made now times out (only under overload).
    fn connect_times_out(&mut self) -> bool {
        let p = self.overload().map_or(0.0, |o| o.timeouts);
        p > 0.0 && self.rng.random_bool(p)
    }

    /// How an exchange with a live member ends: GOT_IT after the round trip, or, when
    /// that is longer than the socket timeout, no reply (the message still arrives).
    fn exchange(&self, one_way: Duration) -> (Outcome, Duration) {
        if 2 * one_way > self.sc.socket_timeout {
            (Outcome::Failed(Failure::NoReply { after: self.sc.socket_timeout }), self.sc.socket_timeout)
        } else {
            (Outcome::GotIt, 2 * one_way)
        }
    }

    fn timed_out(&self) -> (Outcome, Duration) {
        (Outcome::Failed(Failure::ConnectTimeout { after: self.sc.socket_timeout }), self.sc.socket_timeout)
    }

    fn disturbed(&mut self) {
        self.last_disturbance = self.now;
        self.disturbances.push(self.now);
    }

    fn gcd_up(&self) -> bool {
        !self.sc.gcd_outages.iter().any(|(from, until)| (*from..*until).contains(&self.now))
    }

    fn step(&mut self, ev: Ev) {
        match ev {
            Ev::Join(i) | Ev::Restart(i) => {
                let m = &mut self.members[i];
                if m.state != State::NotJoined && m.state != State::Crashed {
                    return;
                }
                if matches!(ev, Ev::Restart(_)) {
                    if let Some((_, days)) = self.sc.rebirths.iter().find(|(j, _)| *j == i) {
                        m.pid = ProcessId::new(*days, m.pid.su_id);
                    }
                }
                m.incarnation += 1;
                m.state = State::Up;
                m.up_since = Some(self.now);
                let seed = self.sc.seed.wrapping_mul(31).wrapping_add(i as u64 * 1000 + m.incarnation as u64);
                let mut settings = self.sc.settings[i];
                if self.now >= self.sc.chaos_end {
                    settings.feign = None; // chaos is over for newcomers too
                }
                m.node = Some(Node::new(m.pid, m.addr.clone(), settings, seed));
                let (pid, addr) = (m.pid, m.addr.clone());
                // A member starts only once the GCD has answered (the runtime's rule).
                self.gcd.insert(pid, addr);
                self.registered.push(pid);
                let members = self.gcd.clone();
                self.disturbed();
                self.feed(i, Input::Registered { members });
            }
            Ev::Crash(i) => {
                let m = &mut self.members[i];
                if m.state == State::NotJoined || m.state == State::Crashed {
                    return;
                }
                m.state = State::Crashed;
                m.up_since = None;
                m.node = None;
                self.disturbed();
            }
            Ev::StopFeigning => {
                for i in 0..self.members.len() {
                    let Some(node) = self.members[i].node.as_mut() else { continue };
                    for action in node.set_feign(self.now, None) {
                        self.apply(i, action);
                    }
                }
            }
            // The GCD answering again changes what members can learn.
            Ev::GcdBack => self.disturbed(),
            // Back at once on the same address, with no members.
            Ev::GcdRestart => {
                self.gcd = Members::default();
                self.disturbed();
            }
            Ev::Feign(i, lasting) => {
                // Down at once for `lasting` (the failure timer is drawn from a span of
                // one value), then never again: feigning stops once it is down.
                let Some(node) = self.members[i].node.as_mut() else { return };
                let once = Feign {
                    after: Span::new(Duration::ZERO, Duration::ZERO),
                    lasting: Span::new(lasting, lasting),
                    mode: FeignMode::Close,
                };
                for action in node.set_feign(self.now, Some(once)) {
                    self.apply(i, action);
                }
                self.at(self.now + MS, Ev::StopFeign(i));
            }
            Ev::StopFeign(i) => {
                let Some(node) = self.members[i].node.as_mut() else { return };
                for action in node.set_feign(self.now, None) {
                    self.apply(i, action);
                }
            }
            Ev::OutsideElect(i) => {
                self.disturbed();
                let members = self.gcd.clone();
                self.feed(i, Input::Elect { members, sender: None });
            }
            // Members stopped timing out: a change the group must settle after.
            Ev::OverloadBegins | Ev::OverloadEnds => self.disturbed(),
            Ev::Sample => {
                self.sample();
                self.at(self.now + Duration::from_millis(250), Ev::Sample);
            }
            Ev::Deliver { to, incarnation, input } => {
                if self.members[to].incarnation == incarnation && self.members[to].node.is_some() {
                    self.feed(to, input);
                }
            }
        }
    }

    fn feed(&mut self, i: usize, input: Input) {
        let Some(node) = self.members[i].node.as_mut() else { return };
        let actions = node.handle(self.now, input);
        for action in actions {
            self.apply(i, action);
        }
    }

    fn count_message(&mut self) {
        self.report.messages += 1;
        self.election_messages.push(self.now);
    }

    fn apply(&mut self, i: usize, action: Action) {
        match action {
            Action::SendElect { election, to, addr, members } => {
                self.count_message();
                let Some(&j) = self.by_addr.get(&addr) else { return };
                let state = self.members[j].state;
                let outcome_after = match state {
                    State::Up if self.connect_times_out() => self.timed_out(),
                    State::Up => {
                        let d = self.delay();
                        self.deliver(d, j, Input::Elect { members, sender: None });
                        self.count_message(); // its GOT_IT
                        self.exchange(d)
                    }
                    State::Down(FeignMode::Ignore) => {
                        (Outcome::Failed(Failure::NoReply { after: self.sc.socket_timeout }), self.sc.socket_timeout)
                    }
                    _ => (Outcome::Failed(Failure::Refused { addr }), MS),
                };
                self.deliver(outcome_after.1, i, Input::ElectReply { election, to, outcome: outcome_after.0 });
            }
            Action::SendLeader { to: _, addr } => {
                self.count_message();
                let Some(&j) = self.by_addr.get(&addr) else { return };
                if self.members[j].state == State::Up && !self.connect_times_out() {
                    let leader = self.members[i].pid;
                    let d = self.delay();
                    self.deliver(d, j, Input::IAmLeader { leader, addr: None });
                }
            }
            Action::SendProbe { probe, to: _, addr } => {
                let Some(&j) = self.by_addr.get(&addr) else { return };
                let state = self.members[j].state;
                let (outcome, after) = match state {
                    State::Up if self.connect_times_out() => self.timed_out(),
                    State::Up => {
                        let d = self.delay();
                        self.exchange(d)
                    }
                    State::Down(FeignMode::Ignore) => {
                        (Outcome::Failed(Failure::NoReply { after: self.sc.socket_timeout }), self.sc.socket_timeout)
                    }
                    _ => (Outcome::Failed(Failure::Refused { addr }), MS),
                };
                self.deliver(after, i, Input::ProbeReply { probe, outcome });
            }
            Action::SetTimer { at, timer } => {
                let incarnation = self.members[i].incarnation;
                self.at(at, Ev::Deliver { to: i, incarnation, input: Input::Timer(timer) });
            }
            Action::Register { .. } => {
                self.report.gcd_requests.push(self.now);
                let d = self.delay();
                if self.gcd_up() && self.connect_times_out() {
                    let reason = "no connection within the socket timeout".to_string();
                    self.deliver(self.sc.socket_timeout, i, Input::RegistrationFailed { reason });
                } else if self.gcd_up() {
                    let (pid, addr) = (self.members[i].pid, self.members[i].addr.clone());
                    self.gcd.insert(pid, addr);
                    let members = self.gcd.clone();
                    if 2 * d > self.sc.socket_timeout {
                        let reason = "no reply within the socket timeout".to_string();
                        self.deliver(self.sc.socket_timeout, i, Input::RegistrationFailed { reason });
                    } else {
                        self.deliver(2 * d, i, Input::Registered { members });
                    }
                } else {
                    self.deliver(MS, i, Input::RegistrationFailed { reason: "GCD down".into() });
                }
            }
            Action::Listen(listening) => {
                let m = &mut self.members[i];
                m.state = match listening {
                    Listening::Open => State::Up,
                    Listening::Closed => State::Down(FeignMode::Close),
                    Listening::Ignoring => State::Down(FeignMode::Ignore),
                };
                m.up_since = (m.state == State::Up).then_some(self.now);
                self.disturbed();
            }
            Action::Event(event) => self.on_event(i, event),
        }
    }

    fn on_event(&mut self, i: usize, event: Event) {
        if std::env::var_os("SIM_TRACE_EVENTS").is_some() {
            eprintln!("{:>10.3?} {} {event:?}", self.now, self.members[i].pid);
        }
        match event {
            Event::Leader { leader, .. } => {
                if !self.registered.contains(&leader) {
                    self.report.unknown_leaders += 1;
                }
                self.leader_changes.push(self.now);
                self.report.leader_changes[i].push(self.now);
            }
            Event::IdentityClash { .. } => self.report.clashes_told[i] += 1,
            Event::ElectionStarted { reason, .. } => {
                self.report.elections_started += 1;
                self.election_starts.push(self.now);
                if std::env::var_os("SIM_TRACE").is_some() {
                    *self.reasons.entry(reason.kind()).or_default() += 1;
                }
            }
            _ => {}
        }
    }

    fn live(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(|m| m.state == State::Up && m.node.as_ref().is_some_and(|n| !n.is_down()))
    }

    /// Periodic checks: whether the group agrees, and how long stable members follow
    /// a leader below the highest stable member.
    fn sample(&mut self) {
        let bound = self.sc.bound();
        let expected = self.live().map(|m| m.pid).max();
        // Agreeing means settled too: no member below the leader still electing (an
        // ELECT sent before the quiet time to a member then feigning can fail a socket
        // timeout after it, and the election it ends be won: a group that agreed only
        // until then had not). The leader's own elections (its check) change nobody.
        let all_agree = self.live().all(|m| {
            m.node.as_ref().is_some_and(|n| n.leader() == expected && (!n.is_electing() || Some(m.pid) == expected))
        });
        if std::env::var_os("SIM_TRACE_SAMPLES").is_some() && !all_agree {
            let v: Vec<_> =
                self.live().map(|m| (m.pid, m.node.as_ref().map(|n| (n.leader(), n.phase().clone())))).collect();
            eprintln!("{:?} disagree: {v:?}", self.now);
        }
        self.samples.push((self.now, all_agree));
        // A disturbance restarts every streak: the bound is counted from the last one.
        if self.last_disturbance > self.last_sample {
            self.wrong_since.iter_mut().for_each(|w| *w = None);
        }
        self.last_sample = self.now;
        // Members up for at least the bound should follow the highest such member.
        let stable = |m: &Member, now: Time| m.up_since.is_some_and(|t| now >= t + bound);
        let now = self.now;
        let top = self.live().filter(|m| stable(m, now)).map(|m| m.pid).max();
        for i in 0..self.members.len() {
            let m = &self.members[i];
            let following = m.node.as_ref().and_then(Node::leader);
            let wrong = m.state == State::Up && stable(m, now) && top.is_some() && following < top;
            match (wrong, self.wrong_since[i]) {
                (true, None) => self.wrong_since[i] = Some(now),
                (true, Some(since)) => self.report.longest_wrong = self.report.longest_wrong.max(now - since),
                (false, _) => self.wrong_since[i] = None,
            }
        }
    }

    fn finish(mut self) -> Report {
        if std::env::var_os("SIM_TRACE").is_some() {
            let mut r: Vec<_> = self.reasons.iter().collect();
            r.sort_by_key(|(_, n)| std::cmp::Reverse(**n));
            eprintln!("election reasons: {r:?}");
        }
        let bound = self.sc.bound();
        let quiet = self.last_disturbance.max(self.sc.chaos_end);
        self.report.quiet_at = quiet;
        self.report.ended_at = self.now;
        // Agreement: the first sample after quiet from which every later one agrees.
        let after_quiet: Vec<_> = self.samples.iter().filter(|(t, _)| *t >= quiet).collect();
        let first_of_last_run = after_quiet.iter().rposition(|(_, ok)| !ok).map_or(0, |i| i + 1);
        self.report.agreed_at = after_quiet.get(first_of_last_run).map(|(t, _)| *t);
        if let Some(agreed) = self.report.agreed_at {
            self.report.changes_after_agreement = self.leader_changes.iter().filter(|t| **t > agreed).count();
        }
        let tail = self.now.saturating_sub(bound);
        self.report.idle_messages = self.election_messages.iter().filter(|t| **t >= tail).count();
        // Episodes: from a disturbance to the next one, when they are at least the bound apart.
        let mut starts = self.disturbances.clone();
        starts.dedup();
        for (k, start) in starts.iter().enumerate() {
            let next = starts.get(k + 1).copied().unwrap_or(self.now);
            if next >= *start + bound {
                let within = |times: &[Time]| times.iter().filter(|t| (*start..next).contains(*t)).count();
                let overloaded = self.sc.overloads.iter().any(|o| o.from < next && *start < o.until);
                let episode = Episode {
                    messages: within(&self.election_messages),
                    elections: within(&self.election_starts),
                    overloaded,
                };
                self.report.episodes.push(episode);
            }
        }
        self.report.expected_leader = self.live().map(|m| m.pid).max();
        self.report.final_leaders = self.live().map(|m| (m.pid, m.node.as_ref().and_then(Node::leader))).collect();
        self.report
    }
}
