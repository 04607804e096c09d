//! How a member writes its messages (PROTOCOL.md, "Dialects, in detail" and "The
//! ELECTION / OK / COORDINATOR years, in detail"), and how it wants them answered.

use super::pid_to_value;
use super::Reply;
use crate::identity::ProcessId;
use crate::wire::Value;

/// How a member writes its messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Dialect {
    /// The assignment's `(name, data)`.
    #[default]
    Standard,
    /// `((name, members), (sender_pid, receiver_pid))`; drops anything else silently.
    Wrapped,
    /// ELECT as `(sender_pid, members)`, I_AM_LEADER as `{leader: (host, port)}`,
    /// replies `('GOT_IT', pid)`.
    Sender,
    /// ELECTION / OK / COORDINATOR with the members dict as every message's data (the
    /// template of 2019 to 2024): `('ELECTION', members)`, `('COORDINATOR', members up to
    /// the winner)`, `('PROBE', members)`; replies `'OK'` or `('OK', x)`.
    OldNames,
    /// ELECTION / OK / COORDINATOR tagged with the sender: `(name, (sender_pid, data))`,
    /// replies `('OK', (pid, None))`.
    OldTagged,
    /// ELECTION / OK / COORDINATOR as three-part messages: `('ELECTION', pid, members)`
    /// answered by `('OK', None)` on a new connection to the sender, `('COORDINATOR',
    /// pid[, (host, port)])`, `('PROBE',)` answered `'OK'`.
    OldTriple,
}

/// How a members-dict peer of the ELECTION / OK / COORDINATOR years reads a reply: no
/// single form serves them all (PROTOCOL.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OkHabit {
    /// `('OK', None)`: it unpacks every reply as `name, data` (a bare `'OK'` reads as
    /// `('O', 'K')`, no answer).
    Tuple,
    /// `'OK'`: it compares the reply with the string (a tuple reads as no answer).
    Bare,
}

impl OkHabit {
    pub fn other(self) -> OkHabit {
        match self {
            OkHabit::Tuple => OkHabit::Bare,
            OkHabit::Bare => OkHabit::Tuple,
        }
    }

    pub fn reply(self) -> Value {
        match self {
            OkHabit::Tuple => Value::tuple([Value::str("OK"), Value::None]),
            OkHabit::Bare => Value::str("OK"),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OkHabit::Tuple => "('OK', None)",
            OkHabit::Bare => "'OK'",
        }
    }
}

impl Dialect {
    pub const ALL: [Dialect; 6] = [
        Dialect::Standard,
        Dialect::Wrapped,
        Dialect::Sender,
        Dialect::OldNames,
        Dialect::OldTagged,
        Dialect::OldTriple,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Standard => "standard",
            Dialect::Wrapped => "wrapped",
            Dialect::Sender => "sender",
            Dialect::OldNames => "old names",
            Dialect::OldTagged => "old names, sender-tagged",
            Dialect::OldTriple => "old names, three-part",
        }
    }

    /// What a member of this dialect speaks, in words a student understands
    /// ("… speaks the 2019–2022 ELECTION/OK/COORDINATOR protocol").
    pub fn describe(self) -> &'static str {
        match self {
            Dialect::Standard => "speaks the assignment's ELECT/GOT_IT/I_AM_LEADER protocol",
            Dialect::Wrapped => {
                "speaks ELECT/GOT_IT/I_AM_LEADER with every message wrapped as ((name, members), (sender, receiver))"
            }
            Dialect::Sender => "speaks ELECT/GOT_IT/I_AM_LEADER with its own id in ELECT, I_AM_LEADER and GOT_IT",
            Dialect::OldNames => "speaks the 2019–2022 ELECTION/OK/COORDINATOR protocol",
            Dialect::OldTagged => {
                "speaks the 2019–2022 ELECTION/OK/COORDINATOR protocol, each message tagged with its sender's id"
            }
            Dialect::OldTriple => {
                "speaks the 2019–2022 ELECTION/OK/COORDINATOR protocol in three-part messages, answering OK on a new connection"
            }
        }
    }

    /// Whether this is one of the ELECTION / OK / COORDINATOR years' dialects.
    pub fn is_old(self) -> bool {
        matches!(self, Dialect::OldNames | Dialect::OldTagged | Dialect::OldTriple)
    }

    /// The answer a member of this dialect expects to an ELECT or PROBE, on the same
    /// connection; `me` is our id, `habit` how a members-dict peer reads OK. None where
    /// nothing is read there: the three-part ELECTION is answered on a new connection.
    pub fn answer(self, me: ProcessId, habit: OkHabit, probe: bool) -> Option<Value> {
        Some(match self {
            Dialect::Standard | Dialect::Wrapped => Reply::got_it(),
            Dialect::Sender => Value::tuple([Value::str("GOT_IT"), pid_to_value(me)]),
            Dialect::OldNames => habit.reply(),
            Dialect::OldTagged => Value::tuple([Value::str("OK"), Value::tuple([pid_to_value(me), Value::None])]),
            Dialect::OldTriple if probe => Value::str("OK"),
            Dialect::OldTriple => return None,
        })
    }

    /// The GOT_IT a member of this dialect expects back to a PROBE; `me` is our id (a
    /// members-dict peer's habit taken as `('OK', None)`).
    pub fn got_it(self, me: ProcessId) -> Value {
        self.answer(me, OkHabit::Tuple, true).unwrap_or_else(Reply::got_it)
    }
}

/// The OK a three-part peer sends (and expects) on a new connection after an ELECTION.
pub fn ok_on_new_connection() -> Value {
    Value::tuple([Value::str("OK"), Value::None])
}
