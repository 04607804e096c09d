//! bully-node: a peer for the CPSC 5520 bully leader-election protocol that interoperates
//! with the course's Python Group Coordinator Daemon (gcd2.py) and Python peers.

pub mod check;
pub mod demo;
pub mod gcd;
pub mod identity;
pub mod membership;
pub mod net;
pub mod node;
pub mod protocol;
pub mod report;
pub mod runtime;
pub mod wire;
