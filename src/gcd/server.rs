//! The coordinator's sockets: one request per connection, like gcd2.py, served on the
//! accept loop of `crate::net::accept`: concurrent and capped by default, so one
//! slow client can't hold up everyone's HOWDY, or one at a time as gcd2.py does.

use super::coordinator::{Answer, Coordinator, REQUEST_LIMIT};
use crate::net::accept::{self, Acceptor, Done, Handler, Limits};
use crate::wire::{Framer, Progress};
use log::{debug, info, warn};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// How long a client may take to send its request. gcd2.py waits forever; a waiting
/// thread costs little, but a connection that never sends must not cost one for good.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections the coordinator serves at once. A group registers a handful at a time;
/// this bounds what a crowd of clients that connect and never send can cost (each holds
/// a thread for at most [`REQUEST_TIMEOUT`], and the oldest silent one makes room).
pub const MAX_CONNECTIONS: usize = 256;

/// Stack of each connection thread: a request is at most 1024 bytes and decoding and
/// encoding are iterative.
const CONNECTION_STACK: usize = 256 * 1024;

/// Something told of every answer the coordinator gives (the checker records its peer's
/// registrations this way: a re-registration changes no membership, so it shows only here).
pub type Observer = Arc<dyn Fn(&Answer) + Send + Sync>;

/// How the coordinator takes its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Serving {
    /// One thread per connection, at most [`MAX_CONNECTIONS`] at once, so one slow
    /// client can't hold up everyone's HOWDY.
    #[default]
    Concurrent,
    /// One connection at a time, as gcd2.py's single-threaded socketserver does
    /// (`bully-node gcd --serial`): each request waits for every one before it, which is
    /// the load a group must keep low on the course's GCD.
    Serial,
}

/// Serves `listener` until the returned handle is stopped or dropped, telling `observe`
/// of each answer before it is sent. The listener is bound by the caller, so tests can
/// bind `127.0.0.1:0` and read the port back.
pub fn start(
    listener: TcpListener,
    coordinator: Arc<Coordinator>,
    serving: Serving,
    observe: Option<Observer>,
) -> io::Result<Acceptor> {
    let limits =
        Limits { max_connections: MAX_CONNECTIONS, stack: CONNECTION_STACK, serial: serving == Serving::Serial };
    let handler: Handler =
        Arc::new(move |stream, peer, done| handle(stream, &coordinator, &peer.to_string(), observe.as_deref(), done));
    accept::serve(listener, "gcd", limits, handler)
}

fn handle(
    mut stream: TcpStream,
    coordinator: &Coordinator,
    peer: &str,
    observe: Option<&(dyn Fn(&Answer) + Send + Sync)>,
    done: Done,
) {
    let read = read_request(&mut stream);
    done.read();
    let raw = match read {
        Ok(raw) => raw,
        Err(e) => {
            warn!("reading from {peer} failed: {e}");
            return;
        }
    };
    let answer = coordinator.answer(&raw);
    let name = coordinator.config().accept;
    match &answer {
        Answer::Joined { pid, addr, .. } => {
            let n = coordinator.members().len();
            let s = if n == 1 { "" } else { "s" };
            info!("{name} from {pid} listening at {addr}: accepted, the group has {n} member{s}");
        }
        Answer::Refused { reason, .. } => info!("request from {peer} refused: {reason:?}"),
        Answer::NotAPickle { .. } if raw.is_empty() => {
            debug!("{peer} closed without sending a request")
        }
        Answer::NotAPickle { .. } => info!("{} bytes from {peer} are not a pickle", raw.len()),
        Answer::NoReply { reason } => {
            info!("request from {peer} dropped without a reply: {reason}")
        }
    }
    if let Some(observe) = observe {
        observe(&answer);
    }
    if let Some(reply) = answer.reply_bytes() {
        if let Err(e) = stream.write_all(reply) {
            warn!("answering {peer} failed: {e}");
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

/// What gcd2.py's `recv(1024)` would have seen: whatever arrives, up to 1024 bytes,
/// except that we wait for a whole pickle rather than taking the first segment.
fn read_request(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    let mut buf = vec![0u8; REQUEST_LIMIT];
    let mut len = 0;
    let mut framer = Framer::new();
    while len < REQUEST_LIMIT {
        let n = match stream.read(&mut buf[len..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // A timeout answers with what arrived, as a cut-short request.
            Err(e) if crate::wire::is_timeout(&e) => break,
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        len += n;
        match framer.advance(&buf[..len]) {
            Ok(Progress::NeedMore(_)) => {}
            Ok(Progress::Complete { .. }) | Err(_) => break,
        }
    }
    buf.truncate(len);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gcd::{register, CoordinatorConfig, NameChoice};
    use crate::identity::ProcessId;
    use crate::membership::Addr;

    fn gcd_at(acceptor: &Acceptor) -> Addr {
        Addr::new("127.0.0.1", acceptor.local_addr().port())
    }

    #[test]
    fn a_stopped_coordinator_refuses_the_next_member() {
        let coordinator = Arc::new(Coordinator::new(CoordinatorConfig::default()));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let acceptor = start(listener, Arc::clone(&coordinator), Serving::Concurrent, None).unwrap();
        let gcd = gcd_at(&acceptor);
        let first = ProcessId::new(10, 1_000_001);
        let joined = register(&gcd, NameChoice::Auto, first, &Addr::new("127.0.0.1", 4001), Duration::from_secs(5));
        assert_eq!(joined.unwrap().members.len(), 1);
        acceptor.stop();
        let second = ProcessId::new(11, 1_000_002);
        let refused = register(&gcd, NameChoice::Auto, second, &Addr::new("127.0.0.1", 4002), Duration::from_secs(5));
        assert!(refused.is_err(), "a stopped coordinator answered: {refused:?}");
        assert_eq!(coordinator.members().len(), 1);
    }

    #[test]
    fn the_observer_hears_every_answer_and_serial_serving_still_answers() {
        let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = Arc::clone(&heard);
        let observe: Observer =
            Arc::new(move |a: &Answer| log.lock().unwrap().push(matches!(a, Answer::Joined { .. })));
        let coordinator = Arc::new(Coordinator::new(CoordinatorConfig::default()));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let acceptor = start(listener, coordinator, Serving::Serial, Some(observe)).unwrap();
        let gcd = gcd_at(&acceptor);
        for i in 0..3 {
            let pid = ProcessId::new(10, 1_000_001 + i);
            let addr = Addr::new("127.0.0.1", 4001 + i as u16);
            register(&gcd, NameChoice::Auto, pid, &addr, Duration::from_secs(5)).unwrap();
        }
        drop(acceptor);
        assert_eq!(*heard.lock().unwrap(), vec![true, true, true]);
    }
}
