//! One server for every listening socket of the crate, the node's and the coordinator's:
//! ONE thread serves every connection by readiness polling (edge-triggered epoll through
//! `mio`), so what a crowd of connections costs is file descriptors and a few hundred
//! bytes each, never threads. Every connection carries one request: the server reads it
//! (one pickle, framed incrementally), asks its [`Service`] what to do, writes the reply
//! without blocking, shuts the connection down, and then runs the service's after-step
//! (the node hands its message on there, once the peer has its GOT_IT).
//!
//! Anything can connect, so what a connection may cost is bounded by [`Limits`]: it has
//! [`Limits::deadline`] in all, from being accepted, to deliver its request and take the
//! reply (a peer trickling a byte at a time gets no longer than a silent one), at most
//! [`Limits::max_connections`] are open at once, and a request may be at most
//! [`Limits::max_request`] bytes. What happens when every slot is taken is
//! [`Limits::when_full`]: close the oldest connection that has not yet delivered its
//! request (so a crowd of connections that hang can't keep a real request out), or stop
//! accepting, leaving newcomers in the kernel's backlog until a slot frees (with a cap of
//! one: one request at a time in arrival order, as gcd2.py's single-threaded
//! socketserver serves).
//!
//! No peer can hold up the loop: sockets are non-blocking; bytes are read until the
//! socket has no more and fed to the incremental [`Framer`] (nothing past STOP is kept);
//! a reply the socket can't take at once waits for it to become writable, within the
//! same deadline. Connections are kept in the order they were accepted, which is also
//! the order of their deadlines, so the next deadline is the oldest connection's and
//! each event costs O(1).
//!
//! [`Server::stop`] (or dropping the [`Server`]) closes the listening socket and every
//! open connection and joins the thread; the address can be listened on again at once.

use crate::wire::{FrameError, Framer, Progress};
use log::{debug, error, warn};
use mio::net::{TcpListener as MioListener, TcpStream as MioStream};
use mio::{Events, Interest, Poll, Token, Waker};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Stack of the server thread: decoding and encoding are iterative, so 256 KiB is ample.
const SERVER_STACK: usize = 256 * 1024;

/// Readiness events taken per poll.
const EVENTS: usize = 256;

/// Bytes read from a socket per call (one buffer for the whole loop).
const READ_CHUNK: usize = 16 * 1024;

/// How long to wait before accepting again after accept failed (out of descriptors).
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

const LISTENER: Token = Token(usize::MAX);
const WAKER: Token = Token(usize::MAX - 1);

/// What a server's connections may cost, and what it does when they are all taken.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once (at least one).
    pub max_connections: usize,
    /// How long a connection may take, in all from being accepted, to send its request
    /// and take the reply.
    pub deadline: Duration,
    /// The longest request, in bytes.
    pub max_request: usize,
    /// What a request longer than `max_request` gets.
    pub oversize: Oversize,
    /// What a new connection gets while `max_connections` are open.
    pub when_full: WhenFull,
    /// Connections the kernel queues for the server to accept (`None`: std's 128).
    pub backlog: Option<i32>,
}

/// What happens to a request longer than [`Limits::max_request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oversize {
    /// Reading stops as soon as the pickle is known not to fit, and the service is
    /// told [`FrameError::TooLarge`] with the bytes so far.
    Refuse,
    /// Reading goes on to the limit and the service is given those bytes, cut there,
    /// with [`FrameError::TooLarge`]: what one `recv(limit)` of a Python server sees.
    Cut,
}

/// What a new connection gets while every slot is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// The oldest connection that has not delivered its request is closed to make room
    /// (when every one has, the newcomer is closed at once).
    EvictOldestSilent,
    /// Nothing is accepted until a connection is done (answered, or past its deadline):
    /// newcomers wait in the kernel's backlog, and are served in the order they came.
    Wait,
}

/// How reading a request ended.
#[derive(Debug)]
pub enum End {
    /// One whole pickle (whatever followed its STOP dropped).
    Complete,
    /// Reading stopped before a whole pickle: the peer closed, sent a byte no pickle
    /// holds, went past the limit, or the socket failed.
    Failed(FrameError),
    /// The deadline passed before a whole pickle came.
    TimedOut,
}

/// One request, as the server read it.
#[derive(Debug)]
pub struct Request<'a> {
    /// The pickle's bytes (on a failure or timeout: whatever came).
    pub bytes: &'a [u8],
    pub from: SocketAddr,
    pub end: End,
}

/// What the server does with a connection once its request is read.
#[derive(Debug)]
pub struct Response<T> {
    /// Bytes to send back before the connection is shut down (none: it is closed).
    pub reply: Option<Vec<u8>>,
    /// Given to [`Service::after`] once the reply is out (or can't be sent).
    pub then: Option<T>,
}

impl<T> Response<T> {
    /// Close the connection, nothing more.
    pub fn close() -> Self {
        Response { reply: None, then: None }
    }
}

/// What a server does with its requests. Runs on the server's thread: it must not block.
pub trait Service: Send + 'static {
    /// The step that follows a reply (the node delivers its message then).
    type Then: Send;

    /// What to answer to `request`.
    fn respond(&mut self, request: Request<'_>) -> Response<Self::Then>;

    /// Runs `then` once its connection's reply is out, or could not be sent.
    fn after(&mut self, then: Self::Then);
}

/// What the server thread shares with its handle.
#[derive(Default)]
struct Shared {
    stopping: AtomicBool,
    open: AtomicUsize,
    evicted: AtomicU64,
}

/// A running server. [`Server::stop`] (or dropping it) closes the listening socket (new
/// connections are refused) and every connection still open, and waits for the thread
/// to end; the address can be listened on again at once.
pub struct Server {
    local: SocketAddr,
    waker: Waker,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// The address the server accepts on.
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
            error!("cannot wake the server to stop it: {e}");
            return;
        }
        let _ = thread.join();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Serves connections on `listener` with `service` until the returned handle is stopped
/// or dropped. `name` names the thread and starts the server's own log lines.
pub fn serve<S: Service>(listener: TcpListener, name: &str, limits: Limits, service: S) -> io::Result<Server> {
    let local = listener.local_addr()?;
    if let Some(backlog) = limits.backlog {
        // Listening again on a listening socket only changes its backlog.
        socket2::SockRef::from(&listener).listen(backlog)?;
    }
    listener.set_nonblocking(true)?;
    let mut socket = MioListener::from_std(listener);
    let poll = Poll::new()?;
    poll.registry().register(&mut socket, LISTENER, Interest::READABLE)?;
    let waker = Waker::new(poll.registry(), WAKER)?;
    let shared = Arc::new(Shared::default());
    let mut serving = Serving {
        poll,
        socket,
        name: name.to_string(),
        conns: Table::default(),
        max: limits.max_connections.clamp(1, Table::<S::Then>::MAX_SLOTS),
        limits,
        service,
        shared: Arc::clone(&shared),
        scratch: vec![0; READ_CHUNK],
        accept_again: None,
        waiting: false,
        turned_away: 0,
        warned: Throttle::default(),
    };
    let thread =
        std::thread::Builder::new().name(name.to_string()).stack_size(SERVER_STACK).spawn(move || serving.run())?;
    Ok(Server { local, waker, shared, thread: Some(thread) })
}

/// Rate-limits the server's own warnings to one a second, counting what it holds back.
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
    held: u64,
}

impl Throttle {
    fn warn(&mut self, line: &str) {
        if self.last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            self.held += 1;
            debug!("{line}");
            return;
        }
        self.last = Some(Instant::now());
        match std::mem::take(&mut self.held) {
            0 => warn!("{line}"),
            held => warn!("{line} ({held} more like it held back)"),
        }
    }
}

/// One accepted connection.
struct Conn<T> {
    stream: MioStream,
    from: SocketAddr,
    /// Accepted + [`Limits::deadline`]: done then, whatever state it is in.
    deadline: Instant,
    state: State<T>,
}

enum State<T> {
    /// Its request is coming in: the bytes so far and how far the framer got.
    Reading { buf: Vec<u8>, framer: Framer },
    /// The request is answered; the rest of the reply waits for the socket to take it,
    /// and the after-step runs once it has (or at the deadline).
    Replying { rest: Vec<u8>, then: Option<T> },
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
    oversize: Oversize,
) -> ReadOutcome {
    loop {
        match framer.advance(buf) {
            Ok(Progress::Complete { len }) => {
                buf.truncate(len);
                return ReadOutcome::Message;
            }
            Ok(Progress::NeedMore(n)) if oversize == Oversize::Refuse && buf.len().saturating_add(n) > limit => {
                return ReadOutcome::Failed(FrameError::TooLarge { limit })
            }
            Ok(Progress::NeedMore(_)) if buf.len() >= limit => {
                return ReadOutcome::Failed(FrameError::TooLarge { limit })
            }
            Ok(Progress::NeedMore(_)) => {}
            Err(e) => return ReadOutcome::Failed(e),
        }
        // At least one byte of room: the buffer is short of the limit.
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

/// The server thread's state.
struct Serving<S: Service> {
    poll: Poll,
    socket: MioListener,
    name: String,
    conns: Table<S::Then>,
    max: usize,
    limits: Limits,
    service: S,
    shared: Arc<Shared>,
    scratch: Vec<u8>,
    /// When accepting failed (no descriptors): when to try again.
    accept_again: Option<Instant>,
    /// Accepting stopped with every slot taken ([`WhenFull::Wait`]): resume when one frees.
    waiting: bool,
    turned_away: u64,
    warned: Throttle,
}

impl<S: Service> Serving<S> {
    fn run(&mut self) {
        let mut events = Events::with_capacity(EVENTS);
        loop {
            let timeout = self.next_wake().map(|at| at.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // epoll_wait fails only on a broken epoll descriptor: nothing to retry.
                error!("{}: cannot poll its sockets: {e}; no longer listening", self.name);
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
            // Edge-triggered: connections left in the backlog raise no new event.
            if self.waiting && self.conns.len() < self.max {
                self.waiting = false;
                self.accept_all();
            }
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

    /// Accepts until the backlog is empty (the listening socket is edge-triggered), or,
    /// when full connections wait, until every slot is taken.
    fn accept_all(&mut self) {
        loop {
            if self.limits.when_full == WhenFull::Wait && self.conns.len() >= self.max {
                self.waiting = true;
                return;
            }
            match self.socket.accept() {
                Ok((stream, from)) => self.admit(stream, from),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted) => {}
                Err(e) => {
                    // Out of descriptors, most likely: the connection waits in the backlog.
                    self.warned.warn(&format!("{}: accept failed: {e}; trying again shortly", self.name));
                    self.accept_again = Some(Instant::now() + ACCEPT_RETRY);
                    return;
                }
            }
        }
    }

    fn admit(&mut self, mut stream: MioStream, from: SocketAddr) {
        if self.conns.len() >= self.max {
            let Some(victim) = self.conns.oldest_reading() else {
                // Every slot holds a request being answered: nothing may be closed.
                drop(stream);
                self.turned_away += 1;
                let line = format!(
                    "{}: {} connections open, all answering: turned away {} so far (latest {from})",
                    self.name, self.max, self.turned_away
                );
                self.warned.warn(&line);
                return;
            };
            let old = self.conns.remove(victim);
            let _ = old.stream.shutdown(Shutdown::Both);
            let n = self.shared.evicted.fetch_add(1, Ordering::SeqCst) + 1;
            let line = format!(
                "{}: {} connections open: closed the oldest that had sent nothing ({}) to serve {from}; {n} so far",
                self.name, self.max, old.from
            );
            self.warned.warn(&line);
        }
        let token = self.conns.next_token();
        if let Err(e) = self.poll.registry().register(&mut stream, token, Interest::READABLE) {
            self.warned.warn(&format!("{}: cannot watch the connection from {from}: {e}; closed", self.name));
            return;
        }
        let deadline = Instant::now() + self.limits.deadline;
        let state = State::Reading { buf: Vec::new(), framer: Framer::new() };
        let index = self.conns.insert(Conn { stream, from, deadline, state });
        // A peer usually sends its request right after connecting: read it now rather
        // than after another poll.
        self.serve(index);
    }

    fn on_ready(&mut self, token: Token) {
        if let Some(index) = self.conns.find(token) {
            self.serve(index);
        }
    }

    /// Moves a connection on as far as its socket allows: reads its request, answers,
    /// runs the after-step; or waits for the next readiness event.
    fn serve(&mut self, index: usize) {
        let conn = self.conns.get_mut(index);
        let from = conn.from;
        let (limit, oversize) = (self.limits.max_request, self.limits.oversize);
        let end = match &mut conn.state {
            State::Reading { buf, framer } => {
                match read_message(&mut conn.stream, buf, framer, &mut self.scratch, limit, oversize) {
                    ReadOutcome::Pending => return,
                    ReadOutcome::Failed(e) => End::Failed(e),
                    ReadOutcome::Message => End::Complete,
                }
            }
            State::Replying { rest, .. } => match write_some(&mut conn.stream, rest) {
                Ok(false) => return,
                Ok(true) => return self.finish(index),
                Err(e) => {
                    debug!("{}: the reply to {from} failed: {e}", self.name);
                    return self.finish(index);
                }
            },
        };
        self.respond(index, end);
    }

    /// Asks the service what `end` of the connection's request calls for, and starts
    /// replying (or closes the connection).
    fn respond(&mut self, index: usize, end: End) {
        let conn = self.conns.get_mut(index);
        let from = conn.from;
        let State::Reading { buf, .. } = &conn.state else {
            return;
        };
        let response = self.service.respond(Request { bytes: buf, from, end });
        let Some(mut rest) = response.reply else {
            conn.state = State::Replying { rest: Vec::new(), then: response.then };
            return self.finish(index);
        };
        let then = response.then;
        match write_some(&mut conn.stream, &mut rest) {
            Ok(false) if conn.deadline > Instant::now() => {
                let token = self.conns.token(index);
                let conn = self.conns.get_mut(index);
                if let Err(e) = self.poll.registry().reregister(&mut conn.stream, token, Interest::WRITABLE) {
                    debug!("{}: the reply to {from} failed: {e}", self.name);
                    conn.state = State::Replying { rest: Vec::new(), then };
                    return self.finish(index);
                }
                conn.state = State::Replying { rest, then };
            }
            result => {
                match result {
                    Err(e) => debug!("{}: the reply to {from} failed: {e}", self.name),
                    Ok(false) => debug!("{}: the reply to {from} not taken before the deadline", self.name),
                    Ok(true) => {}
                }
                self.conns.get_mut(index).state = State::Replying { rest: Vec::new(), then };
                self.finish(index);
            }
        }
    }

    /// The reply is out (or can't be sent): shut the connection down, run the after-step.
    fn finish(&mut self, index: usize) {
        let conn = self.conns.remove(index);
        let _ = conn.stream.shutdown(Shutdown::Both);
        if let State::Replying { then: Some(then), .. } = conn.state {
            self.service.after(then);
        }
    }

    /// Ends every connection whose deadline has passed (the oldest come first): one
    /// still reading is answered as its service says, one replying is closed.
    fn expire(&mut self, now: Instant) {
        while let Some(index) = self.conns.oldest() {
            if self.conns.get(index).deadline > now {
                return;
            }
            match &self.conns.get(index).state {
                State::Reading { .. } => self.respond(index, End::TimedOut),
                State::Replying { .. } => {
                    debug!("{}: the reply to {} not taken before the deadline", self.name, self.conns.get(index).from);
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
struct Table<T> {
    slots: Vec<Slot<T>>,
    free: Vec<usize>,
    head: Option<usize>,
    tail: Option<usize>,
    len: usize,
}

struct Slot<T> {
    generation: u16,
    conn: Option<Conn<T>>,
    prev: Option<usize>,
    next: Option<usize>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table { slots: Vec::new(), free: Vec::new(), head: None, tail: None, len: 0 }
    }
}

impl<T> Table<T> {
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

    fn get(&self, index: usize) -> &Conn<T> {
        self.slots[index].conn.as_ref().expect("a live slot")
    }

    fn get_mut(&mut self, index: usize) -> &mut Conn<T> {
        self.slots[index].conn.as_mut().expect("a live slot")
    }

    fn oldest(&self) -> Option<usize> {
        self.head
    }

    /// The oldest connection whose request has not come in yet. Connections answering
    /// are skipped; there are hardly ever any (a short reply fits any empty socket buffer).
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
    fn insert(&mut self, conn: Conn<T>) -> usize {
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
    fn remove(&mut self, index: usize) -> Conn<T> {
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
pub(crate) mod tests {
    use super::*;
    use crate::wire::{self, Style, Value};
    use std::net::TcpStream;
    use std::sync::mpsc::{channel, Receiver, Sender};

    const MAX: usize = 64 * 1024;

    fn pickle(s: &str) -> Vec<u8> {
        wire::encode(&Value::str(s), Style::Compact)
    }

    /// Answers a whole pickle with itself and reports, after the reply, who sent it;
    /// anything else is closed unanswered and reported as how it ended.
    struct Echo(Sender<Result<SocketAddr, String>>);

    impl Service for Echo {
        type Then = SocketAddr;

        fn respond(&mut self, request: Request<'_>) -> Response<SocketAddr> {
            match request.end {
                End::Complete => Response { reply: Some(request.bytes.to_vec()), then: Some(request.from) },
                End::Failed(e) => {
                    let _ = self.0.send(Err(format!("{e} after {} bytes", request.bytes.len())));
                    Response::close()
                }
                End::TimedOut => {
                    let _ = self.0.send(Err(format!("timed out after {} bytes", request.bytes.len())));
                    Response::close()
                }
            }
        }

        fn after(&mut self, from: SocketAddr) {
            let _ = self.0.send(Ok(from));
        }
    }

    fn limits(max_connections: usize, when_full: WhenFull, deadline: Duration) -> Limits {
        Limits { max_connections, deadline, max_request: MAX, oversize: Oversize::Refuse, when_full, backlog: None }
    }

    fn start(limits: Limits) -> (Server, Receiver<Result<SocketAddr, String>>) {
        let (tx, heard) = channel();
        let socket = TcpListener::bind("127.0.0.1:0").unwrap();
        (serve(socket, "t", limits, Echo(tx)).unwrap(), heard)
    }

    fn connect(addr: SocketAddr) -> TcpStream {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// Everything that came back before the server closed `s`.
    fn reply(s: &mut TcpStream) -> Vec<u8> {
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply);
        reply
    }

    /// Waits (20 s at most, then fails the test) until `ok`: for the state of a server's
    /// thread, which a test can only watch. Also the node listener's tests use it.
    pub(crate) fn poll(what: &str, mut ok: impl FnMut() -> bool) {
        let until = Instant::now() + Duration::from_secs(20);
        while !ok() {
            assert!(Instant::now() < until, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn next(heard: &Receiver<Result<SocketAddr, String>>) -> Result<SocketAddr, String> {
        heard.recv_timeout(Duration::from_secs(15)).expect("a report from the service")
    }

    #[test]
    fn a_request_is_answered_then_the_after_step_runs_and_junk_is_closed() {
        let (server, heard) = start(limits(8, WhenFull::EvictOldestSilent, Duration::from_secs(10)));
        let mut s = connect(server.local_addr());
        let mine = s.local_addr().unwrap();
        s.write_all(&pickle("hello")).unwrap();
        assert_eq!(reply(&mut s), pickle("hello"));
        assert_eq!(next(&heard), Ok(mine));
        let mut junk = connect(server.local_addr());
        junk.write_all(b"\xff\xff").unwrap();
        assert_eq!(reply(&mut junk), b"");
        let ended = next(&heard).unwrap_err();
        assert!(ended.ends_with("after 2 bytes"), "{ended}");
        poll("all closed", || server.open_connections() == 0);
    }

    #[test]
    fn when_full_and_evicting_the_oldest_silent_connection_makes_room() {
        let (server, heard) = start(limits(3, WhenFull::EvictOldestSilent, Duration::from_secs(20)));
        let addr = server.local_addr();
        let mut silent: Vec<TcpStream> = (0..3).map(|_| connect(addr)).collect();
        poll("three held", || server.open_connections() == 3);
        let mut newcomer = connect(addr);
        newcomer.write_all(&pickle("new")).unwrap();
        assert_eq!(reply(&mut newcomer), pickle("new"));
        assert_eq!(server.evicted(), 1);
        assert_eq!(reply(&mut silent[0]), b"", "the oldest was not closed");
        // The others are still open and still served.
        silent[2].write_all(&pickle("late")).unwrap();
        assert_eq!(reply(&mut silent[2]), pickle("late"));
        assert_eq!(next(&heard), Ok(newcomer.local_addr().unwrap()));
        assert_eq!(next(&heard), Ok(silent[2].local_addr().unwrap()));
    }

    #[test]
    fn when_full_and_waiting_one_request_at_a_time_in_arrival_order() {
        let (server, heard) = start(limits(1, WhenFull::Wait, Duration::from_secs(20)));
        let addr = server.local_addr();
        let mut first = connect(addr);
        poll("the first taken", || server.open_connections() == 1);
        // The others wait in the backlog, requests sent, while the first says nothing.
        let mut rest: Vec<TcpStream> = (0..3).map(|_| connect(addr)).collect();
        for (i, s) in rest.iter_mut().enumerate() {
            s.write_all(&pickle(&format!("r{i}"))).unwrap();
        }
        rest[0].set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let mut b = [0u8; 1];
        let early = rest[0].read(&mut b);
        assert!(early.is_err(), "answered while the first was being served: {early:?}");
        rest[0].set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(server.evicted(), 0);
        first.write_all(&pickle("first")).unwrap();
        assert_eq!(reply(&mut first), pickle("first"));
        assert_eq!(next(&heard), Ok(first.local_addr().unwrap()));
        for (i, s) in rest.iter_mut().enumerate() {
            assert_eq!(reply(s), pickle(&format!("r{i}")));
            assert_eq!(next(&heard), Ok(s.local_addr().unwrap()), "out of order");
        }
    }

    #[test]
    fn when_waiting_a_silent_client_holds_the_next_up_until_its_deadline() {
        let deadline = Duration::from_millis(700);
        let (server, heard) = start(limits(1, WhenFull::Wait, deadline));
        let addr = server.local_addr();
        let _silent = connect(addr);
        poll("the silent one taken", || server.open_connections() == 1);
        let started = Instant::now();
        let mut next_in_line = connect(addr);
        next_in_line.write_all(&pickle("waited")).unwrap();
        assert_eq!(reply(&mut next_in_line), pickle("waited"));
        assert!(started.elapsed() >= deadline / 2, "served after {:?}", started.elapsed());
        assert_eq!(next(&heard), Err("timed out after 0 bytes".to_string()));
        assert_eq!(next(&heard), Ok(next_in_line.local_addr().unwrap()));
    }

    #[test]
    fn stop_and_drop_close_everything_and_the_address_can_be_listened_on_again() {
        let (server, _heard) = start(limits(8, WhenFull::EvictOldestSilent, Duration::from_secs(20)));
        let addr = server.local_addr();
        let mut held = connect(addr);
        poll("the connection held", || server.open_connections() == 1);
        server.stop();
        assert_eq!(reply(&mut held), b"", "an open connection survived stop");
        assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(5)).is_err(), "still accepting after stop");
        let (tx, _heard) = channel();
        let again =
            serve(TcpListener::bind(addr).unwrap(), "t", limits(8, WhenFull::Wait, Duration::from_secs(5)), Echo(tx))
                .unwrap();
        let mut s = connect(addr);
        s.write_all(&pickle("again")).unwrap();
        assert_eq!(reply(&mut s), pickle("again"));
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
        let probe = pickle("PROBE");
        let (head, tail) = probe.split_at(3);
        let mut after = tail.to_vec();
        after.extend_from_slice(b"\x00junk after STOP");
        let mut stream = Chunks(vec![head.to_vec()]);
        let (mut buf, mut framer, mut scratch) = (Vec::new(), Framer::new(), vec![0; 8]);
        let first = read_message(&mut stream, &mut buf, &mut framer, &mut scratch, MAX, Oversize::Refuse);
        assert!(matches!(first, ReadOutcome::Pending), "{first:?}");
        stream.0.push(after);
        let second = read_message(&mut stream, &mut buf, &mut framer, &mut scratch, MAX, Oversize::Refuse);
        assert!(matches!(second, ReadOutcome::Message), "{second:?}");
        assert_eq!(buf, probe, "bytes after STOP were kept");
        // A pickle longer than the limit is refused once the limit is reached.
        let mut long = b"\x80\x02X\x00\x01\x00\x00".to_vec();
        long.extend(std::iter::repeat_n(b'a', 256));
        long.push(b'.');
        let (mut buf, mut framer) = (Vec::new(), Framer::new());
        let refused =
            read_message(&mut Chunks(vec![long.clone()]), &mut buf, &mut framer, &mut scratch, 100, Oversize::Refuse);
        assert!(matches!(refused, ReadOutcome::Failed(FrameError::TooLarge { limit: 100 })), "{refused:?}");
        assert!(buf.len() < 100, "read on after the frame said it would not fit: {}", buf.len());
        // Cut: read to the limit, as one recv(100) would see it.
        let (mut buf, mut framer) = (Vec::new(), Framer::new());
        let cut =
            read_message(&mut Chunks(vec![long.clone()]), &mut buf, &mut framer, &mut scratch, 100, Oversize::Cut);
        assert!(matches!(cut, ReadOutcome::Failed(FrameError::TooLarge { limit: 100 })), "{cut:?}");
        assert_eq!(buf, long[..100]);
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
        let got_it = pickle("GOT_IT");
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
        let mut t: Table<()> = Table::default();
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
