//! The election's bookkeeping (the rules are in `node`): where the node is in the
//! algorithm, the number of its latest election, the paced ELECTs still to send, the
//! election deferred while settling, and the one due once the GCD has answered. Numbers
//! only grow, so a timer or reply that outlived an abandoned election is stale.

use super::{Phase, Time, Why};
use crate::membership::Member;

#[derive(Clone, Debug)]
pub(super) struct Election {
    pub(super) phase: Phase,
    /// Number of the latest election we started.
    pub(super) number: u64,
    /// When the last election ended for us (we won, or a leader announced itself).
    pub(super) settled_at: Option<Time>,
    /// The deferred election pending: its number and reason.
    pub(super) deferred: Option<(u64, Why)>,
    pub(super) deferrals: u64,
    /// The current election's higher members not sent ELECT yet, lowest first (the
    /// next to send is the last), and how many the next pace timer sends.
    pub(super) unsent: Vec<Member>,
    pub(super) batch: usize,
    /// An election to start once the GCD has answered (after a failed probe or a
    /// recovery), with its reason.
    pub(super) after_registration: Option<Why>,
    /// The election in `after_registration` is paced (a failed PROBE's).
    pub(super) pace_after_registration: bool,
    /// The current election was started by a lower member's ELECT (see
    /// `Node::unreachable_live_leader`).
    pub(super) asked_from_below: bool,
    /// The GCD was asked where our leader listens before an election (see `Node::elect`).
    pub(super) asked_before_electing: bool,
    /// Higher members whose ELECT only timed out in the current election: maybe just
    /// slow. After a win they are asked again (see `Node::recheck`).
    pub(super) timed_out: Vec<Member>,
    /// The higher members to ask again after our win, the attempts made, and the
    /// number of the timer armed.
    pub(super) recheck: Option<(Vec<Member>, u32)>,
    pub(super) recheck_timer: u64,
}

impl Default for Election {
    fn default() -> Self {
        Election {
            phase: Phase::Idle,
            number: 0,
            settled_at: None,
            deferred: None,
            deferrals: 0,
            unsent: Vec::new(),
            batch: 1,
            after_registration: None,
            pace_after_registration: false,
            asked_from_below: false,
            asked_before_electing: false,
            timed_out: Vec::new(),
            recheck: None,
            recheck_timer: 0,
        }
    }
}

impl Election {
    /// Forgets the election under way, the deferred one, the one due after the GCD's
    /// answer and the ELECTs not sent yet (a feigned failure abandons them); the numbers
    /// stay, so their late timers and replies are stale.
    pub(super) fn abandon(&mut self) {
        self.phase = Phase::Idle;
        self.deferred = None;
        self.unsent.clear();
        self.after_registration = None;
        self.pace_after_registration = false;
        self.asked_before_electing = false;
        self.timed_out.clear();
        self.recheck = None;
    }
}
