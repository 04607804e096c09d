//! The dialect a peer speaks (docs/protocol.md, "Dialects"), read from the shape
//! of the messages it sends, and the checker's messages written in that dialect.
//!
//! The content of a message is read by [`Message::from_value`], which accepts every
//! dialect; this module only tells the shapes apart, so that the checker can answer a
//! peer in its own words.

use crate::identity::ProcessId;
use crate::membership::{Addr, Members};
use crate::protocol::{pid_from_value, pid_to_value, Message};
use crate::wire::Value;
use std::fmt;

/// The message shapes seen in the wild.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// `(name, data)` as the assignment describes. With the older names, the members
    /// dict is the data of ELECTION, COORDINATOR and PROBE alike.
    Standard,
    /// Every message as `((name, members), (sender_pid, receiver_pid))`.
    Wrapped,
    /// ELECT data `(sender_pid, members)`, GOT_IT as `('GOT_IT', pid)`, I_AM_LEADER
    /// data `{leader_pid: (host, port)}`. With the older names: every message is
    /// `(name, (sender_pid, data))`, OK as `('OK', (pid, None))`.
    SenderTuple,
    /// The older names as 3-tuples: `('ELECTION', sender_pid, members)`, answered with
    /// `('OK', None)` on a new connection; `('COORDINATOR', pid)`; `('PROBE',)`.
    ThreeTuple,
    /// Nothing readable arrived from the peer.
    Unknown,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Standard => "standard",
            Dialect::Wrapped => "wrapped",
            Dialect::SenderTuple => "sender_tuple",
            Dialect::ThreeTuple => "three_tuple",
            Dialect::Unknown => "unknown",
        }
    }
}

/// The form of the peer's own replies (older names), which is the form it expects back:
/// a peer that replies `('OK', ...)` unpacks every reply as `name, data`, and reads a
/// bare `'OK'` as no answer; one that replies `'OK'` compares with `"OK"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyForm {
    Bare,
    Tuple,
}

impl ReplyForm {
    /// The form of a reply value, if it is an OK at all.
    pub fn of(v: &Value) -> Option<ReplyForm> {
        match v {
            Value::Str(s) if s == "OK" => Some(ReplyForm::Bare),
            Value::Tuple(items) if items.first().and_then(Value::as_str) == Some("OK") => Some(ReplyForm::Tuple),
            _ => None,
        }
    }
}

/// A dialect and whether the peer uses the older names (ELECTION, OK, COORDINATOR):
/// the peer "speaks the 2019–2022 ELECTION/OK/COORDINATOR protocol".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spoken {
    pub dialect: Dialect,
    pub old_names: bool,
}

impl Spoken {
    pub const STANDARD: Spoken = Spoken { dialect: Dialect::Standard, old_names: false };
    /// The most common peer of the ELECTION / OK / COORDINATOR years: the members dict
    /// everywhere. What a peer registering with JOIN or BEGIN most likely speaks.
    pub const OLD_MEMBERS: Spoken = Spoken { dialect: Dialect::Standard, old_names: true };

    /// The name of a message as this peer writes it.
    pub fn name(&self, standard: &'static str) -> &'static str {
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
        let name = self.name("ELECT");
        match self.dialect {
            Dialect::ThreeTuple => Value::tuple([Value::str("ELECTION"), pid_to_value(sender), members.to_value()]),
            Dialect::SenderTuple => {
                self.wrap(name, Value::tuple([pid_to_value(sender), members.to_value()]), members, sender, receiver)
            }
            _ => self.wrap(name, members.to_value(), members, sender, receiver),
        }
    }

    /// I_AM_LEADER from `leader`, listening at `addr`. The members-dict peers of the
    /// older years take the highest id in COORDINATOR's dict as the leader: it lists the
    /// members up to and including the leader, nobody above.
    pub fn leader(&self, leader: ProcessId, addr: &Addr, members: &Members, receiver: ProcessId) -> Value {
        let mut upto: Members = members.iter().filter(|m| m.pid <= leader).map(|m| (m.pid, m.addr.clone())).collect();
        upto.insert(leader, addr.clone());
        match (self.dialect, self.old_names) {
            (Dialect::ThreeTuple, _) => Value::tuple([Value::str("COORDINATOR"), pid_to_value(leader)]),
            (Dialect::SenderTuple, true) => self.wrap(
                "COORDINATOR",
                Value::tuple([pid_to_value(leader), upto.to_value()]),
                members,
                leader,
                receiver,
            ),
            (Dialect::SenderTuple, false) => self.wrap(
                "I_AM_LEADER",
                Value::Dict(vec![(pid_to_value(leader), addr.to_value())]),
                members,
                leader,
                receiver,
            ),
            (Dialect::Wrapped, _) => self.wrap(self.name("I_AM_LEADER"), Value::None, &upto, leader, receiver),
            (_, true) => self.wrap("COORDINATOR", upto.to_value(), members, leader, receiver),
            (_, false) => self.wrap("I_AM_LEADER", pid_to_value(leader), members, leader, receiver),
        }
    }

    /// PROBE: no data in the assignment's form; the members dict (older members-dict
    /// peers), `(sender, None)` (sender-tagged), a 1-tuple (three-tuple peers).
    pub fn probe(&self, members: &Members, sender: ProcessId, receiver: ProcessId) -> Value {
        match (self.dialect, self.old_names) {
            (Dialect::ThreeTuple, _) => Value::tuple([Value::str("PROBE")]),
            (Dialect::SenderTuple, true) => {
                self.wrap("PROBE", Value::tuple([pid_to_value(sender), Value::None]), members, sender, receiver)
            }
            (Dialect::Standard, true) => self.wrap("PROBE", members.to_value(), members, sender, receiver),
            _ => self.wrap("PROBE", Value::None, members, sender, receiver),
        }
    }

    /// The reply to ELECT and PROBE, from `me`, in the form the peer itself replies
    /// with (`form`, once seen) for the older members-dict peers.
    pub fn got_it(&self, me: ProcessId, form: Option<ReplyForm>) -> Value {
        let word = Value::str(self.name("GOT_IT"));
        match (self.dialect, self.old_names) {
            (Dialect::SenderTuple, false) => Value::tuple([word, pid_to_value(me)]),
            (Dialect::SenderTuple, true) => Value::tuple([word, Value::tuple([pid_to_value(me), Value::None])]),
            (Dialect::Standard, true) if form == Some(ReplyForm::Tuple) => Value::tuple([word, Value::None]),
            _ => word,
        }
    }

    /// Whether this peer answers an ELECTION on a new connection, not on the one it came on.
    pub fn answers_apart(&self) -> bool {
        self.dialect == Dialect::ThreeTuple
    }
}

impl fmt::Display for Spoken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.dialect, self.old_names) {
            (Dialect::ThreeTuple, _) => f.write_str(
                "three_tuple (speaks the 2019–2022 ELECTION/OK/COORDINATOR protocol: 3-tuples, OK on a new connection)",
            ),
            (Dialect::Standard, true) => {
                f.write_str("members dict (speaks the 2019–2022 ELECTION/OK/COORDINATOR protocol)")
            }
            (d, true) => write!(f, "{} (speaks the 2019–2022 ELECTION/OK/COORDINATOR protocol)", d.as_str()),
            (d, false) => f.write_str(d.as_str()),
        }
    }
}

/// What a message from the peer says, in any dialect the checker knows.
#[derive(Clone, Debug, PartialEq)]
pub enum Read {
    Elect {
        sender: Option<ProcessId>,
        members: Members,
    },
    Leader(ProcessId),
    Probe,
    /// An OK sent as a message of its own (the three-tuple peers' answer).
    Ok,
    /// Something else: what it was, for the evidence.
    Other(String),
}

/// Reads a message from the peer: the older years' shapes first, then every form
/// [`Message::from_value`] accepts.
pub fn read(v: &Value) -> Read {
    if let Value::Tuple(items) = v {
        let name = items.first().and_then(Value::as_str);
        match (name, items.len()) {
            (Some("ELECTION"), 3) => {
                if let (Some(sender), Some(m)) = (pid_from_value(&items[1]), Members::from_value(&items[2])) {
                    return Read::Elect { sender: Some(sender), members: m.members };
                }
            }
            (Some("COORDINATOR"), 3) => {
                if let Some(leader) = pid_from_value(&items[1]) {
                    return Read::Leader(leader);
                }
            }
            (Some("PROBE"), 1) => return Read::Probe,
            (Some("OK"), _) => return Read::Ok,
            _ => {}
        }
        if let (Some("COORDINATOR"), [_, data]) = (name, items.as_slice()) {
            // Sender-tagged (pid, members), or the members dict: its highest id leads.
            if let Some((pid, _)) = data.as_pair().filter(|(_, m)| matches!(m, Value::Dict(_))) {
                if let Some(leader) = pid_from_value(pid) {
                    return Read::Leader(leader);
                }
            }
            if let Some(m) = Members::from_value(data).filter(|m| m.members.len() > 1) {
                if let Some(leader) = m.members.iter().map(|m| m.pid).max() {
                    return Read::Leader(leader);
                }
            }
        }
    }
    if v.as_str() == Some("OK") {
        return Read::Ok;
    }
    match Message::from_value(v) {
        Ok(Message::Elect { members, sender, .. }) => Read::Elect { sender, members },
        Ok(Message::IAmLeader { leader, .. }) => Read::Leader(leader),
        Ok(Message::Probe) => Read::Probe,
        Ok(other) => Read::Other(other.name().to_string()),
        Err(_) => Read::Other(shape(v)),
    }
}

/// A short picture of a value's shape: `('ELECTION', (int, int))`, `str`, `dict of 3`.
pub fn shape(v: &Value) -> String {
    fn go(v: &Value, depth: usize) -> String {
        match v {
            Value::Str(s) if s.len() <= 20 => format!("{s:?}").replace('"', "'"),
            Value::Str(_) => "str".into(),
            Value::Tuple(items) if depth < 2 && items.len() <= 4 => {
                let inner: Vec<String> = items.iter().map(|i| go(i, depth + 1)).collect();
                format!("({}{})", inner.join(", "), if items.len() == 1 { "," } else { "" })
            }
            Value::Tuple(items) => format!("tuple of {}", items.len()),
            Value::List(items) => format!("list of {}", items.len()),
            Value::Dict(items) => format!("dict of {}", items.len()),
            Value::Int(_) => "int".into(),
            Value::None => "None".into(),
            _ => "value".into(),
        }
    }
    crate::report::printable(go(v, 0).as_bytes(), 80)
}

/// What one message from the peer says about its dialect: `None` when its shape is
/// shared by several dialects (a standard PROBE) or is no message at all.
pub fn classify(v: &Value) -> Option<Spoken> {
    if let Value::Tuple(items) = v {
        let name = items.first().and_then(Value::as_str);
        let three = Some(Spoken { dialect: Dialect::ThreeTuple, old_names: true });
        match (name, items.len()) {
            (Some("ELECTION" | "COORDINATOR"), 3) | (Some("PROBE"), 1) => return three,
            (Some("COORDINATOR"), 2) if pid_from_value(&items[1]).is_some() => return three,
            _ => {}
        }
    }
    let (head, data) = v.as_pair()?;
    if let Some((name, _)) = head.as_pair() {
        let name = name.as_str()?;
        return Some(Spoken { dialect: Dialect::Wrapped, old_names: matches!(name, "ELECTION" | "COORDINATOR") });
    }
    let name = head.as_str()?;
    let old_names = matches!(name, "ELECTION" | "COORDINATOR");
    let tagged = |d: &Value| matches!(d.as_pair(), Some((p, Value::Dict(_))) if pid_from_value(p).is_some());
    let dialect = match name {
        "ELECT" | "ELECTION" if tagged(data) => Dialect::SenderTuple,
        "ELECT" | "ELECTION" => Dialect::Standard,
        "COORDINATOR" if tagged(data) => Dialect::SenderTuple,
        "COORDINATOR" => Dialect::Standard,
        "I_AM_LEADER" => match data {
            Value::Dict(_) => Dialect::SenderTuple,
            _ => Dialect::Standard,
        },
        _ => return None,
    };
    Some(Spoken { dialect, old_names })
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
        let dialects = [Dialect::Standard, Dialect::Wrapped, Dialect::SenderTuple, Dialect::ThreeTuple];
        for dialect in dialects {
            for old_names in [false, true] {
                if dialect == Dialect::ThreeTuple && !old_names {
                    continue; // only the older years wrote 3-tuples
                }
                let spoken = Spoken { dialect, old_names };
                let elect = spoken.elect(&members(), pid(5), pid(9));
                assert_eq!(classify(&elect), Some(spoken), "{spoken}");
                assert_eq!(read(&elect), Read::Elect { sender: read_sender(&elect), members: members() }, "{spoken}");
                let leader = spoken.leader(pid(9), &Addr::new("127.0.0.1", 9009), &members(), pid(5));
                assert_eq!(classify(&leader), Some(spoken), "{spoken}");
                assert_eq!(read(&leader), Read::Leader(pid(9)), "{spoken}");
                let probe = spoken.probe(&members(), pid(5), pid(9));
                assert_eq!(read(&probe), Read::Probe, "{spoken}");
                for form in [None, Some(ReplyForm::Bare), Some(ReplyForm::Tuple)] {
                    let reply = crate::protocol::Reply::from_value(spoken.got_it(pid(9), form));
                    assert_eq!(reply, crate::protocol::Reply::GotIt);
                }
            }
        }
    }

    fn read_sender(v: &Value) -> Option<ProcessId> {
        match read(v) {
            Read::Elect { sender, .. } => sender,
            _ => None,
        }
    }

    #[test]
    fn the_members_dict_peers_hear_a_coordinator_naming_no_one_above_the_leader() {
        let spoken = Spoken::OLD_MEMBERS;
        let mut group = members();
        group.insert(pid(20), Addr::new("127.0.0.1", 9020));
        let v = spoken.leader(pid(9), &Addr::new("127.0.0.1", 9009), &group, pid(5));
        let Value::Tuple(items) = &v else { panic!("{v:?}") };
        assert_eq!(items[0], Value::str("COORDINATOR"));
        let listed = Members::from_value(&items[1]).unwrap().members;
        assert_eq!(listed.iter().map(|m| m.pid).max(), Some(pid(9)), "the highest listed is the leader");
        assert!(listed.get(pid(5)).is_some(), "the members below it are listed");
        // Never the pid alone: that killed such a peer.
        assert!(pid_from_value(&items[1]).is_none());
        // Its reply form follows the peer's own.
        assert_eq!(spoken.got_it(pid(9), None), Value::str("OK"));
        assert_eq!(spoken.got_it(pid(9), Some(ReplyForm::Tuple)), Value::tuple([Value::str("OK"), Value::None]));
        assert_eq!(ReplyForm::of(&Value::tuple([Value::str("OK"), Value::None])), Some(ReplyForm::Tuple));
    }

    #[test]
    fn what_it_sent_is_described_when_it_is_no_message_we_know() {
        let v = Value::tuple([Value::str("VOTE"), Value::Int(3)]);
        assert_eq!(read(&v), Read::Other("VOTE".into()));
        assert_eq!(shape(&Value::tuple([Value::str("ELECTION"), Value::Int(3)])), "('ELECTION', int)");
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
