//! The node's listening side: ONE thread serves every connection by readiness polling
//! (edge-triggered epoll through `mio`), so what a crowd of connections costs is file
//! descriptors and a few hundred bytes each, never threads. Each connection carries one
//! message; ELECT and PROBE are answered GOT_IT from the listener thread as soon as the
//! message is in, so a reply never waits for the main loop. The connection is then shut
//! down and the message handed on.
//!
//! Anything can connect, so what a connection may cost is bounded: it has
//! [`READ_DEADLINE`] in all, from being accepted, to deliver its message and take the
//! reply (a peer trickling a byte at a time gets no longer than a silent one), at most
//! [`MAX_CONNECTIONS`] are open at once, and a message may be at most
//! [`wire::MAX_PICKLE_BYTES`]. When every slot is taken, the oldest connection that has
//! not yet delivered a message is closed to make room for the newest, so a crowd of
//! connections that hang can't keep a real member's PROBE out.
//!
//! No peer can hold up the loop: sockets are non-blocking; bytes are read until the
//! socket has no more and fed to the incremental [`Framer`] (nothing past STOP is
//! decoded; bytes after it are ignored); a GOT_IT the socket can't take at once waits
//! for it to become writable, within the same deadline. Connections are kept in the order
//! they were accepted, which is also the order of their deadlines, so the next deadline
//! is the oldest connection's and each event costs O(1).
//!
//! Replies go in the shape of the message's dialect (see PROTOCOL.md): `'GOT_IT'`,
//! `('GOT_IT', our_pid)` to the sender-tuple dialect, `'OK'` to the old names.

use crate::identity::ProcessId;
use crate::protocol::{Dialect, Message};
use crate::report::logging::throttled_warn;
use crate::wire::{self, decode, FrameError, Framer, Progress, Style};
use log::{debug, error};
use mio::net::{TcpListener as MioListener, TcpStream as MioStream};
use mio::{Events, Interest, Poll, Token, Waker};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a peer may take, in all, to send its one message (and take our reply).
/// Python peers send it at once and wait 1.5 to 2 s for the reply; this only limits what
/// a silent or trickling connection can cost.
pub const READ_DEADLINE: Duration = Duration::from_secs(2);

/// Connections open at once. Each costs a file descriptor (and a few hundred bytes while
/// its message is short), not a thread. The usual soft limit is 1,024 descriptors per
/// process; the rest of a node holds about 45 (its 32 senders' sockets, GCD requests,
/// stdio, the events file, epoll), so 512 leaves half the table free, and is more than
/// a fan-out of the largest group a node takes in (500 members) delivers at once: each
/// of those connections is served in microseconds.
pub const MAX_CONNECTIONS: usize = 512;

/// Connections the kernel queues for the listener to accept. std and mio listen with
/// 128; a node of a large group receives a burst of connections at once (every member's
/// ELECT or I_AM_LEADER), and a connection that finds the queue full has its handshake
/// dropped and retried a second later, most of a peer's 1.5 s reply timeout. Linux caps
/// it at `net.core.somaxconn` (4,096 by default).
pub const BACKLOG: i32 = 1024;

/// Stack of the listener thread: decoding is iterative, so 256 KiB is ample.
const LISTENER_STACK: usize = 256 * 1024;

/// Readiness events taken per poll.
const EVENTS: usize = 256;

/// Bytes read from a socket per call (one buffer for the whole loop).
const READ_CHUNK: usize = 16 * 1024;

/// How long to wait before accepting again after accept failed (out of descriptors).
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

const LISTENER: Token = Token(usize::MAX);
const WAKER: Token = Token(usize::MAX - 1);

/// A message that arrived, and from where: its dialect, and its sender when the
/// dialect names one.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub from: SocketAddr,
    pub message: Message,
    pub dialect: Dialect,
    pub sender: Option<ProcessId>,
}

/// What the listener thread shares with its handle.
#[derive(Default)]
struct Shared {
    stopping: AtomicBool,
    open: AtomicUsize,
    evicted: AtomicU64,
}

/// A running listener. [`Listener::stop`] (or dropping it) closes the listening socket
/// (new connections are refused) and every connection still open, and waits for the
/// thread to end; the address can be listened on again at once.
pub struct Listener {
    #[cfg_attr(not(test), allow(dead_code))]
    local: SocketAddr,
    waker: Waker,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

// The accessors are the listener's observable state; the runtime, which bound the
// socket itself, needs none of them, its tests do.
#[cfg_attr(not(test), allow(dead_code))]
impl Listener {
    /// The address the listener accepts on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Connections open now (accepted, not yet answered or closed).
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// Connections closed so far to make room for newer ones.
    pub fn evicted(&self) -> u64 {
        self.shared.evicted.load(Ordering::SeqCst)
    }

    /// Closes the listening socket and every open connection, and waits for the thread.
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.shared.stopping.store(true, Ordering::SeqCst);
        if let Err(e) = self.waker.wake() {
            // Can't happen with a live eventfd; the thread would then block in poll.
            error!("cannot wake the listener to stop it: {e}");
            return;
        }
        let _ = thread.join();
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Serves connections on `listener` until stopped, calling `deliver` with each protocol
/// message, from the listener thread. While `ignoring` is set, messages are read and
/// dropped without a reply (a feigned failure that keeps the port open). `me` is our id,
/// for the dialect whose GOT_IT names the replier.
pub fn spawn(
    listener: TcpListener,
    me: ProcessId,
    deliver: Arc<dyn Fn(Incoming) + Send + Sync>,
    ignoring: Arc<AtomicBool>,
) -> io::Result<Listener> {
    spawn_capped(listener, me, deliver, ignoring, MAX_CONNECTIONS)
}

fn spawn_capped(
    listener: TcpListener,
    me: ProcessId,
    deliver: Arc<dyn Fn(Incoming) + Send + Sync>,
    ignoring: Arc<AtomicBool>,
    max: usize,
) -> io::Result<Listener> {
    let local = listener.local_addr()?;
    // Listening again on a listening socket only changes its backlog.
    socket2::SockRef::from(&listener).listen(BACKLOG)?;
    listener.set_nonblocking(true)?;
    let mut socket = MioListener::from_std(listener);
    let poll = Poll::new()?;
    poll.registry().register(&mut socket, LISTENER, Interest::READABLE)?;
    let waker = Waker::new(poll.registry(), WAKER)?;
    let shared = Arc::new(Shared::default());
    let mut serving = Serving {
        poll,
        socket,
        conns: Table::default(),
        max: max.clamp(1, Table::MAX_SLOTS),
        me,
        deliver,
        ignoring,
        shared: Arc::clone(&shared),
        scratch: vec![0; READ_CHUNK],
        accept_again: None,
        turned_away: 0,
    };
    let thread =
        std::thread::Builder::new().name("listener".into()).stack_size(LISTENER_STACK).spawn(move || serving.run())?;
    Ok(Listener { local, waker, shared, thread: Some(thread) })
}

fn junk(from: SocketAddr, what: &str) {
    throttled_warn(&format!("connection from {from}: {what}; ignored"));
}

/// One accepted connection.
struct Conn {
    stream: MioStream,
    from: SocketAddr,
    /// Accepted + [`READ_DEADLINE`]: closed then, whatever state it is in.
    deadline: Instant,
    state: State,
}

enum State {
    /// Its message is coming in: the bytes so far and how far the framer got.
    Reading { buf: Vec<u8>, framer: Framer },
    /// The message is in; the rest of our GOT_IT waits for the socket to take it, and
    /// the message is handed on once it has (or at the deadline).
    Replying { rest: Vec<u8>, then: Incoming },
}

/// How reading a connection's bytes ended (for now).
#[derive(Debug)]
enum ReadOutcome {
    /// One whole pickle is in the buffer (anything after its STOP dropped).
    Message,
    /// The socket has nothing more for now.
    Pending,
    Failed(FrameError),
}

/// Reads from `stream` until it would block, the pickle is complete, or it fails:
/// never more than `limit` bytes, and nothing of what follows STOP is kept.
fn read_message(
    stream: &mut impl Read,
    buf: &mut Vec<u8>,
    framer: &mut Framer,
    scratch: &mut [u8],
    limit: usize,
) -> ReadOutcome {
    loop {
        match framer.advance(buf) {
            Ok(Progress::Complete { len }) => {
                buf.truncate(len);
                return ReadOutcome::Message;
            }
            Ok(Progress::NeedMore(n)) if buf.len().saturating_add(n) > limit => {
                return ReadOutcome::Failed(FrameError::TooLarge { limit })
            }
            Ok(Progress::NeedMore(_)) => {}
            Err(e) => return ReadOutcome::Failed(e),
        }
        // At least one byte of room: the framer needs n >= 1 more and they fit.
        let room = (limit - buf.len()).min(scratch.len());
        match stream.read(&mut scratch[..room]) {
            Ok(0) => return ReadOutcome::Failed(FrameError::Incomplete { received: buf.len() }),
            Ok(n) => buf.extend_from_slice(&scratch[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::Pending,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return ReadOutcome::Failed(FrameError::Io(e)),
        }
    }
}

/// Writes what `stream` takes of `rest` without blocking, dropping what was written:
/// `Ok(true)` once all of it is out, `Ok(false)` when the socket is full for now.
fn write_some(stream: &mut impl Write, rest: &mut Vec<u8>) -> io::Result<bool> {
    while !rest.is_empty() {
        match stream.write(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                rest.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// What a complete message calls for.
enum Verdict {
    Junk(String),
    Ignored,
    /// Answer with these bytes, then hand the message on.
    Reply(Vec<u8>, Incoming),
    /// Hand the message on (no reply is due).
    Deliver(Incoming),
}

fn judge(bytes: &[u8], from: SocketAddr, me: ProcessId, ignoring: bool) -> Verdict {
    let heard =
        match decode(bytes).map_err(|e| e.to_string()).and_then(|v| Message::hear(&v).map_err(|e| e.to_string())) {
            Ok(h) => h,
            Err(e) => return Verdict::Junk(format!("not a protocol message: {e}")),
        };
    if ignoring {
        debug!("connection from {from}: {} dropped without a reply (feigning failure)", heard.message.name());
        return Verdict::Ignored;
    }
    debug!(
        "connection from {from}: {} ({} bytes, {} dialect)",
        heard.message.name(),
        bytes.len(),
        heard.dialect.as_str()
    );
    let reply = matches!(heard.message, Message::Elect { .. } | Message::Probe)
        .then(|| wire::encode(&heard.dialect.got_it(me), Style::Compact));
    let incoming = Incoming { from, message: heard.message, dialect: heard.dialect, sender: heard.sender };
    match reply {
        Some(bytes) => Verdict::Reply(bytes, incoming),
        None => Verdict::Deliver(incoming),
    }
}

/// The listener thread's state.
struct Serving {
    poll: Poll,
    socket: MioListener,
    conns: Table,
    max: usize,
    me: ProcessId,
    deliver: Arc<dyn Fn(Incoming) + Send + Sync>,
    ignoring: Arc<AtomicBool>,
    shared: Arc<Shared>,
    scratch: Vec<u8>,
    /// When accepting failed (no descriptors): when to try again.
    accept_again: Option<Instant>,
    turned_away: u64,
}

impl Serving {
    fn run(&mut self) {
        let mut events = Events::with_capacity(EVENTS);
        loop {
            let timeout = self.next_wake().map(|at| at.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // epoll_wait fails only on a broken epoll descriptor: nothing to retry.
                error!("the listener cannot poll its sockets: {e}; no longer listening");
                return;
            }
            if self.shared.stopping.load(Ordering::SeqCst) {
                return; // drops the listening socket and every connection: all closed
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    LISTENER => self.accept_all(),
                    token => self.on_ready(token),
                }
            }
            if self.accept_again.is_some_and(|at| at <= Instant::now()) {
                self.accept_again = None;
                self.accept_all();
            }
            self.expire(Instant::now());
            self.shared.open.store(self.conns.len(), Ordering::SeqCst);
        }
    }

    /// The earliest of the oldest connection's deadline and a pending accept retry.
    fn next_wake(&self) -> Option<Instant> {
        let deadline = self.conns.oldest().map(|i| self.conns.get(i).deadline);
        match (deadline, self.accept_again) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Accepts until the backlog is empty (the listening socket is edge-triggered).
    fn accept_all(&mut self) {
        loop {
            match self.socket.accept() {
                Ok((stream, from)) => self.admit(stream, from),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted) => {}
                Err(e) => {
                    // Out of descriptors, most likely: the connection waits in the backlog.
                    throttled_warn(&format!("listener: accept failed: {e}; trying again shortly"));
                    self.accept_again = Some(Instant::now() + ACCEPT_RETRY);
                    return;
                }
            }
        }
    }

    fn admit(&mut self, mut stream: MioStream, from: SocketAddr) {
        if self.conns.len() >= self.max {
            let Some(victim) = self.conns.oldest_reading() else {
                // Every slot holds a message being answered: nothing may be closed.
                drop(stream);
                self.turned_away += 1;
                throttled_warn(&format!(
                    "listener: {} connections open, all answering: turned away {} so far (latest {from})",
                    self.max, self.turned_away
                ));
                return;
            };
            let old = self.conns.remove(victim);
            let _ = old.stream.shutdown(Shutdown::Both);
            let n = self.shared.evicted.fetch_add(1, Ordering::SeqCst) + 1;
            throttled_warn(&format!(
                "listener: {} connections open: closed the oldest that had sent nothing ({}) to serve {from}; {n} so far",
                self.max, old.from
            ));
        }
        let token = self.conns.next_token();
        if let Err(e) = self.poll.registry().register(&mut stream, token, Interest::READABLE) {
            throttled_warn(&format!("listener: cannot watch the connection from {from}: {e}; closed"));
            return;
        }
        let deadline = Instant::now() + READ_DEADLINE;
        let state = State::Reading { buf: Vec::new(), framer: Framer::new() };
        let index = self.conns.insert(Conn { stream, from, deadline, state });
        // A peer usually sends its message right after connecting: read it now rather
        // than after another poll.
        self.serve(index);
    }

    fn on_ready(&mut self, token: Token) {
        if let Some(index) = self.conns.find(token) {
            self.serve(index);
        }
    }

    /// Moves a connection on as far as its socket allows: reads its message, answers,
    /// hands the message on; or waits for the next readiness event.
    fn serve(&mut self, index: usize) {
        let ignoring = self.ignoring.load(Ordering::SeqCst);
        let conn = self.conns.get_mut(index);
        let from = conn.from;
        let verdict = match &mut conn.state {
            State::Reading { buf, framer } => {
                match read_message(&mut conn.stream, buf, framer, &mut self.scratch, wire::MAX_PICKLE_BYTES) {
                    ReadOutcome::Pending => return,
                    ReadOutcome::Failed(e) => Verdict::Junk(e.to_string()),
                    ReadOutcome::Message => judge(buf, from, self.me, ignoring),
                }
            }
            State::Replying { rest, .. } => match write_some(&mut conn.stream, rest) {
                Ok(false) => return,
                Ok(true) => return self.finish(index),
                Err(e) => {
                    debug!("GOT_IT to {from} failed: {e}");
                    return self.finish(index);
                }
            },
        };
        match verdict {
            Verdict::Junk(what) => {
                self.conns.remove(index);
                junk(from, &what);
            }
            Verdict::Ignored => {
                self.conns.remove(index);
            }
            Verdict::Deliver(incoming) => {
                let conn = self.conns.remove(index);
                let _ = conn.stream.shutdown(Shutdown::Both);
                (self.deliver)(incoming);
            }
            Verdict::Reply(mut rest, then) => match write_some(&mut conn.stream, &mut rest) {
                Ok(false) => {
                    let token = self.conns.token(index);
                    let conn = self.conns.get_mut(index);
                    if let Err(e) = self.poll.registry().reregister(&mut conn.stream, token, Interest::WRITABLE) {
                        debug!("GOT_IT to {from} failed: {e}");
                        conn.state = State::Replying { rest: Vec::new(), then };
                        return self.finish(index);
                    }
                    conn.state = State::Replying { rest, then };
                }
                result => {
                    if let Err(e) = result {
                        debug!("GOT_IT to {from} failed: {e}");
                    }
                    self.conns.get_mut(index).state = State::Replying { rest: Vec::new(), then };
                    self.finish(index);
                }
            },
        }
    }

    /// The reply is out (or can't be sent): shut the connection down, hand the message on.
    fn finish(&mut self, index: usize) {
        let conn = self.conns.remove(index);
        let _ = conn.stream.shutdown(Shutdown::Both);
        if let State::Replying { then, .. } = conn.state {
            (self.deliver)(then);
        }
    }

    /// Closes every connection whose deadline has passed (the oldest come first).
    fn expire(&mut self, now: Instant) {
        while let Some(index) = self.conns.oldest() {
            if self.conns.get(index).deadline > now {
                return;
            }
            match &self.conns.get(index).state {
                State::Reading { buf, .. } if buf.is_empty() => {
                    let conn = self.conns.remove(index);
                    junk(conn.from, "timed out waiting for data");
                }
                State::Reading { buf, .. } => {
                    let what = format!("timed out waiting for data ({} bytes came, not a whole message)", buf.len());
                    let conn = self.conns.remove(index);
                    junk(conn.from, &what);
                }
                State::Replying { .. } => {
                    debug!("GOT_IT to {} not taken before the deadline", self.conns.get(index).from);
                    self.finish(index);
                }
            }
        }
    }
}

/// The open connections in the order they were accepted (a doubly linked list threaded
/// through a slab): inserting, finding by token and removing are O(1), and the oldest
/// comes first. A slot's generation is part of its token, so an event still queued for
/// a connection that was closed never reaches the one that took its slot.
#[derive(Default)]
struct Table {
    slots: Vec<Slot>,
    free: Vec<usize>,
    head: Option<usize>,
    tail: Option<usize>,
    len: usize,
}

struct Slot {
    generation: u16,
    conn: Option<Conn>,
    prev: Option<usize>,
    next: Option<usize>,
}

impl Table {
    /// Slot indices fit in a token's low 16 bits, and no token reaches [`LISTENER`] or
    /// [`WAKER`] even where `usize` has 32 bits.
    const MAX_SLOTS: usize = 1 << 15;

    fn len(&self) -> usize {
        self.len
    }

    fn token(&self, index: usize) -> Token {
        Token(usize::from(self.slots[index].generation) << 16 | index)
    }

    /// The token the next inserted connection will have.
    fn next_token(&self) -> Token {
        match self.free.last() {
            Some(&index) => self.token(index),
            None => Token(self.slots.len()),
        }
    }

    fn find(&self, token: Token) -> Option<usize> {
        let (index, generation) = (token.0 & 0xffff, token.0 >> 16);
        let slot = self.slots.get(index)?;
        (usize::from(slot.generation) == generation && slot.conn.is_some()).then_some(index)
    }

    fn get(&self, index: usize) -> &Conn {
        self.slots[index].conn.as_ref().expect("a live slot")
    }

    fn get_mut(&mut self, index: usize) -> &mut Conn {
        self.slots[index].conn.as_mut().expect("a live slot")
    }

    fn oldest(&self) -> Option<usize> {
        self.head
    }

    /// The oldest connection whose message has not come in yet. Connections answering
    /// are skipped; there are hardly ever any (a GOT_IT fits any empty socket buffer).
    fn oldest_reading(&self) -> Option<usize> {
        let mut at = self.head;
        while let Some(index) = at {
            if matches!(self.get(index).state, State::Reading { .. }) {
                return Some(index);
            }
            at = self.slots[index].next;
        }
        None
    }

    /// Adds `conn` as the newest, at the slot [`Table::next_token`] named.
    fn insert(&mut self, conn: Conn) -> usize {
        let index = self.free.pop().unwrap_or_else(|| {
            self.slots.push(Slot { generation: 0, conn: None, prev: None, next: None });
            self.slots.len() - 1
        });
        let slot = &mut self.slots[index];
        slot.conn = Some(conn);
        slot.prev = self.tail;
        slot.next = None;
        match self.tail {
            Some(tail) => self.slots[tail].next = Some(index),
            None => self.head = Some(index),
        }
        self.tail = Some(index);
        self.len += 1;
        index
    }

    /// Takes a connection out (dropping what it returns closes the socket).
    fn remove(&mut self, index: usize) -> Conn {
        let slot = &mut self.slots[index];
        let conn = slot.conn.take().expect("a live slot");
        let (prev, next) = (slot.prev.take(), slot.next.take());
        slot.generation = slot.generation.wrapping_add(1);
        match prev {
            Some(p) => self.slots[p].next = next,
            None => self.head = next,
        }
        match next {
            Some(n) => self.slots[n].prev = prev,
            None => self.tail = prev,
        }
        self.free.push(index);
        self.len -= 1;
        conn
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::{Addr, Members};
    use crate::protocol::encode_message;
    use crate::wire::Value;
    use std::net::TcpStream;
    use std::sync::mpsc::{channel, Receiver};

    const ME: ProcessId = ProcessId { days: 40, su_id: 4_000_040 };

    struct Running {
        listener: Listener,
        heard: Receiver<Incoming>,
        ignoring: Arc<AtomicBool>,
    }

    fn start(cap: usize) -> Running {
        let (tx, heard) = channel();
        let deliver: Arc<dyn Fn(Incoming) + Send + Sync> = Arc::new(move |i| {
            let _ = tx.send(i);
        });
        let ignoring = Arc::new(AtomicBool::new(false));
        let socket = TcpListener::bind("127.0.0.1:0").unwrap();
        let listener = spawn_capped(socket, ME, deliver, Arc::clone(&ignoring), cap).unwrap();
        Running { listener, heard, ignoring }
    }

    fn connect(addr: SocketAddr) -> TcpStream {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// Sends `bytes` on a connection of its own and returns everything that came back
    /// before the listener closed it.
    fn ask(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
        let mut s = connect(addr);
        s.write_all(bytes).unwrap();
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).unwrap();
        reply
    }

    /// Whether the listener has closed `s` (EOF or reset), waiting up to 10 s for it.
    fn closed(s: &mut TcpStream) -> bool {
        let mut b = [0u8; 1];
        match s.read(&mut b) {
            Ok(0) => true,
            Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        }
    }

    /// Whether `s` is still open with nothing to read, without waiting.
    fn still_open(s: &TcpStream) -> bool {
        s.set_nonblocking(true).unwrap();
        let open = matches!((&mut &*s).read(&mut [0u8; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        s.set_nonblocking(false).unwrap();
        open
    }

    fn poll(what: &str, mut ok: impl FnMut() -> bool) {
        let until = Instant::now() + Duration::from_secs(20);
        while !ok() {
            assert!(Instant::now() < until, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn next(heard: &Receiver<Incoming>) -> Incoming {
        heard.recv_timeout(Duration::from_secs(10)).expect("a message handed on")
    }

    fn probe_value() -> Vec<u8> {
        encode_message(&Message::Probe)
    }

    #[test]
    fn elect_and_probe_are_answered_in_their_dialect_and_handed_on() {
        let r = start(MAX_CONNECTIONS);
        let addr = r.listener.local_addr();
        let sender = ProcessId::new(5, 1_234_567);
        let members: Members = [(sender, Addr::new("127.0.0.1", 9))].into_iter().collect();
        let elect = Message::Elect { members: members.clone(), sender: None, rejected: 0 };
        let dialects = [Dialect::Standard, Dialect::Wrapped, Dialect::Sender, Dialect::OldNames];
        for dialect in dialects {
            for message in [&elect, &Message::Probe] {
                let value = message.to_value_in(dialect, sender, &Addr::new("127.0.0.1", 9), ME, &members);
                let reply = ask(addr, &wire::encode(&value, Style::Compact));
                let heard = next(&r.heard);
                assert_eq!(heard.message.name(), message.name(), "{dialect:?}");
                // A PROBE has no sender-tuple or old-names form: it is standard there.
                assert_eq!(decode(&reply).unwrap(), heard.dialect.got_it(ME), "{dialect:?} {}", message.name());
                if matches!(message, Message::Elect { .. }) {
                    assert_eq!(heard.dialect, dialect);
                }
            }
        }
        // The replies differ by dialect: the test would notice a fixed 'GOT_IT'.
        let old = Message::Probe.to_value_in(Dialect::OldNames, sender, &Addr::new("h", 1), ME, &members);
        assert_eq!(old, Message::Probe.to_value());
        let sender_elect = elect.to_value_in(Dialect::Sender, sender, &Addr::new("127.0.0.1", 9), ME, &members);
        let reply = ask(addr, &wire::encode(&sender_elect, Style::Compact));
        assert_eq!(decode(&reply).unwrap(), Value::tuple([Value::str("GOT_IT"), crate::protocol::pid_to_value(ME)]));
        let heard = next(&r.heard);
        assert_eq!(heard.sender, Some(sender));
        // An I_AM_LEADER is handed on without a reply.
        let leader = Message::IAmLeader { leader: sender, addr: None };
        assert_eq!(ask(addr, &encode_message(&leader)), b"");
        assert_eq!(next(&r.heard).message, leader);
    }

    #[test]
    fn while_ignoring_messages_are_read_and_dropped_unanswered() {
        let r = start(MAX_CONNECTIONS);
        let addr = r.listener.local_addr();
        r.ignoring.store(true, Ordering::SeqCst);
        assert_eq!(ask(addr, &probe_value()), b"", "answered while feigning");
        r.ignoring.store(false, Ordering::SeqCst);
        let mut s = connect(addr);
        let mine = s.local_addr().unwrap();
        s.write_all(&probe_value()).unwrap();
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).unwrap();
        assert_eq!(decode(&reply).unwrap(), Value::str("GOT_IT"));
        // One thread serves both in order: had the ignored PROBE been handed on, it
        // would come first.
        assert_eq!(next(&r.heard).from, mine);
    }

    #[test]
    fn junk_truncated_and_oversize_connections_are_closed_and_the_next_is_served() {
        let r = start(MAX_CONNECTIONS);
        let addr = r.listener.local_addr();
        let mut oversize = b"\x80\x04\x8d".to_vec();
        oversize.extend_from_slice(&(70_000u64).to_le_bytes());
        let junk: [&[u8]; 4] = [b"GET / HTTP/1.1\r\n\r\n", &oversize, b"\x80\x04\x95", b"(VHELLO\np0\nNtp1\n."];
        for bytes in junk {
            let mut s = connect(addr);
            s.write_all(bytes).unwrap();
            if bytes == b"\x80\x04\x95" {
                s.shutdown(Shutdown::Write).unwrap(); // truncated: the peer ends mid-pickle
            }
            assert!(closed(&mut s), "{bytes:?} left open");
        }
        // HELLO is a well-formed message of an unknown name: handed on, not answered.
        assert!(matches!(next(&r.heard).message, Message::Unknown { .. }));
        assert_eq!(decode(&ask(addr, &probe_value())).unwrap(), Value::str("GOT_IT"));
        assert_eq!(next(&r.heard).message, Message::Probe);
        assert!(r.heard.try_recv().is_err(), "junk was handed on");
    }

    #[test]
    fn past_the_cap_the_oldest_silent_connections_make_room_and_a_probe_is_answered() {
        // A small cap: the test process holds both ends of every connection.
        let cap = 40;
        let r = start(cap);
        let addr = r.listener.local_addr();
        let mut silent: Vec<TcpStream> = (0..cap + 25).map(|_| connect(addr)).collect();
        poll("25 evicted", || r.listener.evicted() == 25);
        assert_eq!(r.listener.open_connections(), cap);
        for s in &mut silent[..25] {
            assert!(closed(s), "an old silent connection was not closed");
        }
        // A real PROBE while every slot is taken: answered, and the newest silent
        // connections (long before their deadline) are still open.
        assert_eq!(decode(&ask(addr, &probe_value())).unwrap(), Value::str("GOT_IT"));
        assert!(silent[cap + 20..].iter().all(still_open), "newer connections were closed");
        assert_eq!(r.listener.evicted(), 26);
        assert!(r.listener.open_connections() <= cap);
    }

    #[test]
    fn a_trickling_sender_is_cut_at_the_deadline() {
        let r = start(MAX_CONNECTIONS);
        let addr = r.listener.local_addr();
        // The PROBE as CPython pickles it (23 bytes), a byte every 300 ms: the whole
        // of it would take 7 s, far past the deadline.
        let bytes = wire::encode(&Message::Probe.to_value(), Style::CPython);
        let pace = Duration::from_millis(300);
        assert!(pace * bytes.len() as u32 > READ_DEADLINE * 3);
        let mut s = connect(addr);
        let started = Instant::now();
        let mut sent = 0;
        for b in &bytes {
            if s.write_all(&[*b]).is_err() || !still_open(&s) {
                break;
            }
            sent += 1;
            std::thread::sleep(pace);
        }
        assert!(sent < bytes.len(), "the whole PROBE got through");
        assert!(started.elapsed() >= READ_DEADLINE, "cut after {:?}", started.elapsed());
        assert!(closed(&mut s));
        assert_eq!(decode(&ask(addr, &probe_value())).unwrap(), Value::str("GOT_IT"));
        assert_eq!(next(&r.heard).message, Message::Probe);
        assert!(r.heard.try_recv().is_err(), "the trickled PROBE was handed on");
    }

    #[test]
    fn peers_that_never_read_or_close_do_not_hold_up_the_loop() {
        let r = start(MAX_CONNECTIONS);
        let addr = r.listener.local_addr();
        // Each sends its message (and more after STOP), then neither reads nor closes.
        let mut with_tail = probe_value();
        with_tail.extend_from_slice(&[0xff; 4096]);
        let idle: Vec<TcpStream> = (0..20)
            .map(|_| {
                let mut s = connect(addr);
                s.write_all(&with_tail).unwrap();
                s
            })
            .collect();
        for _ in &idle {
            assert_eq!(next(&r.heard).message, Message::Probe);
        }
        poll("all answered and closed", || r.listener.open_connections() == 0);
        assert_eq!(decode(&ask(addr, &probe_value())).unwrap(), Value::str("GOT_IT"));
        // Each got its GOT_IT, whenever it reads.
        for mut s in idle {
            let reply = wire::read_pickle(&mut s, 1024).unwrap();
            assert_eq!(decode(&reply).unwrap(), Value::str("GOT_IT"));
        }
    }

    #[test]
    fn stop_closes_everything_and_the_address_can_be_listened_on_again() {
        let r = start(MAX_CONNECTIONS);
        let addr = r.listener.local_addr();
        let mut held = connect(addr);
        poll("the connection held", || r.listener.open_connections() == 1);
        r.listener.stop();
        assert!(closed(&mut held), "an open connection survived stop");
        assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(5)).is_err(), "still accepting after stop");
        // The runtime's recovery: the same address again, at once.
        let (tx, heard) = channel();
        let deliver: Arc<dyn Fn(Incoming) + Send + Sync> = Arc::new(move |i| {
            let _ = tx.send(i);
        });
        let again = spawn(TcpListener::bind(addr).unwrap(), ME, deliver, Arc::default()).unwrap();
        assert_eq!(again.local_addr(), addr);
        assert_eq!(decode(&ask(addr, &probe_value())).unwrap(), Value::str("GOT_IT"));
        assert_eq!(next(&heard).message, Message::Probe);
        drop(again);
        assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(5)).is_err(), "still accepting after drop");
    }

    /// A reader that hands out its chunks one per call, then would block.
    struct Chunks(Vec<Vec<u8>>);

    impl Read for Chunks {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let chunk = &mut self.0[0];
            let n = chunk.len().min(out.len());
            out[..n].copy_from_slice(&chunk[..n]);
            chunk.drain(..n);
            if chunk.is_empty() {
                self.0.remove(0);
            }
            Ok(n)
        }
    }

    #[test]
    fn reading_resumes_across_readiness_and_stops_at_stop() {
        let probe = probe_value();
        let (head, tail) = probe.split_at(3);
        let mut after = tail.to_vec();
        after.extend_from_slice(b"\x00junk after STOP");
        let mut stream = Chunks(vec![head.to_vec()]);
        let (mut buf, mut framer, mut scratch) = (Vec::new(), Framer::new(), vec![0; 8]);
        let first = read_message(&mut stream, &mut buf, &mut framer, &mut scratch, wire::MAX_PICKLE_BYTES);
        assert!(matches!(first, ReadOutcome::Pending), "{first:?}");
        stream.0.push(after);
        let second = read_message(&mut stream, &mut buf, &mut framer, &mut scratch, wire::MAX_PICKLE_BYTES);
        assert!(matches!(second, ReadOutcome::Message), "{second:?}");
        assert_eq!(buf, probe, "bytes after STOP were kept");
        // A pickle longer than the limit is refused once the limit is reached.
        let mut long = b"\x80\x02X\x00\x01\x00\x00".to_vec();
        long.extend(std::iter::repeat_n(b'a', 256));
        long.push(b'.');
        let (mut buf, mut framer) = (Vec::new(), Framer::new());
        let refused = read_message(&mut Chunks(vec![long]), &mut buf, &mut framer, &mut scratch, 100);
        assert!(matches!(refused, ReadOutcome::Failed(FrameError::TooLarge { limit: 100 })), "{refused:?}");
        assert!(buf.len() <= 100);
    }

    /// A writer that takes `room` bytes, then would block until given more room.
    struct Tight {
        taken: Vec<u8>,
        room: usize,
    }

    impl Write for Tight {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = data.len().min(self.room);
            self.taken.extend_from_slice(&data[..n]);
            self.room -= n;
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_reply_the_socket_cannot_take_at_once_is_kept_until_it_can() {
        let got_it = wire::encode(&Value::str("GOT_IT"), Style::Compact);
        let mut rest = got_it.clone();
        let mut socket = Tight { taken: Vec::new(), room: 5 };
        assert!(!write_some(&mut socket, &mut rest).unwrap());
        assert_eq!(rest, got_it[5..]);
        socket.room = 100;
        assert!(write_some(&mut socket, &mut rest).unwrap());
        assert_eq!(socket.taken, got_it);
    }

    #[test]
    fn tokens_of_closed_connections_never_reach_the_connection_in_their_slot() {
        let mut t = Table::default();
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let conn = || Conn {
            stream: MioStream::from_std(TcpStream::connect(addr).unwrap()),
            from: addr,
            deadline: Instant::now(),
            state: State::Reading { buf: Vec::new(), framer: Framer::new() },
        };
        let (ta, tb) = (t.next_token(), {
            t.insert(conn());
            t.next_token()
        });
        let b = t.insert(conn());
        assert_eq!(t.find(tb), Some(b));
        let a = t.find(ta).unwrap();
        t.remove(a);
        assert_eq!(t.find(ta), None);
        assert_eq!(t.oldest(), Some(b));
        let tc = t.next_token();
        let c = t.insert(conn());
        assert_eq!(c, a, "the free slot is reused");
        assert_eq!(t.find(ta), None, "a stale token found the new connection");
        assert_eq!(t.find(tc), Some(c));
        assert_eq!((t.oldest(), t.len()), (Some(b), 2));
        t.remove(b);
        assert_eq!(t.oldest(), Some(c));
    }
}
