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
use crate::protocol::{encode_message, Dialect, Message, RegisterName, Reply};
use crate::report::events::{self, EventSink};
use crate::report::logging::LEADER_TARGET;
use crate::wire::{decode, encode, is_timeout, FrameError, Style};
use log::{debug, info, warn};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
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
    let listener = listener::spawn(listener, config.pid, Arc::clone(&deliver), Arc::clone(&ignoring))
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
    /// The ELECT last encoded: election number, the members it carries, its bytes.
    last_elect: Option<(u64, Members, Arc<Vec<u8>>)>,
    /// The dialect each member last spoke (standard when unknown), at most
    /// [`MAX_DIALECTS`] members.
    dialects: HashMap<ProcessId, Dialect>,
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
/// standard form). Twice the members a node takes in from peers.
pub const MAX_DIALECTS: usize = 2 * crate::membership::MAX_LEARNED_MEMBERS;

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
        if let Some(sender) = incoming.sender {
            self.learn_dialect(sender, incoming.dialect);
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
            Message::IAmLeader { leader, addr } => self.feed(Input::IAmLeader { leader, addr }),
            Message::Probe => {
                // Detail (a leader of 30 answers one every ~60 ms); the count is in the summary.
                self.figures.probes_received += 1;
                debug!("PROBE from {from}: answered GOT_IT")
            }
            Message::Register { name, .. } => crate::report::logging::throttled_warn(&format!(
                "{name} from {from} ignored: that message is for the GCD"
            )),
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

    fn learn_dialect(&mut self, pid: ProcessId, dialect: Dialect) {
        if pid == self.node.id() {
            return;
        }
        let room = self.dialects.len() < MAX_DIALECTS || self.dialects.contains_key(&pid);
        if room && self.dialects.insert(pid, dialect) != Some(dialect) {
            info!("{pid} speaks the {} dialect: sending it that from now on", dialect.as_str());
        }
    }

    fn dialect_of(&self, pid: ProcessId) -> Dialect {
        self.dialects.get(&pid).copied().unwrap_or_default()
    }

    /// For a member whose dialect we don't know yet, the wrapped form of `message`:
    /// a wrapped-dialect peer closes standard messages silently, so a silent close is
    /// followed by this, and I_AM_LEADER goes in both forms.
    fn wrapped_if_unknown(&self, to: ProcessId, message: &Message) -> Option<Vec<u8>> {
        if self.dialects.contains_key(&to) {
            return None;
        }
        let value = message.to_value_in(Dialect::Wrapped, self.node.id(), &self.addr, to, self.node.members());
        Some(encode(&value, Style::Compact))
    }

    /// `message` for `to`, in the dialect it last spoke.
    fn encode_for(&self, to: ProcessId, message: &Message) -> Vec<u8> {
        let value = message.to_value_in(self.dialect_of(to), self.node.id(), &self.addr, to, self.node.members());
        encode(&value, Style::Compact)
    }

    fn send_elect(&mut self, election: u64, to: ProcessId, addr: Addr, members: &Members) {
        // An election sends the same ELECT to every higher member: encode it once
        // (the standard form; a member of another dialect gets its own).
        let dialect = self.dialect_of(to);
        let bytes = match &self.last_elect {
            _ if dialect != Dialect::Standard => {
                Arc::new(self.encode_for(to, &Message::Elect { members: members.clone(), sender: None, rejected: 0 }))
            }
            Some((n, m, bytes)) if *n == election && m == members => Arc::clone(bytes),
            _ => {
                let bytes =
                    Arc::new(encode_message(&Message::Elect { members: members.clone(), sender: None, rejected: 0 }));
                self.last_elect = Some((election, members.clone(), Arc::clone(&bytes)));
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
        debug!("ELECT #{election} to {to} at {addr} ({} bytes)", bytes.len());
        let timeout = self.config.socket_timeout;
        let wrapped =
            self.wrapped_if_unknown(to, &Message::Elect { members: members.clone(), sender: None, rejected: 0 });
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
                let outcome = exchange_trying_wrapped(&addr, &bytes, wrapped.as_deref(), timeout, to, mailbox);
                Envelope::Input(Input::ElectReply { election, to, outcome })
            },
            |why| Envelope::Input(Input::ElectReply { election, to, outcome: Outcome::Failed(Failure::NotRun(why)) }),
        );
    }

    fn send_leader(&mut self, to: ProcessId, addr: Addr) {
        let announcement = Message::IAmLeader { leader: self.node.id(), addr: None };
        let bytes = self.encode_for(to, &announcement);
        // Unknown dialect: the wrapped form first, then the standard one, which a
        // peer that believes the last announcement it heard reads last.
        let forms: Vec<Vec<u8>> = self.wrapped_if_unknown(to, &announcement).into_iter().chain([bytes]).collect();
        let timeout = self.config.socket_timeout;
        self.send_detached(
            "leader",
            Box::new(move || {
                for bytes in forms {
                    let sent = net::connect(&addr, timeout).and_then(|mut s| {
                        s.write_all(&bytes)?;
                        let _ = s.shutdown(Shutdown::Write);
                        Ok(())
                    });
                    match sent {
                        Ok(()) => debug!("I_AM_LEADER to {to} at {addr}"),
                        Err(e) => {
                            debug!("I_AM_LEADER to {to} at {addr} failed: {e}");
                            break;
                        }
                    }
                }
            }),
        );
    }

    fn send_probe(&mut self, probe: u64, to: ProcessId, addr: Addr) {
        debug!("PROBE #{probe} to {to} at {addr}");
        let bytes = self.encode_for(to, &Message::Probe);
        let wrapped = self.wrapped_if_unknown(to, &Message::Probe);
        let timeout = self.config.socket_timeout;
        self.spawn_reporting(
            Runner::Send("probe"),
            move |mailbox| {
                let outcome = exchange_trying_wrapped(&addr, &bytes, wrapped.as_deref(), timeout, to, mailbox);
                Envelope::Input(Input::ProbeReply { probe, outcome })
            },
            |why| Envelope::Input(Input::ProbeReply { probe, outcome: Outcome::Failed(Failure::NotRun(why)) }),
        );
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
        match listener::spawn(socket, self.node.id(), Arc::clone(&self.deliver), Arc::clone(&self.ignoring)) {
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
    let failure = match net::exchange(addr, bytes, timeout) {
        Ok((_, reply)) => match decode(&reply).map(Reply::from_value) {
            Ok(Reply::GotIt) => return Outcome::GotIt,
            Ok(other) => Failure::WrongReply(format!("{other:?}")),
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
    Outcome::Failed(failure)
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
    fn local_addresses_are_the_ones_a_socket_can_bind() {
        assert!(is_local_ip([127, 0, 0, 1].into()));
        assert!(is_local_ip([127, 0, 0, 2].into()));
        // TEST-NET-3, never assigned to a machine.
        assert!(!is_local_ip([203, 0, 113, 254].into()));
    }
}
