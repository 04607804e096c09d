//! What a node is told rather than learns: its timeouts, the PROBE and leader's-check
//! periods, and when and how it feigns failure.

use rand::rngs::StdRng;
use rand::Rng;
use serde::Serialize;
use std::time::Duration;

/// The node's timeouts, each validated positive at start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// How long an election waits for any GOT_IT before declaring victory.
    pub elect: Duration,
    /// How long to wait for I_AM_LEADER after a GOT_IT before electing again.
    pub leader: Duration,
}

impl Default for Timeouts {
    /// Close to what classmates' peers use (PROTOCOL.md): 2 s for GOT_IT, 4 s for
    /// I_AM_LEADER.
    fn default() -> Self {
        Timeouts { elect: Duration::from_secs(2), leader: Duration::from_secs(4) }
    }
}

/// A range of durations to draw from uniformly, `min..=max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub min: Duration,
    pub max: Duration,
}

impl Span {
    pub fn new(min: Duration, max: Duration) -> Self {
        Span { min, max }
    }

    pub(super) fn draw(&self, rng: &mut StdRng) -> Duration {
        let (lo, hi) = (self.min.as_millis() as u64, self.max.as_millis() as u64);
        Duration::from_millis(if lo >= hi { lo } else { rng.random_range(lo..=hi) })
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}..{}ms", self.min.as_millis(), self.max.as_millis())
    }
}

/// How a node feigns failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FeignMode {
    /// Close the listening socket: peers get refused connections.
    Close,
    /// Keep accepting, but drop every message without a reply: peers time out.
    Ignore,
}

/// When and how to feign failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Feign {
    /// Time from start-up or recovery to the next failure (assignment: 0 to 10 s).
    pub after: Span,
    /// How long each failure lasts (assignment: 1 to 4 s).
    pub lasting: Span,
    pub mode: FeignMode,
}

impl Default for Feign {
    fn default() -> Self {
        Feign {
            after: Span::new(Duration::ZERO, Duration::from_secs(10)),
            lasting: Span::new(Duration::from_secs(1), Duration::from_secs(4)),
            mode: FeignMode::Close,
        }
    }
}

/// Everything about a node's behaviour that is chosen, not learned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub timeouts: Timeouts,
    /// The wait before each PROBE (assignment: 500 to 3000 ms); `None` never probes.
    pub probe: Option<Span>,
    /// `None` never feigns failure.
    pub feign: Option<Feign>,
    /// The wait before each leader's check of the GCD (while leading); `None` never
    /// checks.
    pub leader_check: Option<Span>,
}

/// The leader's check's default period: slow enough that a group of any size costs the
/// serial GCD one request per 15 s on average, quick enough to heal within 30 s.
pub const LEADER_CHECK: Span = Span { min: Duration::from_secs(10), max: Duration::from_secs(20) };

impl Default for Settings {
    fn default() -> Self {
        Settings {
            timeouts: Timeouts::default(),
            probe: Some(Span::new(Duration::from_millis(500), Duration::from_millis(3000))),
            feign: Some(Feign::default()),
            leader_check: Some(LEADER_CHECK),
        }
    }
}
