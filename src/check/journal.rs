//! What the checker saw, with times: the peer's requests to the coordinator, every
//! message it sent to a scripted member, and how each connection the checker made to
//! it ended. Threads append; the driver waits on it; the judges read it afterwards.
//! Times are [`At`]: elapsed since the check began.

use crate::identity::ProcessId;
use crate::membership::Addr;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub type At = Duration;

/// The scripted members, by role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Lower members that answer.
    Low1,
    Low2,
    /// The higher member that answers GOT_IT and announces itself: the peer's leader.
    Leader,
    /// A higher member that accepts ELECT and never answers.
    Silent,
    /// A higher member the GCD lists but nothing listens for: refused connections.
    Dead,
    /// A higher member the GCD never heard of, named only in the checker's ELECT.
    Unknown,
}

impl Role {
    pub fn label(self) -> &'static str {
        match self {
            Role::Low1 => "L1",
            Role::Low2 => "L2",
            Role::Leader => "H1",
            Role::Silent => "S",
            Role::Dead => "D",
            Role::Unknown => "X",
        }
    }
}

/// How a connection the checker made to the peer ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// GOT_IT within the second the checks allow.
    Ok(Duration),
    /// GOT_IT, but later than that.
    Late(Duration),
    /// Refused, reset or not accepted: its listener is closed.
    Refused,
    /// Accepted, then closed without a reply.
    Dropped,
    /// Accepted, and no reply before the checker gave up.
    NoReply,
    /// Some other reply.
    Wrong(String),
}

impl Outcome {
    /// Whether the peer was plainly not listening.
    pub fn refused(&self) -> bool {
        matches!(self, Outcome::Refused)
    }

    pub fn describe(&self) -> String {
        match self {
            Outcome::Ok(d) => format!("GOT_IT in {} ms", d.as_millis()),
            Outcome::Late(d) => format!("GOT_IT only after {} ms", d.as_millis()),
            Outcome::Refused => "refused".into(),
            Outcome::Dropped => "closed without a reply".into(),
            Outcome::NoReply => "no reply".into(),
            Outcome::Wrong(what) => format!("answered {what}"),
        }
    }
}

/// A request the peer sent the checker's coordinator.
#[derive(Clone, Debug)]
pub struct GcdRecord {
    pub at: At,
    /// The answer: `Ok` with who registered where, or the coordinator's refusal.
    pub result: Result<(String, ProcessId, Addr), String>,
}

/// What a message the peer sent to a scripted member was.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Elect,
    Leader(ProcessId),
    Probe,
    Other(String),
}

/// A message the peer sent to a scripted member.
#[derive(Clone, Debug)]
pub struct Received {
    pub at: At,
    pub role: Role,
    pub kind: Kind,
    /// The member answered GOT_IT.
    pub answered: bool,
}

/// A PROBE of the monitor, which samples whether the peer is reachable.
#[derive(Clone, Debug)]
pub struct Ping {
    pub sent: At,
    pub outcome: Outcome,
}

/// A PROBE sent while the peer's ELECT to a silent member was pending.
#[derive(Clone, Debug)]
pub struct PendingProbe {
    pub elect_at: At,
    /// `None` until the exchange ended.
    pub outcome: Option<Outcome>,
    /// The ELECT's connection was still open when the answer came.
    pub pending_at_reply: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Records {
    pub gcd: Vec<GcdRecord>,
    pub received: Vec<Received>,
    /// Held (silent) connections the peer closed: connection number, when.
    pub closed: Vec<(u64, At)>,
    pub pings: Vec<Ping>,
    /// When each monitor PROBE still under way was sent (it is in `pings` once it ends).
    pub pings_in_flight: Vec<At>,
    pub not_blocking: Vec<PendingProbe>,
    /// I_AM_LEADER the leader member delivered to the peer.
    pub announced: Vec<At>,
    /// When the checker sent the peer an ELECT of its own (it starts elections).
    pub our_elects: Vec<At>,
    /// When the leader member stopped answering (the leader "failed"), and when it
    /// answered again (`At::MAX` while it still drops everything).
    pub leader_down: Vec<(At, At)>,
    /// The first message shape that told the peer's dialect.
    pub dialect: Option<super::dialect::Spoken>,
    /// Every message the checker sent the peer, by name: to tell what it was answering
    /// when it died.
    pub ours: Vec<(At, &'static str)>,
    /// When the peer's process was found ended, and how.
    pub peer_exit: Option<(At, String)>,
    /// The reply form the peer itself uses, once seen: the form it expects back.
    pub reply_form: Option<super::dialect::ReplyForm>,
    /// `('OK', ...)` messages the peer sent a member on a new connection (the
    /// three-tuple peers' answer to an ELECTION), by role.
    pub oks: Vec<(At, Role)>,
}

impl Records {
    /// The records as they stood at `at`: what came later is left out.
    pub fn until(&self, at: At) -> Records {
        let mut r = self.clone();
        r.gcd.retain(|g| g.at < at);
        r.received.retain(|x| x.at < at);
        r.closed.retain(|(_, c)| *c < at);
        r.pings.retain(|p| p.sent < at);
        r.not_blocking.retain(|p| p.elect_at < at);
        r.announced.retain(|a| *a < at);
        r.our_elects.retain(|a| *a < at);
        r.leader_down.retain(|(a, _)| *a < at);
        r.ours.retain(|(a, _)| *a < at);
        r.oks.retain(|(a, _)| *a < at);
        r
    }

    /// When the leader member first stopped answering.
    pub fn leader_failed(&self) -> Option<At> {
        self.leader_down.first().map(|(a, _)| *a)
    }

    /// Whether the leader member was dropping everything at `at`.
    pub fn leader_down_at(&self, at: At) -> bool {
        self.leader_down.iter().any(|(a, b)| *a <= at && at < *b)
    }

    /// Messages of `kind`'s variant the peer sent, in time order.
    pub fn elects(&self) -> impl Iterator<Item = &Received> {
        self.received.iter().filter(|r| r.kind == Kind::Elect)
    }

    /// I_AM_LEADER naming `me` (the peer announcing itself).
    pub fn self_announcements(&self, me: ProcessId) -> impl Iterator<Item = &Received> {
        self.received.iter().filter(move |r| r.kind == Kind::Leader(me))
    }
}

pub struct Journal {
    epoch: Instant,
    records: Mutex<Records>,
    changed: Condvar,
}

impl Journal {
    pub fn new(epoch: Instant) -> Self {
        Journal { epoch, records: Mutex::new(Records::default()), changed: Condvar::new() }
    }

    pub fn now(&self) -> At {
        self.epoch.elapsed()
    }

    /// `instant` as a time of this journal.
    pub fn at(&self, instant: Instant) -> At {
        instant.saturating_duration_since(self.epoch)
    }

    /// Notes a message the checker sent the peer.
    pub fn sent(&self, name: &'static str) {
        let at = self.now();
        self.update(|r| r.ours.push((at, name)));
    }

    pub fn lock(&self) -> MutexGuard<'_, Records> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the records and wakes whoever waits on them. Threads take their times
    /// before they take the lock, so records are put back in time order here.
    pub fn update<T>(&self, f: impl FnOnce(&mut Records) -> T) -> T {
        let mut records = self.lock();
        let out = f(&mut records);
        records.gcd.sort_by_key(|g| g.at);
        records.received.sort_by_key(|x| x.at);
        records.pings.sort_by_key(|p| p.sent);
        records.announced.sort();
        drop(records);
        self.changed.notify_all();
        out
    }

    /// Waits until `cond` holds or the time is `until`; returns whether it held.
    pub fn wait_until(&self, until: At, mut cond: impl FnMut(&Records) -> bool) -> bool {
        let mut guard = self.lock();
        loop {
            if cond(&guard) {
                return true;
            }
            let now = self.now();
            if now >= until {
                return false;
            }
            // Wake at least every 100 ms: an interrupt is a flag, not a record.
            let wait = (until - now).min(Duration::from_millis(100));
            guard = self.changed.wait_timeout(guard, wait).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}
