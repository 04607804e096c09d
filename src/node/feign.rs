//! Feigned failure's bookkeeping (the rules are in `node`; when and how long come from
//! `Settings::feign`): whether the node is down, and the number of the latest failure
//! or recovery timer, so that one armed before the setting changed is stale.

#[derive(Clone, Debug, Default)]
pub(super) struct Feigning {
    /// Feigning failure: deaf to everything but the recovery timer.
    pub(super) down: bool,
    /// Number of the latest failure or recovery timer armed (a lower one is stale).
    timer: u64,
}

impl Feigning {
    /// Arms the next failure timer and returns its number.
    pub(super) fn arm(&mut self) -> u64 {
        self.timer += 1;
        self.timer
    }

    /// Makes the armed failure timer stale (feigning was turned off).
    pub(super) fn stale(&mut self) {
        self.timer += 1;
    }

    /// Goes down; returns the number of the recovery timer to arm.
    pub(super) fn go_down(&mut self) -> u64 {
        self.down = true;
        self.timer += 1;
        self.timer
    }

    pub(super) fn recover(&mut self) {
        self.down = false;
    }

    /// Whether failure timer `n` is the one armed, and we are up to fail.
    pub(super) fn is_failure(&self, n: u64) -> bool {
        n == self.timer && !self.down
    }

    /// Whether recovery timer `n` ends the failure under way.
    pub(super) fn is_recovery(&self, n: u64) -> bool {
        n == self.timer && self.down
    }
}
