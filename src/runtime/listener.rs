//! The node's listening side: the node's [`Service`] on the crate's one server
//! ([`crate::net::server`]: an accept thread, and a thread per connection). Each
//! connection carries one message; its thread reads it, answers ELECT and PROBE with
//! GOT_IT at once (a reply never waits for the main loop), shuts the connection down,
//! pushes the message into the node's mailbox, and ends.
//!
//! What a connection may cost: it has [`READ_DEADLINE`] in all, from being accepted, to
//! deliver its message and take the reply, at most [`MAX_CONNECTIONS`] connection threads
//! live at once, and a message may be at most [`wire::MAX_PICKLE_BYTES`] (refused as soon
//! as its framing says it is longer). When every permit is taken, the oldest connection
//! that has not sent a whole message is closed to make room for the newest, so a crowd of connections
//! that hang can't keep a real member's PROBE out, and a burst of real messages waits for
//! permits rather than being dropped. Bytes that are not a protocol message, cut short or
//! too late are logged (throttled) and the connection closed; the node keeps serving.
//!
//! Replies go in the shape of the message's dialect (see PROTOCOL.md), chosen by
//! [`Replies::answer`]: `'GOT_IT'`, `('GOT_IT', our_pid)` to the sender-tuple dialect,
//! an OK of the form a member of the ELECTION / OK / COORDINATOR years reads.

use super::Replies;
use crate::identity::ProcessId;
use crate::net::server::{self, End, Limits, Oversize, Request, Response, Service, WhenFull};
use crate::protocol::{Dialect, Message};
use crate::report::logging::throttled_warn;
use crate::wire::{self, decode, Style};
use log::debug;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a peer may take, in all, to send its one message (and take our reply).
/// Python peers send it at once and wait 1.5 to 2 s for the reply; this only limits what
/// a silent or trickling connection can cost.
pub const READ_DEADLINE: Duration = Duration::from_secs(2);

/// Connection threads alive at once: the permits of mini-redis's listener (250 there).
/// Each thread costs a descriptor and, while it lives, some 10-20 KiB resident of its
/// small stack ([`server::CONNECTION_STACK`]); glibc keeps freed stacks, so a node's
/// resident memory follows its peak of live threads, and this cap bounds it. A message
/// is served in well under a millisecond, so even a group's whole fan-out to one member
/// (every member's ELECT or I_AM_LEADER at once) holds far fewer at a time; past the
/// cap, silent connections make room and real messages wait for a permit.
pub const MAX_CONNECTIONS: usize = 256;

/// Connections the kernel queues for the listener to accept. std listens with 128; a
/// node of a large group receives a burst of connections at once (every member's ELECT
/// or I_AM_LEADER), and a connection that finds the queue full has its handshake dropped
/// and retried a second later, most of a peer's 1.5 s reply timeout. Linux caps it at
/// `net.core.somaxconn` (4,096 by default).
pub const BACKLOG: i32 = 1024;

/// A message that arrived, and from where: its dialect, and its sender when the
/// dialect names one.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub from: SocketAddr,
    pub message: Message,
    pub dialect: Dialect,
    pub sender: Option<ProcessId>,
}

/// A running listener: stopping or dropping it closes the port and every connection.
pub type Listener = server::Server;

/// Serves connections on `listener` until stopped, calling `deliver` with each protocol
/// message, from that message's connection thread. While `ignoring` is set, messages are
/// read and dropped without a reply (a feigned failure that keeps the port open).
/// `replies` chooses each answer's form ([`Replies::answer`]).
pub fn spawn(
    listener: TcpListener,
    replies: Replies,
    deliver: Arc<dyn Fn(Incoming) + Send + Sync>,
    ignoring: Arc<AtomicBool>,
) -> io::Result<Listener> {
    spawn_capped(listener, replies, deliver, ignoring, MAX_CONNECTIONS)
}

fn spawn_capped(
    listener: TcpListener,
    replies: Replies,
    deliver: Arc<dyn Fn(Incoming) + Send + Sync>,
    ignoring: Arc<AtomicBool>,
    max: usize,
) -> io::Result<Listener> {
    let limits = Limits {
        max_connections: max,
        deadline: READ_DEADLINE,
        max_request: wire::MAX_PICKLE_BYTES,
        oversize: Oversize::Refuse,
        when_full: WhenFull::EvictOldestSilent,
        backlog: Some(BACKLOG),
    };
    server::serve(listener, "listener", limits, Node { replies, deliver, ignoring })
}

/// The node's side of its connections.
struct Node {
    replies: Replies,
    deliver: Arc<dyn Fn(Incoming) + Send + Sync>,
    ignoring: Arc<AtomicBool>,
}

impl Service for Node {
    type Then = Incoming;

    fn respond(&self, request: Request<'_>) -> Response<Incoming> {
        let Request { bytes, from, end } = request;
        let verdict = match end {
            End::Complete => judge(bytes, from, &self.replies, self.ignoring.load(Ordering::SeqCst)),
            End::Failed(e) => Verdict::Junk(e.to_string()),
            End::TimedOut if bytes.is_empty() => Verdict::Junk("timed out waiting for data".into()),
            End::TimedOut => {
                Verdict::Junk(format!("timed out waiting for data ({} bytes came, not a whole message)", bytes.len()))
            }
        };
        match verdict {
            Verdict::Junk(what) => {
                throttled_warn(&format!("connection from {from}: {what}; ignored"));
                Response::close()
            }
            Verdict::Ignored => Response::close(),
            Verdict::Reply(reply, incoming) => Response { reply: Some(reply), then: Some(incoming) },
            Verdict::Deliver(incoming) => Response { reply: None, then: Some(incoming) },
        }
    }

    /// The GOT_IT is out (or could not be sent) and the connection shut: hand it on.
    fn after(&self, incoming: Incoming) {
        (self.deliver)(incoming);
    }
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

fn judge(bytes: &[u8], from: SocketAddr, replies: &Replies, ignoring: bool) -> Verdict {
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
    let reply = replies.answer(&heard).map(|value| wire::encode(&value, Style::Compact));
    let incoming = Incoming { from, message: heard.message, dialect: heard.dialect, sender: heard.sender };
    match reply {
        Some(bytes) => Verdict::Reply(bytes, incoming),
        None => Verdict::Deliver(incoming),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::{Addr, Members};
    use crate::net::server::tests::poll;
    use crate::protocol::encode_message;
    use crate::wire::Value;
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpStream};
    use std::sync::mpsc::{channel, Receiver};
    use std::time::Instant;

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
        let listener = spawn_capped(socket, Replies::new(ME), deliver, Arc::clone(&ignoring), cap).unwrap();
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
        for dialect in Dialect::ALL {
            for message in [&elect, &Message::Probe] {
                let value = message.to_value_in(dialect, sender, &Addr::new("127.0.0.1", 9), ME, &members);
                let reply = ask(addr, &wire::encode(&value, Style::Compact));
                let heard = next(&r.heard);
                assert_eq!(heard.message.name(), message.name(), "{dialect:?}");
                // A PROBE has no sender-tuple form: it is standard there.
                let probe = matches!(message, Message::Probe);
                let expected = heard.dialect.answer(ME, crate::protocol::OkHabit::Tuple, probe);
                assert_eq!(expected.is_none(), reply.is_empty(), "{dialect:?} {}", message.name());
                if let Some(expected) = expected {
                    assert_eq!(decode(&reply).unwrap(), expected, "{dialect:?} {}", message.name());
                }
                if !probe || dialect != Dialect::Sender {
                    assert_eq!(heard.dialect, dialect);
                }
            }
        }
        // The replies differ by dialect: the test would notice a fixed 'GOT_IT'.
        let old = Message::Probe.to_value_in(Dialect::OldNames, sender, &Addr::new("h", 1), ME, &members);
        let reply = ask(addr, &wire::encode(&old, Style::Compact));
        assert_eq!(decode(&reply).unwrap(), Value::tuple([Value::str("OK"), Value::None]));
        next(&r.heard);
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
        // Its thread is done (a message is handed on before the thread ends).
        poll("the ignored connection's thread ended", || r.listener.open_connections() == 0);
        r.ignoring.store(false, Ordering::SeqCst);
        let mut s = connect(addr);
        let mine = s.local_addr().unwrap();
        s.write_all(&probe_value()).unwrap();
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).unwrap();
        assert_eq!(decode(&reply).unwrap(), Value::str("GOT_IT"));
        // Had the ignored PROBE been handed on, it would have come first.
        assert_eq!(next(&r.heard).from, mine);
        assert!(r.heard.try_recv().is_err());
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

    /// The decoder's hostile inputs (tests/hostile_decode.rs), and the deepest message a
    /// pickle may nest, each on a connection thread of its own with its small stack.
    fn hostile_inputs() -> Vec<Vec<u8>> {
        let mut deep = b"\x80\x02".to_vec();
        deep.extend(std::iter::repeat_n(b']', 10_000));
        deep.extend(std::iter::repeat_n(b'a', 9_999));
        deep.push(b'.');
        let mut marks = vec![b'('; 10_000];
        marks.extend(std::iter::repeat_n(b'l', 10_000));
        marks.push(b'.');
        let mut dup = b"\x80\x02]".to_vec();
        for _ in 0..40 {
            dup.extend_from_slice(b"2\x86");
        }
        dup.push(b'.');
        let mut memo = b"\x80\x02N".to_vec();
        for _ in 0..20 {
            memo.extend_from_slice(b"q\x00h\x00h\x00\x87");
        }
        memo.push(b'.');
        // ('ELECT', [[...[None]...]]): as deep as a pickle may nest, so it decodes (and
        // is dropped, recursively): an ELECT none of whose members is valid.
        let mut nested = Value::None;
        for _ in 0..wire::MAX_DEPTH - 2 {
            nested = Value::List(vec![nested]);
        }
        let deepest = wire::encode(&Value::tuple([Value::str("ELECT"), nested]), Style::Compact);
        assert!(decode(&deepest).is_ok(), "not the deepest that decodes");
        vec![deep, marks, dup, memo, deepest]
    }

    const DEEPEST: usize = 4;

    #[test]
    fn hostile_pickles_end_their_connection_threads_without_a_crash() {
        let r = start(MAX_CONNECTIONS);
        let addr = r.listener.local_addr();
        for (i, bytes) in hostile_inputs().into_iter().enumerate() {
            let reply = ask(addr, &bytes);
            if i == DEEPEST {
                assert_eq!(decode(&reply).unwrap(), Value::str("GOT_IT"));
                assert!(matches!(next(&r.heard).message, Message::Elect { rejected: 1, .. }));
            } else {
                assert_eq!(reply, b"", "input {i} was answered");
            }
        }
        poll("their threads ended", || r.listener.open_connections() == 0);
        // A crashed connection thread would have taken the process with it; the node
        // still answers.
        assert_eq!(decode(&ask(addr, &probe_value())).unwrap(), Value::str("GOT_IT"));
        assert_eq!(next(&r.heard).message, Message::Probe);
        assert!(r.heard.try_recv().is_err(), "a hostile input was handed on");
    }

    #[test]
    fn past_the_cap_the_oldest_silent_connections_make_room_and_a_probe_is_answered() {
        // A small cap: the test process holds both ends of every connection.
        let cap = 40;
        let r = start(cap);
        let addr = r.listener.local_addr();
        let mut silent: Vec<TcpStream> = (0..cap + 25).map(|_| connect(addr)).collect();
        poll("25 evicted, the cap's worth held", || r.listener.evicted() == 25 && r.listener.open_connections() == cap);
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
        let again = spawn(TcpListener::bind(addr).unwrap(), Replies::new(ME), deliver, Arc::default()).unwrap();
        assert_eq!(again.local_addr(), addr);
        assert_eq!(decode(&ask(addr, &probe_value())).unwrap(), Value::str("GOT_IT"));
        assert_eq!(next(&heard).message, Message::Probe);
        drop(again);
        assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(5)).is_err(), "still accepting after drop");
    }
}
