//! The coordinator's accept loop, a thread per connection: capped, stoppable, and stopped
//! when its [`Acceptor`] is dropped. (A node's listener serves every connection from one
//! polling thread instead, `runtime::listener`: a node of a large group takes a burst of
//! connections at every join, where a thread each drowned the machine.)
//!
//! Anything can connect, so what connections may cost is bounded: at most
//! [`Limits::max_connections`] are served at once, each on a thread with a small stack.
//! When every slot is taken, the oldest connection that has not yet delivered its
//! request (its handler has not called [`Done::read`]) is closed to make room for the
//! newest: a crowd of connections that hang can't keep a real request out (it arrives
//! and is read in milliseconds), while a crowd can only ever evict itself. Only when no
//! slot can be freed is the new connection closed at once.
//!
//! With [`Limits::serial`] the loop serves one connection at a time on its own thread,
//! as gcd2.py's single-threaded socketserver does.

use log::warn;
use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the accept loop waits for an evicted connection's thread to end before it
/// gives up on the newcomer instead (the thread's read fails as soon as it is shut down).
const EVICTION_WAIT: Duration = Duration::from_millis(200);

/// What a server's connections may cost.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once (ignored when `serial`: one).
    pub max_connections: usize,
    /// Stack of each connection thread.
    pub stack: usize,
    /// Serve one connection at a time, on the accept loop's own thread.
    pub serial: bool,
}

/// What a connection's handler calls once its request is read: from then on the
/// connection is no longer one a full server may close to make room. Dropping it does
/// the same.
pub struct Done {
    slot: Option<(u64, Arc<Mutex<Reading>>)>,
}

impl Done {
    /// The request is in: the connection can no longer be evicted.
    pub fn read(mut self) {
        self.release();
    }

    fn release(&mut self) {
        if let Some((id, reading)) = self.slot.take() {
            lock(&reading).remove(id);
        }
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        self.release();
    }
}

/// Handles one accepted connection, on its own thread (or the loop's, when serial).
pub type Handler = Arc<dyn Fn(TcpStream, SocketAddr, Done) + Send + Sync>;

/// Connections still reading their request, oldest first: the ones a full server may
/// close to make room.
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

    /// Closes the oldest connection still reading, and says whose it was.
    fn evict_oldest(&mut self) -> Option<SocketAddr> {
        let (_, stream) = self.open.pop_front()?;
        let _ = stream.shutdown(Shutdown::Both);
        stream.peer_addr().ok()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Adding and removing can't panic halfway, so a poisoned registry is still whole.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running accept loop. [`Acceptor::stop`] (or dropping it) stops accepting and
/// closes the listening socket; connections already accepted finish on their own threads.
pub struct Acceptor {
    stop: Arc<AtomicBool>,
    local: SocketAddr,
    active: Arc<AtomicUsize>,
    reading: Arc<Mutex<Reading>>,
    thread: Option<JoinHandle<()>>,
}

impl Acceptor {
    /// The address the loop accepts on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Connections being served now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// Connections that have not yet delivered their request (the evictable ones).
    pub fn reading(&self) -> usize {
        lock(&self.reading).open.len()
    }

    /// Stops accepting, closes the socket (new connections are refused) and waits for
    /// the loop's thread to end.
    pub fn stop(mut self) {
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

impl Drop for Acceptor {
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

/// Rate-limits one kind of warning to one a second, counting what it leaves out.
#[derive(Default)]
struct Throttle {
    count: u64,
    last: Option<Instant>,
}

impl Throttle {
    fn hit(&mut self) -> Option<u64> {
        self.count += 1;
        if self.last.is_some_and(|t| t.elapsed() <= Duration::from_secs(1)) {
            return None;
        }
        self.last = Some(Instant::now());
        Some(self.count)
    }
}

/// Accepts connections on `listener` until stopped, calling `handle` with each one.
/// `name` names the loop's thread and, with the peer's address, each connection's.
pub fn serve(listener: TcpListener, name: &str, limits: Limits, handle: Handler) -> io::Result<Acceptor> {
    let local = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let active = Arc::new(AtomicUsize::new(0));
    let reading: Arc<Mutex<Reading>> = Arc::default();
    let mut state = Loop {
        listener,
        name: name.to_string(),
        max: if limits.serial { 1 } else { limits.max_connections.max(1) },
        limits,
        handle,
        stopping: Arc::clone(&stop),
        active: Arc::clone(&active),
        reading: Arc::clone(&reading),
        turned_away: Throttle::default(),
        evicted: Throttle::default(),
    };
    let thread = std::thread::Builder::new().name(name.to_string()).spawn(move || state.run())?;
    Ok(Acceptor { stop, local, active, reading, thread: Some(thread) })
}

struct Loop {
    listener: TcpListener,
    name: String,
    limits: Limits,
    max: usize,
    handle: Handler,
    stopping: Arc<AtomicBool>,
    active: Arc<AtomicUsize>,
    reading: Arc<Mutex<Reading>>,
    turned_away: Throttle,
    evicted: Throttle,
}

impl Loop {
    fn run(&mut self) {
        loop {
            let accepted = self.listener.accept();
            if self.stopping.load(Ordering::SeqCst) {
                return; // drops the listener: the port closes
            }
            match accepted {
                Ok((stream, from)) if self.limits.serial => (self.handle)(stream, from, Done { slot: None }),
                Ok((stream, from)) => self.admit(stream, from),
                // Running out of descriptors or a client resetting mid-accept is not fatal.
                Err(e) => {
                    warn!("{}: accept failed: {e}", self.name);
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    fn full(&self) -> bool {
        self.active.load(Ordering::SeqCst) >= self.max
    }

    fn admit(&mut self, stream: TcpStream, from: SocketAddr) {
        let max = self.max;
        if self.full() {
            let oldest = lock(&self.reading).evict_oldest();
            if let Some(victim) = oldest {
                if let Some(n) = self.evicted.hit() {
                    warn!(
                        "{}: {max} connections open: closed the oldest that had sent nothing ({victim}) to serve {from}; {n} so far",
                        self.name
                    );
                }
                // Its thread ends as soon as its read fails: wait for the slot.
                let until = Instant::now() + EVICTION_WAIT;
                while self.full() && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        if self.full() {
            drop(stream); // closed at once: the peer sees no reply
            if let Some(n) = self.turned_away.hit() {
                warn!("{}: {max} connections open: turned away {n} so far (latest {from})", self.name);
            }
            return;
        }
        self.active.fetch_add(1, Ordering::SeqCst);
        let slot = lock(&self.reading).add(&stream).map(|id| (id, Arc::clone(&self.reading)));
        let done = Done { slot };
        let (handle, active) = (Arc::clone(&self.handle), Arc::clone(&self.active));
        let spawned = std::thread::Builder::new()
            .name(format!("{}-{from}", self.name))
            .stack_size(self.limits.stack)
            .spawn(move || {
                handle(stream, from, done);
                active.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            // The closure (and with it `done`) is dropped: the slot is freed.
            self.active.fetch_sub(1, Ordering::SeqCst);
            warn!("{}: no thread for the connection from {from}: {e}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn limits(max: usize) -> Limits {
        Limits { max_connections: max, stack: 128 * 1024, serial: false }
    }

    /// A handler that reads one byte, marks the request read, and echoes it back.
    fn echo() -> Handler {
        Arc::new(|mut stream: TcpStream, _, done: Done| {
            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut b = [0u8; 1];
            if stream.read_exact(&mut b).is_ok() {
                done.read();
                let _ = stream.write_all(&b);
            }
        })
    }

    fn ask(addr: SocketAddr, byte: u8) -> io::Result<u8> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(&[byte])?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b)?;
        Ok(b[0])
    }

    fn poll(what: &str, mut ok: impl FnMut() -> bool) {
        let until = Instant::now() + Duration::from_secs(20);
        while !ok() {
            assert!(Instant::now() < until, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn stopping_closes_the_port_and_ends_the_loop() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let acceptor = serve(listener, "t-stop", limits(8), echo()).unwrap();
        let addr = acceptor.local_addr();
        assert_eq!(ask(addr, 7).unwrap(), 7);
        acceptor.stop();
        let refused = TcpStream::connect_timeout(&addr, Duration::from_secs(5));
        assert!(refused.is_err(), "still accepting after stop");
    }

    #[test]
    fn dropping_the_handle_stops_it_too() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = {
            let acceptor = serve(listener, "t-drop", limits(8), echo()).unwrap();
            acceptor.local_addr()
        };
        assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(5)).is_err());
    }

    #[test]
    fn a_full_server_evicts_the_oldest_silent_connection_for_a_newcomer() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let acceptor = serve(listener, "t-cap", limits(3), echo()).unwrap();
        let addr = acceptor.local_addr();
        let mut silent: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        poll("three held", || acceptor.active() == 3);
        // A newcomer is served: the oldest silent one made room.
        assert_eq!(ask(addr, 42).unwrap(), 42);
        assert!(acceptor.active() <= 3, "cap exceeded: {}", acceptor.active());
        silent[0].set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut b = [0u8; 1];
        assert_eq!(silent[0].read(&mut b).unwrap_or(0), 0, "the oldest was not closed");
        // The others are still open and still served.
        silent[2].write_all(&[9]).unwrap();
        silent[2].set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        silent[2].read_exact(&mut b).unwrap();
        assert_eq!(b[0], 9);
    }

    #[test]
    fn a_full_server_of_connections_that_sent_their_request_turns_newcomers_away() {
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().unwrap();
        let waiting = Arc::clone(&gate);
        // Reads the request, then waits on the gate before answering: not evictable.
        let handler: Handler = Arc::new(move |mut stream: TcpStream, _, done: Done| {
            let mut b = [0u8; 1];
            if stream.read_exact(&mut b).is_ok() {
                done.read();
                drop(lock(&waiting));
                let _ = stream.write_all(&b);
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let acceptor = serve(listener, "t-full", limits(2), handler).unwrap();
        let addr = acceptor.local_addr();
        let mut busy: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
        for s in &mut busy {
            s.write_all(&[1]).unwrap();
        }
        poll("two busy", || acceptor.active() == 2 && acceptor.reading() == 0);
        let turned = ask(addr, 5);
        assert!(turned.is_err(), "served beyond the cap: {turned:?}");
        drop(held);
        for s in &mut busy {
            let mut b = [0u8; 1];
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.read_exact(&mut b).unwrap();
        }
        poll("slots free", || acceptor.active() == 0);
        assert_eq!(ask(addr, 6).unwrap(), 6);
    }

    #[test]
    fn a_serial_server_serves_one_connection_at_a_time() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let acceptor =
            serve(listener, "t-serial", Limits { max_connections: 99, stack: 128 * 1024, serial: true }, echo())
                .unwrap();
        let addr = acceptor.local_addr();
        let mut first = TcpStream::connect(addr).unwrap();
        let mut second = TcpStream::connect(addr).unwrap();
        second.write_all(&[2]).unwrap();
        second.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let mut b = [0u8; 1];
        assert!(second.read_exact(&mut b).is_err(), "answered while the first was being served");
        first.write_all(&[1]).unwrap();
        first.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        first.read_exact(&mut b).unwrap();
        assert_eq!(b[0], 1);
        second.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        second.read_exact(&mut b).unwrap();
        assert_eq!(b[0], 2);
        drop((first, second));
        acceptor.stop();
    }
}
