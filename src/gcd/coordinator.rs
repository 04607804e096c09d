//! The Group Coordinator Daemon's rules: what gcd2.py answers to each request, with the
//! same validation order, the same error strings and the same membership rules
//! (PROTOCOL.md). Sockets live in `server`; this part takes the bytes of one request
//! and returns the bytes of the answer, so it is tested without a network.

use crate::identity::{ProcessId, DAYS_RANGE, SU_ID_RANGE};
use crate::membership::{Addr, Members};
use crate::protocol::RegisterName;
use crate::wire::{self, pyrepr, Style, Value};
use std::net::{Ipv4Addr, ToSocketAddrs};
use std::sync::Mutex;

/// gcd2.py reads a request with one `recv(1024)`: longer requests are cut there.
pub const REQUEST_LIMIT: usize = 1024;

pub const MALFORMED_MESSAGE: &str = "Malformed message";
pub const MALFORMED_DATA: &str = "Malformed message data, expected ((days_to_bd, su_id), (host, port))";
pub const MALFORMED_PID: &str = "Malformed process id, expected (days_to_next_birthday, student_id)";
pub const INVALID_PORT: &str = "Invalid port number";
pub const ONLY_LOCAL: &str = "Only local group members currently allowed";

/// What the coordinator does with a request's connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The members dict: the request was a valid registration.
    Joined { pid: ProcessId, addr: Addr, reply: Vec<u8> },
    /// A pickled `str` saying why not.
    Refused { reason: String, reply: Vec<u8> },
    /// Bytes that were not a pickle get raw text back, as gcd2.py sends it.
    NotAPickle { reply: Vec<u8> },
    /// gcd2.py's handler dies on a process id sent as a list (unhashable): the client
    /// gets no reply at all, and the membership is unchanged.
    NoReply { reason: &'static str },
}

impl Answer {
    pub fn reply_bytes(&self) -> Option<&[u8]> {
        match self {
            Answer::Joined { reply, .. } | Answer::Refused { reply, .. } | Answer::NotAPickle { reply } => Some(reply),
            Answer::NoReply { .. } => None,
        }
    }
}

/// Settings of one coordinator.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// The one registration name this coordinator accepts (the course year it emulates).
    pub accept: RegisterName,
    /// Lift the rule that members must listen on the coordinator's own host.
    pub allow_remote: bool,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig { accept: RegisterName::Howdy, allow_remote: false }
    }
}

/// A coordinator's state: the group, behind a lock so connections can be served at once.
#[derive(Debug, Default)]
pub struct Coordinator {
    config: CoordinatorConfig,
    members: Mutex<Members>,
}

impl Coordinator {
    pub fn new(config: CoordinatorConfig) -> Self {
        Coordinator { config, members: Mutex::new(Members::default()) }
    }

    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    /// A copy of the current group.
    pub fn members(&self) -> Members {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Members> {
        // A panic while holding the lock can't leave Members half-updated (insert is
        // a few Vec operations), so a poisoned lock is still a usable group.
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Answers the bytes of one request (`raw`: what the connection delivered, at most
    /// `REQUEST_LIMIT` bytes, as gcd2.py's single `recv(1024)` would see them).
    pub fn answer(&self, raw: &[u8]) -> Answer {
        let raw = &raw[..raw.len().min(REQUEST_LIMIT)];
        let message = match wire::decode(raw) {
            Ok(v) => v,
            Err(_) => return Answer::NotAPickle { reply: not_a_pickle_reply(raw) },
        };
        match self.register(&message) {
            Ok(Some((pid, addr, members))) => {
                Answer::Joined { pid, addr, reply: wire::encode(&members.to_value(), Style::CPython) }
            }
            Ok(None) => Answer::NoReply { reason: "process id sent as a list (unhashable in Python)" },
            Err(reason) => {
                let reply = wire::encode(&Value::str(reason.clone()), Style::CPython);
                Answer::Refused { reason, reply }
            }
        }
    }

    /// gcd2.py's `handle_join`, in its order of checks.
    fn register(&self, message: &Value) -> Result<Option<(ProcessId, Addr, Members)>, String> {
        let (name, data) = unpack2(message).ok_or(MALFORMED_MESSAGE)?;
        if name.as_str() != Some(self.config.accept.as_str()) {
            return Err(format!("Unexpected message: {}", pyrepr::str_of(&name)));
        }
        let (pid, listener) = unpack2(&data).ok_or(MALFORMED_DATA)?;
        let (host, port) = unpack2(&listener).ok_or(MALFORMED_DATA)?;
        let (days, su_id) = unpack2(&pid).ok_or(MALFORMED_DATA)?;
        let in_range = |v: &Value, range: &std::ops::RangeInclusive<u32>| {
            v.as_int().and_then(|i| u32::try_from(i).ok()).filter(|i| range.contains(i))
        };
        let (Some(days), Some(su_id)) = (in_range(&days, &DAYS_RANGE), in_range(&su_id, &SU_ID_RANGE)) else {
            return Err(MALFORMED_PID.into());
        };
        let ip = gethostbyname(&host)?;
        let port = port.as_int().and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0).ok_or(INVALID_PORT)?;
        if !self.config.allow_remote && ip != localhost_ip() {
            return Err(ONLY_LOCAL.into());
        }
        if !matches!(pid, Value::Tuple(_)) {
            return Ok(None);
        }
        let pid = ProcessId::new(days, su_id);
        let addr = Addr::new(ip.to_string(), port);
        let mut members = self.lock();
        members.insert(pid, addr.clone());
        Ok(Some((pid, addr, members.clone())))
    }
}

/// Python's `a, b = value` for the types a pickle can carry: a 2-item tuple or list, a
/// 2-character str, 2 bytes (as ints), or a 2-key dict or set (its keys/items).
fn unpack2(v: &Value) -> Option<(Value, Value)> {
    let two = |items: Vec<Value>| -> Option<(Value, Value)> {
        let [a, b]: [Value; 2] = items.try_into().ok()?;
        Some((a, b))
    };
    match v {
        Value::Tuple(items) | Value::List(items) | Value::Set(items) | Value::FrozenSet(items) => two(items.clone()),
        Value::Dict(pairs) => two(pairs.iter().map(|(k, _)| k.clone()).collect()),
        Value::Str(s) => two(s.chars().map(|c| Value::Str(c.to_string())).collect()),
        Value::Bytes(b) | Value::ByteArray(b) => two(b.iter().map(|x| Value::Int((*x).into())).collect()),
        _ => None,
    }
}

/// The raw answer to bytes that don't unpickle: `'Expected a pickled message, got ' +
/// str(raw)[:100] + '\n'`, UTF-8 encoded, not pickled.
pub fn not_a_pickle_reply(raw: &[u8]) -> Vec<u8> {
    let shown: String = pyrepr::bytes_repr(raw).chars().take(100).collect();
    format!("Expected a pickled message, got {shown}\n").into_bytes()
}

fn localhost_ip() -> Ipv4Addr {
    gethostbyname(&Value::str("localhost")).unwrap_or(Ipv4Addr::LOCALHOST)
}

/// Python's `socket.gethostbyname(host)`: the host's IPv4 address, or the text of the
/// exception Python would raise, which gcd2.py sends back as the refusal.
fn gethostbyname(host: &Value) -> Result<Ipv4Addr, String> {
    let host = match host {
        Value::Str(s) => s.clone(),
        Value::Bytes(b) | Value::ByteArray(b) => String::from_utf8_lossy(b).into_owned(),
        other => {
            return Err(format!(
                "gethostbyname() argument 1 must be str, bytes or bytearray, not {}",
                other.type_name()
            ))
        }
    };
    if host.contains('\0') {
        return Err("gethostbyname() argument 1 must be encoded string without null bytes, not str".into());
    }
    if host.is_empty() {
        return Ok(Ipv4Addr::UNSPECIFIED); // Python's gethostbyname('') is '0.0.0.0'
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(ip);
    }
    if host.split('.').any(|label| label.len() > 63) {
        return Err("encoding with 'idna' codec failed (UnicodeError: label too long)".into());
    }
    match (host.as_str(), 0).to_socket_addrs() {
        Ok(addrs) => addrs
            .filter_map(|a| match a.ip() {
                std::net::IpAddr::V4(v4) => Some(v4),
                std::net::IpAddr::V6(_) => None,
            })
            .next()
            .ok_or_else(|| "[Errno -5] No address associated with hostname".into()),
        Err(e) => Err(gai_error_text(&e.to_string())),
    }
}

/// Rust reports resolver failures as "failed to lookup address information: <text>";
/// Python as "[Errno <EAI code>] <text>".
fn gai_error_text(rust_text: &str) -> String {
    let text = rust_text.trim_start_matches("failed to lookup address information: ");
    let code = match text {
        "Name or service not known" => -2,
        "Temporary failure in name resolution" => -3,
        "Non-recoverable failure in name resolution" => -4,
        "No address associated with hostname" => -5,
        _ => -2,
    };
    format!("[Errno {code}] {text}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Reply;
    use crate::wire::{decode, encode};

    fn request(name: &str, days: i64, su: i64, host: &str, port: i64) -> Vec<u8> {
        let v = Value::tuple([
            Value::str(name),
            Value::tuple([
                Value::tuple([Value::Int(days), Value::Int(su)]),
                Value::tuple([Value::str(host), Value::Int(port)]),
            ]),
        ]);
        encode(&v, Style::Compact)
    }

    fn refusal(answer: Answer) -> String {
        match answer {
            Answer::Refused { reason, reply } => {
                assert_eq!(decode(&reply).unwrap(), Value::str(reason.clone()));
                reason
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn registers_and_answers_with_the_group_keyed_by_pid() {
        let gcd = Coordinator::default();
        gcd.answer(&request("HOWDY", 5, 1_234_567, "localhost", 40001));
        let answer = gcd.answer(&request("HOWDY", 9, 2_345_678, "127.0.0.1", 40002));
        let Answer::Joined { reply, .. } = answer else { panic!("{answer:?}") };
        match Reply::from_value(decode(&reply).unwrap()) {
            Reply::Members { members, rejected: 0 } => {
                let hosts: Vec<_> = members.iter().map(|m| m.addr.to_string()).collect();
                assert_eq!(hosts, ["127.0.0.1:40001", "127.0.0.1:40002"], "localhost resolved to its IP");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refuses_in_gcd2s_order_with_its_words() {
        let gcd = Coordinator::default();
        assert_eq!(refusal(gcd.answer(&encode(&Value::Int(3), Style::Compact))), MALFORMED_MESSAGE);
        assert_eq!(refusal(gcd.answer(&request("JOIN", 5, 1_234_567, "localhost", 1))), "Unexpected message: JOIN");
        assert_eq!(refusal(gcd.answer(&request("HOWDY", 0, 1_234_567, "localhost", 1))), MALFORMED_PID);
        assert_eq!(refusal(gcd.answer(&request("HOWDY", 5, 999_999, "localhost", 1))), MALFORMED_PID);
        // The host is resolved before the port is checked.
        assert_eq!(refusal(gcd.answer(&request("HOWDY", 5, 1_234_567, "", 0))), INVALID_PORT);
        assert_eq!(refusal(gcd.answer(&request("HOWDY", 5, 1_234_567, "localhost", 65536))), INVALID_PORT);
        assert_eq!(refusal(gcd.answer(&request("HOWDY", 5, 1_234_567, "8.8.8.8", 80))), ONLY_LOCAL);
        assert!(gcd.members().is_empty());
    }

    #[test]
    fn garbage_gets_gcd2s_raw_text() {
        let gcd = Coordinator::default();
        let Answer::NotAPickle { reply } = gcd.answer(b"hello") else { panic!() };
        assert_eq!(reply, b"Expected a pickled message, got b'hello'\n");
        let long = not_a_pickle_reply(&[0x80; 300]);
        assert_eq!(long.len(), "Expected a pickled message, got ".len() + 100 + 1);
    }

    #[test]
    fn remote_members_only_when_allowed() {
        let gcd = Coordinator::new(CoordinatorConfig { accept: RegisterName::Begin, allow_remote: true });
        assert!(matches!(gcd.answer(&request("BEGIN", 5, 1_234_567, "10.1.2.3", 80)), Answer::Joined { .. }));
    }
}
