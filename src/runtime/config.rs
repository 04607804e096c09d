//! The engine's own configuration: what a node needs to start, independent of how it
//! was asked for (the command line builds one, the demo and tests build one by hand).

use crate::gcd::NameChoice;
use crate::identity::{IdentityError, ProcessId};
use crate::membership::Addr;
use crate::node::{Settings, Span};
use crate::report::events::Observer;
use std::fmt;
use std::time::Duration;

/// Connect and reply timeout of each connection to a peer, unless configured otherwise
/// (`--socket-timeout`'s default).
pub const SOCKET_TIMEOUT: Duration = Duration::from_millis(1500);

/// The shortest a timeout may be ([`Config::socket_timeout`], the election's timeouts).
pub const MIN_TIMEOUT: Duration = Duration::from_millis(1);
/// The longest a timeout may be: past this, a group takes minutes to notice anything.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest end of any span: an hour between feigned failures is already "never".
pub const MAX_SPAN: Duration = Duration::from_secs(3600);
/// The shortest wait before a PROBE: more often than ten times a second only loads the
/// leader (a 2-node group with 0..0 sent about 4,400 PROBEs a second).
pub const MIN_PROBE_WAIT: Duration = Duration::from_millis(100);
/// The shortest feigned failure: one shorter is nothing a peer could notice, and with a
/// time to failure of 0..0 the node would fail and recover in a busy loop.
pub const MIN_FEIGN: Duration = Duration::from_millis(100);
/// The shortest wait between a leader's checks of the GCD, so that no setting can make a
/// leader hammer the serial GCD (it serves one request at a time).
pub const MIN_LEADER_CHECK: Duration = Duration::from_millis(100);

/// What a node runs with: built by the command line or by hand (the demo, tests), and
/// read by [`start`](super::start), which first checks it with [`Config::validate`].
#[derive(Debug, Clone)]
pub struct Config {
    pub gcd: Addr,
    /// One the GCD accepts ([`ProcessId::validate`]).
    pub pid: ProcessId,
    /// Where to bind; `None` picks 127.0.0.1 when the GCD is on this machine, else the
    /// local address that reaches the GCD.
    pub listen: Option<Addr>,
    pub gcd_message: NameChoice,
    pub settings: Settings,
    /// Seed of the node's random choices.
    pub seed: u64,
    /// Connect and reply timeout of each connection to a peer: [`MIN_TIMEOUT`] to
    /// [`MAX_TIMEOUT`]. So are `settings.timeouts`; the spans in `settings` have
    /// `min <= max <= MAX_SPAN` and `min` at least [`MIN_PROBE_WAIT`] (probe),
    /// [`MIN_FEIGN`] (feign.lasting), [`MIN_LEADER_CHECK`] (leader_check).
    pub socket_timeout: Duration,
    /// Where JSON events go (`-` is stdout), if anywhere.
    pub events: Option<String>,
    /// Also hand every event to this (the demo's merged timeline).
    pub observer: Option<Observer>,
    /// Log each event as a line (a demo prints its own timeline instead).
    pub log_events: bool,
    /// Print the node's figures when it stops.
    pub summary_on_stop: bool,
    /// How long to keep trying a GCD that is not up yet at start-up (0: once).
    pub gcd_wait: Duration,
}

impl Config {
    /// A node of the group at `gcd` with id `pid`, with every other field at its default:
    /// listen where the GCD is reachable, any registration name, default settings, seed
    /// 0, [`SOCKET_TIMEOUT`], no JSON events, events logged as lines, no summary.
    pub fn new(gcd: Addr, pid: ProcessId) -> Self {
        Config {
            gcd,
            pid,
            listen: None,
            gcd_message: NameChoice::Auto,
            settings: Settings::default(),
            seed: 0,
            socket_timeout: SOCKET_TIMEOUT,
            events: None,
            observer: None,
            log_events: true,
            summary_on_stop: false,
            gcd_wait: crate::gcd::client::GCD_WAIT,
        }
    }
}

impl Config {
    /// Checks every invariant a node relies on: an id the GCD accepts, timeouts from
    /// [`MIN_TIMEOUT`] to [`MAX_TIMEOUT`], and spans whose ends are in order, at most
    /// [`MAX_SPAN`] and at least their floor. The error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.pid.validate().map_err(ConfigError::Pid)?;
        let times = [
            (ConfigField::SocketTimeout, self.socket_timeout),
            (ConfigField::ElectTimeout, self.settings.timeouts.elect),
            (ConfigField::LeaderTimeout, self.settings.timeouts.leader),
        ];
        for (field, value) in times {
            if !(MIN_TIMEOUT..=MAX_TIMEOUT).contains(&value) {
                return Err(ConfigError::Time { field, value, min: MIN_TIMEOUT, max: MAX_TIMEOUT });
            }
        }
        let feign = self.settings.feign;
        let spans = [
            (ConfigField::Probe, self.settings.probe, MIN_PROBE_WAIT),
            (ConfigField::LeaderCheck, self.settings.leader_check, MIN_LEADER_CHECK),
            (ConfigField::FeignAfter, feign.map(|f| f.after), Duration::ZERO),
            (ConfigField::FeignLasting, feign.map(|f| f.lasting), MIN_FEIGN),
        ];
        for (field, span, floor) in spans {
            let Some(span) = span else { continue };
            if span.min > span.max {
                return Err(ConfigError::SpanReversed { field, span });
            }
            if span.min < floor || span.max > MAX_SPAN {
                return Err(ConfigError::SpanOutOfRange { field, span, floor, max: MAX_SPAN });
            }
        }
        Ok(())
    }
}

/// A field of [`Config`] that [`Config::validate`] checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigField {
    SocketTimeout,
    ElectTimeout,
    LeaderTimeout,
    Probe,
    LeaderCheck,
    FeignAfter,
    FeignLasting,
}

impl ConfigField {
    /// The field's path in [`Config`].
    pub fn name(self) -> &'static str {
        match self {
            ConfigField::SocketTimeout => "socket_timeout",
            ConfigField::ElectTimeout => "settings.timeouts.elect",
            ConfigField::LeaderTimeout => "settings.timeouts.leader",
            ConfigField::Probe => "settings.probe",
            ConfigField::LeaderCheck => "settings.leader_check",
            ConfigField::FeignAfter => "settings.feign.after",
            ConfigField::FeignLasting => "settings.feign.lasting",
        }
    }
}

/// Why a [`Config`] cannot run a node, naming the field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// An id the GCD would refuse.
    Pid(IdentityError),
    /// A time outside `min..=max`.
    Time { field: ConfigField, value: Duration, min: Duration, max: Duration },
    /// A span whose minimum is above its maximum.
    SpanReversed { field: ConfigField, span: Span },
    /// A span with an end below `floor` or above `max`.
    SpanOutOfRange { field: ConfigField, span: Span, floor: Duration, max: Duration },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Pid(e) => write!(f, "{e}"),
            ConfigError::Time { field, value, min, max } => {
                write!(f, "{} is {value:?}; it must be from {min:?} to {max:?}", field.name())
            }
            ConfigError::SpanReversed { field, span } => {
                write!(f, "{} {span} has its minimum above its maximum", field.name())
            }
            ConfigError::SpanOutOfRange { field, span, floor, max } => {
                write!(f, "{} {span}: each end must be from {floor:?} to {max:?}", field.name())
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Pid(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{Feign, FeignMode};

    fn config() -> Config {
        Config::new(Addr::new("127.0.0.1", 23600), ProcessId::new(5, 1_234_567))
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn span(min: u64, max: u64) -> Span {
        Span::new(ms(min), ms(max))
    }

    #[test]
    fn the_defaults_and_the_edges_are_valid() {
        assert_eq!(config().validate(), Ok(()));
        let mut c = config();
        c.pid = ProcessId::new(365, 9_999_999);
        c.socket_timeout = MAX_TIMEOUT;
        c.settings.timeouts.elect = MIN_TIMEOUT;
        c.settings.probe = Some(Span::new(MIN_PROBE_WAIT, MAX_SPAN));
        c.settings.leader_check = Some(Span::new(MIN_LEADER_CHECK, MIN_LEADER_CHECK));
        c.settings.feign = Some(Feign { after: span(0, 0), lasting: span(100, 100), mode: FeignMode::Ignore });
        assert_eq!(c.validate(), Ok(()));
        c.settings.probe = None;
        c.settings.feign = None;
        c.settings.leader_check = None;
        assert_eq!(c.validate(), Ok(()), "a setting turned off has nothing to check");
    }

    #[test]
    fn start_refuses_an_invalid_config_before_touching_the_network() {
        let mut c = config();
        c.socket_timeout = Duration::ZERO;
        // The GCD address is never dialled: validation comes first.
        match super::super::start(c) {
            Err(super::super::NodeError::Config(ConfigError::Time { field: ConfigField::SocketTimeout, .. })) => {}
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("started with a zero socket timeout"),
        }
    }

    #[test]
    fn an_id_the_gcd_refuses_is_invalid() {
        let mut c = config();
        c.pid = ProcessId::new(5, 999_999);
        assert_eq!(c.validate(), Err(ConfigError::Pid(IdentityError::SuIdOutOfRange(999_999))));
        c.pid = ProcessId::new(0, 1_234_567);
        assert_eq!(c.validate(), Err(ConfigError::Pid(IdentityError::DaysOutOfRange(0))));
    }

    #[test]
    fn each_timeout_must_be_more_than_zero_and_at_most_a_minute() {
        type Set = fn(&mut Config, Duration);
        let fields: [(ConfigField, Set); 3] = [
            (ConfigField::SocketTimeout, |c, d| c.socket_timeout = d),
            (ConfigField::ElectTimeout, |c, d| c.settings.timeouts.elect = d),
            (ConfigField::LeaderTimeout, |c, d| c.settings.timeouts.leader = d),
        ];
        for (field, set) in fields {
            for value in [Duration::ZERO, Duration::from_micros(999), MAX_TIMEOUT + ms(1)] {
                let mut c = config();
                set(&mut c, value);
                let want = ConfigError::Time { field, value, min: MIN_TIMEOUT, max: MAX_TIMEOUT };
                assert_eq!(c.validate(), Err(want), "{field:?} {value:?}");
            }
        }
        let mut c = config();
        c.socket_timeout = Duration::ZERO;
        assert_eq!(c.validate().unwrap_err().to_string(), "socket_timeout is 0ns; it must be from 1ms to 60s");
    }

    #[test]
    fn each_span_must_be_in_order_and_within_its_floor_and_an_hour() {
        type Set = fn(&mut Config, Span);
        let fields: [(ConfigField, Duration, Set); 4] = [
            (ConfigField::Probe, MIN_PROBE_WAIT, |c, s| c.settings.probe = Some(s)),
            (ConfigField::LeaderCheck, MIN_LEADER_CHECK, |c, s| c.settings.leader_check = Some(s)),
            (ConfigField::FeignAfter, Duration::ZERO, |c, s| c.settings.feign.as_mut().unwrap().after = s),
            (ConfigField::FeignLasting, MIN_FEIGN, |c, s| c.settings.feign.as_mut().unwrap().lasting = s),
        ];
        for (field, floor, set) in fields {
            let mut c = config();
            set(&mut c, span(3000, 500));
            assert_eq!(c.validate(), Err(ConfigError::SpanReversed { field, span: span(3000, 500) }), "{field:?}");
            let too_long = Span::new(ms(500), MAX_SPAN + ms(1));
            let mut c = config();
            set(&mut c, too_long);
            assert_eq!(c.validate(), Err(ConfigError::SpanOutOfRange { field, span: too_long, floor, max: MAX_SPAN }));
            if floor > Duration::ZERO {
                let short = Span::new(floor - ms(1), ms(3000));
                let mut c = config();
                set(&mut c, short);
                let want = ConfigError::SpanOutOfRange { field, span: short, floor, max: MAX_SPAN };
                assert_eq!(c.validate(), Err(want), "{field:?}");
            }
        }
        let mut c = config();
        c.settings.probe = Some(span(0, 0));
        let text = c.validate().unwrap_err().to_string();
        assert_eq!(text, "settings.probe 0..0ms: each end must be from 100ms to 3600s");
    }
}
