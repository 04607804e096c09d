//! bully-node: a peer for the CPSC 5520 bully leader-election protocol that interoperates
//! with the course's Python Group Coordinator Daemon (gcd2.py) and Python peers.
//!
//! The modules are private; this is the whole API, by layer, top down (each layer uses
//! only the ones below it). The `bully-node` binary, the tests, the simulator
//! (tests/sim) and the benchmark (benches/bench.rs) use nothing else.
//!
//! - Tools: [`run_demo`] (a whole group on this machine, explained) and [`run_check`]
//!   (any peer judged by what it does on the wire).
//! - Running a node: [`start`] a [`Config`] (checked by [`Config::validate`]) and get a
//!   [`RunningNode`]; [`Stopper`] ends it from any thread.
//! - The GCD: [`register`] with any year's gcd2.py, and a [`Coordinator`] that answers
//!   as it does, served by [`gcd_server`].
//! - What a person and a tool read: [`logging`] (the log lines) and [`Observer`] (every
//!   event of a node, as it happens).
//! - The pure core: [`Node::handle`] takes an [`Input`] at a [`Time`] and returns
//!   [`Action`]s; no sockets, no clock, no threads.
//! - The protocol: [`Message`]s and [`Reply`]s as peers and GCDs speak them, built from
//!   and to pickle values.
//! - Identities and groups: [`ProcessId`], [`Addr`], [`Members`].
//! - The codec: [`wire`], pickle only.

mod check;
mod demo;
mod gcd;
mod identity;
mod membership;
mod net;
mod node;
mod protocol;
mod report;
mod runtime;
pub mod wire;

/// `bully-node check`: run a peer against a coordinator and scripted members and judge it.
pub use check::{
    report::Report as CheckReport, run as run_check, CheckConfig, CheckError, MIN_LIMIT as CHECK_MIN_LIMIT,
};
/// `bully-node demo`: a coordinator and N nodes in this process, one timeline.
pub use demo::{run as run_demo, DemoConfig};

/// Starting, stopping and configuring a node (the engine around the pure core).
pub use runtime::{
    start, Config, ConfigError, ConfigField, NodeError, RunningNode, Stopper, MAX_SPAN, MAX_TIMEOUT, MIN_FEIGN,
    MIN_LEADER_CHECK, MIN_PROBE_WAIT, MIN_TIMEOUT, SOCKET_TIMEOUT,
};

/// The GCD: registering with one, and a coordinator of our own that answers as gcd2.py.
pub use gcd::{
    register, server as gcd_server, Advice, Coordinator, CoordinatorConfig, GcdError, NameChoice, Registration,
};

/// Log lines and the event observer.
pub use report::{events::Observer, logging};

/// The pure state machine: its inputs, actions, events and settings.
pub use node::{
    Action, Event, Failure, Feign, FeignMode, Input, Listening, Node, Outcome, RegisterWhy, Settings, Span, Time,
    Timeouts, Timer, Why, LEADER_CHECK,
};

/// Messages between peers and with the GCD.
pub use protocol::{encode_message, Dialect, Message, RegisterName, Reply};

/// Process ids, birthdays and the members map.
pub use identity::{local_today, Birthday, BirthdayProblem, IdentityError, ProcessId, DAYS_RANGE, SU_ID_RANGE};
pub use membership::{Addr, Layout, Member, Members};
