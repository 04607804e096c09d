//! The protocol's messages and replies as types, to and from wire values.
//!
//! What we send is always the assignment's standard form. What we accept is wider,
//! because classmates' peers speak dialects (see PROTOCOL.md): the older names
//! ELECTION / COORDINATOR / OK, ELECT data as `(sender_pid, members)`, I_AM_LEADER data
//! as `{leader_pid: (host, port)}`, replies as `('GOT_IT', pid)`, and every message
//! wrapped as `((name, data), (sender_pid, receiver_pid))`. Unknown names become
//! [`Message::Unknown`] with the name kept, never an error.

use super::{pid_from_value, pid_to_value, Dialect};
use crate::identity::ProcessId;
use crate::membership::{Addr, Members};
use crate::wire::{pyrepr, Value};
use std::fmt;

/// The three names the GCD has accepted for registration over the course's years.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegisterName {
    /// Fall 2025, the assignment's.
    Howdy,
    /// Fall 2024.
    Begin,
    /// Fall 2019.
    Join,
}

impl RegisterName {
    pub const ALL: [RegisterName; 3] = [RegisterName::Howdy, RegisterName::Begin, RegisterName::Join];

    pub fn as_str(self) -> &'static str {
        match self {
            RegisterName::Howdy => "HOWDY",
            RegisterName::Begin => "BEGIN",
            RegisterName::Join => "JOIN",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        RegisterName::ALL.into_iter().find(|n| n.as_str() == s)
    }
}

impl fmt::Display for RegisterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message one process sends another (or the GCD), each on its own connection.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// `('HOWDY', ((days, su_id), (host, port)))`, or BEGIN / JOIN.
    Register { name: RegisterName, pid: ProcessId, addr: Addr },
    /// `('ELECT', members)`; `sender` is known only from dialects that say it.
    /// `rejected` counts member entries dropped as unusable.
    Elect { members: Members, sender: Option<ProcessId>, rejected: usize },
    /// `('I_AM_LEADER', pid)`; `addr` when the dialect includes it.
    IAmLeader { leader: ProcessId, addr: Option<Addr> },
    /// `('PROBE', None)`; any data is ignored.
    Probe,
    /// A well-formed `(name, data)` whose name we do not know.
    Unknown { name: String, data: Value },
}

/// A value that is not any form of a protocol message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageError(pub String);

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MessageError {}

/// Longest rendering of a bad value quoted in an error, so junk can't flood the log.
const QUOTE_MAX: usize = 80;

fn quote(v: &Value) -> String {
    let mut s = pyrepr::repr(v);
    if s.len() > QUOTE_MAX {
        let cut = (0..=QUOTE_MAX).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

impl Message {
    /// The name as it goes on the wire.
    pub fn name(&self) -> &str {
        match self {
            Message::Register { name, .. } => name.as_str(),
            Message::Elect { .. } => "ELECT",
            Message::IAmLeader { .. } => "I_AM_LEADER",
            Message::Probe => "PROBE",
            Message::Unknown { name, .. } => name,
        }
    }

    /// The standard `(name, data)` tuple.
    pub fn to_value(&self) -> Value {
        let data = match self {
            Message::Register { pid, addr, .. } => Value::tuple([pid_to_value(*pid), addr.to_value()]),
            Message::Elect { members, .. } => members.to_value(),
            Message::IAmLeader { leader, .. } => pid_to_value(*leader),
            Message::Probe => Value::None,
            Message::Unknown { data, .. } => data.clone(),
        };
        Value::tuple([Value::str(self.name()), data])
    }

    /// Reads any accepted form of a message.
    pub fn from_value(v: &Value) -> Result<Message, MessageError> {
        Self::hear(v).map(|h| h.message)
    }

    /// Reads any accepted form of a message, with the dialect it was in and its sender
    /// when the form names one.
    pub fn hear(v: &Value) -> Result<Heard, MessageError> {
        if let Some(heard) = Self::hear_three_part(v)? {
            return Ok(heard);
        }
        let (head, data) =
            v.as_pair().ok_or_else(|| MessageError(format!("expected a (name, data) pair, got {}", quote(v))))?;
        // The wrapped dialect: ((name, data), (sender, receiver)).
        if let Some((name, inner)) = head.as_pair().filter(|(n, _)| n.as_str().is_some()) {
            let sender = data.as_pair().and_then(|(s, _)| pid_from_value(s));
            let message = Self::named(name, inner, sender, true)?;
            return Ok(Heard { sender: sender.or(message.named_sender()), message, dialect: Dialect::Wrapped });
        }
        let name = head.as_str().unwrap_or_default();
        // The sender-tagged years: (name, (sender_pid, data)).
        let tag = data.as_pair().and_then(|(s, d)| pid_from_value(s).map(|p| (p, d)));
        let dialect = match (name, &tag, data) {
            ("ELECTION" | "COORDINATOR" | "PROBE", Some((_, d)), _) if !matches!(d, Value::Int(_)) => {
                Dialect::OldTagged
            }
            ("COORDINATOR", _, Value::Dict(_)) | ("ELECTION", _, _) | ("PROBE", _, Value::Dict(_)) => Dialect::OldNames,
            ("COORDINATOR", _, _) => Dialect::OldTriple,
            _ => Dialect::Standard,
        };
        if dialect == Dialect::OldTagged {
            let (sender, inner) = tag.expect("tagged");
            let message = match Self::named(head, inner, Some(sender), true) {
                // COORDINATOR's data is the sender's members; the leader is the sender.
                Ok(Message::IAmLeader { .. }) | Err(_) if name == "COORDINATOR" => {
                    let addr = Members::from_value(inner).and_then(|p| p.members.get(sender).cloned());
                    Message::IAmLeader { leader: sender, addr }
                }
                Ok(Message::Elect { members, rejected, .. }) => {
                    Message::Elect { members, sender: Some(sender), rejected }
                }
                other => other?,
            };
            return Ok(Heard { message, dialect, sender: Some(sender) });
        }
        let message = Self::named(head, data, None, false)?;
        let dialect = match dialect {
            Dialect::Standard => match &message {
                Message::Elect { sender, .. } if sender.is_some() => Dialect::Sender,
                Message::IAmLeader { addr, .. } if matches!(data, Value::Dict(_)) && addr.is_some() => Dialect::Sender,
                _ => Dialect::Standard,
            },
            other => other,
        };
        Ok(Heard { sender: message.named_sender(), message, dialect })
    }

    /// The three-part forms: `('ELECTION', pid, members)`, `('COORDINATOR', pid,
    /// (host, port))`, `('PROBE',)`. None when `v` is not a 1- or 3-tuple.
    fn hear_three_part(v: &Value) -> Result<Option<Heard>, MessageError> {
        let Value::Tuple(items) = v else { return Ok(None) };
        let heard = |message: Message, sender| Some(Heard { message, dialect: Dialect::OldTriple, sender });
        Ok(match items.as_slice() {
            [name] => match name.as_str() {
                Some("PROBE") => heard(Message::Probe, None),
                Some(other) => heard(Message::Unknown { name: other.to_owned(), data: Value::None }, None),
                None => return Err(MessageError(format!("message name is not a str: {}", quote(name)))),
            },
            [name, pid, data] => {
                let name =
                    name.as_str().ok_or_else(|| MessageError(format!("message name is not a str: {}", quote(name))))?;
                let bad = || MessageError(format!("{name} with an invalid sender id: {}", quote(v)));
                match name {
                    "ELECTION" | "ELECT" => {
                        let sender = pid_from_value(pid).ok_or_else(bad)?;
                        let (members, rejected) = read_members(data);
                        heard(Message::Elect { members, sender: Some(sender), rejected }, Some(sender))
                    }
                    "COORDINATOR" | "I_AM_LEADER" => {
                        let leader = pid_from_value(pid).ok_or_else(bad)?;
                        heard(Message::IAmLeader { leader, addr: Addr::from_value(data) }, Some(leader))
                    }
                    other => heard(Message::Unknown { name: other.to_owned(), data: v.clone() }, None),
                }
            }
            _ => None,
        })
    }

    /// The sender a message names by its content: ELECT's sender, the announcer.
    fn named_sender(&self) -> Option<ProcessId> {
        match self {
            Message::Elect { sender, .. } => *sender,
            Message::IAmLeader { leader, .. } => Some(*leader),
            _ => None,
        }
    }

    /// This message as a member of `dialect` expects it. `me` and `my_addr` are ours,
    /// `to` the receiver's id, `members` what the wrapped and the members-dict dialects
    /// carry in every message (an announcement carries the members up to and including
    /// us: those peers take the highest of them as the leader).
    pub fn to_value_in(
        &self,
        dialect: Dialect,
        me: ProcessId,
        my_addr: &Addr,
        to: ProcessId,
        members: &Members,
    ) -> Value {
        let old = |name: &str, data: Value| Value::tuple([Value::str(name), data]);
        let tagged = |name: &str, data: Value| old(name, Value::tuple([pid_to_value(me), data]));
        match (dialect, self) {
            (Dialect::Standard, _) => self.to_value(),
            (Dialect::OldNames, Message::Elect { members, .. }) => old("ELECTION", members.to_value()),
            (Dialect::OldNames, Message::IAmLeader { .. }) => old("COORDINATOR", up_to(members, me, my_addr)),
            (Dialect::OldNames, Message::Probe) => old("PROBE", members.to_value()),
            (Dialect::OldTagged, Message::Elect { members, .. }) => tagged("ELECTION", members.to_value()),
            (Dialect::OldTagged, Message::IAmLeader { .. }) => tagged("COORDINATOR", up_to(members, me, my_addr)),
            (Dialect::OldTagged, Message::Probe) => tagged("PROBE", Value::None),
            (Dialect::OldTriple, Message::Elect { members, .. }) => {
                Value::tuple([Value::str("ELECTION"), pid_to_value(me), members.to_value()])
            }
            (Dialect::OldTriple, Message::IAmLeader { .. }) => {
                Value::tuple([Value::str("COORDINATOR"), pid_to_value(me), my_addr.to_value()])
            }
            (Dialect::OldTriple, Message::Probe) => Value::tuple([Value::str("PROBE")]),
            (Dialect::OldNames | Dialect::OldTagged | Dialect::OldTriple, other) => other.to_value(),
            (Dialect::Sender, Message::Elect { members, .. }) => {
                Value::tuple([Value::str("ELECT"), Value::tuple([pid_to_value(me), members.to_value()])])
            }
            (Dialect::Sender, Message::IAmLeader { leader, .. }) => Value::tuple([
                Value::str("I_AM_LEADER"),
                Value::Dict(vec![(pid_to_value(*leader), my_addr.to_value())]),
            ]),
            (Dialect::Sender, other) => other.to_value(),
            (Dialect::Wrapped, _) => {
                let carried = match self {
                    Message::Elect { members: elect, .. } => elect.to_value(),
                    _ => members.to_value(),
                };
                Value::tuple([
                    Value::tuple([Value::str(self.name()), carried]),
                    Value::tuple([pid_to_value(me), pid_to_value(to)]),
                ])
            }
        }
    }

    fn named(name: &Value, data: &Value, sender: Option<ProcessId>, wrapped: bool) -> Result<Message, MessageError> {
        let name = name.as_str().ok_or_else(|| MessageError(format!("message name is not a str: {}", quote(name))))?;
        let bad = |what: &str| MessageError(format!("{name} with {what}: {}", quote(data)));
        Ok(match name {
            "ELECT" | "ELECTION" => {
                // Whatever the payload, an ELECT is an ELECT (its sender waits for
                // GOT_IT): the bare dict, (sender_pid, dict), a list of (pid, address)
                // pairs (the assignment calls it "a list"), or None. Members that can't
                // be understood are counted, never a reason to refuse the message.
                let (sender, members) = match data.as_pair() {
                    Some((s, d)) if pid_from_value(s).is_some() && members_like(d) => (pid_from_value(s), d),
                    _ => (sender, data),
                };
                let (members, rejected) = read_members(members);
                Message::Elect { members, sender, rejected }
            }
            "I_AM_LEADER" | "COORDINATOR" => {
                if let Some(leader) = pid_from_value(data) {
                    Message::IAmLeader { leader, addr: None }
                } else if let (true, Some(leader)) = (wrapped, sender) {
                    // Wrapped: the data is the sender's members; the leader is the sender.
                    let addr =
                        crate::membership::Members::from_value(data).and_then(|p| p.members.get(leader).cloned());
                    Message::IAmLeader { leader, addr }
                } else if let Value::Dict(pairs) = data {
                    match pairs.as_slice() {
                        [(k, v)] => Message::IAmLeader {
                            leader: pid_from_value(k).ok_or_else(|| bad("no valid leader id"))?,
                            addr: Addr::from_value(v),
                        },
                        // The members-dict years: the winner sends the members up to and
                        // including itself, and the leader is the highest of them.
                        _ if name == "COORDINATOR" => {
                            let listed = Members::from_value(data).map(|p| p.members).unwrap_or_default();
                            let top = listed.iter().max_by_key(|m| m.pid).ok_or_else(|| bad("no valid member"))?;
                            Message::IAmLeader { leader: top.pid, addr: Some(top.addr.clone()) }
                        }
                        _ => return Err(bad("a dict that does not name one leader")),
                    }
                } else {
                    return Err(bad("no valid leader id"));
                }
            }
            "PROBE" => Message::Probe,
            other => match RegisterName::parse(other) {
                Some(reg) => {
                    let (pid, addr) = data.as_pair().ok_or_else(|| bad("data that is not (pid, address)"))?;
                    Message::Register {
                        name: reg,
                        pid: pid_from_value(pid).ok_or_else(|| bad("an invalid process id"))?,
                        addr: Addr::from_value(addr).ok_or_else(|| bad("an invalid address"))?,
                    }
                }
                None => Message::Unknown { name: other.to_owned(), data: data.clone() },
            },
        })
    }
}

/// `members` up to and including `me` (at `my_addr`), nobody above: what a winner of the
/// members-dict years announces, since its receivers follow the highest it lists.
fn up_to(members: &Members, me: ProcessId, my_addr: &Addr) -> Value {
    let mut pairs: Vec<(Value, Value)> =
        members.iter().filter(|m| m.pid < me).map(|m| (pid_to_value(m.pid), m.addr.to_value())).collect();
    pairs.push((pid_to_value(me), my_addr.to_value()));
    Value::Dict(pairs)
}

/// Whether `v` could be an ELECT's members: a dict, or a list of pairs.
fn members_like(v: &Value) -> bool {
    matches!(v, Value::Dict(_) | Value::List(_))
}

/// The members an ELECT's payload lists, and how many entries were unusable: a dict in
/// either layout, a list or tuple of `(pid, (host, port))` pairs, or nothing (`None`).
fn read_members(v: &Value) -> (Members, usize) {
    match v {
        Value::Dict(_) => Members::from_value(v).map_or((Members::default(), 1), |p| (p.members, p.rejected)),
        Value::None => (Members::default(), 0),
        Value::List(items) | Value::Tuple(items) => {
            let pairs: Vec<(Value, Value)> =
                items.iter().filter_map(|item| item.as_pair().map(|(a, b)| (a.clone(), b.clone()))).collect();
            let unpaired = items.len() - pairs.len();
            match Members::from_value(&Value::Dict(pairs)) {
                Some(p) => (p.members, p.rejected + unpaired),
                None => (Members::default(), items.len()),
            }
        }
        _ => (Members::default(), 1),
    }
}

/// A message as heard: what it says, the dialect it was written in, and who sent it
/// when the form names the sender.
#[derive(Clone, Debug, PartialEq)]
pub struct Heard {
    pub message: Message,
    pub dialect: Dialect,
    pub sender: Option<ProcessId>,
}

/// What comes back on a connection after a message.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// `'GOT_IT'` (or a dialect's `'OK'`, `('GOT_IT', pid)`).
    GotIt,
    /// The GCD's members dict.
    Members { members: Members, rejected: usize },
    /// Any other pickled `str`: the GCD's refusals.
    Text(String),
    /// Bytes that are not a pickle: the GCD's `Expected a pickled message, got ...`.
    Raw(Vec<u8>),
    /// A pickled value of no known reply shape.
    Other(Value),
}

impl Reply {
    pub fn from_value(v: Value) -> Reply {
        if let Some(members) = Members::from_value(&v) {
            return Reply::Members { members: members.members, rejected: members.rejected };
        }
        let word = match &v {
            Value::Str(s) => Some(s.as_str()),
            Value::Tuple(items) => items.first().and_then(Value::as_str),
            _ => None,
        };
        if matches!(word, Some("GOT_IT" | "OK")) {
            return Reply::GotIt;
        }
        match v {
            Value::Str(s) => Reply::Text(s),
            other => Reply::Other(other),
        }
    }

    pub fn got_it() -> Value {
        Value::str("GOT_IT")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::OkHabit;

    fn members() -> Members {
        [(ProcessId::new(5, 1_234_567), Addr::new("127.0.0.1", 9000))].into_iter().collect()
    }

    #[test]
    fn standard_messages_round_trip() {
        let msgs = [
            Message::Register {
                name: RegisterName::Begin,
                pid: ProcessId::new(5, 1_234_567),
                addr: Addr::new("localhost", 9),
            },
            Message::Elect { members: members(), sender: None, rejected: 0 },
            Message::IAmLeader { leader: ProcessId::new(5, 1_234_567), addr: None },
            Message::Probe,
            Message::Unknown { name: "HELLO".into(), data: Value::Int(3) },
        ];
        for m in msgs {
            assert_eq!(Message::from_value(&m.to_value()).unwrap(), m);
        }
    }

    #[test]
    fn dialects_are_understood() {
        let pid = ProcessId::new(5, 1_234_567);
        let sender = pid_to_value(ProcessId::new(3, 7_654_321));
        // ELECT as (sender, members), under its older name.
        let v = Value::tuple([Value::str("ELECTION"), Value::tuple([sender.clone(), members().to_value()])]);
        match Message::from_value(&v).unwrap() {
            Message::Elect { members: m, sender: s, .. } => {
                assert_eq!(m, members());
                assert_eq!(s, Some(ProcessId::new(3, 7_654_321)));
            }
            other => panic!("{other:?}"),
        }
        // Wrapped: ((name, data), (sender, receiver)).
        let v = Value::tuple([
            Value::tuple([Value::str("I_AM_LEADER"), pid_to_value(pid)]),
            Value::tuple([sender, pid_to_value(pid)]),
        ]);
        assert_eq!(Message::from_value(&v).unwrap(), Message::IAmLeader { leader: pid, addr: None });
        // COORDINATOR with {pid: addr}.
        let v = Value::tuple([Value::str("COORDINATOR"), members().to_value()]);
        assert_eq!(
            Message::from_value(&v).unwrap(),
            Message::IAmLeader { leader: pid, addr: Some(Addr::new("127.0.0.1", 9000)) }
        );
    }

    fn elect_of(data: Value) -> (Members, usize) {
        match Message::from_value(&Value::tuple([Value::str("ELECT"), data])).unwrap() {
            Message::Elect { members, rejected, .. } => (members, rejected),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_elect_shape_is_an_elect() {
        let pid = ProcessId::new(5, 1_234_567);
        let entry = Value::tuple([pid_to_value(pid), Addr::new("127.0.0.1", 9000).to_value()]);
        // A list of (pid, address) pairs, as the assignment's words say.
        assert_eq!(elect_of(Value::List(vec![entry.clone()])), (members(), 0));
        // Lists inside lists, as JSON-minded peers write them, and junk beside them.
        let listy = Value::List(vec![pid_to_value(pid), Addr::new("127.0.0.1", 9000).to_value()]);
        assert_eq!(elect_of(Value::List(vec![listy, Value::Int(3)])), (members(), 1));
        // Nothing at all, or a payload of no known shape: still an ELECT, with no members.
        assert_eq!(elect_of(Value::None), (Members::default(), 0));
        assert_eq!(elect_of(Value::Int(4)), (Members::default(), 1));
        // (sender, list).
        let v = Value::tuple([
            Value::str("ELECT"),
            Value::tuple([pid_to_value(ProcessId::new(3, 7_654_321)), Value::List(vec![entry])]),
        ]);
        let heard = Message::hear(&v).unwrap();
        assert_eq!(heard.sender, Some(ProcessId::new(3, 7_654_321)));
        assert_eq!(heard.dialect, Dialect::Sender);
    }

    #[test]
    fn dialects_are_recognised_and_written() {
        let me = ProcessId::new(9, 9_000_000);
        let them = ProcessId::new(5, 1_234_567);
        let here = Addr::new("127.0.0.1", 7000);
        let group: Members = [(me, here.clone()), (them, Addr::new("127.0.0.1", 9000))].into_iter().collect();
        let msgs = [
            Message::Elect { members: group.clone(), sender: None, rejected: 0 },
            Message::IAmLeader { leader: me, addr: None },
            Message::Probe,
        ];
        for dialect in Dialect::ALL {
            for m in &msgs {
                let v = m.to_value_in(dialect, me, &here, them, &group);
                let heard = Message::hear(&v).unwrap();
                let expected = match (dialect, m) {
                    (Dialect::Sender, Message::Probe) => Dialect::Standard,
                    _ => dialect,
                };
                assert_eq!(heard.dialect, expected, "{dialect:?} {v}");
                match (&heard.message, m) {
                    (Message::Elect { members, .. }, Message::Elect { .. }) => assert_eq!(members, &group),
                    (Message::IAmLeader { leader, .. }, Message::IAmLeader { .. }) => assert_eq!(*leader, me),
                    (Message::Probe, Message::Probe) => {}
                    other => panic!("{dialect:?}: {other:?}"),
                }
                let names_sender = match m {
                    Message::Elect { .. } => {
                        matches!(dialect, Dialect::Wrapped | Dialect::Sender | Dialect::OldTagged | Dialect::OldTriple)
                    }
                    Message::IAmLeader { .. } => true,
                    _ => matches!(dialect, Dialect::Wrapped | Dialect::OldTagged),
                };
                if names_sender {
                    assert_eq!(heard.sender, Some(me), "{dialect:?} {v}");
                }
            }
        }
        // The wrapped I_AM_LEADER names its leader as the sender, and where it listens.
        let v = Message::IAmLeader { leader: me, addr: None }.to_value_in(Dialect::Wrapped, me, &here, them, &group);
        assert_eq!(Message::from_value(&v).unwrap(), Message::IAmLeader { leader: me, addr: Some(here) });
        assert_eq!(Reply::from_value(Dialect::Sender.got_it(me)), Reply::GotIt);
        assert_eq!(Reply::from_value(Dialect::OldNames.got_it(me)), Reply::GotIt);
        for habit in [OkHabit::Tuple, OkHabit::Bare] {
            assert_eq!(Reply::from_value(habit.reply()), Reply::GotIt);
        }
        assert_eq!(Reply::from_value(Dialect::OldTagged.got_it(me)), Reply::GotIt);
    }

    /// The shapes of PROTOCOL.md's "The ELECTION / OK / COORDINATOR years", as their
    /// peers write them.
    #[test]
    fn the_old_years_are_heard_as_they_write() {
        let (low, mid, top) =
            (ProcessId::new(3, 1_000_003), ProcessId::new(5, 1_000_005), ProcessId::new(9, 1_000_009));
        let at = |p: u16| Addr::new("127.0.0.1", p);
        let group: Members = [(low, at(1)), (mid, at(2)), (top, at(3))].into_iter().collect();
        let hear = |v: Value| Message::hear(&v).unwrap();
        let old = |name: &str, data: Value| Value::tuple([Value::str(name), data]);
        // Members dict everywhere: the leader is the highest listed.
        let h = hear(old("COORDINATOR", group.to_value()));
        assert_eq!(
            (h.message, h.dialect, h.sender),
            (Message::IAmLeader { leader: top, addr: Some(at(3)) }, Dialect::OldNames, Some(top))
        );
        let h = hear(old("ELECTION", group.to_value()));
        assert_eq!((h.dialect, h.sender), (Dialect::OldNames, None));
        assert!(matches!(h.message, Message::Elect { ref members, .. } if *members == group));
        let h = hear(old("PROBE", group.to_value()));
        assert_eq!((h.message, h.dialect), (Message::Probe, Dialect::OldNames));
        // Sender-tagged: (name, (sender, data)).
        let tag = |name: &str, data: Value| old(name, Value::tuple([pid_to_value(mid), data]));
        let h = hear(tag("ELECTION", group.to_value()));
        assert_eq!((h.dialect, h.sender), (Dialect::OldTagged, Some(mid)));
        let h = hear(tag("COORDINATOR", group.to_value()));
        assert_eq!((h.message, h.dialect), (Message::IAmLeader { leader: mid, addr: Some(at(2)) }, Dialect::OldTagged));
        let h = hear(tag("PROBE", Value::None));
        assert_eq!((h.message, h.dialect, h.sender), (Message::Probe, Dialect::OldTagged, Some(mid)));
        // Three-part.
        let h = hear(Value::tuple([Value::str("ELECTION"), pid_to_value(low), group.to_value()]));
        assert_eq!((h.dialect, h.sender), (Dialect::OldTriple, Some(low)));
        let h = hear(old("COORDINATOR", pid_to_value(top)));
        assert_eq!((h.message, h.dialect), (Message::IAmLeader { leader: top, addr: None }, Dialect::OldTriple));
        let h = hear(Value::tuple([Value::str("COORDINATOR"), pid_to_value(top), at(3).to_value()]));
        assert_eq!(h.message, Message::IAmLeader { leader: top, addr: Some(at(3)) });
        let h = hear(Value::tuple([Value::str("PROBE")]));
        assert_eq!((h.message, h.dialect), (Message::Probe, Dialect::OldTriple));
        // The OK a three-part peer sends on a new connection: a message of its own.
        assert!(
            matches!(hear(crate::protocol::ok_on_new_connection()).message, Message::Unknown { ref name, .. } if name == "OK")
        );
        // Replies of every habit read as GOT_IT.
        let tagged_ok = Value::tuple([Value::str("OK"), Value::tuple([pid_to_value(mid), Value::None])]);
        assert_eq!(Reply::from_value(tagged_ok), Reply::GotIt);
        assert_eq!(Reply::from_value(old("OK", group.to_value())), Reply::GotIt);
        // Junk in those shapes is an error, not a panic.
        assert!(Message::hear(&Value::tuple([Value::str("ELECTION"), Value::Int(1), Value::None])).is_err());
        assert!(Message::hear(&Value::tuple([Value::Int(1)])).is_err());
        assert!(Message::hear(&old(
            "COORDINATOR",
            Value::Dict(vec![(Value::Int(1), Value::Int(2)), (Value::Int(3), Value::Int(4))])
        ))
        .is_err());
    }

    #[test]
    fn our_coordinator_carries_the_members_up_to_us() {
        let me = ProcessId::new(5, 1_000_005);
        let here = Addr::new("127.0.0.1", 7000);
        let group: Members = [
            (ProcessId::new(3, 1_000_003), Addr::new("127.0.0.1", 1)),
            (ProcessId::new(9, 1_000_009), Addr::new("127.0.0.1", 3)),
        ]
        .into_iter()
        .collect();
        let us = Message::IAmLeader { leader: me, addr: None };
        for dialect in [Dialect::OldNames, Dialect::OldTagged] {
            let v = us.to_value_in(dialect, me, &here, ProcessId::new(3, 1_000_003), &group);
            let dict = match dialect {
                Dialect::OldNames => v.as_pair().unwrap().1.clone(),
                _ => v.as_pair().unwrap().1.as_pair().unwrap().1.clone(),
            };
            let listed = Members::from_value(&dict).unwrap().members;
            assert_eq!(listed.iter().map(|m| m.pid).max(), Some(me), "{dialect:?}: {v}");
            assert_eq!(listed.get(me), Some(&here));
            assert_eq!(listed.len(), 2);
        }
    }

    #[test]
    fn replies() {
        assert_eq!(Reply::from_value(Value::str("GOT_IT")), Reply::GotIt);
        assert_eq!(Reply::from_value(Value::tuple([Value::str("GOT_IT"), Value::Int(1)])), Reply::GotIt);
        assert_eq!(Reply::from_value(Value::str("Invalid port number")), Reply::Text("Invalid port number".into()));
        assert!(matches!(Reply::from_value(members().to_value()), Reply::Members { .. }));
        assert_eq!(Reply::from_value(Value::Int(1)), Reply::Other(Value::Int(1)));
    }

    #[test]
    fn malformed_messages_are_errors_that_quote_them_briefly() {
        let long = Value::str("x".repeat(1000));
        let err = Message::from_value(&long).unwrap_err().to_string();
        assert!(err.len() < 200, "{err}");
        let err = Message::from_value(&Value::tuple([Value::str("I_AM_LEADER"), Value::Int(4)])).unwrap_err();
        assert!(err.to_string().contains("no valid leader id"), "{err}");
        let err = Message::from_value(&Value::tuple([Value::Int(1), Value::None])).unwrap_err();
        assert!(err.to_string().contains("not a str"));
    }
}
