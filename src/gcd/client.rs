//! Registering with a GCD: HOWDY, and for older course versions BEGIN or JOIN.

use crate::identity::ProcessId;
use crate::membership::{Addr, Members};
use crate::net::{exchange, ExchangeError};
use crate::protocol::{encode_message, Message, RegisterName, Reply};
use crate::report::printable;
use crate::wire::{decode, is_timeout, FrameError};
use log::debug;
use std::fmt;
use std::io::Read;
use std::time::{Duration, Instant};

/// How long a node keeps trying a GCD that is not up yet (nothing listens, or the
/// connection broke), unless told otherwise (`--gcd-wait`): long enough to start the
/// GCD in another terminal after the node.
pub const GCD_WAIT: Duration = Duration::from_secs(30);

/// The waits between attempts while the GCD is not up: 0.25, 0.5, then every second,
/// so a GCD that comes up is found within a second and one that does not costs one
/// connection a second.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How often the wait is reported after its first line.
const SAY_EVERY: Duration = Duration::from_secs(5);

/// Why [`register_waiting`] gave up: the last error, after how many attempts and how long.
#[derive(Debug)]
pub struct GaveUp {
    pub error: GcdError,
    pub attempts: u32,
    pub waited: Duration,
}

/// [`register`], trying again for up to `wait` while the GCD is not up yet (an error that
/// [`GcdError::is_transient`]), and saying so: once at once, then every few seconds
/// ("waiting for the GCD at HOST:PORT … 12 s"). Any other error ends it at once.
pub fn register_waiting(
    gcd: &Addr,
    choice: NameChoice,
    pid: ProcessId,
    listen: &Addr,
    timeout: Duration,
    wait: Duration,
) -> Result<Registration, GaveUp> {
    let started = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    let mut attempts = 0;
    let mut said: Option<Instant> = None;
    loop {
        attempts += 1;
        match register(gcd, choice, pid, listen, timeout) {
            Ok(registration) => {
                if said.is_some() {
                    log::info!("the GCD at {gcd} answered after {:.1} s", started.elapsed().as_secs_f64());
                }
                return Ok(registration);
            }
            Err(error) if error.is_transient() && started.elapsed() + backoff <= wait => {
                match said {
                    None => log::warn!(
                        "{error}; waiting for the GCD at {gcd} for up to {} s (Ctrl-C stops)",
                        wait.as_secs()
                    ),
                    Some(at) if at.elapsed() >= SAY_EVERY => {
                        log::warn!("waiting for the GCD at {gcd} … {} s", started.elapsed().as_secs())
                    }
                    Some(_) => {
                        debug!("{error}; trying again in {} ms", backoff.as_millis());
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                }
                said = Some(Instant::now());
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(error) => return Err(GaveUp { error, attempts, waited: started.elapsed() }),
        }
    }
}

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

/// Why registration failed: what failed and why. [`GcdError::advice`] says what a person
/// can do about it, for the caller to word in its own terms (the binary names its flags).
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

/// What a person can do about a [`GcdError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Advice {
    /// The GCD's host name does not resolve: check it (starting a GCD cannot help).
    CheckHost,
    /// Nothing listens at the GCD's address: start a GCD there, or give another address.
    StartGcd,
    /// It took the connection but never answered: check that it is a GCD and not stuck.
    CheckNotStuck,
    /// It closed without a word: check that the address is a GCD's (gcd2.py drops
    /// requests it cannot handle).
    CheckIsGcd,
    /// The connection broke: try again.
    TryAgain,
    /// It takes only members listening on its own host.
    ListenOnGcdHost,
    /// It found the process id malformed: check the days and the SU ID.
    CheckId,
    /// It found the port we listen on invalid.
    ListenPort,
    /// It wants another registration name.
    RegisterName,
    /// It could not resolve the host we listen on: listen on an IP address.
    ListenIp,
    /// A refusal with nothing to add: the GCD's own words are the advice.
    SeeMessage,
    /// It accepts none of the names: check that it is the course's GCD.
    CheckIsCourseGcd,
    /// Its reply is not a pickle, nor gcd2.py's text: something else listens there.
    NotAGcd,
}

impl GcdError {
    /// Whether trying again soon may help: the GCD is not up yet (refused, unreachable),
    /// or the connection broke. A refusal, garbage, a dropped request or a GCD that hangs will not change.
    pub fn is_transient(&self) -> bool {
        match self {
            // A name that does not resolve will not resolve in a second either.
            GcdError::Unreachable { cause, .. } => cause.raw_os_error().is_some(),
            GcdError::Broken { .. } => true,
            _ => false,
        }
    }

    /// The GCD's address, as it was given.
    pub fn gcd(&self) -> &Addr {
        match self {
            GcdError::Unreachable { gcd, .. }
            | GcdError::Timeout { gcd }
            | GcdError::Broken { gcd, .. }
            | GcdError::NoReply { gcd }
            | GcdError::NotAPickle { gcd, .. }
            | GcdError::Refused { gcd, .. }
            | GcdError::NoNameAccepted { gcd, .. }
            | GcdError::BadReply { gcd, .. } => gcd,
        }
    }

    /// What to do about it, if there is anything to say beyond the error itself.
    pub fn advice(&self) -> Option<Advice> {
        Some(match self {
            // No OS error code: the name did not resolve; starting a GCD there can't help.
            GcdError::Unreachable { cause, .. } if cause.raw_os_error().is_none() => Advice::CheckHost,
            GcdError::Unreachable { .. } => Advice::StartGcd,
            GcdError::Timeout { .. } => Advice::CheckNotStuck,
            GcdError::Broken { .. } => Advice::TryAgain,
            GcdError::NoReply { .. } => Advice::CheckIsGcd,
            GcdError::Refused { reason, .. } => GcdError::refusal_advice(reason),
            GcdError::NoNameAccepted { .. } => Advice::CheckIsCourseGcd,
            GcdError::NotAPickle { text, .. } if !text.starts_with("Expected a pickled message") => Advice::NotAGcd,
            GcdError::NotAPickle { .. } | GcdError::BadReply { .. } => return None,
        })
    }

    /// What to do about a refusal, from the GCD's own words.
    fn refusal_advice(reason: &str) -> Advice {
        if reason.starts_with("Only local group members") {
            Advice::ListenOnGcdHost
        } else if reason.starts_with("Malformed process id") {
            Advice::CheckId
        } else if reason.starts_with("Invalid port number") {
            Advice::ListenPort
        } else if reason.starts_with("Unexpected message") {
            Advice::RegisterName
        } else if reason.starts_with("[Errno") || reason.contains("codec failed") {
            Advice::ListenIp
        } else {
            Advice::SeeMessage
        }
    }
}

impl fmt::Display for GcdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GcdError::Unreachable { gcd, cause } if cause.raw_os_error().is_none() => {
                write!(f, "cannot find the GCD's host {:?}: {cause}", gcd.host)
            }
            GcdError::Unreachable { gcd, cause } => write!(f, "cannot reach the GCD at {gcd}: {cause}"),
            GcdError::Timeout { gcd } => write!(f, "the GCD at {gcd} did not answer in time"),
            GcdError::Broken { gcd, cause } => write!(f, "the connection to the GCD at {gcd} failed: {cause}"),
            GcdError::NoReply { gcd } => write!(f, "the GCD at {gcd} closed the connection without answering"),
            GcdError::NotAPickle { gcd, text } if text.starts_with("Expected a pickled message") => {
                write!(f, "the GCD at {gcd} could not read our request and said: {text}")
            }
            GcdError::NotAPickle { gcd, text } => {
                write!(f, "the reply from {gcd} is not a pickle, so it is no GCD's; it said: '{text}'")
            }
            GcdError::Refused { gcd, reason } => write!(f, "the GCD at {gcd} refused us: '{reason}'"),
            GcdError::NoNameAccepted { gcd, last } => {
                write!(f, "the GCD at {gcd} accepts none of HOWDY, BEGIN and JOIN (last answer: '{last}')")
            }
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
            Reply::Text(reason) => {
                return Err(GcdError::Refused { gcd: gcd.clone(), reason: printable(reason.as_bytes(), SHOWN_MAX) })
            }
            Reply::Raw(bytes) => {
                let text = printable(bytes.trim_ascii_end(), SHOWN_MAX);
                return Err(GcdError::NotAPickle { gcd: gcd.clone(), text });
            }
            Reply::GotIt => {
                return Err(GcdError::BadReply { gcd: gcd.clone(), what: "GOT_IT: it is a peer, not a GCD".into() })
            }
            Reply::Other(v) => {
                let shown = printable(v.to_string().as_bytes(), 80);
                return Err(GcdError::BadReply { gcd: gcd.clone(), what: format!("{shown}, not a members dict") });
            }
        }
    }
    Err(GcdError::NoNameAccepted { gcd: gcd.clone(), last })
}

/// The most characters of a GCD's answer shown: gcd2.py's longest is under 140.
const SHOWN_MAX: usize = 200;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(reason: &str) -> GcdError {
        GcdError::Refused { gcd: Addr::new("127.0.0.1", 23600), reason: reason.into() }
    }

    #[test]
    fn a_refusal_gets_the_advice_its_words_call_for() {
        for (reason, advice) in [
            ("Only local group members currently allowed", Advice::ListenOnGcdHost),
            ("Malformed process id (0, 5)", Advice::CheckId),
            ("Invalid port number 70000", Advice::ListenPort),
            ("Unexpected message: HOWDY", Advice::RegisterName),
            ("[Errno -2] Name or service not known", Advice::ListenIp),
            ("encoding with 'idna' codec failed", Advice::ListenIp),
            ("Something else entirely", Advice::SeeMessage),
        ] {
            assert_eq!(refused(reason).advice(), Some(advice), "{reason}");
        }
    }

    #[test]
    fn what_is_shown_from_the_network_is_escaped_and_capped() {
        assert_eq!(printable(b"\x1b[31mred\x00\x07 ok\n", 100), "\\x1b[31mred\\0\\x07 ok\\n");
        assert_eq!(printable(b"caf\xc3\xa9 \xff", 100), "caf\u{e9} \u{fffd}");
        let long = printable(&[b'a'; 5000], 200);
        assert!(long.starts_with(&"a".repeat(200)) && long.ends_with("… (4800 more characters)"), "{long}");
        let err = GcdError::NotAPickle { gcd: Addr::new("127.0.0.1", 1), text: printable(b"\x1b[2JHI", 200) };
        assert!(!err.to_string().contains('\x1b'), "{err}");
        assert_eq!(err.advice(), Some(Advice::NotAGcd));
        let gcd2 = GcdError::NotAPickle { gcd: Addr::new("127.0.0.1", 1), text: "Expected a pickled message".into() };
        assert_eq!(gcd2.advice(), None, "gcd2.py's own words need no advice");
    }

    #[test]
    fn only_a_gcd_not_up_yet_is_worth_waiting_for() {
        let gcd = Addr::new("127.0.0.1", 1);
        assert!(
            GcdError::Unreachable { gcd: gcd.clone(), cause: std::io::Error::from_raw_os_error(111) }.is_transient()
        );
        assert!(
            !GcdError::Unreachable { gcd: gcd.clone(), cause: std::io::Error::other("no such name") }.is_transient()
        );
        assert!(!refused("Malformed process id").is_transient());
        // Waiting ends at the limit: nothing listens on port 1.
        let started = Instant::now();
        let me = ProcessId::new(5, 1_234_567);
        let gave_up =
            register_waiting(&gcd, NameChoice::Auto, me, &gcd, Duration::from_secs(1), Duration::from_millis(1_600))
                .unwrap_err();
        assert!(gave_up.attempts >= 3 && gave_up.attempts <= 5, "{gave_up:?}");
        assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    }

    #[test]
    fn errors_say_what_failed_without_naming_a_flag() {
        let gcd = Addr::new("127.0.0.1", 23600);
        let refused_conn = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let os_refused = std::io::Error::from_raw_os_error(111);
        let errors = [
            (
                GcdError::Unreachable { gcd: Addr::new("nosuch.invalid", 1), cause: refused_conn },
                Some(Advice::CheckHost),
            ),
            (GcdError::Unreachable { gcd: gcd.clone(), cause: os_refused }, Some(Advice::StartGcd)),
            (GcdError::Timeout { gcd: gcd.clone() }, Some(Advice::CheckNotStuck)),
            (GcdError::NoReply { gcd: gcd.clone() }, Some(Advice::CheckIsGcd)),
            (GcdError::Broken { gcd: gcd.clone(), cause: "reset".into() }, Some(Advice::TryAgain)),
            (GcdError::NoNameAccepted { gcd: gcd.clone(), last: "x".into() }, Some(Advice::CheckIsCourseGcd)),
            (GcdError::BadReply { gcd: gcd.clone(), what: "5".into() }, None),
            (refused("Only local group members currently allowed"), Some(Advice::ListenOnGcdHost)),
        ];
        for (error, advice) in errors {
            let text = error.to_string();
            assert_eq!(error.advice(), advice, "{text}");
            assert!(text.contains(&error.gcd().to_string()) || text.contains("nosuch.invalid"), "{text}");
            assert!(!text.contains("--"), "{text}");
        }
    }
}
