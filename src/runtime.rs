//! The runtime around the pure [`Node`]: sockets, threads, clocks.
//!
//! A thread-per-connection listener and every sender thread push into one monitor
//! queue ([`Mailbox`]); one main loop takes from it, fires due timers, feeds the node,
//! and carries out the node's actions. Every outgoing ELECT runs in a thread of its
//! own, so no reply is ever awaited on the main loop; I_AM_LEADER and re-registration
//! likewise. Start-up order: bind the listener (so the address we register is real),
//! register with the GCD, then start the node.

use crate::cli::NodeConfig;
use crate::events::{self, EventSink, LEADER_TARGET};
use crate::gcd::{self, GcdError, NameChoice};
use crate::identity::ProcessId;
use crate::listener::{self, Incoming, ListenerHandle};
use crate::mailbox::{Mailbox, Taken};
use crate::membership::{Addr, Members};
use crate::net::{self, ExchangeError};
use crate::node::{Action, Event, Input, Listening, Node, Outcome, Time, Timer};
use crate::wire::{decode, encode_message, is_timeout, FrameError, Message, RegisterName, Reply};
use log::{debug, info, warn};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the GCD may take to answer a registration.
pub const GCD_TIMEOUT: Duration = Duration::from_secs(5);

/// Registration attempts at start-up while the GCD is unreachable, and the first wait
/// between them (doubling: 0.25, 0.5, 1, 2 s), so a node started a moment before its GCD
/// still joins, and one pointed at nothing says so within about four seconds.
pub const GCD_ATTEMPTS: u32 = 5;
const GCD_FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// The most a Python peer reads of a message (one `recv(1024)`).
const PYTHON_RECV: usize = 1024;

#[derive(Debug)]
pub enum NodeError {
    Bind { addr: Addr, cause: std::io::Error },
    Events { path: String, cause: std::io::Error },
    Gcd { error: GcdError, attempts: u32, waited: Duration },
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeError::Bind { addr, cause } => write!(
                f,
                "cannot listen on {addr}: {cause}; pick another --listen HOST:PORT (port 0 takes any free one)"
            ),
            NodeError::Events { path, cause } => {
                write!(f, "cannot write events to {path}: {cause}; pick another --events path")
            }
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

/// Binds the listener and works out the address to give the GCD: the host as the user
/// wrote it (peers resolve names), the IP that reaches the GCD when none was given or
/// it was a wildcard, and the port actually bound.
pub fn bind(config: &NodeConfig) -> Result<(TcpListener, Addr), NodeError> {
    let towards_gcd = || local_ip_towards(&config.gcd).to_string();
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

/// Registers, retrying with backoff while the GCD is unreachable.
fn register_at_startup(config: &NodeConfig, addr: &Addr) -> Result<gcd::Registration, NodeError> {
    let started = Instant::now();
    let mut wait = GCD_FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        match gcd::register(&config.gcd, config.gcd_message, config.pid, addr, GCD_TIMEOUT) {
            Ok(registration) => return Ok(registration),
            Err(error) if error.is_transient() && attempt < GCD_ATTEMPTS => {
                warn!("{error}; trying again in {} ms ({attempt} of {GCD_ATTEMPTS})", wait.as_millis());
                std::thread::sleep(wait);
                wait *= 2;
                attempt += 1;
            }
            Err(error) => return Err(NodeError::Gcd { error, attempts: attempt, waited: started.elapsed() }),
        }
    }
}

/// What the main loop takes from its mailbox.
enum Envelope {
    Input(Input),
    Message(Incoming),
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

/// A node whose main loop runs on its own thread.
pub struct RunningNode {
    pub id: ProcessId,
    pub addr: Addr,
    stopper: Stopper,
    thread: JoinHandle<()>,
}

impl RunningNode {
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Waits for the node to stop (after [`Stopper::stop`]).
    pub fn wait(self) {
        let _ = self.thread.join();
    }
}

/// Binds, registers, and starts the node's main loop. Errors here are fatal start-up
/// errors (address in use, GCD down or refusing); after this the node runs until
/// stopped, whatever its peers do.
pub fn start(config: NodeConfig) -> Result<RunningNode, NodeError> {
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
    let listener = listener::spawn(listener, Arc::clone(&deliver), Arc::clone(&ignoring))
        .map_err(|cause| NodeError::Bind { addr: addr.clone(), cause })?;
    info!("random choices seeded with {} (replay them with --seed {})", config.seed, config.seed);
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
        figures: crate::stats::NodeFigures::new(pid),
        last_elect: None,
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
    Ok(RunningNode { id, addr, stopper: Stopper(mailbox), thread })
}

struct Runtime {
    node: Node,
    config: NodeConfig,
    addr: Addr,
    /// The registration name the GCD accepted, for registering again.
    register_as: RegisterName,
    mailbox: Arc<Mailbox<Envelope>>,
    sink: EventSink,
    epoch: Instant,
    timers: BinaryHeap<Reverse<(Time, Timer)>>,
    listener: Option<ListenerHandle>,
    /// The socket address the listener is bound to, for reopening it after a failure.
    bound: SocketAddr,
    deliver: Arc<dyn Fn(Incoming) + Send + Sync>,
    ignoring: Arc<AtomicBool>,
    warned_size: bool,
    figures: crate::stats::NodeFigures,
    /// The ELECT last encoded: election number, the members it carries, its bytes.
    last_elect: Option<(u64, Members, Arc<Vec<u8>>)>,
}

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
                Taken::Item(Envelope::Stop) | Taken::Closed => break,
                Taken::TimedOut => {}
            }
        }
        self.mailbox.close();
        if let Some(listener) = self.listener.take() {
            listener.shutdown();
        }
        self.emit(&Event::Stopped);
        self.sink.close(); // every event is out before the summary and the exit
        if self.config.summary_on_stop {
            let text = self.figures.render(self.now());
            let mut out = std::io::stdout().lock();
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
        match incoming.message {
            Message::Elect { members, sender, rejected } => {
                if rejected > 0 {
                    crate::logging::throttled_warn(&format!(
                        "ELECT from {from} listed {rejected} entries that are not valid members; ignored them"
                    ));
                }
                self.feed(Input::Elect { members, sender });
            }
            Message::IAmLeader { leader, addr } => self.feed(Input::IAmLeader { leader, addr }),
            Message::Probe => info!("PROBE from {from}: answered GOT_IT"),
            Message::Register { name, .. } => {
                crate::logging::throttled_warn(&format!("{name} from {from} ignored: that message is for the GCD"))
            }
            Message::Unknown { name, .. } => {
                crate::logging::throttled_warn(&format!("unknown message {name:?} from {from} ignored"))
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
                Event::ElectFailed { .. }
                | Event::ReregistrationFailed { .. }
                | Event::ProbeFailed { .. }
                | Event::LeaderCheckFailed { .. } => {
                    warn!("{line}")
                }
                _ => info!("{line}"),
            }
        }
        self.sink.write(&events::json(event, me));
    }

    /// Runs `work` on a thread of its own; false if no thread could be had.
    fn spawn(name: String, work: impl FnOnce() + Send + 'static) -> bool {
        std::thread::Builder::new().name(name).spawn(work).is_ok()
    }

    fn send_elect(&mut self, election: u64, to: ProcessId, addr: Addr, members: &Members) {
        // An election sends the same ELECT to every higher member: encode it once.
        let bytes = match &self.last_elect {
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
        let mailbox = Arc::clone(&self.mailbox);
        let timeout = self.config.socket_timeout;
        let spawned = Self::spawn(format!("elect-{}", to.su_id), move || {
            let outcome = exchange_for_got_it(&addr, &bytes, timeout);
            mailbox.push(Envelope::Input(Input::ElectReply { election, to, outcome }));
        });
        if !spawned {
            let outcome = Outcome::Failed("no thread to send it from".into());
            self.mailbox.push(Envelope::Input(Input::ElectReply { election, to, outcome }));
        }
    }

    fn send_leader(&self, to: ProcessId, addr: Addr) {
        let bytes = encode_message(&Message::IAmLeader { leader: self.node.id(), addr: None });
        let timeout = self.config.socket_timeout;
        let spawned = Self::spawn(format!("leader-{}", to.su_id), move || {
            let sent = net::connect(&addr, timeout).and_then(|mut s| {
                s.write_all(&bytes)?;
                let _ = s.shutdown(Shutdown::Write);
                Ok(())
            });
            match sent {
                Ok(()) => debug!("I_AM_LEADER to {to} at {addr}"),
                Err(e) => debug!("I_AM_LEADER to {to} at {addr} failed: {e}"),
            }
        });
        if !spawned {
            warn!("no thread to send I_AM_LEADER to {to}");
        }
    }

    fn send_probe(&self, probe: u64, to: ProcessId, addr: Addr) {
        debug!("PROBE #{probe} to {to} at {addr}");
        let bytes = encode_message(&Message::Probe);
        let timeout = self.config.socket_timeout;
        let mailbox = Arc::clone(&self.mailbox);
        let spawned = Self::spawn(format!("probe-{}", to.su_id), move || {
            let outcome = exchange_for_got_it(&addr, &bytes, timeout);
            mailbox.push(Envelope::Input(Input::ProbeReply { probe, outcome }));
        });
        if !spawned {
            let outcome = Outcome::Failed("no thread to send it from".into());
            self.mailbox.push(Envelope::Input(Input::ProbeReply { probe, outcome }));
        }
    }

    /// Closes, reopens or mutes the listener. It reopens on the very address it had:
    /// the GCD and the peers know that one.
    fn listen(&mut self, listening: Listening) {
        self.ignoring.store(listening == Listening::Ignoring, Ordering::SeqCst);
        match listening {
            Listening::Closed => {
                if let Some(listener) = self.listener.take() {
                    listener.shutdown();
                }
            }
            Listening::Ignoring => {}
            Listening::Open if self.listener.is_some() => {}
            Listening::Open => match self.reopen() {
                Ok(listener) => self.listener = Some(listener),
                Err(e) => {
                    log::error!("cannot listen on {} again: {e}; stopping", self.bound);
                    self.mailbox.push(Envelope::Stop);
                }
            },
        }
    }

    fn reopen(&self) -> std::io::Result<ListenerHandle> {
        // A port just closed can take a moment to be free again; try for about a second.
        let mut tries = 0;
        let socket = loop {
            match TcpListener::bind(self.bound) {
                Ok(socket) => break socket,
                Err(e) if tries >= 50 => return Err(e),
                Err(_) => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        listener::spawn(socket, Arc::clone(&self.deliver), Arc::clone(&self.ignoring))
    }

    fn register_again(&self, reason: String) {
        info!("registering with the GCD again: {reason}");
        let (gcd, name, me, addr) = (self.config.gcd.clone(), self.register_as, self.node.id(), self.addr.clone());
        let mailbox = Arc::clone(&self.mailbox);
        let spawned = Self::spawn("register".into(), move || {
            let input = match gcd::register(&gcd, NameChoice::Fixed(name), me, &addr, GCD_TIMEOUT) {
                Ok(r) => Input::Registered { members: r.members },
                Err(e) => Input::RegistrationFailed { reason: e.to_string() },
            };
            mailbox.push(Envelope::Input(input));
        });
        if !spawned {
            let reason = "no thread to register from".to_string();
            self.mailbox.push(Envelope::Input(Input::RegistrationFailed { reason }));
        }
    }
}

/// Sends one ELECT or PROBE and says how it ended, in words for the log.
fn exchange_for_got_it(addr: &Addr, bytes: &[u8], timeout: Duration) -> Outcome {
    let secs = timeout.as_secs_f64();
    match net::exchange(addr, bytes, timeout) {
        Ok((_, reply)) => match decode(&reply).map(Reply::from_value) {
            Ok(Reply::GotIt) => Outcome::GotIt,
            Ok(other) => Outcome::Failed(format!("answered {other:?} instead of GOT_IT")),
            Err(e) => Outcome::Failed(format!("unreadable reply: {e}")),
        },
        Err(ExchangeError::Connect(e)) if is_timeout(&e) => Outcome::Failed(format!("no connection within {secs}s")),
        Err(ExchangeError::Connect(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Outcome::Failed(format!("refused: nothing listens at {addr}"))
        }
        Err(ExchangeError::Connect(e)) => Outcome::Failed(format!("cannot connect to {addr}: {e}")),
        Err(ExchangeError::Send(e)) => Outcome::Failed(format!("sending failed: {e}")),
        Err(ExchangeError::Reply { error, .. }) => Outcome::Failed(match error {
            FrameError::Incomplete { received: 0 } => "closed the connection without a reply".into(),
            FrameError::Io(e) if is_timeout(&e) => format!("no reply within {secs}s"),
            other => other.to_string(),
        }),
    }
}
