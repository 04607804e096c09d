//! The runtime around the pure [`Node`]: sockets, threads, clocks. The four parts of the
//! shape:
//!
//! 1. the listener ([`listener`], on `net::server`): an accept thread, and a thread per
//!    connection that reads one message, answers GOT_IT, and pushes it into
//! 2. one monitor queue ([`Mailbox`]: a Mutex + Condvar), which
//! 3. one main loop ([`Runtime::main_loop`]) drains: it fires due timers, feeds the
//!    node (the pure state machine), and carries out the node's actions;
//! 4. every outgoing message (ELECT, PROBE, I_AM_LEADER) and re-registration runs on a
//!    thread spawned for it ([`Senders::spawn`], through [`Runtime::spawn_reporting`]),
//!    which reports how it ended into the mailbox, so no reply is ever awaited on the
//!    main loop.
//!
//! Threads come and go with the traffic; caps on live connection threads
//! ([`listener::MAX_CONNECTIONS`]) and live send threads ([`SEND_THREADS`]) bound them.
//! Start-up order: bind the listener (so the address we register is real), register with
//! the GCD, then start the node. Stopping closes the listener and joins its threads and
//! the send threads.

mod config;
pub mod listener;
pub mod mailbox;
pub mod senders;

pub use config::{
    Config, ConfigError, ConfigField, MAX_SPAN, MAX_TIMEOUT, MIN_FEIGN, MIN_LEADER_CHECK, MIN_PROBE_WAIT, MIN_TIMEOUT,
    SOCKET_TIMEOUT,
};

use listener::Incoming;
use mailbox::{Mailbox, Taken};
use senders::Senders;

use crate::gcd::{self, GcdError, NameChoice};
use crate::identity::ProcessId;
use crate::membership::{Addr, Members};
use crate::net::{self, ExchangeError};
use crate::node::{Action, Event, Failure, Input, Listening, Node, Outcome, RegisterWhy, Time, Timer};
use crate::protocol::{
    ok_on_new_connection, pid_from_value, Dialect, Heard, Learned, Message, RegisterName, Reply, ReplyBook,
};
use crate::report::events::{self, EventSink};
use crate::report::logging::LEADER_TARGET;
use crate::wire::{decode, encode, is_timeout, FrameError, Style};
use log::{debug, info, warn};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fmt;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the GCD may take to answer a registration.
pub const GCD_TIMEOUT: Duration = Duration::from_secs(5);

/// The most a Python peer reads of a message (one `recv(1024)`).
const PYTHON_RECV: usize = 1024;

/// Why a node could not start, in the engine's terms (a front end adds what to do).
#[derive(Debug)]
pub enum NodeError {
    Bind { addr: Addr, cause: std::io::Error },
    Events { path: String, cause: std::io::Error },
    Gcd { error: GcdError, attempts: u32, waited: Duration },
    Config(ConfigError),
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeError::Bind { addr, cause } => write!(f, "cannot listen on {addr}: {cause}"),
            NodeError::Events { path, cause } => write!(f, "cannot write events to {path}: {cause}"),
            NodeError::Config(e) => write!(f, "cannot run with this configuration: {e}"),
            NodeError::Gcd { error, attempts: 1, .. } => write!(f, "{error}"),
            NodeError::Gcd { error, attempts, waited } => {
                write!(f, "{error} (gave up after {attempts} attempts over {:.1} s)", waited.as_secs_f64())
            }
        }
    }
}

impl std::error::Error for NodeError {}

/// The local IP this machine uses to reach `gcd` (no packet is sent: connecting a UDP
/// socket only picks a route), or loopback when there is no route.
pub fn local_ip_towards(gcd: &Addr) -> IpAddr {
    let route = || -> std::io::Result<IpAddr> {
        let target = net::resolve(gcd)?[0];
        let any: IpAddr =
            if target.is_ipv4() { Ipv4Addr::UNSPECIFIED.into() } else { std::net::Ipv6Addr::UNSPECIFIED.into() };
        let socket = UdpSocket::bind((any, 0))?;
        socket.connect(target)?;
        Ok(socket.local_addr()?.ip())
    };
    route().unwrap_or(Ipv4Addr::LOCALHOST.into())
}

/// Whether `ip` is one of this machine's addresses: binding a socket to it succeeds.
pub fn is_local_ip(ip: IpAddr) -> bool {
    ip.is_loopback() || UdpSocket::bind((ip, 0)).is_ok()
}

/// The host to listen on and register when `--listen` gave none (or a wildcard).
/// When the GCD runs on this machine (its address is one of ours: the course server,
/// reached as `cs2.seattleu.edu`), it only takes members registering a loopback
/// address (gcd2 compares with `gethostbyname('localhost')`), and every member runs
/// there too: `127.0.0.1`. Otherwise the IP this machine uses to reach the GCD.
pub fn default_host(
    gcd_ip: Option<IpAddr>,
    is_local: impl Fn(IpAddr) -> bool,
    towards_gcd: impl Fn() -> IpAddr,
) -> String {
    match gcd_ip {
        Some(ip) if is_local(ip) => Ipv4Addr::LOCALHOST.to_string(),
        _ => towards_gcd().to_string(),
    }
}

/// Binds the listener and works out the address to give the GCD: the host as the user
/// wrote it (peers resolve names), [`default_host`] when none was given or it was a
/// wildcard, and the port actually bound.
pub fn bind(config: &Config) -> Result<(TcpListener, Addr), NodeError> {
    let gcd_ip = net::resolve(&config.gcd).ok().map(|all| all[0].ip());
    let towards_gcd = || default_host(gcd_ip, is_local_ip, || local_ip_towards(&config.gcd));
    let wanted = config.listen.clone().unwrap_or_else(|| Addr::new(towards_gcd(), 0));
    let listener = TcpListener::bind((wanted.host.as_str(), wanted.port))
        .map_err(|cause| NodeError::Bind { addr: wanted.clone(), cause })?;
    let port = listener.local_addr().map_err(|cause| NodeError::Bind { addr: wanted.clone(), cause })?.port();
    let wildcard = matches!(wanted.host.parse::<IpAddr>(), Ok(ip) if ip.is_unspecified());
    let host = if wildcard { towards_gcd() } else { wanted.host };
    Ok((listener, Addr::new(host, port)))
}

/// Shows the group as a person reads it: highest first, marking ourselves.
pub fn describe_members(members: &Members, me: ProcessId) -> String {
    let mut sorted: Vec<_> = members.iter().collect();
    sorted.sort_by_key(|m| Reverse(m.pid));
    sorted
        .iter()
        .map(|m| format!("{}{} at {}", m.pid, if m.pid == me { " (us)" } else { "" }, m.addr))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Registers, trying again for up to `config.gcd_wait` while the GCD is not up yet.
fn register_at_startup(config: &Config, addr: &Addr) -> Result<gcd::Registration, NodeError> {
    gcd::client::register_waiting(&config.gcd, config.gcd_message, config.pid, addr, GCD_TIMEOUT, config.gcd_wait)
        .map_err(|g| NodeError::Gcd { error: g.error, attempts: g.attempts, waited: g.waited })
}

/// What the main loop takes from its mailbox.
enum Envelope {
    Input(Input),
    Message(Incoming),
    /// The socket a background re-listen got (our port, or another), or why none.
    Relistened(std::io::Result<TcpListener>),
    /// A member answered GOT_IT in this dialect.
    Spoke(ProcessId, Dialect),
    /// A member of the ELECTION / OK / COORDINATOR years took every form of theirs we
    /// know without answering.
    Unanswerable(ProcessId),
    /// A queued ELECT of an election that a newer one replaced, not sent.
    Superseded,
    Stop,
}

/// A handle to stop a running node from any thread (a signal handler, a test, a demo).
#[derive(Clone)]
pub struct Stopper(Arc<Mailbox<Envelope>>);

impl Stopper {
    pub fn stop(&self) {
        self.0.push(Envelope::Stop);
    }
}

/// A node whose main loop runs on its own thread. Dropping it stops the node and waits
/// for its main loop to end (listener closed, events written).
pub struct RunningNode {
    stopper: Stopper,
    thread: Option<JoinHandle<()>>,
}

impl RunningNode {
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Waits for the node to stop (after [`Stopper::stop`]).
    pub fn wait(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stopper.stop();
            let _ = thread.join();
        }
    }
}

/// Binds, registers, and starts the node's main loop. Errors here are fatal start-up
/// errors (address in use, GCD down or refusing); after this the node runs until
/// stopped, whatever its peers do.
pub fn start(config: Config) -> Result<RunningNode, NodeError> {
    config.validate().map_err(NodeError::Config)?;
    let sink = match &config.events {
        Some(path) => EventSink::open(path).map_err(|cause| NodeError::Events { path: path.clone(), cause })?,
        None => EventSink::none(),
    };
    let (listener, addr) = bind(&config)?;
    info!("listening at {addr}");
    let registration = register_at_startup(&config, &addr)?;
    info!(
        "{} to the GCD at {}: joined a group of {}: {}",
        registration.name,
        config.gcd,
        registration.members.len(),
        describe_members(&registration.members, config.pid)
    );
    if registration.rejected > 0 {
        warn!("the GCD listed {} entries that are not valid members; ignored them", registration.rejected);
    }
    let mailbox: Arc<Mailbox<Envelope>> = Arc::new(Mailbox::new());
    let deliver: Arc<dyn Fn(Incoming) + Send + Sync> = {
        let mailbox = Arc::clone(&mailbox);
        Arc::new(move |incoming: Incoming| {
            mailbox.push(Envelope::Message(incoming));
        })
    };
    let bound = listener.local_addr().map_err(|cause| NodeError::Bind { addr: addr.clone(), cause })?;
    let ignoring = Arc::new(AtomicBool::new(false));
    let replies = Replies::new(config.pid);
    let listener = listener::spawn(listener, replies.clone(), Arc::clone(&deliver), Arc::clone(&ignoring))
        .map_err(|cause| NodeError::Bind { addr: addr.clone(), cause })?;
    let pid = config.pid;
    let mut runtime = Runtime {
        node: Node::new(config.pid, addr.clone(), config.settings, config.seed),
        bound,
        deliver,
        ignoring,
        register_as: registration.name,
        config,
        addr: addr.clone(),
        mailbox: Arc::clone(&mailbox),
        sink,
        epoch: Instant::now(),
        timers: BinaryHeap::new(),
        listener: Some(listener),
        warned_size: false,
        figures: crate::report::summary::NodeFigures::new(pid),
        last_elect: None,
        dialects: HashMap::new(),
        first_try: first_try(registration.name),
        tried_wrapped: HashSet::new(),
        told: HashSet::new(),
        replies,
        oks: Arc::default(),
        last_announcement: None,
        contrary: HashSet::new(),
        announced_over_us: HashSet::new(),
        unanswerable: HashSet::new(),
        leading: Arc::default(),
        want_open: true,
        relistening: false,
        announced_port: addr.port,
        senders: Senders::new(SEND_THREADS, SEND_QUEUE, SENDER_STACK),
        refused_sends: 0,
        latest_election: Arc::new(AtomicU64::new(0)),
    };
    let id = runtime.node.id();
    let members = registration.members;
    let thread = std::thread::Builder::new()
        .name(format!("node-{}", id.su_id))
        .spawn(move || {
            runtime.feed(Input::Registered { members });
            runtime.main_loop();
        })
        .map_err(|cause| NodeError::Bind { addr: addr.clone(), cause })?;
    Ok(RunningNode { stopper: Stopper(mailbox), thread: Some(thread) })
}

struct Runtime {
    node: Node,
    config: Config,
    addr: Addr,
    /// The registration name the GCD accepted, for registering again.
    register_as: RegisterName,
    mailbox: Arc<Mailbox<Envelope>>,
    sink: EventSink,
    epoch: Instant,
    timers: BinaryHeap<Reverse<(Time, Timer)>>,
    listener: Option<listener::Listener>,
    /// The socket address the listener is bound to, for reopening it after a failure.
    bound: SocketAddr,
    deliver: Arc<dyn Fn(Incoming) + Send + Sync>,
    ignoring: Arc<AtomicBool>,
    warned_size: bool,
    figures: crate::report::summary::NodeFigures,
    /// The ELECT last encoded: election number, the members it carries, its dialect,
    /// its bytes.
    last_elect: Option<(u64, Members, Dialect, Arc<Vec<u8>>)>,
    /// The dialect each member spoke first (what it speaks is learned once and kept, so
    /// our belief never flips back and forth), at most [`MAX_DIALECTS`] members.
    dialects: HashMap<ProcessId, Dialect>,
    /// What a member whose dialect we don't know is sent: the form of the group's era
    /// (see [`first_try`]).
    first_try: Dialect,
    /// Members of unknown dialect that have had their one wrapped-form try.
    tried_wrapped: HashSet<ProcessId>,
    /// Members we said something about once in the log (a dialect heard after another,
    /// an order the assignment's cannot agree with).
    told: HashSet<(ProcessId, Told)>,
    /// The listener's choice of reply forms, and what members showed about them.
    replies: Replies,
    /// Counts the `('OK', None)`s three-part peers send on new connections.
    oks: Arc<OkSignal>,
    /// Members that cannot agree with the assignment's order (see `against_the_order`).
    contrary: HashSet<ProcessId>,
    /// Lower members with our days that announced themselves over us once.
    announced_over_us: HashSet<ProcessId>,
    /// Members of the old years that answered none of their years' forms: sent nothing.
    unanswerable: HashSet<ProcessId>,
    /// Whether we lead now: an announcement that waited for a PROBE to find the
    /// receiver's form is not sent once another leader took over meanwhile.
    leading: Arc<AtomicBool>,
    /// The last announcement handed to the node: who, and when (for dropping the
    /// wrapped copy of an announcement that came in both forms).
    last_announcement: Option<(ProcessId, Instant)>,
    /// Whether the node wants its listener open (false while feigning with it closed).
    want_open: bool,
    /// A background thread is getting a listening socket.
    relistening: bool,
    /// The port the node (and through it the GCD) knows we listen on.
    announced_port: u16,
    /// Starts the thread each exchange with a member or the GCD runs on.
    senders: Senders,
    /// Sends that got no thread (too many in flight and waiting), counted for the log.
    refused_sends: u64,
    /// The newest election an ELECT was sent for: queued ELECTs of older ones are skipped.
    latest_election: Arc<AtomicU64>,
}

/// Send threads alive at once per node. A thread is one exchange with one member,
/// bounded by the socket timeouts; a member that is stopped (silent) holds its thread
/// that long, so up to this many silent members do not hold up the rest of a fan-out
/// (an election needs only one GOT_IT). I_AM_LEADER waits for no reply, so a stopped
/// member (whose kernel still accepts) holds a thread only for the connect. Loopback
/// exchanges take well under a millisecond, so a fan-out to a large group holds few at
/// a time; past the cap, sends wait for a thread in a bounded list.
pub const SEND_THREADS: usize = 64;

/// Sends that may wait for a send thread. A fan-out is one send per member (both forms
/// of an I_AM_LEADER share one), so this holds several fan-outs to the largest group a
/// node takes in; past it, sends are dropped and counted, never waited for.
pub const SEND_QUEUE: usize = 4 * crate::membership::MAX_LEARNED_MEMBERS;

/// The most members whose dialect a node remembers (past it, new ones are sent the
/// era's first try). Twice the members a node takes in from peers.
pub const MAX_DIALECTS: usize = 2 * crate::membership::MAX_LEARNED_MEMBERS;

/// How soon after an announcement its wrapped copy counts as the same one.
const COPY_WINDOW: Duration = Duration::from_secs(2);

/// How long an ELECTION to a three-part peer waits for its OK on a new connection (they
/// wait up to 5 s for ours).
pub const OK_ELSEWHERE_WAIT: Duration = Duration::from_secs(3);

/// What a member of unknown dialect is sent first, from the name the GCD took: the
/// groups whose GCD takes JOIN or BEGIN (fall 2019 to fall 2024) speak the ELECTION / OK
/// / COORDINATOR protocol with the members dict, the others the assignment's.
pub fn first_try(register_as: RegisterName) -> Dialect {
    match register_as {
        RegisterName::Join | RegisterName::Begin => Dialect::OldNames,
        RegisterName::Howdy => Dialect::Standard,
    }
}

/// The listener's choice of reply forms ([`ReplyBook`]), shared with the main loop
/// that feeds it what members do next.
#[derive(Clone)]
pub struct Replies {
    book: Arc<Mutex<ReplyBook>>,
    epoch: Instant,
}

impl Replies {
    pub fn new(me: ProcessId) -> Replies {
        Replies { book: Arc::new(Mutex::new(ReplyBook::new(me))), epoch: Instant::now() }
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn with<T>(&self, f: impl FnOnce(&mut ReplyBook) -> T) -> T {
        f(&mut self.book.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The reply `heard` takes on its own connection, in the form its sender reads, or
    /// None (an announcement; a three-part ELECTION, answered on a new connection).
    pub fn answer(&self, heard: &Heard) -> Option<crate::wire::Value> {
        let now = self.now();
        self.with(|book| book.answer(now, heard))
    }
}

fn log_learned(learned: &Learned) {
    let (habit, misread) = (learned.habit.as_str(), learned.habit.other().as_str());
    let others = "members of the 2019–2022 ELECTION/OK/COORDINATOR protocol that showed nothing yet";
    match (learned.member, learned.default_changed) {
        (Some(pid), false) => {
            info!("{pid} declared victory right after our OK {misread}: answering it {habit} from now on")
        }
        (Some(pid), true) => info!(
            "{pid} declared victory right after our OK {misread}: answering it, and {others}, {habit} from now on"
        ),
        (None, _) => {
            info!("members elected right after our PROBE answer {misread}: answering {others} {habit} from now on")
        }
    }
}

/// What the log says about a member at most once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Told {
    OtherDialect,
    AgainstTheOrder,
}

/// Counts OKs that arrive on new connections, for the ELECTIONs that wait for one.
#[derive(Default)]
struct OkSignal {
    count: Mutex<u64>,
    arrived: Condvar,
}

impl OkSignal {
    fn signal(&self) {
        *self.count.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.arrived.notify_all();
    }

    fn now(&self) -> u64 {
        *self.count.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether an OK arrives after `seen` within `wait`.
    fn wait_past(&self, seen: u64, wait: Duration) -> bool {
        let guard = self.count.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) =
            self.arrived.wait_timeout_while(guard, wait, |n| *n <= seen).unwrap_or_else(|e| e.into_inner());
        *guard > seen
    }
}

/// Sends a three-part ELECTION, whose answer comes as `('OK', None)` on a new
/// connection to our listener: any OK within [`OK_ELSEWHERE_WAIT`] counts (it names no
/// sender).
fn elect_answered_elsewhere(addr: &Addr, bytes: &[u8], timeout: Duration, oks: &OkSignal) -> Outcome {
    let seen = oks.now();
    let sent = net::connect(addr, timeout).and_then(|mut s| {
        s.write_all(bytes)?;
        let _ = s.shutdown(Shutdown::Write);
        Ok(())
    });
    match sent {
        Err(e) if is_timeout(&e) => Outcome::Failed(Failure::ConnectTimeout { after: timeout }),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Outcome::Failed(Failure::Refused { addr: addr.clone() })
        }
        Err(e) => Outcome::Failed(Failure::Connect { addr: addr.clone(), error: e.to_string() }),
        Ok(()) if oks.wait_past(seen, OK_ELSEWHERE_WAIT) => Outcome::GotIt,
        Ok(()) => Outcome::Failed(Failure::NoReply { after: OK_ELSEWHERE_WAIT }),
    }
}

/// How long a node tries to listen on its own port again after a feigned failure
/// before it takes another one (a port just closed can take a moment to be free).
pub const RELISTEN_SAME_PORT: Duration = Duration::from_secs(1);

/// Stack of each send thread (ELECT, I_AM_LEADER, PROBE, GCD requests) and of the
/// re-listening thread: encoding and decoding are iterative, and the connection threads
/// do the same work on the same stack (`net::server::CONNECTION_STACK`).
const SENDER_STACK: usize = crate::net::server::CONNECTION_STACK;

/// Rounds of trying (same port, then any port) before a node gives up listening.
const RELISTEN_ROUNDS: u32 = 30;

impl Runtime {
    fn now(&self) -> Time {
        self.epoch.elapsed()
    }

    fn main_loop(&mut self) {
        loop {
            // Due timers first, so a busy mailbox can't starve them.
            while let Some(&Reverse((at, timer))) = self.timers.peek() {
                if at > self.now() {
                    break;
                }
                self.timers.pop();
                self.feed(Input::Timer(timer));
            }
            let deadline = self.timers.peek().map(|Reverse((at, _))| self.epoch + *at);
            match self.mailbox.take(deadline) {
                Taken::Item(Envelope::Input(input)) => self.feed(input),
                Taken::Item(Envelope::Message(incoming)) => self.on_message(incoming),
                Taken::Item(Envelope::Relistened(socket)) => self.on_relistened(socket),
                Taken::Item(Envelope::Spoke(pid, dialect)) => self.learn_dialect(pid, dialect),
                Taken::Item(Envelope::Unanswerable(pid)) => self.unanswerable(pid),
                Taken::Item(Envelope::Superseded) => {}
                Taken::Item(Envelope::Stop) | Taken::Closed => break,
                Taken::TimedOut => {}
            }
        }
        self.mailbox.close();
        if let Some(listener) = self.listener.take() {
            listener.stop();
        }
        // Each ends within its socket timeouts; what they report is dropped.
        self.senders.close_and_join();
        self.emit(&Event::Stopped);
        self.sink.close(); // every event is out before the summary and the exit
        if self.config.summary_on_stop {
            let text = self.figures.render(self.now());
            // With `--events -`, stdout is JSON lines only: the summary goes to stderr.
            let mut out: Box<dyn Write> = if self.config.events.as_deref() == Some("-") {
                Box::new(std::io::stderr().lock())
            } else {
                Box::new(std::io::stdout().lock())
            };
            let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
        }
    }

    fn feed(&mut self, input: Input) {
        let actions = self.node.handle(self.now(), input);
        for action in actions {
            self.apply(action);
        }
    }

    fn on_message(&mut self, incoming: Incoming) {
        let from = incoming.from;
        if let Message::IAmLeader { leader, addr } = &incoming.message {
            // A bully-node's one-time copy of an announcement, sent in the standard and the
            // wrapped form to a member of unknown dialect: the same announcement, not a
            // second one, whichever of the two connections was served first.
            let copy = self.last_announcement.is_some_and(|(l, at)| l == *leader && at.elapsed() < COPY_WINDOW);
            let known = self.dialects.get(leader).copied();
            match incoming.dialect {
                // The wrapped copy after the standard original. The standard form names no
                // address, and the copy's members do: a leader whose address we lack is
                // taken from it, or each follower would ask the GCD at its next PROBE (at
                // 200 members joining 50 ms apart, a look-up per follower per PROBE period
                // was more than gcd2.py's one-at-a-time serving could answer, and
                // newcomers could no longer register).
                Dialect::Wrapped if copy && known.is_some_and(|d| d != Dialect::Wrapped) => {
                    match addr {
                        Some(addr) if !self.node.members().contains(*leader) => {
                            debug!("the wrapped copy of {leader}'s announcement: taking the address it names");
                            self.feed(Input::LeaderAddress { leader: *leader, addr: addr.clone() });
                        }
                        _ => debug!("the wrapped copy of {leader}'s announcement: already heard"),
                    }
                    return;
                }
                // The standard copy after the wrapped one (the two connections' threads
                // raced): nothing in it that the wrapped one did not say.
                Dialect::Standard if copy && known == Some(Dialect::Wrapped) => {
                    debug!("the standard copy of {leader}'s announcement: already heard in the wrapped form");
                    return;
                }
                _ => {}
            }
        }
        if let Some(sender) = incoming.sender {
            self.learn_dialect(sender, incoming.dialect);
        }
        if incoming.dialect.is_old() {
            self.heard_old(&incoming);
        }
        if self.against_the_order(&incoming) {
            debug!("{} from {from}: answered, not handed to the election rules", incoming.message.name());
            return;
        }
        match incoming.message {
            Message::Elect { members, sender, rejected } => {
                if rejected > 0 {
                    crate::report::logging::throttled_warn(&format!(
                        "ELECT from {from} listed {rejected} entries that are not valid members; ignored them"
                    ));
                }
                self.feed(Input::Elect { members, sender });
            }
            Message::IAmLeader { leader, addr } => {
                self.last_announcement = Some((leader, Instant::now()));
                self.feed(Input::IAmLeader { leader, addr })
            }
            Message::Probe => {
                // Detail (a leader of 30 answers one every ~60 ms); the count is in the summary.
                self.figures.probes_received += 1;
                debug!("PROBE from {from}: answered GOT_IT")
            }
            Message::Register { name, .. } => crate::report::logging::throttled_warn(&format!(
                "{name} from {from} ignored: that message is for the GCD"
            )),
            Message::Unknown { name, .. } if name == "OK" => {
                debug!("OK from {from} on a new connection (a three-part ELECTION's answer)");
                self.oks.signal();
            }
            Message::Unknown { name, .. } => {
                crate::report::logging::throttled_warn(&format!("unknown message {name:?} from {from} ignored"))
            }
        }
    }

    fn apply(&mut self, action: Action) {
        match action {
            Action::SendElect { election, to, addr, members } => self.send_elect(election, to, addr, &members),
            Action::SendLeader { to, addr } => self.send_leader(to, addr),
            Action::SetTimer { at, timer } => self.timers.push(Reverse((at, timer))),
            Action::Register { reason } => self.register_again(reason),
            Action::SendProbe { probe, to, addr } => self.send_probe(probe, to, addr),
            Action::Listen(listening) => self.listen(listening),
            Action::Event(event) => self.emit(&event),
        }
    }

    fn emit(&mut self, event: &Event) {
        let me = self.node.id();
        if let Event::Leader { leader, .. } = event {
            self.leading.store(*leader == me, Ordering::SeqCst);
        }
        self.figures.record(self.now(), event);
        if let Some(observer) = &self.config.observer {
            (observer.0)(me, event);
        }
        if !self.config.log_events {
            self.sink.write(&events::json(event, me));
            return;
        }
        if let Some(line) = events::describe(event, me) {
            match event {
                Event::Leader { .. } => info!(target: LEADER_TARGET, "{line}"),
                _ if events::is_warning(event) => warn!("{line}"),
                _ => info!("{line}"),
            }
        }
        self.sink.write(&events::json(event, me));
    }

    /// Runs `work` off the main loop, on a thread spawned for it (named `name`; capped:
    /// see [`Senders`]) or, for long work, on a thread of its own, and posts what it
    /// returns to the mailbox; when it cannot be run, posts what `refused` makes of the
    /// reason, so the node always hears how it ended.
    fn spawn_reporting(
        &mut self,
        on: Runner,
        work: impl FnOnce(&Mailbox<Envelope>) -> Envelope + Send + 'static,
        refused: impl FnOnce(String) -> Envelope,
    ) {
        let mailbox = Arc::clone(&self.mailbox);
        let job = move || {
            let report = work(&mailbox);
            mailbox.push(report);
        };
        let why = match on {
            Runner::Send(name) => match self.senders.spawn(name, Box::new(job)) {
                Ok(()) => return,
                Err((why, _)) => {
                    self.count_refused(&why);
                    why.to_string()
                }
            },
            Runner::Thread(name) => {
                match std::thread::Builder::new().name(name.into()).stack_size(SENDER_STACK).spawn(job) {
                    Ok(_) => return,
                    Err(e) => format!("no thread to run it on: {e}"),
                }
            }
        };
        self.mailbox.push(refused(why));
    }

    /// Runs `job` on a send thread named `name`; nothing is told if it couldn't (counted).
    fn send_detached(&mut self, name: &'static str, job: senders::Job) {
        if let Err((why, _)) = self.senders.spawn(name, job) {
            self.count_refused(&why);
        }
    }

    fn count_refused(&mut self, why: &senders::Refused) {
        self.refused_sends += 1;
        crate::report::logging::throttled_warn(&format!(
            "a send was dropped: {why} ({} dropped so far, {} send threads running)",
            self.refused_sends,
            self.senders.running()
        ));
    }

    /// `pid` spoke `dialect`. The first dialect a member speaks is kept: a member that
    /// later speaks another (a bully-node's one-time copy of an announcement in the
    /// wrapped form, a restarted classmate) is said once in the log, never switched to.
    fn learn_dialect(&mut self, pid: ProcessId, dialect: Dialect) {
        if pid == self.node.id() {
            return;
        }
        match self.dialects.get(&pid) {
            Some(known) if *known == dialect => {}
            Some(known) if self.told.len() < MAX_DIALECTS && self.told.insert((pid, Told::OtherDialect)) => {
                info!(
                    "{pid} also spoke the {} form; keeping the {} form it spoke first",
                    dialect.as_str(),
                    known.as_str()
                );
            }
            Some(_) => {}
            None if self.dialects.len() < MAX_DIALECTS => {
                self.dialects.insert(pid, dialect);
                info!("{pid} {}: sending it that from now on", dialect.describe());
            }
            None => {}
        }
    }

    /// The dialect we send `pid`: the one it spoke, else the era's first try; in the
    /// ELECTION / OK / COORDINATOR years, the one most members spoke so far (classmates
    /// of one year mostly share a template, and a wrong guess crashes their peers).
    fn dialect_of(&self, pid: ProcessId) -> Dialect {
        if let Some(known) = self.dialects.get(&pid) {
            return *known;
        }
        if !self.first_try.is_old() {
            return self.first_try;
        }
        let spoken = |d: Dialect| self.dialects.values().filter(|k| **k == d).count();
        [Dialect::OldTagged, Dialect::OldTriple]
            .into_iter()
            .map(|d| (spoken(d), d))
            .filter(|(n, _)| *n > spoken(Dialect::OldNames))
            .max_by_key(|(n, _)| *n)
            .map_or(self.first_try, |(_, d)| d)
    }

    /// For a member of unknown dialect in a group of the standard era, the wrapped form
    /// of `message`, once per member ever: a wrapped-dialect peer drops standard messages
    /// silently, so its one try goes with the first message that may need it (after a
    /// silent close for ELECT and PROBE, as a second copy for an announcement). Never in
    /// the ELECTION / OK / COORDINATOR years: a wrapped message crashes their peers.
    fn wrapped_try(&mut self, to: ProcessId, message: &Message) -> Option<Vec<u8>> {
        if self.first_try != Dialect::Standard
            || self.dialects.contains_key(&to)
            || self.tried_wrapped.len() >= MAX_DIALECTS
            || !self.tried_wrapped.insert(to)
        {
            return None;
        }
        let value = message.to_value_in(Dialect::Wrapped, self.node.id(), &self.addr, to, self.node.members());
        Some(encode(&value, Style::Compact))
    }

    /// `message` for `to`, in the dialect we send it.
    fn encode_for(&self, to: ProcessId, message: &Message) -> Vec<u8> {
        let value = message.to_value_in(self.dialect_of(to), self.node.id(), &self.addr, to, self.node.members());
        encode(&value, Style::Compact)
    }

    fn send_elect(&mut self, election: u64, to: ProcessId, addr: Addr, members: &Members) {
        if self.unanswerable.contains(&to) {
            let outcome = Outcome::Failed(Failure::NotRun(UNANSWERABLE.into()));
            self.mailbox.push(Envelope::Input(Input::ElectReply { election, to, outcome }));
            return;
        }
        // An election sends the same ELECT to every higher member: encode it once per
        // form that does not name the receiver.
        let dialect = self.dialect_of(to);
        let elect = Message::Elect { members: members.clone(), sender: None, rejected: 0 };
        let bytes = match &self.last_elect {
            Some((n, m, d, bytes)) if *n == election && m == members && *d == dialect => Arc::clone(bytes),
            _ => {
                let bytes = Arc::new(encode(
                    &elect.to_value_in(dialect, self.node.id(), &self.addr, to, self.node.members()),
                    Style::Compact,
                ));
                if matches!(dialect, Dialect::Standard | Dialect::OldNames) {
                    self.last_elect = Some((election, members.clone(), dialect, Arc::clone(&bytes)));
                }
                bytes
            }
        };
        if bytes.len() > PYTHON_RECV && !self.warned_size {
            self.warned_size = true;
            warn!(
                "our ELECT for {} members is {} bytes; Python peers read only {PYTHON_RECV}",
                members.len(),
                bytes.len()
            );
        }
        debug!("ELECT #{election} to {to} at {addr} ({} bytes, {} form)", bytes.len(), dialect.as_str());
        let timeout = self.config.socket_timeout;
        let wrapped = self.wrapped_try(to, &elect);
        let oks = Arc::clone(&self.oks);
        let guesses = self.guesses(to, &elect);
        // An ELECT still queued when a newer election starts is not sent: the node
        // ignores the old election's replies anyway, and under load repeated elections
        // would otherwise fill the queue with dead sends.
        self.latest_election.fetch_max(election, Ordering::SeqCst);
        let latest = Arc::clone(&self.latest_election);
        self.spawn_reporting(
            Runner::Send("elect"),
            move |mailbox| {
                if latest.load(Ordering::SeqCst) > election {
                    return Envelope::Superseded;
                }
                let outcome = match guesses {
                    Some(forms) => exchange_guessing(&addr, &forms, timeout, to, Some(&oks), mailbox).0,
                    None if dialect == Dialect::OldTriple => elect_answered_elsewhere(&addr, &bytes, timeout, &oks),
                    None => exchange_trying_wrapped(&addr, &bytes, wrapped.as_deref(), timeout, to, mailbox),
                };
                Envelope::Input(Input::ElectReply { election, to, outcome })
            },
            |why| Envelope::Input(Input::ElectReply { election, to, outcome: Outcome::Failed(Failure::NotRun(why)) }),
        );
    }

    fn send_leader(&mut self, to: ProcessId, addr: Addr) {
        let announcement = Message::IAmLeader { leader: self.node.id(), addr: None };
        // The form it speaks (or the era's first try), and once ever for a member of
        // unknown dialect in the standard era, the wrapped form after it: a wrapped peer
        // drops the first, a bully-node keeps the dialect it heard first and drops the
        // copy (see `on_message`).
        if let Some(probes) = self.guesses(to, &Message::Probe) {
            // A member of the old years we never heard: which of their forms it takes is
            // found by a PROBE first (its answer names none of ours wrong), then it is told.
            let announcements: Vec<(Dialect, Vec<u8>)> = probes
                .iter()
                .map(|(d, _)| {
                    (
                        *d,
                        encode(
                            &announcement.to_value_in(*d, self.node.id(), &self.addr, to, self.node.members()),
                            Style::Compact,
                        ),
                    )
                })
                .collect();
            let (timeout, mailbox) = (self.config.socket_timeout, Arc::clone(&self.mailbox));
            let leading = Arc::clone(&self.leading);
            self.send_detached(
                "leader",
                Box::new(move || {
                    let found = exchange_guessing(&addr, &probes, timeout, to, None, &mailbox).1;
                    if let (Some(spoken), true) = (found, leading.load(Ordering::SeqCst)) {
                        let form = announcements.iter().find(|(d, _)| *d == spoken).or(announcements.first());
                        if let Some((_, bytes)) = form {
                            send_one(&addr, bytes, timeout, to, "I_AM_LEADER");
                        }
                    }
                }),
            );
            return;
        }
        if self.unanswerable.contains(&to) {
            return debug!("no I_AM_LEADER to {to}: it answers none of the forms we know");
        }
        let forms: Vec<Vec<u8>> =
            [self.encode_for(to, &announcement)].into_iter().chain(self.wrapped_try(to, &announcement)).collect();
        self.send_one_way(to, addr, forms, "I_AM_LEADER");
    }

    /// For a member of the ELECTION / OK / COORDINATOR years whose form we don't know,
    /// `message` in each of their years' forms, the likeliest first (see `dialect_of`);
    /// None when we know what to send it.
    fn guesses(&self, to: ProcessId, message: &Message) -> Option<Vec<(Dialect, Vec<u8>)>> {
        if !self.first_try.is_old() || self.dialects.contains_key(&to) || self.unanswerable.contains(&to) {
            return None;
        }
        let first = self.dialect_of(to);
        let order = [first].into_iter().chain(OLD_FORMS.into_iter().filter(|d| *d != first));
        let encode_in = |d: Dialect| {
            encode(&message.to_value_in(d, self.node.id(), &self.addr, to, self.node.members()), Style::Compact)
        };
        Some(order.map(|d| (d, encode_in(d))).collect())
    }

    /// A member took every form we know without answering: sent nothing from now on
    /// (each would crash it), said once.
    fn unanswerable(&mut self, pid: ProcessId) {
        if self.unanswerable.len() < MAX_DIALECTS && !self.dialects.contains_key(&pid) && self.unanswerable.insert(pid)
        {
            warn!(
                "{pid} took ELECTION/PROBE in every form of the 2019–2022 protocol we know without answering; \
                 sending it nothing from now on"
            );
        }
    }

    /// Sends each of `forms` on a connection of its own, waiting for no reply.
    fn send_one_way(&mut self, to: ProcessId, addr: Addr, forms: Vec<Vec<u8>>, what: &'static str) {
        let timeout = self.config.socket_timeout;
        self.send_detached(
            "leader",
            Box::new(move || {
                for bytes in forms {
                    if !send_one(&addr, &bytes, timeout, to, what) {
                        break;
                    }
                }
            }),
        );
    }

    fn send_probe(&mut self, probe: u64, to: ProcessId, addr: Addr) {
        debug!("PROBE #{probe} to {to} at {addr}");
        if self.unanswerable.contains(&to) {
            let outcome = Outcome::Failed(Failure::NotRun(UNANSWERABLE.into()));
            self.mailbox.push(Envelope::Input(Input::ProbeReply { probe, outcome }));
            return;
        }
        let bytes = self.encode_for(to, &Message::Probe);
        let wrapped = self.wrapped_try(to, &Message::Probe);
        let guesses = self.guesses(to, &Message::Probe);
        let timeout = self.config.socket_timeout;
        self.spawn_reporting(
            Runner::Send("probe"),
            move |mailbox| {
                let outcome = match guesses {
                    Some(forms) => exchange_guessing(&addr, &forms, timeout, to, None, mailbox).0,
                    None => exchange_trying_wrapped(&addr, &bytes, wrapped.as_deref(), timeout, to, mailbox),
                };
                Envelope::Input(Input::ProbeReply { probe, outcome })
            },
            |why| Envelope::Input(Input::ProbeReply { probe, outcome: Outcome::Failed(Failure::NotRun(why)) }),
        );
    }

    /// What the members of the ELECTION / OK / COORDINATOR years show by what they send:
    /// which OK they read, where an OK is due on a new connection, and whether they can
    /// agree with the assignment's order at all.
    fn heard_old(&mut self, incoming: &Incoming) {
        let now = self.replies.now();
        let me = self.node.id();
        let learned = match (&incoming.message, incoming.dialect) {
            (Message::IAmLeader { leader, .. }, Dialect::OldNames) if *leader < me => {
                self.replies.with(|book| book.coordinator_from_below(now, *leader))
            }
            (Message::Elect { sender: None, .. }, Dialect::OldNames) => {
                self.replies.with(|book| book.election_heard(now))
            }
            _ => None,
        };
        if let Some(learned) = learned {
            log_learned(&learned);
        }
        if let (Message::Elect { members, sender: Some(sender), .. }, Dialect::OldTriple) =
            (&incoming.message, incoming.dialect)
        {
            // The three-part ELECTION's OK goes on a new connection to where its sender
            // listens, as listed in the members it carried.
            match members.get(*sender).or_else(|| self.node.members().get(*sender)).cloned() {
                Some(addr) => {
                    let ok = encode(&ok_on_new_connection(), Style::Compact);
                    self.send_one_way(*sender, addr, vec![ok], "OK");
                }
                None => crate::report::logging::throttled_warn(&format!(
                    "ELECTION from {sender} does not say where it listens: cannot send it OK"
                )),
            }
        }
    }

    /// Whether `incoming` comes from a member that cannot agree with the assignment's
    /// order (PROTOCOL.md, "Not to chase"), said once in the log. Its messages are still
    /// answered, but no longer start elections: fighting it would never end.
    /// - A member above us that sends us an ELECTION elects downwards (the least id wins).
    /// - A member below us with our days that announces itself over us a second time,
    ///   after we elected over its first announcement, compares only the days.
    fn against_the_order(&mut self, incoming: &Incoming) -> bool {
        let me = self.node.id();
        let (member, why) = match &incoming.message {
            Message::Elect { sender: Some(sender), .. } if *sender > me => {
                (*sender, "sent ELECTION to us, a lower member: it elects downwards (the least id wins)")
            }
            Message::IAmLeader { leader, .. } if *leader < me && leader.days == me.days => {
                let full = self.announced_over_us.len() >= MAX_DIALECTS;
                if !self.contrary.contains(leader) && (full || self.announced_over_us.insert(*leader)) {
                    return false; // the first time (or no room to remember), we elect over it
                }
                (*leader, "announced itself over us again: with our days, it compares only the days")
            }
            _ => return false,
        };
        if self.contrary.len() < MAX_DIALECTS {
            self.contrary.insert(member);
        }
        if self.contrary.contains(&member) {
            if self.told.len() < MAX_DIALECTS && self.told.insert((member, Told::AgainstTheOrder)) {
                warn!(
                    "{member} {why}, which cannot agree with the assignment's order (the highest id wins, \
                     SU ID breaking a tie of days); answering it, not electing over it again"
                );
            }
            return true;
        }
        false
    }
    /// Closes, reopens or mutes the listener. It reopens on the very address it had (the
    /// GCD and the peers know that one); if another process took that port meanwhile,
    /// a background thread keeps trying it for [`RELISTEN_SAME_PORT`], then takes any
    /// free port on the same host and the node registers that. The main loop never
    /// waits for it.
    fn listen(&mut self, listening: Listening) {
        self.ignoring.store(listening == Listening::Ignoring, Ordering::SeqCst);
        match listening {
            Listening::Closed => {
                self.want_open = false;
                if let Some(listener) = self.listener.take() {
                    listener.stop();
                }
            }
            Listening::Ignoring => {}
            Listening::Open => {
                self.want_open = true;
                if self.listener.is_some() || self.relistening {
                    return;
                }
                match TcpListener::bind(self.bound) {
                    Ok(socket) => self.on_relistened(Ok(socket)),
                    Err(e) => {
                        info!(
                            "cannot listen on {} again yet ({e}); trying it for {} ms, then another port",
                            self.bound,
                            RELISTEN_SAME_PORT.as_millis()
                        );
                        self.relisten_in_background();
                    }
                }
            }
        }
    }

    fn relisten_in_background(&mut self) {
        let bound = self.bound;
        self.relistening = true;
        // Up to RELISTEN_ROUNDS seconds of retrying: a thread of its own, outside the cap.
        self.spawn_reporting(
            Runner::Thread("relisten"),
            move |_| Envelope::Relistened(relisten(bound)),
            |why| Envelope::Relistened(Err(std::io::Error::other(why))),
        );
    }

    /// A listening socket came back (or could not be had).
    fn on_relistened(&mut self, socket: std::io::Result<TcpListener>) {
        self.relistening = false;
        let socket = match socket {
            Ok(socket) if self.want_open => socket,
            Ok(socket) => {
                // Failing again meanwhile: the next recovery opens the port we got
                // (free again once this socket closes), and registers it then.
                if let Ok(local) = socket.local_addr() {
                    self.bound = local;
                }
                return;
            }
            Err(e) => {
                log::error!("cannot listen on {} or any other port: {e}; running without a listener", self.bound);
                return;
            }
        };
        let local = match socket.local_addr() {
            Ok(local) => local,
            Err(e) => return log::error!("cannot listen again: {e}; running without a listener"),
        };
        match listener::spawn(socket, self.replies.clone(), Arc::clone(&self.deliver), Arc::clone(&self.ignoring)) {
            Ok(handle) => self.listener = Some(handle),
            Err(e) => return log::error!("cannot listen on {local} again: {e}; running without a listener"),
        }
        self.bound = local;
        if local.port() != self.announced_port {
            self.announced_port = local.port();
            self.addr = Addr::new(self.addr.host.clone(), local.port());
            self.last_elect = None;
            self.feed(Input::Moved { addr: self.addr.clone() });
        }
    }

    fn register_again(&mut self, reason: RegisterWhy) {
        info!("registering with the GCD again: {reason}");
        let (gcd, name, me, addr) = (self.config.gcd.clone(), self.register_as, self.node.id(), self.addr.clone());
        self.spawn_reporting(
            Runner::Send("register"),
            move |_| {
                Envelope::Input(match gcd::register(&gcd, NameChoice::Fixed(name), me, &addr, GCD_TIMEOUT) {
                    Ok(r) => Input::Registered { members: r.members },
                    Err(e) => Input::RegistrationFailed { reason: e.to_string() },
                })
            },
            |reason| Envelope::Input(Input::RegistrationFailed { reason }),
        );
    }
}

/// Where [`Runtime::spawn_reporting`] runs its work.
enum Runner {
    /// A send thread of this name: one exchange, bounded by the socket timeout.
    Send(&'static str),
    /// A thread of its own, so long work doesn't hold a sender.
    Thread(&'static str),
}

/// Gets a listening socket again: `bound` itself if it frees within
/// [`RELISTEN_SAME_PORT`], else any free port on the same host; up to
/// [`RELISTEN_ROUNDS`] rounds.
fn relisten(bound: SocketAddr) -> std::io::Result<TcpListener> {
    let mut last = None;
    for _ in 0..RELISTEN_ROUNDS {
        let until = Instant::now() + RELISTEN_SAME_PORT;
        while Instant::now() < until {
            if let Ok(socket) = TcpListener::bind(bound) {
                return Ok(socket);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        match TcpListener::bind(SocketAddr::new(bound.ip(), 0)) {
            Ok(socket) => return Ok(socket),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no attempt made")))
}

/// Why nothing is sent to a member that took every form we know without answering.
const UNANSWERABLE: &str = "not sent: it answers none of the forms we know";

/// The ELECTION / OK / COORDINATOR years' forms, in the order they are tried.
const OLD_FORMS: [Dialect; 3] = [Dialect::OldNames, Dialect::OldTagged, Dialect::OldTriple];

/// Sends `bytes` on a connection of its own, waiting for no reply; whether it went out.
fn send_one(addr: &Addr, bytes: &[u8], timeout: Duration, to: ProcessId, what: &str) -> bool {
    let sent = net::connect(addr, timeout).and_then(|mut s| {
        s.write_all(bytes)?;
        let _ = s.shutdown(Shutdown::Write);
        Ok(())
    });
    match &sent {
        Ok(()) => debug!("{what} to {to} at {addr}"),
        Err(e) => debug!("{what} to {to} at {addr} failed: {e}"),
    }
    sent.is_ok()
}

/// Whether a failure says the member took the message but not its form (it closed the
/// connection, or answered something else), not that it is down or slow.
fn misread(outcome: &Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Failed(Failure::ClosedSilently | Failure::WrongReply(_) | Failure::Unreadable(_) | Failure::Frame(_))
    )
}

/// The form a member that answered a message sent in `sent` speaks: a sender-tagged OK
/// names its sender, whatever it was sent.
fn spoken_by_reply(sent: Dialect, reply: &crate::wire::Value) -> Dialect {
    match reply.as_pair() {
        Some((name, data))
            if name.as_str() == Some("OK") && data.as_pair().is_some_and(|(p, _)| pid_from_value(p).is_some()) =>
        {
            Dialect::OldTagged
        }
        _ => sent,
    }
}

/// Sends an ELECTION (`oks` given: a three-part one is answered on a new connection) or
/// a PROBE to a member of the old years whose form we don't know: each of `forms` in
/// turn while the member takes it but not its form. Reports the form it answers, or
/// that it answered none; returns the outcome and the form answered.
fn exchange_guessing(
    addr: &Addr,
    forms: &[(Dialect, Vec<u8>)],
    timeout: Duration,
    to: ProcessId,
    oks: Option<&OkSignal>,
    mailbox: &Mailbox<Envelope>,
) -> (Outcome, Option<Dialect>) {
    let mut last = Outcome::Failed(Failure::NotRun("no form to send".into()));
    for (i, (dialect, bytes)) in forms.iter().enumerate() {
        let (outcome, reply) = match oks {
            Some(oks) if *dialect == Dialect::OldTriple => (elect_answered_elsewhere(addr, bytes, timeout, oks), None),
            _ => exchange_reply(addr, bytes, timeout),
        };
        if outcome == Outcome::GotIt {
            let spoken = reply.map_or(*dialect, |r| spoken_by_reply(*dialect, &r));
            mailbox.push(Envelope::Spoke(to, spoken));
            return (outcome, Some(spoken));
        }
        let took_it = misread(&outcome);
        if i == 0 && !took_it {
            return (outcome, None); // down or slow: nothing learned
        }
        last = outcome;
        if !took_it {
            break;
        }
    }
    mailbox.push(Envelope::Unanswerable(to));
    (last, None)
}

/// Sends one ELECT or PROBE; if the peer closed silently and `wrapped` is given (its
/// dialect is unknown), sends that form too, and reports the dialect when it answers.
fn exchange_trying_wrapped(
    addr: &Addr,
    bytes: &[u8],
    wrapped: Option<&[u8]>,
    timeout: Duration,
    to: ProcessId,
    mailbox: &Mailbox<Envelope>,
) -> Outcome {
    let outcome = exchange_for_got_it(addr, bytes, timeout);
    match (wrapped, &outcome) {
        (Some(wrapped), Outcome::Failed(Failure::ClosedSilently)) => {
            let second = exchange_for_got_it(addr, wrapped, timeout);
            if second == Outcome::GotIt {
                mailbox.push(Envelope::Spoke(to, Dialect::Wrapped));
            }
            second
        }
        _ => outcome,
    }
}

/// Sends one ELECT or PROBE and says how it ended.
fn exchange_for_got_it(addr: &Addr, bytes: &[u8], timeout: Duration) -> Outcome {
    exchange_reply(addr, bytes, timeout).0
}

/// Sends one ELECT or PROBE and says how it ended, with the reply when one came.
fn exchange_reply(addr: &Addr, bytes: &[u8], timeout: Duration) -> (Outcome, Option<crate::wire::Value>) {
    let failure = match net::exchange(addr, bytes, timeout) {
        Ok((_, reply)) => match decode(&reply) {
            Ok(value) => match Reply::from_value(value.clone()) {
                Reply::GotIt => return (Outcome::GotIt, Some(value)),
                other => Failure::WrongReply(format!("{other:?}")),
            },
            Err(e) => Failure::Unreadable(e.to_string()),
        },
        Err(ExchangeError::Connect(e)) if is_timeout(&e) => Failure::ConnectTimeout { after: timeout },
        Err(ExchangeError::Connect(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Failure::Refused { addr: addr.clone() }
        }
        Err(ExchangeError::Connect(e)) => Failure::Connect { addr: addr.clone(), error: e.to_string() },
        Err(ExchangeError::Send(e)) => Failure::Send(e.to_string()),
        Err(ExchangeError::Reply { error, .. }) => match error {
            FrameError::Incomplete { received: 0 } => Failure::ClosedSilently,
            FrameError::Io(e) if is_timeout(&e) => Failure::NoReply { after: timeout },
            other => Failure::Frame(other.to_string()),
        },
    };
    (Outcome::Failed(failure), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gcd_on_this_machine_gets_the_loopback_address_whatever_name_reached_it() {
        let towards = || IpAddr::from([192, 0, 2, 2]);
        // The course server: its name resolves to its external address, which is ours.
        let ours = |ip: IpAddr| ip == IpAddr::from([192, 0, 2, 2]) || ip.is_loopback();
        assert_eq!(default_host(Some([192, 0, 2, 2].into()), ours, towards), "127.0.0.1");
        assert_eq!(default_host(Some([127, 0, 0, 2].into()), ours, towards), "127.0.0.1");
        // A GCD elsewhere: the address that reaches it.
        assert_eq!(default_host(Some([198, 51, 100, 7].into()), ours, towards), "192.0.2.2");
        assert_eq!(default_host(None, ours, towards), "192.0.2.2");
    }

    #[test]
    fn dropping_a_running_node_stops_it_and_closes_its_port() {
        let coordinator = Arc::new(gcd::Coordinator::new(gcd::CoordinatorConfig::default()));
        let socket = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = gcd::server::start(socket, Arc::clone(&coordinator), gcd::server::Serving::Concurrent, None);
        let server = server.unwrap();
        let pid = ProcessId::new(40, 1_000_040);
        let config = Config {
            listen: Some(Addr::new("127.0.0.1", 0)),
            summary_on_stop: false,
            gcd_wait: Duration::ZERO,
            ..Config::new(Addr::new("127.0.0.1", server.local_addr().port()), pid)
        };
        let node = start(config).unwrap();
        let addr = coordinator.members().get(pid).expect("registered").clone();
        let at = net::resolve(&addr).unwrap()[0];
        assert!(std::net::TcpStream::connect_timeout(&at, Duration::from_secs(5)).is_ok(), "not listening");
        drop(node);
        assert!(std::net::TcpStream::connect_timeout(&at, Duration::from_secs(5)).is_err(), "still listening");
    }

    #[test]
    fn the_gcds_year_sets_what_an_unknown_member_is_sent_first() {
        assert_eq!(first_try(RegisterName::Howdy), Dialect::Standard);
        assert_eq!(first_try(RegisterName::Begin), Dialect::OldNames);
        assert_eq!(first_try(RegisterName::Join), Dialect::OldNames);
    }

    #[test]
    fn an_ok_on_a_new_connection_ends_the_wait_of_an_election_sent_before_it() {
        let oks = Arc::new(OkSignal::default());
        let seen = oks.now();
        assert!(!oks.wait_past(seen, Duration::from_millis(20)), "no OK came");
        let signaller = {
            let oks = Arc::clone(&oks);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                oks.signal();
            })
        };
        assert!(oks.wait_past(seen, Duration::from_secs(10)));
        signaller.join().unwrap();
        // An OK that came before the ELECTION was sent does not answer it.
        assert!(!oks.wait_past(oks.now(), Duration::from_millis(20)));
    }

    #[test]
    fn local_addresses_are_the_ones_a_socket_can_bind() {
        assert!(is_local_ip([127, 0, 0, 1].into()));
        assert!(is_local_ip([127, 0, 0, 2].into()));
        // TEST-NET-3, never assigned to a machine.
        assert!(!is_local_ip([203, 0, 113, 254].into()));
    }
}
