//! The coordinator's sockets: one request per connection, like gcd2.py, served by the
//! coordinator's `Service` on the crate's one server (`crate::net::server`: an accept
//! thread and a thread per connection, as gcd2.py's socketserver would with threads):
//! concurrent and capped by default, so one slow client can't hold up everyone's HOWDY,
//! or one at a time in arrival order as gcd2.py's single-threaded socketserver serves.
//!
//! A request is read as gcd2.py's `recv(1024)` would see it, except that the server
//! waits for a whole pickle rather than taking the first segment: whatever has come when
//! the pickle is complete, the client closes, the bytes stop being a pickle,
//! `REQUEST_LIMIT` bytes are in, or [`REQUEST_TIMEOUT`] passes, is answered.

use super::coordinator::{Answer, Coordinator, REQUEST_LIMIT};
use crate::net::server::{self, End, Limits, Oversize, Request, Response, Server, Service, WhenFull};
use crate::wire::FrameError;
use log::{debug, info, warn};
use std::convert::Infallible;
use std::io;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

/// How long a client may take, from being accepted, to send its request and take the
/// answer. gcd2.py waits forever; a connection that never sends must not hold a slot
/// (or, serving one at a time, everyone behind it) for good.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections the coordinator serves at once, each on a thread of its own. A group
/// registers a handful at a time; this bounds what a crowd of clients that connect and
/// never send can cost (each holds a thread and a descriptor for at most
/// [`REQUEST_TIMEOUT`], and the oldest silent one makes room).
pub const MAX_CONNECTIONS: usize = 256;

/// Something told of every answer the coordinator gives (the checker records its peer's
/// registrations this way: a re-registration changes no membership, so it shows only here).
pub type Observer = Arc<dyn Fn(&Answer) + Send + Sync>;

/// How the coordinator takes its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Serving {
    /// Every connection at once, at most [`MAX_CONNECTIONS`] (the oldest that has sent
    /// nothing makes room for a newcomer), so one slow client can't hold up everyone's
    /// HOWDY.
    #[default]
    Concurrent,
    /// One connection at a time, in the order they came, as gcd2.py's single-threaded
    /// socketserver serves (`bully-node gcd --serial`): the rest wait in the kernel's
    /// backlog, so each request waits for every one before it, and a client that sends
    /// nothing holds everyone up for [`REQUEST_TIMEOUT`]. That is the load a group must
    /// keep low on the course's GCD.
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
) -> io::Result<Server> {
    let (max_connections, when_full) = match serving {
        Serving::Concurrent => (MAX_CONNECTIONS, WhenFull::EvictOldestSilent),
        Serving::Serial => (1, WhenFull::Wait),
    };
    let limits = Limits {
        max_connections,
        deadline: REQUEST_TIMEOUT,
        max_request: REQUEST_LIMIT,
        oversize: Oversize::Cut,
        when_full,
        backlog: None,
    };
    server::serve(listener, "gcd", limits, Gcd { coordinator, observe })
}

/// The coordinator's side of its connections.
struct Gcd {
    coordinator: Arc<Coordinator>,
    observe: Option<Observer>,
}

impl Service for Gcd {
    /// Nothing follows an answer.
    type Then = Infallible;

    fn respond(&self, request: Request<'_>) -> Response<Infallible> {
        let Request { bytes: raw, from: peer, end } = request;
        if let End::Failed(FrameError::Io(e)) = end {
            warn!("reading from {peer} failed: {e}");
            return Response::close();
        }
        let answer = self.coordinator.answer(raw);
        let name = self.coordinator.config().accept;
        match &answer {
            Answer::Joined { pid, addr, .. } => {
                let n = self.coordinator.members().len();
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
        if let Some(observe) = &self.observe {
            observe(&answer);
        }
        Response { reply: answer.reply_bytes().map(<[u8]>::to_vec), then: None }
    }

    fn after(&self, never: Infallible) {
        match never {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gcd::{register, CoordinatorConfig, NameChoice};
    use crate::identity::ProcessId;
    use crate::membership::Addr;

    fn gcd_at(server: &Server) -> Addr {
        Addr::new("127.0.0.1", server.local_addr().port())
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

    #[test]
    fn serially_a_client_that_sends_nothing_holds_the_next_registration_up() {
        let (tx, heard) = std::sync::mpsc::channel();
        let observe: Observer = Arc::new(move |a: &Answer| {
            let _ = tx.send(matches!(a, Answer::Joined { .. }));
        });
        let coordinator = Arc::new(Coordinator::new(CoordinatorConfig::default()));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = start(listener, coordinator, Serving::Serial, Some(observe)).unwrap();
        let gcd = gcd_at(&server);
        let silent = std::net::TcpStream::connect(server.local_addr()).unwrap();
        let until = std::time::Instant::now() + Duration::from_secs(20);
        while server.open_connections() != 1 {
            assert!(std::time::Instant::now() < until, "the silent client was not taken");
            std::thread::sleep(Duration::from_millis(5));
        }
        let joining = std::thread::spawn(move || {
            let pid = ProcessId::new(10, 1_000_001);
            register(&gcd, NameChoice::Auto, pid, &Addr::new("127.0.0.1", 4001), Duration::from_secs(15))
        });
        // Served concurrently, the registration would be answered in milliseconds.
        let early = heard.recv_timeout(Duration::from_millis(500));
        assert!(early.is_err(), "answered while a silent client was being served: {early:?}");
        drop(silent); // its empty request answered, the registration is next
        assert_eq!(heard.recv_timeout(Duration::from_secs(10)), Ok(false));
        assert_eq!(heard.recv_timeout(Duration::from_secs(10)), Ok(true));
        assert_eq!(joining.join().unwrap().unwrap().members.len(), 1);
    }
}
