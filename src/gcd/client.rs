//! Registering with a GCD: HOWDY, and for older course versions BEGIN or JOIN.

use crate::identity::ProcessId;
use crate::membership::{Addr, Members};
use crate::net::{exchange, ExchangeError};
use crate::protocol::{encode_message, Message, RegisterName, Reply};
use crate::wire::{decode, is_timeout, FrameError};
use log::debug;
use std::fmt;
use std::io::Read;
use std::time::Duration;

/// Which registration name to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameChoice {
    /// HOWDY, then BEGIN, then JOIN while the GCD says `Unexpected message: ...`.
    Auto,
    Fixed(RegisterName),
}

impl std::str::FromStr for NameChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(NameChoice::Auto);
        }
        RegisterName::parse(&s.to_ascii_uppercase())
            .map(NameChoice::Fixed)
            .ok_or_else(|| format!("{s:?} is not auto, HOWDY, BEGIN or JOIN"))
    }
}

/// A successful registration.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    /// The group as the GCD lists it, ourselves included.
    pub members: Members,
    /// The name this GCD accepted: use it again to re-register.
    pub name: RegisterName,
    /// Entries of the GCD's reply that were not valid members.
    pub rejected: usize,
}

/// Why registration failed. Each says what failed, why, and what to do.
#[derive(Debug)]
pub enum GcdError {
    Unreachable { gcd: Addr, cause: std::io::Error },
    Timeout { gcd: Addr },
    Broken { gcd: Addr, cause: String },
    NoReply { gcd: Addr },
    NotAPickle { gcd: Addr, text: String },
    Refused { gcd: Addr, reason: String },
    NoNameAccepted { gcd: Addr, last: String },
    BadReply { gcd: Addr, what: String },
}

impl GcdError {
    /// Whether trying again soon may help: the GCD is not up yet, or the connection
    /// broke. A refusal, garbage, a dropped request or a GCD that hangs will not change.
    pub fn is_transient(&self) -> bool {
        matches!(self, GcdError::Unreachable { .. } | GcdError::Broken { .. })
    }

    /// What to do about a refusal, from the GCD's own words.
    fn advice(reason: &str) -> &'static str {
        if reason.starts_with("Only local group members") {
            "the GCD only takes members listening on its own host: run the node on that machine, or pass --listen with an address there (e.g. --listen 127.0.0.1:0)"
        } else if reason.starts_with("Malformed process id") {
            "check --days (1 to 365) or --birthday, and --su-id (7 digits)"
        } else if reason.starts_with("Invalid port number") {
            "pass --listen with a port from 1 to 65535, or 0 for any free port"
        } else if reason.starts_with("Unexpected message") {
            "this GCD wants another registration name: use --gcd-message auto, or the name it expects"
        } else if reason.starts_with("[Errno") || reason.contains("codec failed") {
            "the GCD could not resolve the host we listen on: pass --listen with an IP address"
        } else {
            "see the GCD's message above"
        }
    }
}

impl fmt::Display for GcdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // No OS error code: the name did not resolve; starting a GCD there can't help.
            GcdError::Unreachable { gcd, cause } if cause.raw_os_error().is_none() => write!(
                f,
                "cannot find the GCD's host {:?}: {cause}; check the host in --gcd (e.g. --gcd 127.0.0.1:{})",
                gcd.host, gcd.port
            ),
            GcdError::Unreachable { gcd, cause } => write!(
                f,
                "cannot reach the GCD at {gcd}: {cause}; start it (python3 gcd2.py PORT, or bully-node gcd --listen {gcd}) or fix --gcd"
            ),
            GcdError::Timeout { gcd } => write!(
                f,
                "the GCD at {gcd} did not answer in time; check that --gcd names a GCD and that it is not stuck"
            ),
            GcdError::Broken { gcd, cause } => {
                write!(f, "the connection to the GCD at {gcd} failed: {cause}; try again")
            }
            GcdError::NoReply { gcd } => write!(
                f,
                "the GCD at {gcd} closed the connection without answering; check that --gcd names a GCD (gcd2.py drops requests it cannot handle)"
            ),
            GcdError::NotAPickle { gcd, text } => {
                write!(f, "the GCD at {gcd} could not read our request and said: {text}")
            }
            GcdError::Refused { gcd, reason } => {
                write!(f, "the GCD at {gcd} refused us: '{reason}'; {}", GcdError::advice(reason))
            }
            GcdError::NoNameAccepted { gcd, last } => write!(
                f,
                "the GCD at {gcd} accepts none of HOWDY, BEGIN and JOIN (last answer: '{last}'); check that --gcd names the course's GCD"
            ),
            GcdError::BadReply { gcd, what } => write!(f, "the GCD at {gcd} answered with {what}"),
        }
    }
}

impl std::error::Error for GcdError {}

/// Registers `pid`, listening at `listen`, with the GCD at `gcd`.
pub fn register(
    gcd: &Addr,
    choice: NameChoice,
    pid: ProcessId,
    listen: &Addr,
    timeout: Duration,
) -> Result<Registration, GcdError> {
    let names = match choice {
        NameChoice::Auto => RegisterName::ALL.to_vec(),
        NameChoice::Fixed(name) => vec![name],
    };
    let mut last = String::new();
    for name in names {
        let message = Message::Register { name, pid, addr: listen.clone() };
        match request(gcd, &message, timeout)? {
            Reply::Members { members, rejected } => return Ok(Registration { members, name, rejected }),
            Reply::Text(reason) if choice == NameChoice::Auto && reason == format!("Unexpected message: {name}") => {
                debug!("GCD at {gcd} does not take {name}: {reason:?}");
                last = reason;
            }
            Reply::Text(reason) => return Err(GcdError::Refused { gcd: gcd.clone(), reason }),
            Reply::Raw(bytes) => {
                let text = String::from_utf8_lossy(&bytes).trim_end().to_owned();
                return Err(GcdError::NotAPickle { gcd: gcd.clone(), text });
            }
            Reply::GotIt => {
                return Err(GcdError::BadReply { gcd: gcd.clone(), what: "GOT_IT: it is a peer, not a GCD".into() })
            }
            Reply::Other(v) => {
                let mut shown = v.to_string();
                shown.truncate(80);
                return Err(GcdError::BadReply { gcd: gcd.clone(), what: format!("{shown}, not a members dict") });
            }
        }
    }
    Err(GcdError::NoNameAccepted { gcd: gcd.clone(), last })
}

/// Most of a raw (unpickled) answer we read to show it: gcd2.py's is under 140 bytes.
const RAW_REPLY_MAX: usize = 4096;

fn request(gcd: &Addr, message: &Message, timeout: Duration) -> Result<Reply, GcdError> {
    let g = || gcd.clone();
    match exchange(gcd, &encode_message(message), timeout) {
        Ok((_, bytes)) => decode(&bytes)
            .map(Reply::from_value)
            .map_err(|e| GcdError::BadReply { gcd: g(), what: format!("an unreadable pickle ({e})") }),
        Err(ExchangeError::Connect(cause)) => Err(GcdError::Unreachable { gcd: g(), cause }),
        Err(ExchangeError::Send(cause)) => Err(GcdError::Broken { gcd: g(), cause: cause.to_string() }),
        Err(ExchangeError::Reply { error, mut received, stream }) => match error {
            FrameError::Incomplete { received: 0 } => Err(GcdError::NoReply { gcd: g() }),
            FrameError::Io(e) if is_timeout(&e) => Err(GcdError::Timeout { gcd: g() }),
            FrameError::Io(e) => Err(GcdError::Broken { gcd: g(), cause: e.to_string() }),
            // Not a pickle: gcd2.py's raw text. It closes after sending, so read to EOF.
            FrameError::Invalid { .. } => {
                let _ = stream.take(RAW_REPLY_MAX as u64).read_to_end(&mut received);
                Ok(Reply::Raw(received))
            }
            other => Err(GcdError::BadReply { gcd: g(), what: other.to_string() }),
        },
    }
}
