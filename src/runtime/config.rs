//! The engine's own configuration: what a node needs to start, independent of how it
//! was asked for (the command line builds one, the demo and tests build one by hand).

use crate::gcd::NameChoice;
use crate::identity::ProcessId;
use crate::membership::Addr;
use crate::node::Settings;
use crate::report::events::Observer;
use std::time::Duration;

/// Connect and reply timeout of each connection to a peer, unless configured otherwise
/// (`--socket-timeout`'s default).
pub const SOCKET_TIMEOUT: Duration = Duration::from_millis(1500);

/// What a node runs with: built by the command line or by hand (the demo, tests), and
/// read by [`start`](super::start).
#[derive(Debug, Clone)]
pub struct Config {
    pub gcd: Addr,
    pub pid: ProcessId,
    /// Where to bind; `None` picks 127.0.0.1 when the GCD is on this machine, else the
    /// local address that reaches the GCD.
    pub listen: Option<Addr>,
    pub gcd_message: NameChoice,
    pub settings: Settings,
    /// Seed of the node's random choices.
    pub seed: u64,
    /// Connect and reply timeout of each connection to a peer.
    pub socket_timeout: Duration,
    /// Where JSON events go (`-` is stdout), if anywhere.
    pub events: Option<String>,
    /// Also hand every event to this (the demo's merged timeline).
    pub observer: Option<Observer>,
    /// Log each event as a line (a demo prints its own timeline instead).
    pub log_events: bool,
    /// Print the node's figures when it stops.
    pub summary_on_stop: bool,
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
        }
    }
}
