//! One server for every listening socket of the crate, the node's and the coordinator's:
//! a `std::net` listener whose accept thread starts ONE THREAD PER CONNECTION (named,
//! with a small stack). That thread reads the connection's one request (one pickle,
//! framed as it comes in), asks the [`Service`] what to do, writes the reply, shuts the
//! connection down, runs the service's after-step (the node hands its message on there,
//! once the peer has its GOT_IT), and ends.
//!
//! Anything can connect, so what a connection may cost is bounded by [`Limits`]: it has
//! [`Limits::deadline`] in all, from being accepted, to deliver its request and take the
//! reply (a peer trickling a byte at a time gets no longer than a silent one), a request
//! may be at most [`Limits::max_request`] bytes, and at most [`Limits::max_connections`]
//! connection threads live at once: a permit, as mini-redis's listener takes one from its
//! semaphore. What happens when every permit is taken is [`Limits::when_full`]: close the
//! oldest connection that has not delivered a whole request for [`SILENT_AFTER`] (so a
//! crowd of connections that hang, silent or after a byte, can't keep a real request out;
//! one whose bytes wait unread is spared, so a burst of real requests waits for permits
//! and is never dropped unread), or take no permit
//! before one frees, leaving newcomers in the kernel's backlog (with a cap of one: one
//! request at a time in arrival order, as gcd2.py's single-threaded socketserver serves).
//!
//! [`Server::stop`] (or dropping the [`Server`]) closes the listening socket and every
//! open connection and joins the accept thread, which joins every connection thread it
//! started; the address can be listened on again at once.

use crate::wire::{FrameError, Framer, Progress};
use log::{debug, warn};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Stack of each connection thread. What runs there is iterative (framing, decoding,
/// encoding: a hostile pickle's nesting lives on the heap, and a value nests at most
/// `wire::MAX_DEPTH`), so its stack holds a few frames and a log line. Measured: the
/// listener's and this server's tests, the hostile inputs of `tests/hostile_decode.rs`
/// (thrown at connection threads in the listener's tests) and `tests/hostile.rs` all
/// pass in a debug build with 16 KiB, glibc's least; 64 KiB leaves four times that.
pub const CONNECTION_STACK: usize = 64 * 1024;

/// Stack of the accept thread, which only accepts, evicts and spawns.
const ACCEPT_STACK: usize = 64 * 1024;

/// Bytes read from a socket by the first call: a PROBE, a GOT_IT or an ELECT of a small
/// group fits (Python peers send at most what one `recv(1024)` takes), so a crowd of
/// connection threads holds little heap. Each further read takes as much again as came,
/// up to [`READ_CHUNK`].
const FIRST_READ: usize = 1024;

/// Bytes read from a socket per call, at most.
const READ_CHUNK: usize = 16 * 1024;

/// How long a connection may say nothing and still not count as silent: a peer sends
/// its message as it connects, but on a loaded machine its bytes can reach the socket
/// a moment after the connection is accepted.
pub const SILENT_AFTER: Duration = Duration::from_millis(100);

/// How long to wait before accepting again after accept failed (out of descriptors).
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// What a server's connections may cost, and what it does when they are all taken.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connection threads alive at once (at least one).
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

/// What a new connection gets while every permit is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// The oldest connection that has not delivered a whole request is closed to make
    /// room; when every one has (or has bytes waiting unread), the newcomer waits for
    /// the first of them to end (each ends by its deadline).
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

/// What a server does with its requests. Each connection's thread calls it.
pub trait Service: Send + Sync + 'static {
    /// The step that follows a reply (the node delivers its message then).
    type Then;

    /// What to answer to `request`.
    fn respond(&self, request: Request<'_>) -> Response<Self::Then>;

    /// Runs `then` once its connection's reply is out, or could not be sent.
    fn after(&self, then: Self::Then);
}

/// One live connection thread, in the order they were accepted.
struct Conn {
    id: u64,
    from: SocketAddr,
    accepted: Instant,
    /// The connection's socket, shared with its thread, to shut it down from outside
    /// (one descriptor: a `try_clone` would take a second).
    stream: Arc<TcpStream>,
    /// It has delivered a whole message and is being answered: it is never evicted.
    /// (One that has sent only part of one is: a real peer sends its pickle in one
    /// write, and a crowd that sends a byte and hangs must not keep a PROBE out.)
    delivered: bool,
    /// Shut down to make room: its thread ends without answering.
    evicted: bool,
    thread: Option<JoinHandle<()>>,
}

/// What the accept thread, the connection threads and the handle share.
#[derive(Default)]
struct Table {
    /// Live connections, oldest first: their threads hold the permits.
    live: VecDeque<Conn>,
    /// Threads of connections that ended, for the accept thread to join.
    ended: Vec<JoinHandle<()>>,
    stopping: bool,
    next_id: u64,
    /// The most connection threads alive at once.
    peak: usize,
}

#[derive(Default)]
struct Shared {
    table: Mutex<Table>,
    /// A permit came free, a connection sent its first byte, or the server is stopping.
    changed: Condvar,
    evicted: AtomicU64,
    warned: Mutex<Throttle>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Table> {
        // Nothing panics while holding it; a poisoned table is still whole.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn warn(&self, line: &str) {
        self.warned.lock().unwrap_or_else(|e| e.into_inner()).warn(line);
    }
}

/// A running server. [`Server::stop`] (or dropping it) closes the listening socket (new
/// connections are refused) and every connection still open, and joins the accept
/// thread and through it every connection thread; the address can be listened on again
/// at once.
pub struct Server {
    local: SocketAddr,
    /// A clone of the listening socket, shut down to wake the accept thread.
    socket: Option<TcpListener>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// The address the server accepts on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Connection threads alive now (accepted, not yet answered or closed).
    pub fn open_connections(&self) -> usize {
        self.shared.lock().live.len()
    }

    /// The most connection threads that were alive at once.
    pub fn peak_connections(&self) -> usize {
        self.shared.lock().peak
    }

    /// Connections closed so far to make room for newer ones.
    pub fn evicted(&self) -> u64 {
        self.shared.evicted.load(Ordering::SeqCst)
    }

    /// Closes the listening socket and every open connection, and joins the accept
    /// thread, which joins every connection thread.
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        {
            let mut table = self.shared.lock();
            table.stopping = true;
            for conn in &table.live {
                let _ = conn.stream.shutdown(Shutdown::Both);
            }
        }
        self.shared.changed.notify_all();
        // Shutting a listening socket down wakes a blocked `accept` (it fails).
        if let Some(socket) = self.socket.take() {
            let _ = socket2::SockRef::from(&socket).shutdown(Shutdown::Both);
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
/// or dropped. `name` names the accept thread; connection threads are `{name}-conn`.
pub fn serve<S: Service>(listener: TcpListener, name: &str, limits: Limits, service: S) -> io::Result<Server> {
    let local = listener.local_addr()?;
    if let Some(backlog) = limits.backlog {
        // Listening again on a listening socket only changes its backlog.
        socket2::SockRef::from(&listener).listen(backlog)?;
    }
    let waker = listener.try_clone()?;
    let shared = Arc::new(Shared::default());
    let accepting = Accepting {
        listener,
        name: name.to_string(),
        conn_name: format!("{name}-conn"),
        max: limits.max_connections.max(1),
        limits,
        service: Arc::new(service),
        shared: Arc::clone(&shared),
    };
    let thread =
        std::thread::Builder::new().name(name.to_string()).stack_size(ACCEPT_STACK).spawn(move || accepting.run())?;
    Ok(Server { local, socket: Some(waker), shared, thread: Some(thread) })
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

/// The accept thread's state.
struct Accepting<S: Service> {
    listener: TcpListener,
    name: String,
    conn_name: String,
    max: usize,
    limits: Limits,
    service: Arc<S>,
    shared: Arc<Shared>,
}

impl<S: Service> Accepting<S> {
    fn run(self) {
        loop {
            if self.limits.when_full == WhenFull::Wait && !self.wait_for_room() {
                break;
            }
            let (stream, from) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(_) if self.shared.lock().stopping => break,
                Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted) => continue,
                Err(e) => {
                    // Out of descriptors, most likely: the connection waits in the backlog.
                    self.shared.warn(&format!("{}: accept failed: {e}; trying again shortly", self.name));
                    std::thread::sleep(ACCEPT_RETRY);
                    continue;
                }
            };
            if !self.admit(stream, from) {
                break;
            }
        }
        self.close_all();
    }

    /// Joins ended threads, then: `Some(false)` once the server is stopping, `Some(true)`
    /// when a permit is free, `None` while every permit is taken.
    fn room(&self, table: &mut Table) -> Option<bool> {
        join_ended(table);
        if table.stopping {
            Some(false)
        } else {
            (table.live.len() < self.max).then_some(true)
        }
    }

    /// Waits until a permit is free; false once the server is stopping.
    fn wait_for_room(&self) -> bool {
        let mut table = self.shared.lock();
        loop {
            if let Some(room) = self.room(&mut table) {
                return room;
            }
            table = self.shared.changed.wait(table).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Takes a permit for the connection (making room as [`Limits::when_full`] says) and
    /// starts its thread; false once the server is stopping.
    fn admit(&self, stream: TcpStream, from: SocketAddr) -> bool {
        let mut table = self.shared.lock();
        loop {
            match self.room(&mut table) {
                Some(false) => return false,
                Some(true) => break,
                None => {}
            }
            // One eviction at a time: the evicted thread ends at once and frees its permit.
            let evicting = table.live.iter().any(|c| c.evicted);
            let silent = if evicting { Silent::None } else { oldest_silent(&mut table, Instant::now()) };
            if let Silent::Later(at) = silent {
                // Only connections too young to count as silent: look again then (or
                // when a permit frees).
                let wait = at.saturating_duration_since(Instant::now());
                table = self.shared.changed.wait_timeout(table, wait).unwrap_or_else(|e| e.into_inner()).0;
                continue;
            }
            if let Silent::Now(victim) = silent {
                let old = &mut table.live[victim];
                old.evicted = true;
                let _ = old.stream.shutdown(Shutdown::Both);
                let n = self.shared.evicted.fetch_add(1, Ordering::SeqCst) + 1;
                let line = format!(
                    "{}: {} connections open: closed the oldest that had not sent a whole message ({}) to serve {from}; {n} so far",
                    self.name, self.max, old.from
                );
                self.shared.warn(&line);
            }
            // The evicted thread, or the first of the busy ones, ends and frees a permit.
            table = self.shared.changed.wait(table).unwrap_or_else(|e| e.into_inner());
        }
        // The deadline runs from here: a connection that waited for a permit (its
        // message waiting unread) gets its whole time.
        let accepted = Instant::now();
        let id = table.next_id;
        table.next_id += 1;
        let stream = Arc::new(stream);
        let theirs = Arc::clone(&stream);
        let (shared, service, limits) = (Arc::clone(&self.shared), Arc::clone(&self.service), self.limits);
        let deadline = accepted + limits.deadline;
        // Spawned while the table is locked: the thread finds its entry when it ends.
        let spawned = std::thread::Builder::new()
            .name(self.conn_name.clone())
            .stack_size(CONNECTION_STACK)
            .spawn(move || serve_connection(&theirs, from, id, deadline, limits, &*service, &shared));
        match spawned {
            Ok(thread) => {
                let conn = Conn { id, from, accepted, stream, delivered: false, evicted: false, thread: Some(thread) };
                table.live.push_back(conn);
                table.peak = table.peak.max(table.live.len());
            }
            Err(e) => {
                drop(table);
                self.shared.warn(&format!("{}: no thread for the connection from {from}: {e}; closed", self.name));
            }
        }
        true
    }

    /// Stopping: closes every connection still open and joins every thread.
    fn close_all(self) {
        let threads: Vec<JoinHandle<()>> = {
            let mut table = self.shared.lock();
            table.stopping = true;
            for conn in &table.live {
                let _ = conn.stream.shutdown(Shutdown::Both);
            }
            let mut threads = std::mem::take(&mut table.ended);
            threads.extend(table.live.iter_mut().filter_map(|c| c.thread.take()));
            threads
        };
        for thread in threads {
            let _ = thread.join();
        }
        // `self.listener` closes here: new connections are refused.
    }
}

/// Joins the threads of connections that ended (each has done all its work).
fn join_ended(table: &mut Table) {
    for thread in table.ended.drain(..) {
        let _ = thread.join();
    }
}

/// Which live connection can be closed to make room.
enum Silent {
    /// This one, the oldest without a whole request after [`SILENT_AFTER`].
    Now(usize),
    /// None yet; the oldest without a whole request so far counts as silent at this time.
    Later(Instant),
    /// Every one has delivered a request, has bytes waiting, or is being closed already.
    None,
}

/// The oldest live connection that has not delivered a whole request and has no bytes
/// waiting unread in its socket (those may complete one: a burst of real requests
/// waiting for their threads is never cut).
fn oldest_silent(table: &mut Table, now: Instant) -> Silent {
    let mut peek = [MaybeUninit::<u8>::uninit(); 1];
    for (i, conn) in table.live.iter_mut().enumerate() {
        if conn.delivered || conn.evicted {
            continue;
        }
        let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT;
        match socket2::SockRef::from(&conn.stream).recv_with_flags(&mut peek, flags) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let silent_at = conn.accepted + SILENT_AFTER;
                return if silent_at <= now { Silent::Now(i) } else { Silent::Later(silent_at) };
            }
            // Bytes are waiting for its thread to read them (they may complete a
            // message), or the peer closed (its thread is ending anyway): not now.
            _ => {}
        }
    }
    Silent::None
}

/// One connection's thread: read its request, answer, hand on, end.
fn serve_connection<S: Service>(
    stream: &TcpStream,
    from: SocketAddr,
    id: u64,
    deadline: Instant,
    limits: Limits,
    service: &S,
    shared: &Shared,
) {
    // The permit is given back however the thread ends, a panic included.
    let _permit = Permit { shared, id };
    let mut buf = Vec::new();
    let outcome = read_request(
        &mut &*stream,
        &mut buf,
        limits.max_request,
        limits.oversize,
        || {
            let left = deadline.saturating_duration_since(Instant::now());
            !left.is_zero() && stream.set_read_timeout(Some(left)).is_ok()
        },
        |_| {},
    );
    if matches!(outcome, ReadOutcome::Message) {
        mark_delivered(shared, id);
    }
    let end = match outcome {
        ReadOutcome::Message => End::Complete,
        ReadOutcome::Failed(e) => End::Failed(e),
        ReadOutcome::TimedOut => End::TimedOut,
    };
    let closed_from_outside = {
        let table = shared.lock();
        table.stopping || table.live.iter().any(|c| c.id == id && c.evicted)
    };
    let then = if closed_from_outside {
        None
    } else {
        let response = service.respond(Request { bytes: &buf, from, end });
        if let Some(reply) = response.reply {
            let left = deadline.saturating_duration_since(Instant::now());
            let written = if left.is_zero() {
                Err(io::ErrorKind::TimedOut.into())
            } else {
                stream.set_write_timeout(Some(left)).and_then(|()| (&mut &*stream).write_all(&reply))
            };
            if let Err(e) = written {
                debug!("the reply to {from} failed: {e}");
            }
        }
        response.then
    };
    // The peer sees the end now; the descriptor closes as the permit is given back.
    let _ = stream.shutdown(Shutdown::Both);
    if let Some(then) = then {
        service.after(then);
    }
}

/// A connection thread's permit: dropped as the thread ends, it takes the connection
/// out of the live ones and hands the thread to the accept thread to join.
struct Permit<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut table = self.shared.lock();
        if let Some(at) = table.live.iter().position(|c| c.id == self.id) {
            let conn = table.live.remove(at).expect("a live connection");
            table.ended.extend(conn.thread);
        }
        drop(table);
        self.shared.changed.notify_all();
    }
}

fn mark_delivered(shared: &Shared, id: u64) {
    let mut table = shared.lock();
    if let Some(conn) = table.live.iter_mut().find(|c| c.id == id) {
        conn.delivered = true;
    }
}

/// How reading a request ended.
#[derive(Debug)]
enum ReadOutcome {
    /// One whole pickle is in the buffer (anything after its STOP dropped).
    Message,
    /// Nothing more came before the deadline.
    TimedOut,
    Failed(FrameError),
}

/// Reads one pickle from `stream` into `buf`: never more than `limit` bytes, and nothing
/// of what follows STOP is kept. Before each read, `before_read` sets the time left (false:
/// none is); after each, `got` is told how many bytes came.
fn read_request(
    stream: &mut impl Read,
    buf: &mut Vec<u8>,
    limit: usize,
    oversize: Oversize,
    mut before_read: impl FnMut() -> bool,
    mut got: impl FnMut(usize),
) -> ReadOutcome {
    let mut framer = Framer::new();
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
        if !before_read() {
            return ReadOutcome::TimedOut;
        }
        // At least one byte of room: the buffer is short of the limit.
        let start = buf.len();
        buf.resize(start + (limit - start).min(start.clamp(FIRST_READ, READ_CHUNK)), 0);
        let read = stream.read(&mut buf[start..]);
        buf.truncate(start + *read.as_ref().unwrap_or(&0));
        match read {
            Ok(0) => return ReadOutcome::Failed(FrameError::Incomplete { received: start }),
            Ok(n) => got(n),
            // A read timeout: EAGAIN on Linux, ETIMEDOUT elsewhere.
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return ReadOutcome::TimedOut
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return ReadOutcome::Failed(FrameError::Io(e)),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wire::{self, Style, Value};
    use std::sync::mpsc::{channel, Receiver, Sender};

    const MAX: usize = 64 * 1024;

    fn pickle(s: &str) -> Vec<u8> {
        wire::encode(&Value::str(s), Style::Compact)
    }

    /// Answers a whole pickle with itself and reports, after the reply, who sent it;
    /// anything else is closed unanswered and reported as how it ended.
    struct Echo(Sender<Result<SocketAddr, String>>);

    impl Echo {
        fn report(&self, what: Result<SocketAddr, String>) {
            let _ = self.0.send(what);
        }
    }

    impl Service for Echo {
        type Then = SocketAddr;

        fn respond(&self, request: Request<'_>) -> Response<SocketAddr> {
            match request.end {
                End::Complete => Response { reply: Some(request.bytes.to_vec()), then: Some(request.from) },
                End::Failed(e) => {
                    self.report(Err(format!("{e} after {} bytes", request.bytes.len())));
                    Response::close()
                }
                End::TimedOut => {
                    self.report(Err(format!("timed out after {} bytes", request.bytes.len())));
                    Response::close()
                }
            }
        }

        fn after(&self, from: SocketAddr) {
            self.report(Ok(from));
        }
    }

    fn limits(max_connections: usize, when_full: WhenFull, deadline: Duration) -> Limits {
        Limits { max_connections, deadline, max_request: MAX, oversize: Oversize::Refuse, when_full, backlog: None }
    }

    fn start_named(name: &str, limits: Limits) -> (Server, Receiver<Result<SocketAddr, String>>) {
        let (tx, heard) = channel();
        let socket = TcpListener::bind("127.0.0.1:0").unwrap();
        (serve(socket, name, limits, Echo(tx)).unwrap(), heard)
    }

    fn start(limits: Limits) -> (Server, Receiver<Result<SocketAddr, String>>) {
        start_named("t", limits)
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
    /// threads, which a test can only watch. Also the node listener's tests use it.
    pub(crate) fn poll(what: &str, mut ok: impl FnMut() -> bool) {
        let until = Instant::now() + Duration::from_secs(20);
        while !ok() {
            assert!(Instant::now() < until, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Threads of this process named `name` now, from /proc (names are cut at 15 bytes).
    /// Tests run side by side in one process: each names its server's threads apart.
    pub(crate) fn threads_named(name: &str) -> usize {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0 };
        tasks
            .flatten()
            .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == name))
            .count()
    }

    /// Whether no thread named `name` is left, allowing the kernel a moment: a joined
    /// thread can still be listed in /proc for a little while after `join` returns (the
    /// kernel wakes the joiner before it has finished tearing the task down; seen under
    /// load). A thread that was only told to end would take its own time, not this.
    pub(crate) fn gone(name: &str) -> bool {
        let until = Instant::now() + Duration::from_millis(500);
        loop {
            if threads_named(name) == 0 {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
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
    fn a_burst_of_connections_raises_the_thread_count_and_it_returns_to_idle() {
        let (server, heard) = start_named("burst", limits(64, WhenFull::EvictOldestSilent, Duration::from_secs(20)));
        let addr = server.local_addr();
        assert_eq!(threads_named("burst-conn"), 0, "threads before any connection");
        // Held open and silent: each is a live thread until it sends.
        let mut held: Vec<TcpStream> = (0..40).map(|_| connect(addr)).collect();
        poll("a thread per connection", || threads_named("burst-conn") == 40);
        assert_eq!(server.open_connections(), 40);
        for (i, s) in held.iter_mut().enumerate() {
            s.write_all(&pickle(&format!("m{i}"))).unwrap();
            assert_eq!(reply(s), pickle(&format!("m{i}")));
        }
        for _ in 0..40 {
            assert!(next(&heard).is_ok());
        }
        poll("back to idle", || threads_named("burst-conn") == 0 && server.open_connections() == 0);
        assert_eq!(server.peak_connections(), 40);
        assert_eq!(threads_named("burst"), 1, "the accept thread alone");
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
        // Each on its own thread: handed on in either order.
        let mut served = vec![next(&heard).unwrap(), next(&heard).unwrap()];
        served.sort();
        let mut expected = vec![newcomer.local_addr().unwrap(), silent[2].local_addr().unwrap()];
        expected.sort();
        assert_eq!(served, expected);
        assert!(heard.try_recv().is_err(), "the evicted connection was handed to the service");
        assert!(server.peak_connections() <= 3, "peak {}", server.peak_connections());
    }

    #[test]
    fn when_full_a_burst_of_real_requests_waits_for_permits_and_none_is_dropped() {
        let cap = 4;
        let (server, heard) = start(limits(cap, WhenFull::EvictOldestSilent, Duration::from_secs(20)));
        let addr = server.local_addr();
        // Every request is sent before the server takes a single one: each newcomer past
        // the cap finds the older ones' bytes waiting unread, not silence.
        let mut burst: Vec<TcpStream> = (0..30)
            .map(|i| {
                let mut s = connect(addr);
                s.write_all(&pickle(&format!("b{i}"))).unwrap();
                s
            })
            .collect();
        for (i, s) in burst.iter_mut().enumerate() {
            assert_eq!(reply(s), pickle(&format!("b{i}")), "request {i} dropped");
        }
        for _ in 0..30 {
            assert!(next(&heard).is_ok());
        }
        assert_eq!(server.evicted(), 0);
        assert!(server.peak_connections() <= cap, "peak {}", server.peak_connections());
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
        assert_eq!(server.peak_connections(), 1);
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
    fn stop_joins_every_thread_it_started_and_closes_everything() {
        let (server, _heard) = start_named("stopper", limits(64, WhenFull::EvictOldestSilent, Duration::from_secs(30)));
        let addr = server.local_addr();
        // Silent ones, and ones halfway through a request: all in their threads' reads.
        let mut held: Vec<TcpStream> = (0..20).map(|_| connect(addr)).collect();
        for s in &mut held[10..] {
            s.write_all(&pickle("half")[..3]).unwrap();
        }
        poll("every connection on its thread", || threads_named("stopper-conn") == 20);
        assert_eq!(threads_named("stopper"), 1);
        server.stop();
        // Joined, not merely told to end: none is left the moment stop returns.
        assert!(gone("stopper-conn"), "connection threads outlived stop");
        assert!(gone("stopper"), "the accept thread outlived stop");
        for s in &mut held {
            assert_eq!(reply(s), b"", "an open connection survived stop");
        }
        assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(5)).is_err(), "still accepting after stop");
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
        // A server waiting for room (serial) stops too.
        let mut waiting = connect(addr);
        poll("the connection held", || again.open_connections() == 1);
        drop(again);
        assert_eq!(reply(&mut waiting), b"");
        assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(5)).is_err(), "still accepting after drop");
    }

    /// A reader that hands out its chunks one per call, then times out.
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

    fn read_all(chunks: Vec<Vec<u8>>, limit: usize, oversize: Oversize) -> (ReadOutcome, Vec<u8>, Vec<usize>) {
        let (mut buf, mut reads) = (Vec::new(), Vec::new());
        let outcome = read_request(&mut Chunks(chunks), &mut buf, limit, oversize, || true, |n| reads.push(n));
        (outcome, buf, reads)
    }

    #[test]
    fn reading_goes_on_across_segments_stops_at_stop_and_keeps_to_the_limit() {
        let probe = pickle("PROBE");
        let (head, tail) = probe.split_at(3);
        let mut after = tail.to_vec();
        after.extend_from_slice(b"\x00junk after STOP");
        let (outcome, buf, reads) = read_all(vec![head.to_vec(), after.clone()], MAX, Oversize::Refuse);
        assert!(matches!(outcome, ReadOutcome::Message), "{outcome:?}");
        assert_eq!(buf, probe, "bytes after STOP were kept");
        assert_eq!(reads, vec![3, after.len()]);
        // Only part of it, then nothing more: timed out with what came.
        let (outcome, buf, _) = read_all(vec![head.to_vec()], MAX, Oversize::Refuse);
        assert!(matches!(outcome, ReadOutcome::TimedOut), "{outcome:?}");
        assert_eq!(buf, head);
        // No time left at all: no read is made.
        let mut buf = Vec::new();
        let none = read_request(&mut Chunks(vec![probe.clone()]), &mut buf, MAX, Oversize::Refuse, || false, |_| {});
        assert!(matches!(none, ReadOutcome::TimedOut) && buf.is_empty(), "{none:?}");
        // A pickle longer than the limit is refused once the frame says it won't fit.
        let mut long = b"\x80\x02X\x00\x01\x00\x00".to_vec();
        long.extend(std::iter::repeat_n(b'a', 256));
        long.push(b'.');
        let (refused, buf, _) = read_all(vec![long.clone()], 100, Oversize::Refuse);
        assert!(matches!(refused, ReadOutcome::Failed(FrameError::TooLarge { limit: 100 })), "{refused:?}");
        assert!(buf.len() <= 100, "read on past the limit: {}", buf.len());
        // Cut: read to the limit, as one recv(100) would see it.
        let (cut, buf, _) = read_all(vec![long.clone()], 100, Oversize::Cut);
        assert!(matches!(cut, ReadOutcome::Failed(FrameError::TooLarge { limit: 100 })), "{cut:?}");
        assert_eq!(buf, long[..100]);
        // The peer closing mid-pickle.
        let (cut_short, _, _) = read_all(vec![head.to_vec(), Vec::new()], MAX, Oversize::Refuse);
        assert!(matches!(cut_short, ReadOutcome::Failed(FrameError::Incomplete { received: 3 })), "{cut_short:?}");
    }
}
