//! The node's listening side: one thread per connection. Each connection carries one
//! message; ELECT and PROBE are answered GOT_IT from the connection's own thread, at
//! once, so a reply never waits for the main loop. Every message is then handed on.
//!
//! Anything can connect, so what a connection may cost is bounded: it has
//! [`READ_DEADLINE`] in all to deliver its message (a peer trickling a byte at a time
//! gets no longer than a silent one), at most [`MAX_CONNECTIONS`] are served at once
//! (past that, new connections are closed at once instead of piling up threads), and
//! each thread has a small stack (decoding never recurses).

use crate::wire::{self, decode, read_pickle, Message, Reply, Style};
use log::{debug, warn};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
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

/// A message that arrived, and from where.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub from: SocketAddr,
    pub message: Message,
}

/// A running listener; [`ListenerHandle::shutdown`] closes its socket.
pub struct ListenerHandle {
    stop: Arc<AtomicBool>,
    local: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl ListenerHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

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
/// read and dropped without a reply (a feigned failure that keeps the port open).
pub fn spawn(
    listener: TcpListener,
    deliver: Arc<dyn Fn(Incoming) + Send + Sync>,
    ignoring: Arc<AtomicBool>,
) -> std::io::Result<ListenerHandle> {
    let local = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = Arc::clone(&stop);
    let active = Arc::new(AtomicUsize::new(0));
    let mut turned_away = 0u64;
    let mut last_warning: Option<Instant> = None;
    let thread = std::thread::Builder::new().name("listener".into()).spawn(move || loop {
        let accepted = listener.accept();
        if stopping.load(Ordering::SeqCst) {
            return; // drops the listener: the port closes
        }
        match accepted {
            Ok((stream, from)) => {
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
                let spawned = std::thread::Builder::new()
                    .name(format!("conn-{from}"))
                    .stack_size(CONNECTION_STACK)
                    .spawn(move || {
                        serve_connection(stream, from, &*deliver, &ignoring);
                        count.fetch_sub(1, Ordering::SeqCst);
                    });
                if let Err(e) = spawned {
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
    crate::logging::throttled_warn(&format!("connection from {from}: {what}; ignored"));
}

fn serve_connection(mut stream: TcpStream, from: SocketAddr, deliver: &dyn Fn(Incoming), ignoring: &AtomicBool) {
    let _ = stream.set_write_timeout(Some(READ_DEADLINE));
    let mut reader = DeadlineReader { stream: &stream, deadline: Instant::now() + READ_DEADLINE };
    let bytes = match read_pickle(&mut reader, wire::MAX_PICKLE_BYTES) {
        Ok(bytes) => bytes,
        Err(e) => {
            junk(from, &e.to_string());
            return;
        }
    };
    let message = match decode(&bytes)
        .map_err(|e| e.to_string())
        .and_then(|v| Message::from_value(&v).map_err(|e| e.to_string()))
    {
        Ok(m) => m,
        Err(e) => {
            junk(from, &format!("not a protocol message: {e}"));
            return;
        }
    };
    if ignoring.load(Ordering::SeqCst) {
        debug!("connection from {from}: {} dropped without a reply (feigning failure)", message.name());
        return;
    }
    debug!("connection from {from}: {} ({} bytes)", message.name(), bytes.len());
    if matches!(message, Message::Elect { .. } | Message::Probe) {
        if let Err(e) = stream.write_all(&wire::encode(&Reply::got_it(), Style::Compact)) {
            debug!("GOT_IT to {from} failed: {e}");
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
    deliver(Incoming { from, message });
}
