//! The node's boundary: the facts the runtime feeds it ([`Input`], with how an ELECT or
//! PROBE ended as an [`Outcome`]) and the requests it hands back ([`Action`]).

use super::{Event, RegisterWhy, Time};
use crate::identity::ProcessId;
use crate::membership::{Addr, Members};
use serde::{Serialize, Serializer};
use std::time::Duration;

/// How an ELECT or PROBE we sent ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    GotIt,
    /// Refused, unreachable, silent past the socket timeout, an empty or wrong reply.
    Failed(Failure),
}

/// Why an ELECT or PROBE we sent got no GOT_IT. The node treats every kind alike; the
/// kinds are for the runtime (a silent close makes it try the wrapped dialect) and for
/// the log, which shows the [`Display`](std::fmt::Display) text, also the events' `"reason"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Nothing listens at `addr`: the connection was refused.
    Refused { addr: Addr },
    /// No connection within `after` (the socket timeout).
    ConnectTimeout { after: Duration },
    /// Connecting to `addr` failed otherwise (`error` is the system's word).
    Connect { addr: Addr, error: String },
    /// Connected, but writing the message failed.
    Send(String),
    /// The peer read the message and closed the connection without a byte.
    ClosedSilently,
    /// No reply within `after` (the socket timeout).
    NoReply { after: Duration },
    /// A reply came, but not GOT_IT (how it read, in Rust's debug form).
    WrongReply(String),
    /// A reply came that does not decode as a pickle.
    Unreadable(String),
    /// The reply broke off or was too large (the framing error's words).
    Frame(String),
    /// The runtime could not run the exchange at all (no thread could be started: too
    /// many sends in flight and waiting, or the node is stopping).
    NotRun(String),
}

impl Failure {
    /// Whether the failure only shows the peer slow, not down: a timeout, unlike a
    /// refused connection (nothing listens), may be a busy machine.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Failure::ConnectTimeout { .. } | Failure::NoReply { .. })
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Refused { addr } => write!(f, "refused: nothing listens at {addr}"),
            Failure::ConnectTimeout { after } => write!(f, "no connection within {}s", after.as_secs_f64()),
            Failure::Connect { addr, error } => write!(f, "cannot connect to {addr}: {error}"),
            Failure::Send(error) => write!(f, "sending failed: {error}"),
            Failure::ClosedSilently => f.write_str("closed the connection without a reply"),
            Failure::NoReply { after } => write!(f, "no reply within {}s", after.as_secs_f64()),
            Failure::WrongReply(reply) => write!(f, "answered {reply} instead of GOT_IT"),
            Failure::Unreadable(error) => write!(f, "unreadable reply: {error}"),
            Failure::Frame(words) | Failure::NotRun(words) => f.write_str(words),
        }
    }
}

/// Written as its words, as the events' `"reason"`.
impl Serialize for Failure {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A timer the node asked for; it comes back as [`Input::Timer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// Election `n` has waited long enough for GOT_IT.
    Election(u64),
    /// Election `n` got a GOT_IT and has waited long enough for I_AM_LEADER.
    Leader(u64),
    /// Time for probe `n`.
    Probe(u64),
    /// Time to feign failure number `n`.
    Fail(u64),
    /// Failure number `n` is over.
    Recover(u64),
    /// Deferred election `n`: ELECTs arrived while the node was settling.
    Deferred(u64),
    /// Try registration number `n` again: the GCD did not answer the last attempt.
    Reregister(u64),
    /// Time for the leader's check number `n`.
    LeaderCheck(u64),
    /// Time for the follower's check number `n` (see `Node::keep_checking`).
    FollowerCheck(u64),
    /// Time to ask the GCD again about a leader it did not list (see `doubt_leader`).
    Doubt(u64),
    /// Election `n` sends its next ELECTs (see `ELECT_PACE`).
    Pace(u64),
    /// Time to PROBE again a higher former leader that timed out (see `SUSPECT_RETRIES`).
    Suspect(u64),
    /// Time to ELECT again the higher members that only timed out in the election we
    /// won (see `SUSPECT_RETRIES`).
    Recheck(u64),
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
    /// A second copy of an I_AM_LEADER we already had (a bully-node's one-time wrapped
    /// copy) names where `leader` listens: only that is news.
    LeaderAddress {
        leader: ProcessId,
        addr: Addr,
    },
    /// The ELECT we sent to `to` in election `election` ended.
    ElectReply {
        election: u64,
        to: ProcessId,
        outcome: Outcome,
    },
    /// The PROBE numbered `probe` ended.
    ProbeReply {
        probe: u64,
        outcome: Outcome,
    },
    Timer(Timer),
    /// We listen at `addr` now (our port was taken while we were down): register it.
    Moved {
        addr: Addr,
    },
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
    /// Send PROBE to `to` at `addr` from a thread of its own and report how it ended
    /// as [`Input::ProbeReply`] with this number.
    SendProbe { probe: u64, to: ProcessId, addr: Addr },
    /// Register with the GCD again and report [`Input::Registered`] or
    /// [`Input::RegistrationFailed`].
    Register { reason: RegisterWhy },
    /// Change what the listener does.
    Listen(Listening),
    /// Something a person or a tool should know about.
    Event(Event),
}

/// What the listener should do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listening {
    /// Accept and answer (on the same address as before).
    Open,
    /// Closed: connections are refused.
    Closed,
    /// Accept connections but drop their messages without a reply.
    Ignoring,
}
