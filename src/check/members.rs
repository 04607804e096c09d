//! The checker's side of the group: scripted members (sockets the checker owns,
//! registered with its coordinator) that record what the peer sends them and answer as
//! their script says, and the connections the checker makes to the peer.
//!
//! Each member answers from the connection's own thread at once, so nothing the peer
//! does can hold up the driver; [`Scripted`] closes its socket when dropped.

use super::dialect::{classify, read, Read as Heard, ReplyForm, Spoken};
use super::journal::{At, Journal, Kind, Outcome, PendingProbe, Received, Role};
use crate::identity::ProcessId;
use crate::membership::{Addr, Members};
use crate::net;
use crate::protocol::Reply;
use crate::wire::{self, decode, read_pickle, Style, Value};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the leader member waits after its GOT_IT before announcing itself, the
/// first [`SLOW_ANNOUNCEMENTS`] times: long enough to see a peer that declares itself
/// leader meanwhile, well inside the 4 s that peers wait for I_AM_LEADER.
pub const ANNOUNCE_AFTER: Duration = Duration::from_millis(1500);
/// After that it announces sooner, so that a peer that feigns failure often spends
/// more of its time up following (and PROBEing) it.
pub const ANNOUNCE_SOON: Duration = Duration::from_millis(300);
pub const SLOW_ANNOUNCEMENTS: usize = 4;

/// A reply later than this is late (the checks' "within 1 s").
pub const REPLY_LIMIT: Duration = Duration::from_secs(1);

/// How long the checker waits for any reply at all, to tell late from missing.
pub const REPLY_WAIT: Duration = Duration::from_secs(4);

/// How long a member waits to learn which form of OK a members-dict peer reads (from its
/// own replies to the monitor) before answering it.
const LEARN_FORM_WITHIN: Duration = Duration::from_millis(600);

/// How long a silent member holds a connection the peer leaves open.
const HOLD_LIMIT: Duration = Duration::from_secs(10);

/// What a scripted member does with a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// GOT_IT to ELECT and PROBE.
    Answer,
    /// GOT_IT, and after an ELECT, I_AM_LEADER to the peer [`ANNOUNCE_AFTER`] later.
    Lead,
    /// Read the message, close without a reply (a failed leader's PROBE fails at once).
    Drop,
    /// Read the message, never reply, hold the connection until the peer gives up.
    Silent,
}

/// What the members share: the journal, the peer's identity and address once known,
/// and the group as the checker tells it.
pub struct Shared {
    pub journal: Arc<Journal>,
    pub peer: Mutex<Option<(ProcessId, Addr)>>,
    pub group: Mutex<Members>,
    pub stopping: AtomicBool,
    /// The dialect spoken before the peer shows its own: from its GCD's era.
    pub default: Mutex<Spoken>,
    conns: AtomicU64,
}

impl Shared {
    pub fn new(journal: Arc<Journal>) -> Arc<Shared> {
        Arc::new(Shared {
            journal,
            peer: Mutex::new(None),
            group: Mutex::new(Members::default()),
            stopping: AtomicBool::new(false),
            default: Mutex::new(Spoken::STANDARD),
            conns: AtomicU64::new(0),
        })
    }

    pub fn peer(&self) -> Option<(ProcessId, Addr)> {
        self.peer.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn group(&self) -> Members {
        self.group.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The dialect to speak to the peer: its own once known, its era's before.
    pub fn spoken(&self) -> Spoken {
        let default = *self.default.lock().unwrap_or_else(|e| e.into_inner());
        self.journal.lock().dialect.unwrap_or(default)
    }

    /// Sends the peer `value` (named `name` in the journal) and waits for its reply.
    pub fn ask_peer(&self, name: &'static str, value: &Value, style: Style) -> Outcome {
        self.send_raw(name, &wire::encode(value, style))
    }

    /// Sends the peer raw bytes and says how the connection ended; notes the form of an
    /// OK it replies with (the form it expects back).
    pub fn send_raw(&self, name: &'static str, bytes: &[u8]) -> Outcome {
        let Some((_, addr)) = self.peer() else { return Outcome::Refused };
        self.journal.sent(name);
        let (outcome, reply) = exchange_reply(&addr, bytes);
        if let Some(form) = reply.as_ref().and_then(ReplyForm::of) {
            self.journal.update(|r| {
                r.reply_form.get_or_insert(form);
            });
        }
        outcome
    }

    /// An ELECT (as bytes) to a peer that answers it on a new connection: sent, then
    /// the OK awaited at `member`, the sender it names.
    pub fn elect_apart(&self, name: &'static str, bytes: &[u8], member: Role) -> Outcome {
        let Some((_, addr)) = self.peer() else { return Outcome::Refused };
        self.journal.sent(name);
        let sent = self.journal.now();
        let Ok(mut stream) = net::connect(&addr, Duration::from_millis(500)) else { return Outcome::Refused };
        if stream.write_all(bytes).is_err() {
            return Outcome::Refused;
        }
        // Its reply on this connection, if any, is not the answer; leave it open a moment.
        let _ = stream.shutdown(Shutdown::Write);
        let got = self
            .journal
            .wait_until(sent + REPLY_WAIT, |r| r.oks.iter().any(|(at, role)| *at >= sent && *role == member));
        if !got {
            return Outcome::NoReply;
        }
        let at = self.journal.lock().oks.iter().find(|(at, role)| *at >= sent && *role == member).map(|(at, _)| *at);
        let took = at.unwrap_or(sent).saturating_sub(sent);
        if took <= REPLY_LIMIT {
            Outcome::Ok(took)
        } else {
            Outcome::Late(took)
        }
    }

    /// PROBE from `sender`, in the peer's dialect.
    pub fn probe_peer(&self, sender: ProcessId) -> Outcome {
        let Some((peer, _)) = self.peer() else { return Outcome::Refused };
        let msg = self.spoken().probe(&self.group(), sender, peer);
        self.ask_peer("PROBE", &msg, Style::Compact)
    }
}

/// One exchange with the peer: connect (refused within half a second or not at all),
/// one write, then wait up to [`REPLY_WAIT`] for one pickled reply; with the reply's
/// value when it was a pickle.
fn exchange_reply(addr: &Addr, bytes: &[u8]) -> (Outcome, Option<Value>) {
    let mut stream = match net::connect(addr, Duration::from_millis(500)) {
        Ok(s) => s,
        Err(_) => return (Outcome::Refused, None),
    };
    let sent = std::time::Instant::now();
    if stream.write_all(bytes).is_err() {
        return (Outcome::Refused, None);
    }
    let _ = stream.set_read_timeout(Some(REPLY_WAIT));
    match read_pickle(&mut stream, wire::MAX_PICKLE_BYTES) {
        Ok(reply) => {
            let took = sent.elapsed();
            let value = decode(&reply).ok();
            let outcome = match decode(&reply).map(Reply::from_value) {
                Ok(Reply::GotIt) if took <= REPLY_LIMIT => Outcome::Ok(took),
                Ok(Reply::GotIt) => Outcome::Late(took),
                Ok(other) => Outcome::Wrong(short(&format!("{other:?}"))),
                Err(e) => Outcome::Wrong(format!("an unreadable pickle ({e})")),
            };
            (outcome, value)
        }
        Err(wire::FrameError::Incomplete { received: 0 }) => (Outcome::Dropped, None),
        Err(wire::FrameError::Io(e)) if wire::is_timeout(&e) => (Outcome::NoReply, None),
        // A listener closed with our connection still in its backlog resets it.
        Err(wire::FrameError::Io(e)) if e.kind() == ErrorKind::ConnectionReset => (Outcome::Refused, None),
        Err(e) => (Outcome::Wrong(short(&e.to_string())), None),
    }
}

/// At most 60 characters of what the peer said, escaped for a terminal.
fn short(s: &str) -> String {
    crate::report::printable(s.as_bytes(), 60)
}

/// Sends I_AM_LEADER without waiting for anything back; true if it was delivered.
pub fn announce(addr: &Addr, value: &Value) -> bool {
    net::connect(addr, Duration::from_millis(500))
        .and_then(|mut s| {
            s.write_all(&wire::encode(value, Style::Compact))?;
            let _ = s.shutdown(Shutdown::Write);
            Ok(())
        })
        .is_ok()
}

/// A scripted member: a listener of the checker's, and its script.
pub struct Scripted {
    pub role: Role,
    pub pid: ProcessId,
    pub addr: Addr,
    mode: Arc<Mutex<Mode>>,
    stop: Arc<AtomicBool>,
    local: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl Scripted {
    /// Binds 127.0.0.1 on a free port and serves it with `mode`.
    pub fn start(role: Role, pid: ProcessId, mode: Mode, shared: &Arc<Shared>) -> std::io::Result<Scripted> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let local = listener.local_addr()?;
        let addr = Addr::new("127.0.0.1", local.port());
        let mode = Arc::new(Mutex::new(mode));
        let stop = Arc::new(AtomicBool::new(false));
        let me = Member { role, pid, addr: addr.clone(), mode: Arc::clone(&mode), shared: Arc::clone(shared) };
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new().name(format!("member-{}", role.label())).spawn(move || {
            let me = Arc::new(me);
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = conn else { continue };
                let me = Arc::clone(&me);
                let _ = std::thread::Builder::new()
                    .name(format!("member-{}-conn", role.label()))
                    .stack_size(256 * 1024)
                    .spawn(move || me.serve(stream));
            }
        })?;
        Ok(Scripted { role, pid, addr, mode, stop, local, thread: Some(thread) })
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap_or_else(|e| e.into_inner()) = mode;
    }

    /// Closes the listener: from now on the peer's connections are refused.
    pub fn close(&mut self) {
        let Some(thread) = self.thread.take() else { return };
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.local, Duration::from_secs(1));
        let _ = thread.join();
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.close();
    }
}

struct Member {
    role: Role,
    pid: ProcessId,
    addr: Addr,
    mode: Arc<Mutex<Mode>>,
    shared: Arc<Shared>,
}

impl Member {
    fn mode(&self) -> Mode {
        *self.mode.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn serve(&self, mut stream: TcpStream) {
        let journal = &self.shared.journal;
        let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
        let Ok(bytes) = read_pickle(&mut stream, wire::MAX_PICKLE_BYTES) else { return };
        let at = journal.now();
        let Ok(value) = decode(&bytes) else { return };
        let spoken = classify(&value);
        let heard = read(&value);
        let kind = match &heard {
            Heard::Elect { .. } => Kind::Elect,
            Heard::Leader(leader) => Kind::Leader(*leader),
            Heard::Probe => Kind::Probe,
            Heard::Ok => Kind::Other("OK".into()),
            Heard::Other(what) => Kind::Other(what.clone()),
        };
        let mode = self.mode();
        let answers = matches!(mode, Mode::Answer | Mode::Lead) && matches!(kind, Kind::Elect | Kind::Probe);
        let conn = self.shared.conns.fetch_add(1, Ordering::SeqCst);
        journal.update(|r| {
            if r.dialect.is_none() {
                r.dialect = spoken;
            }
            if heard == Heard::Ok {
                r.oks.push((at, self.role));
            } else {
                r.received.push(Received { at, role: self.role, kind: kind.clone(), answered: answers });
            }
        });
        if answers {
            let speak = spoken.unwrap_or_else(|| self.shared.spoken());
            if speak == Spoken::OLD_MEMBERS {
                // Its peers answer 'OK' or ('OK', ...), and each reads only one of them:
                // the monitor's PROBEs show which it writes (and so reads) within moments.
                // It waits 1 to 2 s for an answer; a little of that goes to learning.
                let until = journal.now() + LEARN_FORM_WITHIN;
                journal.wait_until(until, |r| r.reply_form.is_some());
            }
            let form = journal.lock().reply_form;
            let reply = wire::encode(&speak.got_it(self.pid, form), Style::Compact);
            if speak.answers_apart() && kind == Kind::Elect {
                // ('OK', None) on a new connection to the sender's listen address.
                let to = match &heard {
                    Heard::Elect { sender: Some(s), members } => members.get(*s).cloned(),
                    _ => None,
                }
                .or_else(|| self.shared.peer().map(|(_, a)| a));
                if let Some(to) = to {
                    let ok = wire::encode(&Value::tuple([Value::str("OK"), Value::None]), Style::Compact);
                    let _ = net::connect(&to, Duration::from_millis(500)).and_then(|mut s| s.write_all(&ok));
                }
            } else {
                let _ = stream.write_all(&reply);
            }
        }
        match mode {
            Mode::Lead if kind == Kind::Elect => self.announce_later(),
            Mode::Silent => {
                if kind == Kind::Elect {
                    self.probe_while_pending(at, conn);
                }
                self.hold(stream, conn)
            }
            _ => {}
        }
    }

    /// Keeps a connection open without a word until the peer closes it.
    fn hold(&self, mut stream: TcpStream, conn: u64) {
        let journal = &self.shared.journal;
        let until = journal.now() + HOLD_LIMIT;
        let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
        let mut buf = [0u8; 256];
        while journal.now() < until && !self.shared.stopping.load(Ordering::SeqCst) {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if wire::is_timeout(&e) || e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let at = journal.now();
        journal.update(|r| r.closed.push((conn, at)));
    }

    /// The peer's ELECT to us is pending (we hold it unanswered): does it still answer
    /// a PROBE? One attempt per election (the first silent member to hear of it).
    fn probe_while_pending(&self, elect_at: At, conn: u64) {
        let shared = Arc::clone(&self.shared);
        let started = shared.journal.update(|r| {
            if r.not_blocking.last().is_some_and(|a| elect_at.saturating_sub(a.elect_at) < Duration::from_secs(2)) {
                return false;
            }
            r.not_blocking.push(PendingProbe { elect_at, outcome: None, pending_at_reply: false });
            true
        });
        if !started {
            return;
        }
        let sender = self.pid;
        let _ = std::thread::Builder::new().name("member-pending-probe".into()).spawn(move || {
            let outcome = shared.probe_peer(sender);
            let at = shared.journal.now();
            shared.journal.update(|r| {
                let pending = !r.closed.iter().any(|(c, closed)| *c == conn && *closed <= at);
                if let Some(a) = r.not_blocking.iter_mut().find(|a| a.elect_at == elect_at) {
                    a.outcome = Some(outcome);
                    a.pending_at_reply = pending;
                }
            });
        });
    }

    fn announce_later(&self) {
        let (shared, mode, pid, addr) = (Arc::clone(&self.shared), Arc::clone(&self.mode), self.pid, self.addr.clone());
        let _ = std::thread::Builder::new().name("member-announce".into()).spawn(move || {
            let slow = shared.journal.lock().announced.len() < SLOW_ANNOUNCEMENTS;
            std::thread::sleep(if slow { ANNOUNCE_AFTER } else { ANNOUNCE_SOON });
            let still_leading = *mode.lock().unwrap_or_else(|e| e.into_inner()) == Mode::Lead;
            let Some((peer, peer_addr)) = shared.peer() else { return };
            if !still_leading || shared.stopping.load(Ordering::SeqCst) {
                return;
            }
            let spoken = shared.spoken();
            let msg = spoken.leader(pid, &addr, &shared.group(), peer);
            shared.journal.sent(spoken.name("I_AM_LEADER"));
            if announce(&peer_addr, &msg) {
                let at = shared.journal.now();
                shared.journal.update(|r| r.announced.push(at));
            }
        });
    }
}
