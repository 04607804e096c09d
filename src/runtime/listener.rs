//! The node's listening side: one thread per connection. Each connection carries one
//! message; ELECT and PROBE are answered GOT_IT from the connection's own thread, at
//! once, so a reply never waits for the main loop. Every message is then handed on.
//!
//! Anything can connect, so what a connection may cost is bounded: it has
//! [`READ_DEADLINE`] in all to deliver its message (a peer trickling a byte at a time
//! gets no longer than a silent one), at most [`MAX_CONNECTIONS`] are served at once,
//! and each thread has a small stack (decoding never recurses). The accept loop is the
//! shared one ([`crate::net::accept`]): when every slot is taken, the oldest connection
//! that has not yet delivered a message is closed to make room for the newest, so a
//! crowd of connections that hang can't keep a real member's PROBE out.
//!
//! Replies go in the shape of the message's dialect (see PROTOCOL.md): `'GOT_IT'`,
//! `('GOT_IT', our_pid)` to the sender-tuple dialect, `'OK'` to the old names.

use crate::identity::ProcessId;
use crate::net::accept::{self, Acceptor, Done, Handler, Limits};
use crate::protocol::{Dialect, Message};
use crate::wire::{self, decode, read_pickle, Style};
use log::debug;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a peer may take, in all, to send its one message. Python peers send it at
/// once and wait 1.5 to 2 s for the reply; this only limits what a silent or trickling
/// connection can cost.
pub const READ_DEADLINE: Duration = Duration::from_secs(2);

/// Connections served at once. A group of classmates opens a handful at a time; 256
/// leaves room for floods of fast junk (each gone in microseconds) while a flood of
/// silent connections holds at most this many threads for [`READ_DEADLINE`].
pub const MAX_CONNECTIONS: usize = 256;

/// Connections the kernel queues for the listener to accept. std listens with 128; a
/// node of a large group receives a burst of connections at once (every member's ELECT
/// or I_AM_LEADER), and a connection that finds the queue full has its handshake dropped
/// and retried a second later, most of a peer's 1.5 s reply timeout. Linux caps it at
/// `net.core.somaxconn` (4,096 by default).
pub const BACKLOG: i32 = 1024;

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

/// A message that arrived, and from where: its dialect, and its sender when the
/// dialect names one.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub from: SocketAddr,
    pub message: Message,
    pub dialect: Dialect,
    pub sender: Option<ProcessId>,
}

/// Accepts connections on `listener` until stopped, calling `deliver` with each
/// protocol message from its connection's thread. While `ignoring` is set, messages are
/// read and dropped without a reply (a feigned failure that keeps the port open). `me`
/// is our id, for the dialect whose GOT_IT names the replier.
pub fn spawn(
    listener: TcpListener,
    me: ProcessId,
    deliver: Arc<dyn Fn(Incoming) + Send + Sync>,
    ignoring: Arc<AtomicBool>,
) -> std::io::Result<Acceptor> {
    // Listening again on a listening socket only changes its backlog.
    socket2::SockRef::from(&listener).listen(BACKLOG)?;
    let limits = Limits { max_connections: MAX_CONNECTIONS, stack: CONNECTION_STACK, serial: false };
    let handle: Handler =
        Arc::new(move |stream, from, done| serve_connection(stream, from, me, &*deliver, &ignoring, done));
    accept::serve(listener, "listener", limits, handle)
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
    done: Done,
) {
    let _ = stream.set_write_timeout(Some(READ_DEADLINE));
    let mut reader = DeadlineReader { stream: &stream, deadline: Instant::now() + READ_DEADLINE };
    let read = read_pickle(&mut reader, wire::MAX_PICKLE_BYTES);
    done.read();
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
