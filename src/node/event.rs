//! What the node reports ([`Event`]) and why it elects or asks the GCD again ([`Why`],
//! [`RegisterWhy`]): each written for a person by `report::events`, and as JSON.

use super::{Failure, FeignMode};
use crate::identity::ProcessId;
use crate::membership::Addr;
use serde::{Serialize, Serializer};
use std::time::Duration;

/// What happened, in the protocol's words. Serialized (by `report::events`) as the
/// fields of a JSON object, `"event"` naming the kind in snake_case, the fields in the
/// order declared here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Joined {
        members: usize,
    },
    /// `asking` are the members sent ELECT at once; a paced election sends the other
    /// `higher` ones round by round ([`Event::ElectionRound`]) until it is decided.
    ElectionStarted {
        election: u64,
        reason: Why,
        asking: Vec<ProcessId>,
        higher: usize,
    },
    GotIt {
        from: ProcessId,
    },
    ElectFailed {
        to: ProcessId,
        reason: Failure,
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
    ProbeOk {
        leader: ProcessId,
    },
    ProbeFailed {
        leader: ProcessId,
        reason: Failure,
    },
    /// A PROBE to `former`, the higher leader we followed before the lower `leader`
    /// announced itself, failed: we follow `leader` now; `again` when it only timed out
    /// and we will PROBE `former` again.
    FormerLeaderProbeFailed {
        former: ProcessId,
        leader: Option<ProcessId>,
        reason: Failure,
        again: bool,
    },
    /// Feigning failure now, for `lasting`.
    Failed {
        mode: FeignMode,
        #[serde(rename = "ms", serialize_with = "millis")]
        lasting: Duration,
    },
    Recovered,
    /// Members learned mid-election were sent ELECT in it too.
    ElectionWidened {
        election: u64,
        asking: Vec<ProcessId>,
    },
    /// A paced election sent its next round of ELECTs (highest first).
    ElectionRound {
        election: u64,
        asking: Vec<ProcessId>,
    },
    /// `leader` announced itself right after the higher `following` did: taken as an
    /// announcement that crossed `following`'s in flight, and ignored.
    LateAnnouncement {
        leader: ProcessId,
        following: ProcessId,
    },
    /// Election `election` could ask nobody, but `leader`, above us, announced itself
    /// within the leader timeout and the GCD does not list where it listens: we wait for
    /// its announcement (as after a GOT_IT) instead of winning against it.
    WaitingForLeader {
        election: u64,
        leader: ProcessId,
    },
    /// As leader, we sent I_AM_LEADER to members that had not heard it.
    AnnouncedTo {
        members: Vec<ProcessId>,
    },
    /// Another process claims our identity: `other` has our SU ID, or listens at our
    /// address, as `source` (the GCD, or a peer's message) showed. Told once per id.
    IdentityClash {
        other: ProcessId,
        clash: Clash,
        #[serde(skip_serializing_if = "Option::is_none")]
        addr: Option<Addr>,
        source: String,
    },
    /// Our port was taken while we were down: we listen at `to` now, and registered it.
    Moved {
        from: Addr,
        to: Addr,
    },
    /// The leader's check: the GCD listed `members`, of which `learned` were new to us;
    /// `forgot` members we know were missing from its list (it restarted). We elect
    /// because of `electing_for` (a member above us that registered since our last
    /// check), or sent I_AM_LEADER to `announced_to` (those below us that did).
    LeaderChecked {
        members: usize,
        learned: Vec<ProcessId>,
        forgot: usize,
        electing_for: Option<ProcessId>,
        announced_to: Vec<ProcessId>,
    },
    /// The leader's check got no answer from the GCD; the next check asks again.
    LeaderCheckFailed {
        reason: String,
    },
    /// The node stopped (reported by the runtime, never by the state machine).
    Stopped,
}

/// Why an election starts (or is deferred, or waits for the GCD's answer): the
/// `"reason"` of [`Event::ElectionStarted`], written as its [`Display`](std::fmt::Display)
/// text; [`Why::kind`] names the rule without the ids, for counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// The GCD answered our first registration.
    JoinedGroup,
    /// An ELECT arrived while idle (`sender` when its message names one).
    ElectFrom { sender: Option<ProcessId> },
    /// ELECTs arrived in the window after an election ended (see `SETTLE_WINDOW`).
    WhileSettling,
    /// `leader`, below us, announced itself: we take over.
    AnnouncerBelow { leader: ProcessId },
    /// `leader` announced itself, below the `higher` leader we followed, which answered
    /// a PROBE.
    AboveAnnouncer { leader: ProcessId, higher: ProcessId },
    /// Our PROBE to `leader` failed.
    ProbeFailed { leader: ProcessId },
    /// A feigned failure ended.
    Recovered,
    /// A GOT_IT came, then no I_AM_LEADER within the leader timeout.
    NoLeaderAfterGotIt,
    /// We followed `leader`, and the GCD does not list it.
    LeaderUnknownToGcd { leader: ProcessId },
    /// The GCD lists `top`, above the `leader` we follow (or ourselves).
    GcdListsAbove { top: ProcessId, leader: ProcessId },
    /// `leader` took over while we led, and the GCD had forgotten members we know.
    TookOver { leader: ProcessId },
    /// The leader's check: the GCD lists `top` above us.
    CheckListsAbove { top: ProcessId },
    /// `other`, another process with our SU ID, ranks above the leader we follow.
    SuIdTwinAbove { other: ProcessId },
    /// The GCD lists `listed`, and `kept` (same SU ID, another address it no longer
    /// lists) is alive as far as we know: two processes of one student.
    SharedSuId { kept: ProcessId, listed: ProcessId },
}

impl Why {
    /// The rule, without the ids: the same for every election started by it.
    pub fn kind(&self) -> &'static str {
        match self {
            Why::JoinedGroup => "joined",
            Why::ElectFrom { .. } => "elect",
            Why::WhileSettling => "while_settling",
            Why::AnnouncerBelow { .. } => "announcer_below",
            Why::AboveAnnouncer { .. } => "above_announcer",
            Why::ProbeFailed { .. } => "probe_failed",
            Why::Recovered => "recovered",
            Why::NoLeaderAfterGotIt => "no_leader_after_got_it",
            Why::LeaderUnknownToGcd { .. } => "leader_unknown_to_gcd",
            Why::GcdListsAbove { .. } => "gcd_lists_above",
            Why::TookOver { .. } => "took_over",
            Why::CheckListsAbove { .. } => "check_lists_above",
            Why::SuIdTwinAbove { .. } => "su_id_twin_above",
            Why::SharedSuId { .. } => "shared_su_id",
        }
    }
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::JoinedGroup => f.write_str("joined the group"),
            Why::ElectFrom { sender: Some(sender) } => write!(f, "ELECT from {sender}"),
            Why::ElectFrom { sender: None } => f.write_str("ELECT from a peer"),
            Why::WhileSettling => f.write_str("ELECTs arrived while settling"),
            Why::AnnouncerBelow { leader } => write!(f, "{leader} announced itself but ranks below us"),
            Why::AboveAnnouncer { leader, higher } => write!(f, "{leader} announced itself but {higher} ranks higher"),
            Why::ProbeFailed { leader } => write!(f, "leader {leader} failed a PROBE"),
            Why::Recovered => f.write_str("recovered from a feigned failure"),
            Why::NoLeaderAfterGotIt => f.write_str("no I_AM_LEADER came after GOT_IT"),
            Why::LeaderUnknownToGcd { leader } => write!(f, "leader {leader} is not a member the GCD knows"),
            Why::GcdListsAbove { top, leader } => write!(f, "the GCD lists {top}, above our leader {leader}"),
            Why::TookOver { leader } => write!(f, "{leader} took over while we led and may not know our members"),
            Why::CheckListsAbove { top } => write!(f, "leader's check: the GCD lists {top} above us"),
            Why::SuIdTwinAbove { other } => write!(f, "{other}, another process with our SU ID, ranks above us"),
            Why::SharedSuId { kept, listed } => {
                write!(f, "{kept} and {listed} share an SU ID, and neither may know of the other")
            }
        }
    }
}

/// Written as its words, as the events' `"reason"`.
impl Serialize for Why {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Why the node asks the GCD for the members again ([`Action::Register`](super::Action::Register)); the log
/// shows the [`Display`](std::fmt::Display) text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterWhy {
    /// Our port was taken while we were down: we listen on another.
    Moved,
    /// We follow `leader` and don't know where it listens.
    LeaderUnknown { leader: ProcessId },
    /// Our PROBE to `leader` failed: who is left, before electing.
    ProbeFailed { leader: ProcessId },
    /// A feigned failure ended.
    Recovered,
    /// The GCD did not answer the last time (see `REGISTER_RETRY`).
    Retry,
    /// A GOT_IT came, then no I_AM_LEADER: who is really in the group.
    NoLeaderAfterGotIt,
    /// The GCD did not list `leader`; asked again after its leader's check.
    AskAgain { leader: ProcessId },
    /// The leader's periodic check.
    LeaderCheck,
    /// A follower's periodic check, rarer the larger the group.
    FollowerCheck,
    /// `leader` took over while we led.
    Overtaken { leader: ProcessId },
}

impl std::fmt::Display for RegisterWhy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegisterWhy::Moved => f.write_str("we listen on another port now"),
            RegisterWhy::LeaderUnknown { leader } => write!(f, "leader {leader} is not in our members"),
            RegisterWhy::ProbeFailed { leader } => write!(f, "the PROBE to leader {leader} failed"),
            RegisterWhy::Recovered => f.write_str("recovered from a feigned failure"),
            RegisterWhy::Retry => f.write_str("the GCD did not answer the last time"),
            RegisterWhy::NoLeaderAfterGotIt => f.write_str("a GOT_IT came but no I_AM_LEADER"),
            RegisterWhy::AskAgain { leader } => {
                write!(f, "leader {leader} was not in the GCD's list; asking again after its check")
            }
            RegisterWhy::LeaderCheck => f.write_str("leader's check: asking who the GCD lists now"),
            RegisterWhy::FollowerCheck => f.write_str("follower's check: asking who the GCD lists now"),
            RegisterWhy::Overtaken { leader } => write!(f, "leader {leader} took over while we led"),
        }
    }
}

/// A duration as whole milliseconds, as the events write it.
fn millis<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u128(d.as_millis())
}

/// How another process's identity collides with ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Clash {
    /// Another process id with our SU ID: the GCD keeps one per SU ID.
    SuId,
    /// Our very process id, listening elsewhere.
    SameId,
    /// Another process id listening at our address.
    Address,
}
