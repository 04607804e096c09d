//! The leader's periodic check of the GCD (the rules are in `node`): its timer, the check's
//! registration in flight, a leader the GCD did not list, the higher leader that took over
//! while we led, and whom the GCD listed last; and the follower's rarer check.

use crate::identity::ProcessId;

/// The leader's periodic check of the GCD (see the module's rules).
#[derive(Clone, Debug, Default)]
pub(super) struct LeaderCheck {
    /// Number of the latest check timer armed, and whether it is still pending.
    pub(super) timer: u64,
    pub(super) armed: bool,
    /// A check's registration is in flight: its answer is merged into the members we
    /// know, not taken whole, since a restarted GCD lists only part of the group.
    pub(super) asking: bool,
    /// A leader the GCD did not list, and how often we found it so (see `doubt_leader`);
    /// the number of the latest timer to ask about it again.
    pub(super) unlisted: Option<(ProcessId, u8)>,
    pub(super) doubt_timer: u64,
    /// The higher leader that took over while we led, whose address the GCD is being
    /// asked for: we elect once it is known (see `overtaken`).
    pub(super) overtaken_by: Option<ProcessId>,
    /// We sent that leader an ELECT since it took over: our members reached it.
    pub(super) told_overtaker: bool,
    /// Whom the GCD listed at our last check in this term as leader.
    pub(super) last_listed: Option<Vec<ProcessId>>,
    /// Number of the latest follower's check timer armed, and whether it is pending.
    pub(super) follower_timer: u64,
    pub(super) follower_armed: bool,
    /// A follower's check is in flight: if the GCD does not answer, the next check
    /// asks again (no retry).
    pub(super) follower_asking: bool,
}

impl LeaderCheck {
    /// Forgets the pending check timer and the check's registration in flight (a feigned
    /// failure abandons them); the timer number stays, so a late timer is stale.
    pub(super) fn abandon(&mut self) {
        self.armed = false;
        self.asking = false;
        self.follower_armed = false;
        self.follower_asking = false;
    }
}
