//! The node's listening side: one thread per connection. Each connection carries one
//! message; ELECT and PROBE are answered GOT_IT from the connection's own thread, at
//! once, so a reply never waits for the main loop. Every message is then handed on.
//!
//! Anything can connect, so what a connection may cost is bounded: it has
//! [`READ_DEADLINE`] in all to deliver its message (a peer trickling a byte at a time
//! gets no longer than a silent one), at most [`MAX_CONNECTIONS`] are served at once,
//! and each thread has a small stack (decoding never recurses). When every slot is
//! taken, the oldest connection that has not yet delivered a message is closed to make
//! room for the newest: a crowd of connections that hang can't keep a real member's
//! PROBE out (it arrives and is read in milliseconds), while a crowd can only ever
//! evict itself. Only when no slot can be freed is the new connection closed at once.
//!
//! Replies go in the shape of the message's dialect (see PROTOCOL.md): `'GOT_IT'`,
//! `('GOT_IT', our_pid)` to the sender-tuple dialect, `'OK'` to the old names.

use crate::identity::ProcessId;
use crate::protocol::{Dialect, Message};
use crate::wire::{self, decode, read_pickle, Style};
use log::{debug, warn};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a peer may take, in all, to send its one message. Python peers send it at
/// once and wait 1.5 to 2 s for the reply; this only limits what a silent or trickling
/// connection can cost.
pub const READ_DEADLINE: Duration = Duration::from_secs(2);

/// Connections served at once. A group of classmates opens a handful at a time; 256
/// leaves room for floods of fast junk (each gone in microseconds) while a flood of
/// silent connections holds at most this many threads for [`READ_DEADLINE`].
pub const MAX_CONNECTIONS: usize = 256;

/// Stack of each connection thread: decoding is iterative, so 256 KiB is ample.
const CONNECTION_STACK: usize = 256 * 1024;

/// A reader that gives up at a deadline, however the bytes trickle in.
struct DeadlineReader<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the connection's deadline passed"));
        }
        self.stream.set_read_timeout(Some(left))?;
        (&mut &*self.stream).read(buf)
    }
}

/// How long the accept loop waits for an evicted connection's thread to end before it
/// gives up on the newcomer instead (the thread's read fails as soon as it is shut down).
const EVICTION_WAIT: Duration = Duration::from_millis(200);

/// A message that arrived, and from where: its dialect, and its sender when the
/// dialect names one.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub from: SocketAddr,
    pub message: Message,
    pub dialect: Dialect,
    pub sender: Option<ProcessId>,
}

/// Connections still reading their message, oldest first: the ones a full listener
/// may close to make room.
#[derive(Default)]
struct Reading {
    next: u64,
    open: VecDeque<(u64, TcpStream)>,
}

impl Reading {
    fn add(&mut self, stream: &TcpStream) -> Option<u64> {
        let copy = stream.try_clone().ok()?;
        self.next += 1;
        self.open.push_back((self.next, copy));
        Some(self.next)
    }

    fn remove(&mut self, id: u64) {
        if let Some(i) = self.open.iter().position(|(n, _)| *n == id) {
            self.open.remove(i);
        }
    }

    /// Closes the oldest connection still reading; false if there is none.
    fn evict_oldest(&mut self) -> Option<SocketAddr> {
        let (_, stream) = self.open.pop_front()?;
        let _ = stream.shutdown(Shutdown::Both);
        stream.peer_addr().ok()
    }
}

/// A running listener; [`ListenerHandle::shutdown`] closes its socket.
pub struct ListenerHandle {
    stop: Arc<AtomicBool>,
    local: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl ListenerHandle {
    /// Stops accepting and closes the listening socket (peers then get refused
    /// connections). Connections already accepted finish on their own threads.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stop.store(true, Ordering::SeqCst);
        // accept() has no timeout: wake it with a connection of our own.
        let _ = TcpStream::connect_timeout(&wake_addr(self.local), Duration::from_secs(1));
        let _ = thread.join();
    }
}

impl Drop for ListenerHandle {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Where to connect to reach a listener bound to `local` (a wildcard means loopback).
fn wake_addr(local: SocketAddr) -> SocketAddr {
    let mut a = local;
    if a.ip().is_unspecified() {
        a.set_ip(if a.is_ipv4() { Ipv4Addr::LOCALHOST.into() } else { Ipv6Addr::LOCALHOST.into() });
    }
    a
}

/// Accepts connections on `listener` until shut down, calling `deliver` with each
/// protocol message from its connection's thread. While `ignoring` is set, messages are
/// read and dropped without a reply (a feigned failure that keeps the port open). `me`
/// is our id, for the dialect whose GOT_IT names the replier.
pub fn spawn(
    listener: TcpListener,
    me: ProcessId,
    deliver: Arc<dyn Fn(Incoming) + Send + Sync>,
    ignoring: Arc<AtomicBool>,
) -> std::io::Result<ListenerHandle> {
    let local = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = Arc::clone(&stop);
    let active = Arc::new(AtomicUsize::new(0));
    let reading = Arc::new(Mutex::new(Reading::default()));
    let mut turned_away = 0u64;
    let mut evicted = 0u64;
    let mut last_warning: Option<Instant> = None;
    let mut last_eviction_warning: Option<Instant> = None;
    let thread = std::thread::Builder::new().name("listener".into()).spawn(move || loop {
        let accepted = listener.accept();
        if stopping.load(Ordering::SeqCst) {
            return; // drops the listener: the port closes
        }
        match accepted {
            Ok((stream, from)) => {
                if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                    let oldest = reading.lock().unwrap_or_else(|e| e.into_inner()).evict_oldest();
                    if let Some(victim) = oldest {
                        evicted += 1;
                        if last_eviction_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
                            last_eviction_warning = Some(Instant::now());
                            warn!(
                                "{MAX_CONNECTIONS} connections open: closed the oldest that had sent no message ({victim}) to serve {from}; {evicted} so far"
                            );
                        }
                        // Its thread ends as soon as its read fails: wait for the slot.
                        let until = Instant::now() + EVICTION_WAIT;
                        while active.load(Ordering::SeqCst) >= MAX_CONNECTIONS && Instant::now() < until {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                }
                if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                    drop(stream); // closed at once: the peer sees no reply
                    turned_away += 1;
                    if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
                        last_warning = Some(Instant::now());
                        warn!("{MAX_CONNECTIONS} connections open: turned away {turned_away} so far (latest {from})");
                    }
                    continue;
                }
                active.fetch_add(1, Ordering::SeqCst);
                let (deliver, ignoring, count) = (Arc::clone(&deliver), Arc::clone(&ignoring), Arc::clone(&active));
                let slot = reading.lock().unwrap_or_else(|e| e.into_inner()).add(&stream);
                let registry = Arc::clone(&reading);
                let done_reading = move || {
                    if let Some(id) = slot {
                        registry.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
                    }
                };
                let spawned = std::thread::Builder::new()
                    .name(format!("conn-{from}"))
                    .stack_size(CONNECTION_STACK)
                    .spawn(move || {
                        serve_connection(stream, from, me, &*deliver, &ignoring, done_reading);
                        count.fetch_sub(1, Ordering::SeqCst);
                    });
                if let Err(e) = spawned {
                    if let Some(id) = slot {
                        reading.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
                    }
                    active.fetch_sub(1, Ordering::SeqCst);
                    warn!("no thread for the connection from {from}: {e}");
                }
            }
            Err(e) => {
                warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    })?;
    Ok(ListenerHandle { stop, local, thread: Some(thread) })
}

fn junk(from: SocketAddr, what: &str) {
    crate::report::logging::throttled_warn(&format!("connection from {from}: {what}; ignored"));
}

fn serve_connection(
    mut stream: TcpStream,
    from: SocketAddr,
    me: ProcessId,
    deliver: &dyn Fn(Incoming),
    ignoring: &AtomicBool,
    done_reading: impl FnOnce(),
) {
    let _ = stream.set_write_timeout(Some(READ_DEADLINE));
    let mut reader = DeadlineReader { stream: &stream, deadline: Instant::now() + READ_DEADLINE };
    let read = read_pickle(&mut reader, wire::MAX_PICKLE_BYTES);
    done_reading();
    let bytes = match read {
        Ok(bytes) => bytes,
        Err(e) => {
            junk(from, &e.to_string());
            return;
        }
    };
    let heard =
        match decode(&bytes).map_err(|e| e.to_string()).and_then(|v| Message::hear(&v).map_err(|e| e.to_string())) {
            Ok(h) => h,
            Err(e) => {
                junk(from, &format!("not a protocol message: {e}"));
                return;
            }
        };
    let message = heard.message;
    if ignoring.load(Ordering::SeqCst) {
        debug!("connection from {from}: {} dropped without a reply (feigning failure)", message.name());
        return;
    }
    debug!("connection from {from}: {} ({} bytes, {} dialect)", message.name(), bytes.len(), heard.dialect.as_str());
    if matches!(message, Message::Elect { .. } | Message::Probe) {
        if let Err(e) = stream.write_all(&wire::encode(&heard.dialect.got_it(me), Style::Compact)) {
            debug!("GOT_IT to {from} failed: {e}");
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
    deliver(Incoming { from, message, dialect: heard.dialect, sender: heard.sender });
}
