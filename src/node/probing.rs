//! The PROBE's bookkeeping (the rules are in `node`): the timer armed for the next
//! PROBE, the PROBE in flight, and the one sent to check a higher leader after a lower
//! member announced itself. Numbers only grow, so a timer or reply that outlived an
//! abandoned PROBE carries a stale number and changes nothing.

use super::Why;
use crate::identity::ProcessId;

#[derive(Clone, Debug, Default)]
pub(super) struct Probing {
    /// Number of the latest probe timer armed, and whether it is still pending.
    timer: u64,
    pub(super) armed: bool,
    /// The probe in flight: its number and the member it asks.
    pub(super) in_flight: Option<(u64, ProcessId)>,
    /// Number of the latest PROBE sent.
    sent: u64,
    /// A lower member announced itself while we followed a higher one: the PROBE we
    /// sent the higher one to see whether it is alive, and why we elect if it is.
    pub(super) verifying: Option<(u64, Why)>,
    /// A higher former leader whose verifying PROBE timed out: who, why we would elect,
    /// the attempts made, and the number of the timer armed to ask again.
    pub(super) suspect: Option<(ProcessId, Why, u32)>,
    pub(super) suspect_timer: u64,
}

impl Probing {
    /// Arms the next probe timer and returns its number.
    pub(super) fn arm(&mut self) -> u64 {
        self.timer += 1;
        self.armed = true;
        self.timer
    }

    /// Whether probe timer `n` is the one armed and still pending.
    pub(super) fn is_due(&self, n: u64) -> bool {
        n == self.timer && self.armed
    }

    /// Records a PROBE sent to `to` and returns its number.
    pub(super) fn send(&mut self, to: ProcessId) -> u64 {
        self.sent += 1;
        self.in_flight = Some((self.sent, to));
        self.sent
    }

    /// Forgets the pending timer, the PROBE in flight and what it was verifying (a
    /// feigned failure abandons them); the numbers stay, so their late arrivals are stale.
    pub(super) fn abandon(&mut self) {
        self.armed = false;
        self.in_flight = None;
        self.verifying = None;
        self.suspect = None;
    }
}
