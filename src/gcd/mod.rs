//! The Group Coordinator Daemon: a client that registers with any version of the
//! course's gcd2.py, and a coordinator of our own that answers as gcd2.py does.

pub mod client;
pub mod coordinator;
pub mod server;

pub use client::{register, Advice, GcdError, NameChoice, Registration};
pub use coordinator::{Answer, Coordinator, CoordinatorConfig};
