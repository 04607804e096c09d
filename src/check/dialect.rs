//! The dialect a peer speaks (PROTOCOL.md, "Dialects, in detail"), read from the shape
//! of the messages it sends, and the checker's messages written in that dialect.
//!
//! The content of a message is read by [`Message::from_value`], which accepts every
//! dialect; this module only tells the shapes apart, so that the checker can answer a
//! peer in its own words.

use crate::identity::ProcessId;
use crate::membership::{Addr, Members};
use crate::protocol::pid_to_value;
use crate::protocol::Message;
use crate::wire::Value;
use std::fmt;

/// The message shapes seen in the wild.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// `(name, data)` as the assignment describes.
    Standard,
    /// Every message as `((name, members), (sender_pid, receiver_pid))`.
    Wrapped,
    /// ELECT data `(sender_pid, members)`, GOT_IT as `('GOT_IT', pid)`, I_AM_LEADER
    /// data `{leader_pid: (host, port)}`.
    SenderTuple,
    /// Nothing readable arrived from the peer.
    Unknown,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Standard => "standard",
            Dialect::Wrapped => "wrapped",
            Dialect::SenderTuple => "sender_tuple",
            Dialect::Unknown => "unknown",
        }
    }
}

/// A dialect and whether the peer uses the older names (ELECTION, OK, COORDINATOR).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spoken {
    pub dialect: Dialect,
    pub old_names: bool,
}

impl Spoken {
    pub const STANDARD: Spoken = Spoken { dialect: Dialect::Standard, old_names: false };

    fn name(&self, standard: &'static str) -> &'static str {
        match (self.old_names, standard) {
            (true, "ELECT") => "ELECTION",
            (true, "I_AM_LEADER") => "COORDINATOR",
            (true, "GOT_IT") => "OK",
            _ => standard,
        }
    }

    fn wrap(&self, name: &str, data: Value, members: &Members, sender: ProcessId, receiver: ProcessId) -> Value {
        match self.dialect {
            Dialect::Wrapped => Value::tuple([
                Value::tuple([Value::str(name), members.to_value()]),
                Value::tuple([pid_to_value(sender), pid_to_value(receiver)]),
            ]),
            _ => Value::tuple([Value::str(name), data]),
        }
    }

    /// ELECT from `sender` listing `members`.
    pub fn elect(&self, members: &Members, sender: ProcessId, receiver: ProcessId) -> Value {
        let data = match self.dialect {
            Dialect::SenderTuple => Value::tuple([pid_to_value(sender), members.to_value()]),
            _ => members.to_value(),
        };
        self.wrap(self.name("ELECT"), data, members, sender, receiver)
    }

    /// I_AM_LEADER from `leader`, listening at `addr`.
    pub fn leader(&self, leader: ProcessId, addr: &Addr, members: &Members, receiver: ProcessId) -> Value {
        let data = match self.dialect {
            Dialect::SenderTuple => Value::Dict(vec![(pid_to_value(leader), addr.to_value())]),
            _ => pid_to_value(leader),
        };
        self.wrap(self.name("I_AM_LEADER"), data, members, leader, receiver)
    }

    /// PROBE (no data, except in the wrapped dialect).
    pub fn probe(&self, members: &Members, sender: ProcessId, receiver: ProcessId) -> Value {
        self.wrap("PROBE", Value::None, members, sender, receiver)
    }

    /// The reply to ELECT and PROBE, from `me`.
    pub fn got_it(&self, me: ProcessId) -> Value {
        let word = Value::str(self.name("GOT_IT"));
        match self.dialect {
            Dialect::SenderTuple => Value::tuple([word, pid_to_value(me)]),
            _ => word,
        }
    }
}

impl fmt::Display for Spoken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dialect.as_str())?;
        if self.old_names {
            f.write_str(" (older names ELECTION / OK / COORDINATOR)")?;
        }
        Ok(())
    }
}

/// What one message from the peer says about its dialect: `None` when its shape is
/// shared by several dialects (a standard PROBE) or is no message at all.
pub fn classify(v: &Value) -> Option<Spoken> {
    let (head, data) = v.as_pair()?;
    if let Some((name, _)) = head.as_pair() {
        let name = name.as_str()?;
        return Some(Spoken { dialect: Dialect::Wrapped, old_names: matches!(name, "ELECTION" | "COORDINATOR") });
    }
    let name = head.as_str()?;
    let old_names = matches!(name, "ELECTION" | "COORDINATOR");
    let dialect = match name {
        "ELECT" | "ELECTION" => match data.as_pair() {
            Some((_, Value::Dict(_))) => Dialect::SenderTuple,
            _ => Dialect::Standard,
        },
        "I_AM_LEADER" | "COORDINATOR" => match data {
            Value::Dict(_) => Dialect::SenderTuple,
            _ => Dialect::Standard,
        },
        _ => return None,
    };
    Some(Spoken { dialect, old_names })
}

/// The leader an I_AM_LEADER names, in any dialect (the wrapped dialect names it as the
/// sender, which [`Message::from_value`] reads as the announcer).
pub fn announced_leader(v: &Value) -> Option<ProcessId> {
    match Message::from_value(v) {
        Ok(Message::IAmLeader { leader, .. }) => Some(leader),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(d: u32) -> ProcessId {
        ProcessId::new(d, 1_000_000 + d)
    }

    fn members() -> Members {
        [(pid(5), Addr::new("127.0.0.1", 9005)), (pid(9), Addr::new("127.0.0.1", 9009))].into_iter().collect()
    }

    #[test]
    fn what_we_write_in_each_dialect_is_read_back_as_that_dialect_and_content() {
        let dialects = [Dialect::Standard, Dialect::Wrapped, Dialect::SenderTuple];
        for dialect in dialects {
            for old_names in [false, true] {
                let spoken = Spoken { dialect, old_names };
                let elect = spoken.elect(&members(), pid(5), pid(9));
                assert_eq!(classify(&elect), Some(spoken), "{spoken}");
                match Message::from_value(&elect).unwrap() {
                    Message::Elect { members: m, .. } => assert_eq!(m, members()),
                    other => panic!("{other:?}"),
                }
                let leader = spoken.leader(pid(9), &Addr::new("127.0.0.1", 9009), &members(), pid(5));
                assert_eq!(classify(&leader), Some(spoken));
                assert_eq!(announced_leader(&leader), Some(pid(9)), "{spoken}");
                let probe = spoken.probe(&members(), pid(5), pid(9));
                assert_eq!(Message::from_value(&probe).unwrap(), Message::Probe);
                let reply = crate::protocol::Reply::from_value(spoken.got_it(pid(9)));
                assert_eq!(reply, crate::protocol::Reply::GotIt);
            }
        }
    }

    #[test]
    fn shapes_shared_by_dialects_decide_nothing() {
        assert_eq!(classify(&Value::tuple([Value::str("PROBE"), Value::None])), None);
        assert_eq!(classify(&Value::str("GOT_IT")), None);
        assert_eq!(classify(&Value::Int(3)), None);
        // The assignment's "list of members" ELECT is the standard dialect.
        let listed = Value::tuple([Value::str("ELECT"), Value::List(vec![])]);
        assert_eq!(classify(&listed), Some(Spoken::STANDARD));
    }
}
