//! `bully-node check`: judges any peer by what it does on the wire.
//!
//! The checker runs a coordinator of its own (the gcd2.py-compatible one in `gcd`),
//! registers scripted members around the peer's identity, starts the peer with the
//! user's command, and drives it through a timeline of scenarios while a monitor
//! PROBEs it four times a second to see when it feigns failure:
//!
//! 1. join: lower members L1, L2 answer; H1 answers GOT_IT and announces itself 1.5 s
//!    later; S accepts ELECT and never answers; D is listed but refuses. The peer
//!    should elect, wait after H1's GOT_IT, follow H1 and PROBE it.
//! 2. learn: on a PROBE to H1 (the peer is up and idle) L1 sends ELECT naming X, a
//!    higher member the GCD never heard of; the next election must ask X.
//! 3. the leader fails: right after H1 answers a PROBE of the peer's, H1 starts dropping
//!    everything, so the peer's next PROBE goes unanswered. The peer should re-register,
//!    elect, find every higher member silent or refusing, and announce itself to everyone.
//! 4. hostile input: junk, then a PROBE; then an ELECT of 60 members.
//!
//! The checks are judged afterwards from the journal (`judge`); the peer is stopped,
//! with its process group, whatever happens (`peer`).

pub mod dialect;
pub mod journal;
pub mod judge;
pub mod members;
pub mod peer;
pub mod report;

use crate::gcd::{self, server, Answer, Coordinator, CoordinatorConfig, NameChoice};
use crate::identity::ProcessId;
use crate::membership::{Addr, Members};
use crate::net::server::Server;
use crate::protocol::RegisterName;
use crate::wire::{self, Style, Value};
use chrono::NaiveDate;
use journal::{At, GcdRecord, Journal, Kind, Outcome, Ping, Role};
use judge::{Context, LearnTrial, Trial, Verdict};
use members::{Mode, Scripted, Shared};
use peer::{PeerProcess, Placeholders};
use rand::Rng;
use report::Report;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to check and how.
#[derive(Clone, Debug)]
pub struct CheckConfig {
    /// The peer's command, placeholders not yet filled in.
    pub command: Vec<String>,
    /// The registration name the checker's coordinator accepts.
    pub gcd_message: RegisterName,
    /// The most the whole run may take.
    pub limit: Duration,
    /// The local date `{birthday}` counts from.
    pub today: NaiveDate,
    /// Set by Ctrl-C: the run stops at once (the peer is stopped too).
    pub interrupted: Arc<AtomicBool>,
}

/// The shortest `--time` that leaves every scenario room.
pub const MIN_LIMIT: Duration = Duration::from_secs(45);

/// Why a check could not be carried out.
#[derive(Debug)]
pub enum CheckError {
    /// The checker's own sockets could not be set up.
    Setup(String),
    /// The peer could not be started, or ended before it registered.
    PeerStart {
        why: String,
        last_lines: Vec<String>,
    },
    Interrupted,
    /// The command names a placeholder the checker does not know.
    Placeholder {
        unknown: Vec<String>,
    },
    /// The peer ended during the scenarios: they stop, and it is judged on what it did.
    PeerGone,
}

impl std::fmt::Display for CheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckError::Setup(why) => write!(f, "cannot set up the checker: {why}"),
            CheckError::PeerStart { why, last_lines } => {
                write!(f, "{why}")?;
                if last_lines.is_empty() {
                    write!(f, " (it printed nothing)")
                } else {
                    write!(f, "; its last output:\n  {}", last_lines.join("\n  "))
                }
            }
            CheckError::Interrupted => write!(f, "interrupted; the peer was stopped"),
            CheckError::Placeholder { unknown } => write!(
                f,
                "the command names {} no placeholder the checker fills in; the known ones are {}",
                unknown.join(", "),
                peer::PLACEHOLDERS.join(" ")
            ),
            CheckError::PeerGone => write!(f, "the peer ended during the check"),
        }
    }
}

/// How often the monitor PROBEs the peer.
const MONITOR_EVERY: Duration = Duration::from_millis(250);
/// The least time the peer is watched after it registers, so that a peer feigning
/// failure every 0 to 10 s for 1 to 4 s shows at least two failures.
const MIN_WATCH: Duration = Duration::from_secs(30);
/// How long after joining the checker waits for enough PROBEs to judge their interval.
const GAPS_BY: Duration = Duration::from_secs(70);
/// The large ELECT's name in the journal: a death right after it is large_elect's failure.
const LARGE_ELECT: &str = "60-member ELECT";
/// Garbage's name in the journal: a death right after it is survives_garbage's failure.
const GARBAGE: &str = "garbage";

/// Why a trial was not made when the run's time ran out before it.
const OUT_OF_TIME: &str = "the run's time (--time) ran out before this trial";

/// The most attempts of one trial (garbage, the large ELECT), each at least 400 ms apart.
const TRIAL_ATTEMPTS: usize = 20;
/// The most ELECTs the learn scenario sends.
const LEARN_ATTEMPTS: usize = 12;
/// The least time between two ELECTs that make a peer leading itself follow H1 again.
const NUDGE_EVERY: Duration = Duration::from_secs(3);

/// The identities: the peer's, in the middle of the range, and the members' around it,
/// far enough that a peer a day off in its arithmetic still ranks the same.
fn identities() -> (ProcessId, Vec<(Role, ProcessId)>) {
    let mut rng = rand::rng();
    let days = rng.random_range(120..=240);
    let mut su_ids = std::collections::HashSet::new();
    let mut su = || loop {
        let s = rng.random_range(2_000_000..=8_999_999);
        if su_ids.insert(s) {
            return s;
        }
    };
    let peer = ProcessId::new(days, su());
    let offsets = [
        (Role::Low1, -60),
        (Role::Low2, -90),
        (Role::Leader, 60),
        (Role::Silent, 70),
        (Role::Dead, 90),
        (Role::Unknown, 50),
    ];
    let roles = offsets.iter().map(|(r, off)| (*r, ProcessId::new((days as i32 + off) as u32, su()))).collect();
    (peer, roles)
}

/// A free port on 127.0.0.1 for the peer to listen on (`{port}`). The peer binds it
/// later, so it is taken below the ephemeral ranges (Linux 32768-60999, BSD and macOS
/// 49152-65535) when one is free there: no other socket's port 0 or outgoing
/// connection is handed it in between, as could happen with one the kernel chose.
fn free_port() -> std::io::Result<u16> {
    let mut rng = rand::rng();
    for _ in 0..50 {
        let port = rng.random_range(20_000..32_000);
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            return Ok(l.local_addr()?.port());
        }
    }
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Runs the check and returns the rubric.
pub fn run(config: &CheckConfig) -> Result<Report, CheckError> {
    let unknown = peer::unknown_placeholders(&config.command);
    if !unknown.is_empty() {
        return Err(CheckError::Placeholder { unknown });
    }
    Driver::new(config)?.run()
}

struct Driver<'a> {
    config: &'a CheckConfig,
    journal: Arc<Journal>,
    shared: Arc<Shared>,
    coordinator: Arc<Coordinator>,
    gcd_addr: Addr,
    peer_started: Arc<AtomicBool>,
    assigned: ProcessId,
    roles: Vec<(Role, ProcessId)>,
    members: Vec<Scripted>,
    deadline: At,
    /// The coordinator's server: stopped when the driver is dropped.
    _gcd: Server,
}

impl<'a> Driver<'a> {
    fn new(config: &'a CheckConfig) -> Result<Driver<'a>, CheckError> {
        let setup = |e: std::io::Error| CheckError::Setup(e.to_string());
        let epoch = Instant::now();
        let journal = Arc::new(Journal::new(epoch));
        let shared = Shared::new(Arc::clone(&journal));
        if matches!(config.gcd_message, RegisterName::Join | RegisterName::Begin) {
            // The ELECTION / OK / COORDINATOR years: until the peer shows its own dialect,
            // speak the most common one of its GCD's era.
            *shared.default.lock().unwrap_or_else(|e| e.into_inner()) = dialect::Spoken::OLD_MEMBERS;
        }
        let (assigned, roles) = identities();
        let coordinator =
            Arc::new(Coordinator::new(CoordinatorConfig { accept: config.gcd_message, allow_remote: false }));
        let listener = TcpListener::bind("127.0.0.1:0").map_err(setup)?;
        let gcd_addr = Addr::new("127.0.0.1", listener.local_addr().map_err(setup)?.port());
        let peer_started = Arc::new(AtomicBool::new(false));
        let observer: server::Observer = {
            let (journal, shared, started, name) =
                (Arc::clone(&journal), Arc::clone(&shared), Arc::clone(&peer_started), config.gcd_message);
            Arc::new(move |answer: &Answer| {
                if !started.load(Ordering::SeqCst) {
                    return; // the scripted members registering
                }
                let result = match answer {
                    Answer::Joined { pid, addr, .. } => {
                        if pid.su_id == assigned.su_id {
                            *shared.peer.lock().unwrap_or_else(|e| e.into_inner()) = Some((*pid, addr.clone()));
                        }
                        Ok((name.to_string(), *pid, addr.clone()))
                    }
                    Answer::Refused { reason, .. } => Err(reason.clone()),
                    Answer::NotAPickle { .. } => Err("a request that is not a pickle".to_string()),
                    Answer::NoReply { reason } => Err(reason.to_string()),
                };
                let at = journal.now();
                journal.update(|r| r.gcd.push(GcdRecord { at, result }));
            })
        };
        let gcd = server::start(listener, Arc::clone(&coordinator), server::Serving::Concurrent, Some(observer))
            .map_err(setup)?;
        let mut members = Vec::new();
        for (role, pid) in &roles {
            let mode = match role {
                Role::Leader => Mode::Lead,
                Role::Silent => Mode::Silent,
                _ => Mode::Answer,
            };
            members.push(Scripted::start(*role, *pid, mode, &shared).map_err(setup)?);
        }
        let mut driver = Driver {
            config,
            journal,
            shared,
            coordinator,
            gcd_addr,
            peer_started,
            assigned,
            roles,
            members,
            deadline: config.limit,
            _gcd: gcd,
        };
        // The group the peer will find: everyone but X, who is only ever named in an ELECT.
        for m in driver.members.iter().filter(|m| m.role != Role::Unknown) {
            gcd::register(
                &driver.gcd_addr,
                NameChoice::Fixed(config.gcd_message),
                m.pid,
                &m.addr,
                Duration::from_secs(5),
            )
            .map_err(|e| CheckError::Setup(e.to_string()))?;
        }
        driver.member_mut(Role::Dead).close();
        Ok(driver)
    }

    fn member(&self, role: Role) -> &Scripted {
        self.members.iter().find(|m| m.role == role).expect("every role is started")
    }

    fn member_mut(&mut self, role: Role) -> &mut Scripted {
        self.members.iter_mut().find(|m| m.role == role).expect("every role is started")
    }

    fn pid(&self, role: Role) -> ProcessId {
        self.member(role).pid
    }

    fn now(&self) -> At {
        self.journal.now()
    }

    fn interrupted(&self) -> Result<(), CheckError> {
        if self.config.interrupted.load(Ordering::SeqCst) {
            Err(CheckError::Interrupted)
        } else {
            Ok(())
        }
    }

    /// Waits for `cond` until `until` (capped by the run's deadline), an interrupt, or
    /// the peer's end.
    fn wait(&self, until: At, cond: impl FnMut(&journal::Records) -> bool) -> Result<bool, CheckError> {
        let until = until.min(self.deadline);
        let interrupted = Arc::clone(&self.config.interrupted);
        let mut cond = cond;
        let held =
            self.journal.wait_until(until, |r| interrupted.load(Ordering::SeqCst) || r.peer_exit.is_some() || cond(r));
        self.interrupted()?;
        if self.journal.lock().peer_exit.is_some() {
            return Err(CheckError::PeerGone);
        }
        Ok(held)
    }

    /// Waits `d`, whatever the deadline (so that no loop spins once it has passed).
    fn sleep(&self, d: Duration) -> Result<(), CheckError> {
        let until = self.now() + d;
        let interrupted = Arc::clone(&self.config.interrupted);
        self.journal.wait_until(until, |r| interrupted.load(Ordering::SeqCst) || r.peer_exit.is_some());
        self.interrupted()?;
        if self.journal.lock().peer_exit.is_some() {
            return Err(CheckError::PeerGone);
        }
        Ok(())
    }

    /// Waits for the next PROBE the leader member answers: the peer is up and follows it.
    fn next_leader_probe(&self, within: Duration) -> Result<bool, CheckError> {
        let after = self.now();
        self.wait(after + within, |r| {
            r.received.iter().any(|x| x.at > after && x.role == Role::Leader && x.kind == Kind::Probe && x.answered)
        })
    }

    /// ELECT from L1 listing the group and `extra`, in the peer's dialect.
    fn elect_from_low(&self, extra: &[(ProcessId, Addr)], style: Style) -> Outcome {
        let Some((peer, _)) = self.shared.peer() else { return Outcome::Refused };
        let mut members = self.coordinator.members();
        for (pid, addr) in extra {
            members.insert(*pid, addr.clone());
        }
        let spoken = self.shared.spoken();
        let msg = spoken.elect(&members, self.pid(Role::Low1), peer);
        self.send_elect(spoken.name("ELECT"), &wire::encode(&msg, style))
    }

    /// Sends the peer an ELECT (as bytes) from L1 and says how it was answered: on the
    /// same connection, or (three-tuple peers) by an OK to L1 on a new one.
    fn send_elect(&self, name: &'static str, bytes: &[u8]) -> Outcome {
        let spoken = self.shared.spoken();
        let at = self.now();
        self.journal.update(|r| r.our_elects.push(at));
        if spoken.answers_apart() {
            self.shared.elect_apart(name, bytes, Role::Low1)
        } else {
            self.shared.send_raw(name, bytes)
        }
    }

    fn run(mut self) -> Result<Report, CheckError> {
        let placeholders = Placeholders {
            gcd_host: self.gcd_addr.host.clone(),
            gcd_port: self.gcd_addr.port,
            port: free_port().map_err(|e| CheckError::Setup(e.to_string()))?,
            pid: self.assigned,
            birthday: peer::birthday_in(self.config.today, self.assigned.days),
        };
        let command: Vec<String> = self.config.command.iter().map(|a| placeholders.fill(a)).collect();
        self.peer_started.store(true, Ordering::SeqCst);
        let spawned = self.now();
        self.deadline = spawned + self.config.limit.saturating_sub(Duration::from_secs(3));
        let process = Arc::new(PeerProcess::spawn(&command).map_err(|e| CheckError::PeerStart {
            why: format!("cannot start {:?}: {e}", command[0]),
            last_lines: Vec::new(),
        })?);
        let registered = self.wait_registration(&process, spawned)?;
        let mut ctx = Context {
            assigned: self.assigned,
            spawned,
            end: self.now(),
            roles: self.roles.clone(),
            answers_elect: Trial::default(),
            learn: LearnTrial::default(),
            garbage: Trial::default(),
            large: Trial::default(),
        };
        let mut notes = Vec::new();
        if let Some(joined) = registered {
            *self.shared.group.lock().unwrap_or_else(|e| e.into_inner()) = self.coordinator.members();
            let monitor = self.start_monitor();
            let watcher = self.watch_exit(&process);
            let result = self.scenarios(joined, &mut ctx);
            monitor.store(true, Ordering::SeqCst);
            watcher.store(true, Ordering::SeqCst);
            match result {
                Ok(()) | Err(CheckError::PeerGone) => {}
                Err(e) => return Err(e),
            }
            if let Some(status) = process.exited() {
                let at = self.journal.lock().peer_exit.as_ref().map(|(at, _)| *at).unwrap_or(self.now());
                self.journal.update(|r| {
                    r.peer_exit.get_or_insert((at, status.to_string()));
                });
            }
        }
        ctx.end = self.journal.lock().peer_exit.as_ref().map_or(self.now(), |(at, _)| *at);
        self.shared.stopping.store(true, Ordering::SeqCst);
        let tracebacks: Vec<At> = process.tracebacks().into_iter().map(|i| self.journal.at(i)).collect();
        process.stop();
        let records = self.journal.lock().clone();
        let mut checks = judge::all(&records, &ctx);
        if let Some(death) = death(&records, &tracebacks) {
            notes.push(death.note.clone());
            // What failed on the record before it died stands; what failed after is the
            // death's doing, not the peer's logic: not judged.
            let before = judge::all(&records.until(death.at), &ctx.until(death.at));
            // Dying on garbage or on a large ELECT is the failure those checks look for.
            let owner = match death.cause {
                GARBAGE => Some("survives_garbage"),
                LARGE_ELECT => Some("large_elect"),
                _ => None,
            };
            for c in checks.iter_mut() {
                if owner == Some(c.name) {
                    // Refused connections after it would read as feigning: it died.
                    c.verdict = Verdict::Fail;
                    c.evidence = judge::cap(format!("{}; {}", death.short, c.evidence));
                    continue;
                }
                let failed_before = before.iter().any(|b| b.name == c.name && b.verdict == Verdict::Fail);
                let before_verdict = before.iter().find(|b| b.name == c.name).map(|b| b.verdict);
                if c.verdict == Verdict::Fail && before_verdict == Some(Verdict::NotAttempted) {
                    c.verdict = Verdict::NotAttempted;
                    c.evidence = judge::cap(format!("not attempted before it died; {}", c.evidence));
                } else if c.verdict == Verdict::Fail && !failed_before {
                    c.verdict = Verdict::Skip;
                    c.evidence = judge::cap(format!("not judged: {}; {}", death.short, c.evidence));
                }
            }
        } else if let Some((at, status)) = &records.peer_exit {
            notes.push(format!("the peer exited during the check, at {} ({status})", judge::secs(*at)));
        }
        if registered.is_none() {
            for c in checks.iter_mut().filter(|c| c.name != "registers") {
                c.verdict = Verdict::Skip;
                c.evidence = "the peer never registered".into();
            }
        }
        let dialect = records.dialect;
        let last_lines = if registered.is_none()
            || checks.iter().any(|c| c.verdict == Verdict::Fail && c.required())
            || !notes.is_empty()
        {
            process.last_lines(8)
        } else {
            Vec::new()
        };
        Ok(Report {
            command,
            pid: self.assigned,
            gcd: self.gcd_addr.clone(),
            gcd_message: self.config.gcd_message,
            dialect,
            checks,
            seconds: self.now().saturating_sub(spawned).as_secs_f64(),
            notes,
            last_lines,
            registered: registered.is_some(),
        })
    }

    /// Notes in the journal when the peer's process ends (polled every 50 ms); returns the
    /// flag that stops the watch.
    fn watch_exit(&self, process: &Arc<PeerProcess>) -> Arc<AtomicBool> {
        let stop = Arc::new(AtomicBool::new(false));
        let (journal, process, stopping) = (Arc::clone(&self.journal), Arc::clone(process), Arc::clone(&stop));
        let _ = std::thread::Builder::new().name("check-exit".into()).spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                if let Some(status) = process.exited() {
                    let at = journal.now();
                    journal.update(|r| {
                        r.peer_exit.get_or_insert((at, status.to_string()));
                    });
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        stop
    }

    /// Waits up to 10 s for the peer's registration; an early exit is a start failure.
    fn wait_registration(&self, process: &PeerProcess, spawned: At) -> Result<Option<At>, CheckError> {
        let until = spawned + Duration::from_secs(10);
        loop {
            let joined = self.journal.lock().gcd.iter().find(|g| g.result.is_ok()).map(|g| g.at);
            if joined.is_some() && self.shared.peer().is_some() {
                return Ok(joined);
            }
            if let Some(status) = process.exited() {
                // Give its last lines a moment to arrive from the pipes.
                std::thread::sleep(Duration::from_millis(200));
                return Err(CheckError::PeerStart {
                    why: format!("the peer exited ({status}) before registering with the GCD at {}", self.gcd_addr),
                    last_lines: process.last_lines(10),
                });
            }
            if self.now() >= until {
                return Ok(None);
            }
            self.sleep(Duration::from_millis(50))?;
        }
    }

    /// PROBEs the peer every [`MONITOR_EVERY`] from threads of their own; returns the
    /// flag that stops it.
    fn start_monitor(&self) -> Arc<AtomicBool> {
        let stop = Arc::new(AtomicBool::new(false));
        let (shared, stopping, sender) = (Arc::clone(&self.shared), Arc::clone(&stop), self.pid(Role::Low2));
        let _ = std::thread::Builder::new().name("check-monitor".into()).spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                let shared2 = Arc::clone(&shared);
                let stopping2 = Arc::clone(&stopping);
                let _ = std::thread::Builder::new().name("check-ping".into()).spawn(move || {
                    let sent = shared2.journal.update(|r| {
                        let sent = shared2.journal.now();
                        r.pings_in_flight.push(sent);
                        sent
                    });
                    let outcome = shared2.probe_peer(sender);
                    shared2.journal.update(|r| {
                        r.pings_in_flight.retain(|s| *s != sent);
                        if !stopping2.load(Ordering::SeqCst) {
                            r.pings.push(Ping { sent, outcome });
                        }
                    });
                });
                std::thread::sleep(MONITOR_EVERY);
            }
        });
        stop
    }

    fn scenarios(&mut self, joined: At, ctx: &mut Context) -> Result<(), CheckError> {
        // 1-2. Join, then learn from an ELECT naming X, which only that ELECT names.
        self.learn(ctx)?;
        self.member_mut(Role::Unknown).close();
        // Some PROBEs to H1 to judge their interval by.
        let far = joined + Duration::from_secs(3600);
        let enough = |r: &journal::Records| judge::clean_gaps(r, &judge::spans(r, far)).len() >= 3;
        self.wait(joined + Duration::from_secs(20), enough)?;
        // 3. The leader fails.
        self.leader_fails()?;
        // H1 is back, and an ELECT makes the peer elect and follow it again (as often as
        // it is found leading itself): more PROBEs to H1, if the phases before gave too
        // few to judge their interval.
        self.restore_leader();
        let some = |r: &journal::Records| judge::clean_gaps(r, &judge::spans(r, far)).len() >= 2;
        self.keep_following(joined + GAPS_BY, some)?;
        // A peer that feigns often may have given none yet: some more time for one (if
        // it PROBEs H1 at all).
        let one = |r: &journal::Records| !judge::clean_gaps(r, &judge::spans(r, far)).is_empty();
        let probes = |r: &journal::Records| r.received.iter().any(|x| x.role == Role::Leader && x.kind == Kind::Probe);
        let more = {
            let r = self.journal.lock();
            !one(&r) && probes(&r)
        };
        if more {
            self.keep_following(self.now() + Duration::from_secs(20), one)?;
        }
        // 4. Hostile input, once the peer has been watched long enough to see it feign.
        let watched = joined + MIN_WATCH;
        if self.now() < watched {
            self.sleep(watched.saturating_sub(self.now()))?;
        }
        self.garbage(ctx)?;
        self.large_elect(ctx)?;
        Ok(())
    }

    /// Sends ELECT naming X from L1 when the peer is idle, until an attempt is conclusive.
    fn learn(&mut self, ctx: &mut Context) -> Result<(), CheckError> {
        let x = self.member(Role::Unknown);
        let extra = [(x.pid, x.addr.clone())];
        let until = self.now() + Duration::from_secs(45);
        let mut reachable_misses = 0;
        for _ in 0..LEARN_ATTEMPTS {
            if self.now() >= until.min(self.deadline) {
                break;
            }
            self.next_leader_probe(Duration::from_secs(6))?;
            let at = self.now();
            let outcome = self.elect_from_low(&extra, Style::Compact);
            ctx.answers_elect.attempts.push((at, outcome.clone()));
            match outcome {
                Outcome::Ok(_) => {}
                Outcome::Refused => {
                    // Down (feigning): give it a moment rather than knock again at once.
                    self.sleep(Duration::from_millis(500))?;
                    continue;
                }
                _ => {
                    reachable_misses += 1;
                    if reachable_misses >= 2 {
                        return Ok(());
                    }
                    continue;
                }
            }
            ctx.learn.answered_at.push(at);
            // Its next election, or a few seconds to show there is none.
            self.wait(at + Duration::from_secs(6), |r| {
                r.elects().any(|e| e.at > at && e.role == Role::Unknown)
                    || r.elects()
                        .find(|e| e.at > at)
                        .is_some_and(|e| e.at + Duration::from_millis(4600) < self.journal.now())
            })?;
            // Let the monitor's PROBEs in flight land: they tell whether it failed meanwhile.
            self.sleep(Duration::from_millis(800))?;
            let records = self.journal.lock();
            let spans = judge::spans(&records, self.journal.now());
            if judge::learns_from_elect(&records, ctx, &spans).verdict == Verdict::Pass
                || ctx.learn.answered_at.len() >= 5
            {
                return Ok(());
            }
        }
        Ok(())
    }

    /// H1 stops answering right after it answered one of the peer's PROBEs (the peer is
    /// up and follows it), so the peer's next PROBE to H1 goes unanswered. If the peer
    /// fails or elects before that PROBE, H1 answers again at once: the peer's recovery
    /// election (or an ELECT from L1, if it leads itself) makes it follow H1 again, and
    /// H1 fails once more. Attempts go on until one shows both checks or time is up.
    /// A peer that never PROBEs H1 at all is still judged on winning: H1 fails once it
    /// announced itself to the peer, and an ELECT from L1 makes the peer elect.
    fn leader_fails(&mut self) -> Result<(), CheckError> {
        let me = self.shared.peer().map(|(p, _)| p).unwrap_or(self.assigned);
        let budget = self.now() + Duration::from_secs(50);
        for attempt in 0..16 {
            let since = self.now();
            if since > budget.min(self.deadline) {
                break;
            }
            self.restore_leader();
            // A PROBE H1 answered: the peer follows H1 and probes it. (An announcement
            // alone is not enough: the peer may fail before it ever probes.)
            let answered = |r: &journal::Records| {
                r.received
                    .iter()
                    .rev()
                    .find(|x| x.at > since && x.role == Role::Leader && x.kind == Kind::Probe && x.answered)
                    .map(|x| x.at)
            };
            // A peer that never PROBEs (extra credit) and follows H1: it stays quiet after
            // H1's latest announcement, which may be from an earlier attempt.
            let never_probes = |r: &journal::Records| {
                !r.received.iter().any(|x| x.role == Role::Leader && x.kind == Kind::Probe)
                    && r.announced.last().is_some_and(|a| !r.self_announcements(me).any(|x| x.at > *a))
            };
            // Until a clean interval between two PROBEs was seen (probe_interval needs one),
            // the first attempts wait for two answered PROBEs in a row: H1's failure would
            // cut the interval short.
            let gap_first = attempt < 3;
            let far = self.now() + Duration::from_secs(3600);
            let ready = |r: &journal::Records| {
                answered(r).is_some() && (!gap_first || !judge::clean_gaps(r, &judge::spans(r, far)).is_empty())
            };
            let following = self.keep_following(since + Duration::from_secs(10), ready)?;
            if !following && (attempt == 0 || !never_probes(&self.journal.lock())) {
                continue;
            }
            self.member(Role::Leader).set_mode(Mode::Drop);
            let failed = self.now();
            self.journal.update(|r| r.leader_down.push((failed, At::MAX)));
            if never_probes(&self.journal.lock()) {
                let _ = self.elect_from_low(&[], Style::Compact);
            }
            let probed = answered(&self.journal.lock()).unwrap_or(failed);
            // Its next PROBE goes unanswered (a peer probes every 0.5 to 3 s), unless it
            // fails or starts an election first: then this attempt cannot show the check.
            let unanswered = |r: &journal::Records| {
                r.received
                    .iter()
                    .any(|x| x.at > probed && x.role == Role::Leader && x.kind == Kind::Probe && !x.answered)
            };
            let refused = |r: &journal::Records| r.pings.iter().any(|p| p.sent > failed && p.outcome.refused());
            self.wait(failed + Duration::from_secs(8), |r| {
                unanswered(r)
                    || refused(r)
                    || r.elects().any(|e| e.at > failed)
                    || r.self_announcements(me).any(|x| x.at > failed)
            })?;
            let lost = {
                let r = self.journal.lock();
                !unanswered(&r) && !never_probes(&r)
            };
            if lost {
                continue;
            }
            // It wins: after its failed PROBE, or after a failure of its own. If a failure
            // cut every election short, H1 stays down and an ELECT from L1 makes the peer
            // elect again (its recovery elects too), at most three times.
            let mut after = failed;
            for again in 0..4 {
                if again > 0 {
                    after = self.now();
                    let _ = self.elect_from_low(&[], Style::Compact);
                }
                self.wait(after + Duration::from_secs(20), |r| r.self_announcements(me).any(|x| x.at > after))?;
                // Its announcement reaches the others within moments, and the monitor's
                // PROBEs in flight land: they tell whether it failed meanwhile.
                self.settle_pings()?;
                let records = self.journal.lock();
                let now = self.journal.now();
                let spans = judge::spans(&records, now);
                let reregisters = judge::reregisters_on_failed_probe(&records, &spans, now).verdict != Verdict::Skip;
                let wins = judge::wins_when_higher_silent(&records, me, &spans, now).verdict != Verdict::Skip;
                if reregisters && wins {
                    return Ok(());
                }
                if !reregisters || self.now() > budget.min(self.deadline) {
                    break;
                }
            }
        }
        Ok(())
    }

    /// H1 answers again (if it was dropping everything): its failure period ends now.
    fn restore_leader(&self) {
        let back = self.now();
        self.journal.update(|r| {
            // Only a period still open ends here: a closed one keeps its end.
            if let Some(last) = r.leader_down.last_mut() {
                last.1 = last.1.min(back);
            }
        });
        self.member(Role::Leader).set_mode(Mode::Lead);
    }

    /// Waits for `cond` until `until`; meanwhile, whenever the peer leads itself (its
    /// latest word on leadership is its own I_AM_LEADER, after H1 was last heard from),
    /// an ELECT from L1 (at most one every [`NUDGE_EVERY`]) makes it elect, ask H1 and
    /// follow it. A peer that follows H1, or is down, is left alone.
    fn keep_following(&self, until: At, cond: impl Fn(&journal::Records) -> bool) -> Result<bool, CheckError> {
        let me = self.shared.peer().map(|(p, _)| p).unwrap_or(self.assigned);
        let mut nudged: Option<At> = None;
        loop {
            let now = self.now();
            if self.wait(until.min(now + Duration::from_millis(500)), &cond)? {
                return Ok(true);
            }
            let now = self.now();
            if now >= until.min(self.deadline) {
                return Ok(false);
            }
            let leads_itself = {
                let r = self.journal.lock();
                let own = r.self_announcements(me).map(|x| x.at).max();
                let h1 = r
                    .received
                    .iter()
                    .filter(|x| x.role == Role::Leader && x.kind == Kind::Probe && x.answered)
                    .map(|x| x.at)
                    .chain(r.announced.iter().copied())
                    .max();
                own.is_some_and(|own| h1.is_none_or(|h1| own > h1))
            };
            if leads_itself && nudged.is_none_or(|at| now >= at + NUDGE_EVERY) {
                nudged = Some(now);
                let _ = self.elect_from_low(&[], Style::Compact);
            }
        }
    }

    /// Waits until every monitor PROBE sent so far has ended (at most the longest an
    /// exchange takes), so that a judgement made now sees every sample taken before it.
    fn settle_pings(&self) -> Result<(), CheckError> {
        let now = self.now();
        self.sleep(Duration::from_millis(300))?;
        let longest = Duration::from_millis(500) + members::REPLY_WAIT + Duration::from_secs(1);
        self.wait(now + longest, |r| !r.pings_in_flight.iter().any(|sent| *sent <= now)).map(|_| ())
    }

    /// Junk of four kinds, then: does it still answer? Never a pickle that would run
    /// code in a Python peer: everything is built from plain values.
    fn garbage(&mut self, ctx: &mut Context) -> Result<(), CheckError> {
        let Some((peer, _)) = self.shared.peer() else { return Ok(()) };
        let elect = wire::encode(
            &self.shared.spoken().elect(&self.coordinator.members(), self.pid(Role::Low1), peer),
            Style::Compact,
        );
        for junk in garbage_messages(&elect) {
            let _ = self.shared.send_raw(GARBAGE, &junk);
        }
        let answers = judge::answers_probes(&self.journal.lock());
        ctx.garbage.note = if answers { "then PROBE".into() } else { "then ELECT, as it never answers PROBE".into() };
        let until = (self.now() + Duration::from_secs(10)).min(self.deadline);
        if self.now() >= until {
            ctx.garbage.untried = Some(OUT_OF_TIME);
        }
        for _ in 0..TRIAL_ATTEMPTS {
            if self.now() >= until {
                break;
            }
            let at = self.now();
            let outcome = if answers {
                self.shared.probe_peer(self.pid(Role::Low2))
            } else {
                self.elect_from_low(&[], Style::Compact)
            };
            let ok = matches!(outcome, Outcome::Ok(_));
            ctx.garbage.attempts.push((at, outcome));
            if ok {
                break;
            }
            self.sleep(Duration::from_millis(400))?;
        }
        Ok(())
    }

    /// ELECT of 60 members (the group, and made-up lower members at ports the checker
    /// holds), pickled as CPython would: over the 1024 bytes of a single `recv(1024)`.
    fn large_elect(&mut self, ctx: &mut Context) -> Result<(), CheckError> {
        let mut members = self.coordinator.members();
        let mut holders = Vec::new();
        let floor = self.assigned.days.saturating_sub(100).max(1);
        let mut su = 1_000_100;
        while members.len() < 60 {
            let Ok(l) = TcpListener::bind("127.0.0.1:0") else { break };
            let Ok(port) = l.local_addr().map(|a| a.port()) else { break };
            holders.push(l);
            su += 1;
            members.insert(ProcessId::new(floor + (su % 7), su), Addr::new("127.0.0.1", port));
        }
        let Some((peer, _)) = self.shared.peer() else { return Ok(()) };
        let value: Value = self.shared.spoken().elect(&members, self.pid(Role::Low1), peer);
        let bytes = wire::encode(&value, Style::CPython);
        ctx.large.note = format!("{} members, {} bytes", members.len(), bytes.len());
        let until = (self.now() + Duration::from_secs(10)).min(self.deadline);
        if self.now() >= until {
            ctx.large.untried = Some(OUT_OF_TIME);
        }
        let mut misses = 0;
        for _ in 0..TRIAL_ATTEMPTS {
            if self.now() >= until || misses >= 3 {
                break;
            }
            let at = self.now();
            let outcome = self.send_elect(LARGE_ELECT, &bytes);
            let (ok, refused) = (matches!(outcome, Outcome::Ok(_)), outcome.refused());
            ctx.large.attempts.push((at, outcome));
            if ok {
                break;
            }
            if !refused {
                misses += 1;
            }
            self.sleep(Duration::from_millis(500))?;
        }
        drop(holders);
        Ok(())
    }

    #[allow(dead_code)]
    fn group(&self) -> Members {
        self.coordinator.members()
    }
}

/// The peer died (exited, or printed a traceback) right after one of our messages.
#[derive(Debug)]
struct Death {
    at: At,
    /// The message of ours it died after, as the journal names it.
    cause: &'static str,
    /// "the peer exited 0.2 s after our COORDINATOR (sent at 12.3 s)"
    short: String,
    note: String,
}

/// How soon after one of our messages a death counts as that message's doing.
const DEATH_AFTER: Duration = Duration::from_secs(1);

/// Whether the peer died right after a message of ours: the message, and when. A
/// traceback is a death when the peer never answered again after it (its listener
/// thread died with it); one it went on answering after (socketserver prints one for
/// every exception in a handler) is not.
fn death(r: &journal::Records, tracebacks: &[At]) -> Option<Death> {
    let exit = r.peer_exit.as_ref().map(|(at, status)| (*at, format!("exited ({status})")));
    let answered_after =
        |t: At| r.pings.iter().any(|p| p.sent > t && matches!(p.outcome, Outcome::Ok(_) | Outcome::Late(_)));
    let asked_after = |t: At| r.pings.iter().any(|p| p.sent > t + Duration::from_millis(500));
    let trace = tracebacks
        .iter()
        .copied()
        .find(|t| !answered_after(*t) && (exit.is_some() || asked_after(*t)))
        .map(|at| (at, "printed a traceback".to_string()));
    let (at, what) = [trace, exit].into_iter().flatten().min_by_key(|(at, _)| *at)?;
    // Our latest message before it; a monitor PROBE only if nothing else was sent then
    // (one goes out every 250 ms, so it is always close to anything).
    let recent: Vec<&(At, &str)> = r.ours.iter().filter(|(t, _)| *t <= at && at - *t <= DEATH_AFTER).collect();
    let &&(sent, name) = recent
        .iter()
        .rev()
        .find(|(_, n)| *n != "PROBE")
        .or_else(|| recent.iter().rev().find(|(t, _)| at - *t <= Duration::from_millis(300)))?;
    let short = format!(
        "the peer {what} {:.1} s after our {name} (sent at {})",
        at.saturating_sub(sent).as_secs_f64(),
        judge::secs(sent)
    );
    let note = match (name, r.dialect) {
        (GARBAGE, _) => format!("{short}: a peer must survive bad input (survives_garbage fails)"),
        (LARGE_ELECT, _) => format!("{short}: a peer must survive an ELECT over 1024 bytes (large_elect fails)"),
        (_, Some(spoken)) => format!(
            "{short}, in the dialect it had shown ({spoken}): a message its peers may send killed it; checks \
             that would have failed only after that are marked skipped"
        ),
        (_, None) => format!(
            "{short}, before it had shown its dialect (the checker spoke the one its GCD's era suggests): checks \
             that would have failed only after that are marked skipped"
        ),
    };
    Some(Death { at, cause: name, short, note })
}

/// Junk of the four kinds the issue names, from the peer's own kind of ELECT: bytes that
/// are no pickle, the ELECT cut short, a one-element tuple, and a name no one knows.
pub fn garbage_messages(elect: &[u8]) -> Vec<Vec<u8>> {
    vec![
        b"GET / HTTP/1.0\r\n\r\n".to_vec(),
        elect[..elect.len() / 2].to_vec(),
        wire::encode(&Value::tuple([Value::str("ELECT")]), Style::Compact),
        wire::encode(&Value::tuple([Value::str("HELLO_THERE"), Value::Int(42)]), Style::Compact),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_rank_the_members_around_the_peer_as_the_scenarios_need() {
        for _ in 0..100 {
            let (peer, roles) = identities();
            peer.validate().unwrap();
            for (role, pid) in &roles {
                pid.validate().unwrap();
                let higher = !matches!(role, Role::Low1 | Role::Low2);
                assert_eq!(*pid > peer, higher, "{role:?}");
                // A day off in the peer's arithmetic changes no ranking.
                assert_eq!(*pid > ProcessId::new(peer.days + 1, peer.su_id), higher);
                assert_eq!(*pid > ProcessId::new(peer.days - 1, peer.su_id), higher);
            }
            let mut su: Vec<_> = roles.iter().map(|(_, p)| p.su_id).chain([peer.su_id]).collect();
            su.sort();
            su.dedup();
            assert_eq!(su.len(), 7, "one SU ID each: the GCD keeps one entry per SU ID");
        }
    }

    #[test]
    fn the_peers_port_is_free_and_outside_the_ephemeral_ranges() {
        for _ in 0..20 {
            let port = free_port().unwrap();
            assert!((20_000..32_000).contains(&port), "{port}");
            // Free: the peer can bind it (the kernel would not hand it to port 0 meanwhile).
            drop(TcpListener::bind(("127.0.0.1", port)).unwrap());
        }
    }

    #[test]
    fn a_death_right_after_our_message_is_named_and_a_traceback_it_survived_is_none() {
        let ms = Duration::from_millis;
        let mut r = journal::Records::default();
        for t in (0..10_000).step_by(250) {
            let outcome = if t < 5_000 { Outcome::Ok(ms(1)) } else { Outcome::Refused };
            r.pings.push(Ping { sent: ms(t), outcome });
            r.ours.push((ms(t), "PROBE"));
        }
        r.ours.push((ms(4_800), "COORDINATOR"));
        // It printed a traceback at 4.9 s and never answered again: that is its death,
        // after our COORDINATOR, not after the monitor's PROBE at 4.75 s.
        let d = death(&r, &[ms(4_900)]).unwrap();
        assert_eq!((d.at, d.cause), (ms(4_900), "COORDINATOR"));
        assert!(
            d.short.starts_with("the peer printed a traceback 0.1 s after our COORDINATOR (sent at 4.8 s)"),
            "{}",
            d.short
        );
        // A traceback it went on answering after is no death.
        assert!(death(&r, &[ms(2_000)]).is_none());
        // An exit long after any message of ours is said, but blames none.
        r.peer_exit = Some((ms(9_000), "exit status: 1".into()));
        r.ours.retain(|(t, _)| *t < ms(5_000));
        assert!(death(&r, &[]).is_none());
        r.ours.push((ms(8_900), GARBAGE));
        let d = death(&r, &[]).unwrap();
        assert_eq!(d.cause, GARBAGE);
        assert!(d.note.contains("survives_garbage fails"), "{}", d.note);
    }

    #[test]
    fn garbage_never_asks_python_to_run_code() {
        let members: Members = [(ProcessId::new(5, 1_000_005), Addr::new("127.0.0.1", 9))].into_iter().collect();
        let spoken = dialect::Spoken::STANDARD;
        let elect = wire::encode(
            &spoken.elect(&members, ProcessId::new(4, 1_000_004), ProcessId::new(5, 1_000_005)),
            Style::Compact,
        );
        let junk = garbage_messages(&elect);
        assert_eq!(junk.len(), 4);
        // Our decoder refuses every opcode that imports or calls (GLOBAL, REDUCE, ...):
        // whatever it reads whole carries plain values only, and so does any prefix of it.
        assert!(wire::decode(&elect).is_ok());
        assert!(elect.starts_with(&junk[1]) && junk[1].len() < elect.len(), "the truncated ELECT");
        assert!(wire::decode(&junk[1]).unwrap_err().is_truncated());
        assert_eq!(wire::decode(&junk[2]).unwrap(), Value::tuple([Value::str("ELECT")]));
        assert_eq!(wire::decode(&junk[3]).unwrap(), Value::tuple([Value::str("HELLO_THERE"), Value::Int(42)]));
        assert!(wire::decode(&junk[0]).is_err(), "not a pickle at all");
    }
}
