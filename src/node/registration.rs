//! Asking the GCD again (the rules are in `node`): the retry timer armed after the GCD
//! failed to answer, and the look-up of an unknown leader's address in flight. Retry
//! numbers only grow, so a timer that outlived an abandoned retry changes nothing.

use super::{Action, Time, Timer, REGISTER_RETRY};

#[derive(Clone, Debug, Default)]
pub(super) struct Registration {
    /// The retry armed, by number, after the GCD failed to answer.
    retry: Option<u64>,
    retries: u64,
    /// We follow a leader whose address we don't know: the GCD is asked at the next
    /// PROBE time, not at once (see `Node::send_probe`); true while that is in flight.
    pub(super) looking_up: bool,
}

impl Registration {
    /// Arms the next retry and returns the timer that fires it.
    pub(super) fn arm_retry(&mut self, now: Time) -> Action {
        self.retries += 1;
        self.retry = Some(self.retries);
        Action::SetTimer { at: now + REGISTER_RETRY, timer: Timer::Reregister(self.retries) }
    }

    /// Whether a retry is armed and still pending.
    pub(super) fn retry_pending(&self) -> bool {
        self.retry.is_some()
    }

    /// Whether retry timer `n` is the one pending; if so it is used up.
    pub(super) fn take_retry(&mut self, n: u64) -> bool {
        let due = self.retry == Some(n);
        if due {
            self.retry = None;
        }
        due
    }

    /// The GCD answered: no retry is needed.
    pub(super) fn answered(&mut self) {
        self.retry = None;
    }

    /// Forgets the pending retry and the look-up in flight (a feigned failure abandons
    /// them); the retry number stays, so a late timer is stale.
    pub(super) fn abandon(&mut self) {
        self.retry = None;
        self.looking_up = false;
    }
}
