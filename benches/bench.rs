//! `cargo bench --bench bench [-- --sizes 3 --reps 1 --baseline PATH --only ROW ...]`: how
//! fast a group decides, what a node costs, how far it scales, what a disturbance costs in
//! messages, and how a group copes with a duplicated SU ID and with an overloaded machine,
//! for bully-node and, side by side under the same schedule, for another bully-node
//! binary (`--baseline`, e.g. an older build: before/after ratios from one run) and, in
//! the timing, idle and scale rows, for the Python reference peer of the test suite
//! (tests/fixtures/bully_peer.py). Every member is a real process on 127.0.0.1
//! registered with a coordinator serving one request at a time as gcd2.py does: by
//! default the test suite's Python stand-in, which serves as gcd2.py fall 2025 does (a
//! print per request included), or with `--gcd rust` `bully-node gcd --serial`; either's
//! log counts the requests it answers. Times and message counts come from the members'
//! own JSON events (wall-clock milliseconds), so every kind is measured the same way.
//! The floor is a bare connect, one pickle and its reply. `--only ROW[,ROW]` runs some
//! rows alone (`--help` lists them).
//! Every process it starts dies with it: on its normal end, on an error, on Ctrl-C or
//! SIGTERM (a handler kills them), and if it is killed outright (PR_SET_PDEATHSIG); the
//! overload's busy processes too.
//! Outside the library and the release binary: it drives them from outside, and it points
//! into the source tree (the Python peer). tests/bench_smoke.rs includes this file to run
//! it small.

use bully_node::wire::{encode, read_pickle, Style, Value};
use bully_node::{encode_message, Addr, Members, Message, ProcessId};
use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Measure bully-node against another build of it and the Python reference peer: how fast
/// groups of each decide, what a node costs, and how far a group scales (real processes
/// on 127.0.0.1, registered with a coordinator that serves one request at a time).
#[derive(Parser, Debug)]
#[command(name = "bench", bin_name = "cargo bench --bench bench --", max_term_width = 100)]
struct BenchArgs {
    /// Group sizes for the join and failover measurements
    #[arg(long, value_delimiter = ',', default_value = "5,20,50")]
    sizes: Vec<usize>,

    /// Repetitions of each measurement (the table shows median, min and max)
    #[arg(long, default_value_t = 3)]
    reps: usize,

    /// How long the idle-cost measurement watches a settled group, e.g. 30s, 1500ms
    #[arg(long, value_name = "TIME", default_value = "30s", value_parser = parse_time)]
    idle: Duration,

    /// Group sizes for the scale measurement, in order: bully-node goes on while it holds
    /// (the baseline runs wherever bully-node does; the Python peer stops at its first miss)
    #[arg(long, value_delimiter = ',', default_value = "100,200,300")]
    scale: Vec<usize>,

    /// How long a scale group is watched after its last member registered: all must
    /// follow the highest within it, and none may exit
    #[arg(long, value_name = "TIME", default_value = "10s", value_parser = parse_time)]
    watch: Duration,

    /// Measure bully-node only (the Python peer needs python3)
    #[arg(long)]
    no_python: bool,

    /// The coordinator every group registers with; both serve one request at a time.
    /// `python` is the gcd2.py stand-in of tests/fixtures, serving as gcd2.py fall 2025
    /// does (Python's single-threaded socketserver, one recv(1024), a print per request);
    /// `rust` is `bully-node gcd --serial`, which answers alike but faster
    #[arg(long, value_enum, default_value = "python")]
    gcd: Coordinator,

    /// Run only these rows (default: all), e.g. `--only clash` or `--only scale,overload`
    #[arg(long, value_enum, value_delimiter = ',', value_name = "ROW")]
    only: Vec<Row>,

    /// After a scale group's watch, how long it is watched idle: the ELECTs its members
    /// send then (a settled group sends none)
    #[arg(long, value_name = "TIME", default_value = "10s", value_parser = parse_time)]
    idle_watch: Duration,

    /// Group sizes for the messages-per-disturbance rows (a join, a refused and a
    /// silent failover)
    #[arg(long, value_delimiter = ',', default_value = "50", value_name = "N")]
    messages_at: Vec<usize>,

    /// How long the same-SU-ID clash is watched after the second process with that SU ID starts
    /// (30 s: the first process, evicted from the GCD's list, may learn of the second
    /// only at its leader's check, which comes 10-20 s apart)
    #[arg(long, value_name = "TIME", default_value = "30s", value_parser = parse_time)]
    clash_watch: Duration,

    /// Group sizes for the overload rows
    #[arg(long, value_delimiter = ',', default_value = "30,100", value_name = "N")]
    overload_at: Vec<usize>,

    /// How long the overload rows saturate the machine (the leader is killed halfway)
    #[arg(long, value_name = "TIME", default_value = "20s", value_parser = parse_time)]
    load: Duration,

    /// Busy processes that saturate the machine [default: twice the CPUs]
    #[arg(long, value_name = "N")]
    load_procs: Option<usize>,

    /// The window over which a group's CPU is measured before the load, and after the
    /// group agrees once the load has ended
    #[arg(long, value_name = "TIME", default_value = "10s", value_parser = parse_time)]
    cpu_window: Duration,

    /// Another bully-node binary (e.g. an older build) to measure as a third kind under
    /// the same schedule, for before/after ratios from one run
    #[arg(long, value_name = "PATH")]
    baseline: Option<PathBuf>,

    /// Print per-node timelines to stderr: the largest scale group of each kind, and each
    /// failover at the largest size (also with BENCH_TRACE=1)
    #[arg(long)]
    trace: bool,
}

/// `30s`, `1500ms`, `2.5s` or a bare number of milliseconds: at least 1ms, at most an hour.
fn parse_time(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (number, unit_ms) = match (t.strip_suffix("ms"), t.strip_suffix('s')) {
        (Some(n), _) => (n, 1.0),
        (None, Some(n)) => (n, 1000.0),
        (None, None) => (t, 1.0),
    };
    let ms = number.trim().parse::<f64>().map_err(|_| format!("{s:?} is not a time like 30s or 1500ms"))? * unit_ms;
    if !(1.0..=3_600_000.0).contains(&ms) {
        return Err(format!("{s:?} must be at least 1ms and at most 3600s"));
    }
    Ok(Duration::from_secs_f64(ms / 1000.0))
}

fn main() -> ExitCode {
    // cargo bench appends `--bench` to the arguments of a target without libtest.
    let args = BenchArgs::parse_from(std::env::args_os().filter(|a| a != "--bench"));
    if let Err(e) = stop_children_on_signals() {
        eprintln!("error: {e}");
        return ExitCode::from(1);
    }
    let config = BenchConfig::from(args);
    match run(config, &mut std::io::stdout(), std::io::stderr().is_terminal()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub sizes: Vec<usize>,
    pub reps: usize,
    pub idle: Duration,
    pub scale: Vec<usize>,
    /// How long a scale group is watched after its last registration.
    pub watch: Duration,
    pub python: bool,
    /// The coordinator the groups register with.
    pub gcd: Coordinator,
    /// Another bully-node binary, measured as a third kind.
    pub baseline: Option<PathBuf>,
    /// Timelines on stderr.
    pub trace: bool,
    /// The rows to run; empty: all.
    pub only: Vec<Row>,
    /// How long a scale group is watched idle after its watch.
    pub idle_watch: Duration,
    /// Group sizes of the messages-per-disturbance rows.
    pub messages_at: Vec<usize>,
    /// How long the same-SU-ID clash is watched.
    pub clash_watch: Duration,
    /// Group sizes of the overload rows.
    pub overload_at: Vec<usize>,
    /// How long the overload lasts.
    pub load: Duration,
    /// Busy processes during the overload.
    pub load_procs: usize,
    /// The CPU measurement window of the overload rows.
    pub cpu_window: Duration,
}

impl From<BenchArgs> for BenchConfig {
    fn from(args: BenchArgs) -> BenchConfig {
        let groups = |sizes: Vec<usize>| sizes.into_iter().filter(|n| *n >= 2).collect();
        let cpus = std::thread::available_parallelism().map_or(2, usize::from);
        BenchConfig {
            sizes: groups(args.sizes),
            reps: args.reps.max(1),
            idle: args.idle,
            scale: groups(args.scale),
            watch: args.watch,
            python: !args.no_python,
            gcd: args.gcd,
            baseline: args.baseline,
            trace: args.trace || std::env::var_os("BENCH_TRACE").is_some(),
            only: args.only,
            idle_watch: args.idle_watch,
            messages_at: groups(args.messages_at),
            clash_watch: args.clash_watch,
            overload_at: groups(args.overload_at),
            load: args.load,
            load_procs: args.load_procs.unwrap_or(2 * cpus).max(1),
            cpu_window: args.cpu_window,
        }
    }
}

/// What `cargo bench --bench bench` runs with no arguments.
impl Default for BenchConfig {
    fn default() -> BenchConfig {
        BenchConfig::from(BenchArgs::parse_from(["bench"]))
    }
}

impl BenchConfig {
    /// Whether `row` is to run.
    fn runs(&self, row: Row) -> bool {
        self.only.is_empty() || self.only.contains(&row)
    }
}

/// The rows of the benchmark, each selectable with `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Row {
    /// Join and failover times (refused, silent) at `--sizes`, the F/J table and the
    /// traffic of one join.
    Timing,
    /// Memory, threads and CPU of a settled idle group of 5.
    Idle,
    /// Joins 50 ms apart at `--scale` sizes, each the new highest, and the memory of a node.
    Scale,
    /// The GCD's load from a settled idle group.
    GcdLoad,
    /// ELECT, I_AM_LEADER and PROBE sends per member for a join, a refused and a silent
    /// failover, at `--messages-at` sizes.
    Messages,
    /// Three members, two with one SU ID (other days; same days): the innocent one's
    /// leader changes.
    Clash,
    /// The machine saturated for `--load` with the leader killed inside, at `--overload-at`.
    Overload,
}

/// Which coordinator the groups register with. Both serve one request at a time, as
/// gcd2.py's single-threaded socketserver does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Coordinator {
    /// `bully-node gcd --serial`.
    Rust,
    /// tests/fixtures/gcd_standin.py, written here from PROTOCOL.md to answer as gcd2.py does.
    Python,
}

impl Coordinator {
    fn name(self) -> &'static str {
        match self {
            Coordinator::Rust => "`bully-node gcd --serial`",
            Coordinator::Python => "the Python gcd2.py stand-in",
        }
    }
}

/// Every child process the benchmark has started and not yet reaped, so that a signal
/// handler can kill them; spawning happens under this lock, so none escapes the handler.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());
/// Set by the handler: nothing more is started.
static STOPPING: AtomicBool = AtomicBool::new(false);

fn children() -> std::sync::MutexGuard<'static, Vec<u32>> {
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts `cmd` as a child that the benchmark kills when it ends, however it ends: each
/// child asks the kernel for SIGKILL when the thread that started it (the benchmark's
/// own) dies, and is listed for [`stop_every_child`].
fn spawn(cmd: &mut Command) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2),
    // which is async-signal-safe and touches no memory of the parent's.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut live = children();
    if STOPPING.load(Ordering::SeqCst) {
        return Err(std::io::Error::other("the benchmark is stopping"));
    }
    let child = cmd.spawn()?;
    live.push(child.id());
    Ok(child)
}

fn signal_pid(pid: u32, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return };
    // SAFETY: kill(2) takes two integers and touches no memory of ours. Callers pass the
    // pid of a child of ours not yet waited for, so it still names that process.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid, sig);
    }
}

/// A thread that reads a child's output: a small stack (a line buffer and a JSON parse),
/// so that 300 of them cost little; an error, not a panic, when the system has no thread
/// to give (a machine shared with other work can run out).
fn reader(read: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    std::thread::Builder::new().name("reader".into()).stack_size(256 * 1024).spawn(read).map(drop)
}

/// Kills `child` (waking it first if it was stopped) and reaps it.
fn reap(child: &mut Child) {
    {
        let mut live = children();
        live.retain(|p| *p != child.id());
        // Still listed until now, so not reaped: the pid is the child's.
        signal_pid(child.id(), libc::SIGCONT);
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// Kills every child not yet reaped and starts no more; returns how many were killed.
pub fn stop_every_child() -> usize {
    STOPPING.store(true, Ordering::SeqCst);
    let live = children();
    for &pid in live.iter() {
        signal_pid(pid, libc::SIGCONT);
        signal_pid(pid, libc::SIGKILL);
    }
    live.len()
}

/// On Ctrl-C or SIGTERM: kill every child, say so, exit with 130.
pub fn stop_children_on_signals() -> Result<(), String> {
    ctrlc::set_handler(|| {
        let n = stop_every_child();
        eprintln!("\nstopped: killed the {n} processes the benchmark had started");
        std::process::exit(130);
    })
    .map_err(|e| format!("cannot handle Ctrl-C and SIGTERM: {e}"))
}

const PYTHON_PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bully_peer.py");
/// The binary cargo built for this target: members and coordinators run it.
const BULLY_NODE: &str = env!("CARGO_BIN_EXE_bully-node");
const GCD_STANDIN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gcd_standin.py");

/// How long a group may take to settle before a measurement counts as "did not".
const SETTLE: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Rust,
    /// Another bully-node binary, started with the same flags.
    Baseline(&'static Path),
    Python,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Rust => "bully-node",
            Kind::Baseline(_) => "baseline",
            Kind::Python => "Python peer",
        }
    }
}

/// The flags the benchmark gives a bully-node member (besides their values).
const MEMBER_FLAGS: [&str; 7] = ["--gcd", "--days", "--su-id", "--listen", "--events", "--no-feign", "-q"];

/// A baseline must be a bully-node that takes the flags the benchmark passes its members.
fn check_baseline(path: &Path) -> Result<(), String> {
    let out = Command::new(path)
        .arg("--help")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("--baseline {}: cannot run it: {e}", path.display()))?;
    let help = String::from_utf8_lossy(&out.stdout);
    let missing: Vec<&str> = MEMBER_FLAGS.iter().copied().filter(|f| !help.contains(f)).collect();
    if !out.status.success() || !missing.is_empty() {
        return Err(format!(
            "--baseline {}: its --help does not list {} (the benchmark starts members with {})",
            path.display(),
            if missing.is_empty() { "anything (it failed)".into() } else { missing.join(", ") },
            MEMBER_FLAGS.join(" ")
        ));
    }
    Ok(())
}

/// One event line of a member, the fields the benchmark reads.
#[derive(Clone, Debug, Default)]
pub(crate) struct Ev {
    pub(crate) t: u64,
    pub(crate) event: String,
    pub(crate) leader: Option<ProcessId>,
    pub(crate) name: String,
    pub(crate) bytes: usize,
    pub(crate) asking: usize,
    pub(crate) announcing: usize,
    /// Members a leader's check sent I_AM_LEADER to (`"announced_to"`, a list).
    pub(crate) announced: usize,
    /// The line as printed.
    pub(crate) raw: String,
}

/// The fields of one event line the benchmark reads: ours (`--events -`) and the
/// Python peer's (`"sent"` lines with `"name"` and `"bytes"`). A line that is not a JSON
/// object with `"t"` and `"event"` is not an event.
pub(crate) fn parse(line: &str) -> Option<Ev> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let pid = |p: &serde_json::Value| {
        Some(ProcessId::new(p.get(0)?.as_u64()?.try_into().ok()?, p.get(1)?.as_u64()?.try_into().ok()?))
    };
    // `"members"` is a count in some events and a list in others: only lists are sent to.
    let listed = |key: &str| v.get(key).and_then(serde_json::Value::as_array).map_or(0, Vec::len);
    let count = |key: &str| v.get(key).and_then(serde_json::Value::as_u64).unwrap_or(0) as usize;
    Some(Ev {
        t: v.get("t")?.as_u64()?,
        event: v.get("event")?.as_str()?.to_string(),
        leader: v.get("leader").and_then(pid),
        name: v.get("name").and_then(serde_json::Value::as_str).unwrap_or_default().to_string(),
        bytes: count("bytes"),
        asking: listed("asking") + listed("members"),
        announcing: count("announcing_to"),
        announced: listed("announced_to"),
        raw: line.to_string(),
    })
}

/// Messages counted from members' events: what they sent, by name, and what they
/// received. Our events name the members each ELECT and I_AM_LEADER went to (an
/// election's `"asking"`, a win's `"announcing_to"`, `announced_to`, a leader's check's
/// `"announced_to"`), and one PROBE per `probe_ok` or `probe_failed`; the Python peer
/// prints a `"sent"` line per message. What arrived (`elect_received`,
/// `i_am_leader_received`) counts every copy on the wire, duplicates included.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Tally {
    pub(crate) elect: usize,
    pub(crate) leader: usize,
    pub(crate) probe: usize,
    pub(crate) elect_in: usize,
    pub(crate) leader_in: usize,
    /// Elections started.
    pub(crate) elections: usize,
}

impl Tally {
    pub(crate) fn add(&mut self, e: &Ev) {
        match e.event.as_str() {
            "election_started" => {
                self.elections += 1;
                self.elect += e.asking;
            }
            "election_round" | "election_widened" => self.elect += e.asking,
            "won" => self.leader += e.announcing,
            "announced_to" => self.leader += e.asking,
            "leader_checked" => self.leader += e.announced,
            "probe_ok" | "probe_failed" | "former_leader_probe_failed" => self.probe += 1,
            "elect_received" => self.elect_in += 1,
            "i_am_leader_received" => self.leader_in += 1,
            "sent" => match e.name.as_str() {
                "ELECT" | "ELECTION" => self.elect += 1,
                "I_AM_LEADER" | "COORDINATOR" => self.leader += 1,
                "PROBE" => self.probe += 1,
                _ => {}
            },
            _ => {}
        }
    }

    /// The events of `members` within `window`, counted.
    fn of<'a>(members: impl IntoIterator<Item = &'a Member>, window: &std::ops::RangeInclusive<u64>) -> Tally {
        let mut tally = Tally::default();
        for m in members {
            m.lock().events.iter().filter(|e| window.contains(&e.t)).for_each(|e| tally.add(e));
        }
        tally
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// What the reader thread of a member keeps: every event (read after the fact), and
/// the two facts polled every 20 ms, kept apart so that polling copies nothing. (Polls
/// that cloned the whole history starved the reader threads; the members' stdout pipes
/// filled and their main loops blocked writing events, which the first run measured.)
#[derive(Default)]
struct Log {
    events: Vec<Ev>,
    leader: Option<(ProcessId, u64)>,
    joined: Option<u64>,
    /// Time of the latest event that is not a probe or a sent message.
    news: u64,
}

/// A member process and the events it has printed.
struct Member {
    pid: ProcessId,
    child: Child,
    log: Arc<Mutex<Log>>,
    /// When it was started (ms since the epoch).
    started: u64,
}

impl Member {
    fn start(kind: Kind, gcd_port: u16, pid: ProcessId) -> std::io::Result<Member> {
        let gcd = format!("127.0.0.1:{gcd_port}");
        let (days, su) = (pid.days.to_string(), pid.su_id.to_string());
        let mut cmd = match kind {
            Kind::Rust | Kind::Baseline(_) => {
                let mut c = Command::new(if let Kind::Baseline(path) = kind { path } else { Path::new(BULLY_NODE) });
                c.args(["--gcd", &gcd, "--days", &days, "--su-id", &su, "--listen", "127.0.0.1:0"]);
                c.args(["--events", "-", "--no-feign", "-q"]);
                c
            }
            Kind::Python => {
                let mut c = Command::new("python3");
                c.args([PYTHON_PEER, "--gcd", &gcd, "--days", &days, "--su-id", &su, "--probe", "--report-sends"]);
                c
            }
        };
        let started = now_ms();
        let mut child = spawn(cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()))?;
        let log = Arc::new(Mutex::new(Log::default()));
        let sink = Arc::clone(&log);
        let out = child.stdout.take().expect("piped");
        let reading = reader(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(ev) = parse(&line) {
                    let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
                    match ev.event.as_str() {
                        "leader" => log.leader = ev.leader.map(|l| (l, ev.t)),
                        "joined" => log.joined = Some(ev.t),
                        _ => {}
                    }
                    if !ev.event.starts_with("probe") && ev.event != "sent" {
                        log.news = ev.t;
                    }
                    log.events.push(ev);
                }
            }
        });
        if let Err(e) = reading {
            reap(&mut child);
            return Err(e);
        }
        Ok(Member { pid, child, log, started })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn events(&self) -> Vec<Ev> {
        self.lock().events.clone()
    }

    /// The leader it follows now, and since when.
    fn following(&self) -> Option<(ProcessId, u64)> {
        self.lock().leader
    }

    fn joined(&self) -> Option<u64> {
        self.lock().joined
    }

    /// The pid is our own child's, not yet waited for (that happens on drop).
    fn signal(&self, sig: libc::c_int) {
        signal_pid(self.child.id(), sig);
    }

    /// Whether it has exited by itself.
    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        reap(&mut self.child);
    }
}

/// A coordinator process on a free port, serving one request at a time as gcd2.py does
/// (see [`Coordinator`]), whose log the benchmark reads to count the requests it answers.
struct Gcd {
    child: Child,
    port: u16,
    /// When each request was answered (ms since the epoch, as the log line arrived).
    requests: Arc<Mutex<Vec<u64>>>,
}

impl Gcd {
    fn start(coordinator: Coordinator) -> Result<Gcd, String> {
        // Port 0, and the port it says it bound: a port picked here and bound by the
        // coordinator later could be taken by another socket in between.
        let mut command = match coordinator {
            Coordinator::Rust => {
                let mut c = Command::new(BULLY_NODE);
                c.args(["gcd", "--serial", "--listen", "127.0.0.1:0"]).env_remove("RUST_LOG");
                c
            }
            Coordinator::Python => {
                let mut c = Command::new("python3");
                c.args([GCD_STANDIN, "--port", "0"]);
                c
            }
        };
        let mut child = spawn(command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()))
            .map_err(|e| format!("starting {}: {e}", coordinator.name()))?;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().expect("piped");
        // Owned from here on: an error below still kills it.
        let mut gcd = Gcd { child, port: 0, requests: Arc::clone(&requests) };
        let (bound_tx, bound) = std::sync::mpsc::channel();
        reader(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if is_request(&line) {
                    requests.lock().unwrap_or_else(|e| e.into_inner()).push(now_ms());
                } else if let Some(port) = listening_port(&line) {
                    let _ = bound_tx.send(port);
                }
            }
        })
        .map_err(|e| format!("no thread to read the coordinator's log: {e}"))?;
        gcd.port =
            bound.recv_timeout(Duration::from_secs(20)).map_err(|_| format!("{} did not start", coordinator.name()))?;
        Ok(gcd)
    }

    /// Requests answered at or after `since` (ms since the epoch).
    fn requests_since(&self, since: u64) -> usize {
        self.requests.lock().unwrap_or_else(|e| e.into_inner()).iter().filter(|t| **t >= since).count()
    }

    fn request_times(&self) -> Vec<u64> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The port in the coordinator's "listening on 127.0.0.1:PORT, ..." line, or in the
/// Python stand-in's "LISTENING PORT".
pub(crate) fn listening_port(line: &str) -> Option<u16> {
    let after = line.split("listening on 127.0.0.1:").nth(1).or_else(|| line.strip_prefix("LISTENING "))?;
    after.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// A line of the coordinator's log (at the default level) that answers or drops one
/// request: a registration accepted or refused, bytes that are no pickle, no reply; or
/// the Python stand-in's line for each request it handles (`REQUEST`, `REFUSED`, `DROPPED`).
pub(crate) fn is_request(line: &str) -> bool {
    ["REQUEST ", "REFUSED ", "DROPPED "].iter().any(|p| line.starts_with(p))
        || [": accepted, the group has", " refused: ", " are not a pickle", " dropped without a reply"]
            .iter()
            .any(|m| line.contains(m))
}

impl Drop for Gcd {
    fn drop(&mut self) {
        reap(&mut self.child);
    }
}

/// Polls `cond` every 20 ms until it returns something or `limit` passes.
fn poll<T>(limit: Duration, mut cond: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = cond() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// When every member came to follow `leader` (the latest of their switches), if all do.
fn all_follow(members: &[&Member], leader: ProcessId) -> Option<u64> {
    members
        .iter()
        .map(|m| m.following().filter(|(l, _)| *l == leader).map(|(_, t)| t))
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .max()
}

/// Identities for a group of `n`: days spread over 1..=360, distinct SU IDs; the last
/// is the highest.
fn identities(n: usize, base: u32) -> Vec<ProcessId> {
    (0..n).map(|i| ProcessId::new(1 + (i * 359 / n.max(1)) as u32, base + i as u32)).collect()
}

/// Time between starting members, for both kinds alike: a group whose members all start
/// in the same millisecond mostly measures the races of its announcements (Python
/// peers keep whichever announcement came last, and then never recover).
const STAGGER: Duration = Duration::from_millis(50);

fn start_group(kind: Kind, gcd: &Gcd, pids: &[ProcessId]) -> Result<Vec<Member>, String> {
    pids.iter()
        .map(|p| {
            std::thread::sleep(STAGGER);
            Member::start(kind, gcd.port, *p).map_err(|e| e.to_string())
        })
        .collect()
}

/// Waits until every member follows the highest, then until the group has been quiet
/// (no event but probes) for a second, so that a failure injected next is the only
/// thing going on.
fn settle(members: &[Member]) -> Result<(), String> {
    let top = members.iter().map(|m| m.pid).max().ok_or("empty group")?;
    let all: Vec<&Member> = members.iter().collect();
    poll(SETTLE, || all_follow(&all, top)).ok_or_else(|| format!("a group of {} did not settle", members.len()))?;
    poll(Duration::from_secs(10), || {
        (members.iter().map(|m| m.lock().news).max().unwrap_or(0) + 1000 < now_ms()).then_some(())
    })
    .ok_or_else(|| format!("a group of {} never went quiet", members.len()))
}

/// Election traffic: messages and bytes.
#[derive(Clone, Copy, Debug, Default)]
struct Traffic {
    messages: usize,
    bytes: usize,
}

/// A new highest member joins a settled group of `n - 1`: time from its registration
/// until every member follows it, and the election traffic in that window.
fn join(kind: Kind, coordinator: Coordinator, n: usize, rep: usize) -> Result<(Duration, Traffic), String> {
    let gcd = Gcd::start(coordinator)?;
    let base = 5_000_000 + rep as u32 * 1000;
    let mut members = start_group(kind, &gcd, &identities(n - 1, base))?;
    settle(&members)?;
    let newcomer = ProcessId::new(365, base + 999);
    members.push(Member::start(kind, gcd.port, newcomer).map_err(|e| e.to_string())?);
    let joined = poll(SETTLE, || members.last().unwrap().joined()).ok_or("the newcomer did not register")?;
    let all: Vec<&Member> = members.iter().collect();
    let agreed = poll(SETTLE, || all_follow(&all, newcomer))
        .ok_or_else(|| format!("{n} members never all followed the newcomer"))?;
    std::thread::sleep(Duration::from_millis(300)); // late messages of the episode
    let window = joined..=agreed + 300;
    let mut traffic = Traffic::default();
    // Sizes of our messages for this group, for counting bytes from our events.
    let group: Members = members.iter().map(|m| (m.pid, Addr::new("127.0.0.1", 40000))).collect();
    let elect_bytes = encode_message(&Message::Elect { members: group, sender: None, rejected: 0 }).len();
    let leader_bytes = encode_message(&Message::IAmLeader { leader: newcomer, addr: None }).len();
    let got_it_bytes = encode(&Value::str("GOT_IT"), Style::Compact).len();
    for m in &members {
        for e in m.events().iter().filter(|e| window.contains(&e.t)) {
            match (kind != Kind::Python, e.event.as_str()) {
                (true, "election_started" | "election_round" | "election_widened") => {
                    traffic.messages += e.asking;
                    traffic.bytes += e.asking * elect_bytes;
                }
                (true, "got_it") => {
                    traffic.messages += 1;
                    traffic.bytes += got_it_bytes;
                }
                (true, "won") => {
                    traffic.messages += e.announcing;
                    traffic.bytes += e.announcing * leader_bytes;
                }
                (true, "announced_to") => {
                    traffic.messages += e.asking;
                    traffic.bytes += e.asking * leader_bytes;
                }
                (false, "sent") if e.name != "PROBE" => {
                    traffic.messages += 1;
                    traffic.bytes += e.bytes;
                }
                _ => {}
            }
        }
    }
    Ok((Duration::from_millis(agreed.saturating_sub(joined)), traffic))
}

/// The leader of a settled group of `n` is killed (`-KILL`: refused connections) or
/// stopped (`-STOP`: the port stays open, nothing answers). Returns the time from the
/// first failed PROBE, and from the kill, until every survivor follows the next highest.
fn failover(
    kind: Kind,
    coordinator: Coordinator,
    n: usize,
    rep: usize,
    (signum, signal): (libc::c_int, &str),
    bar: &ProgressBar,
    trace: bool,
) -> Result<(Duration, Duration), String> {
    let gcd = Gcd::start(coordinator)?;
    let pids = identities(n, 6_000_000 + rep as u32 * 1000);
    let members = start_group(kind, &gcd, &pids)?;
    settle(&members)?;
    let (leader, survivors) = members.split_last().unwrap();
    let next = survivors.iter().map(|m| m.pid).max().unwrap();
    let killed = now_ms();
    leader.signal(signum);
    let all: Vec<&Member> = survivors.iter().collect();
    let agreed = poll(SETTLE, || all_follow(&all, next)).ok_or_else(|| {
        let views: Vec<String> = survivors.iter().map(|m| format!("{} follows {:?}", m.pid, m.following())).collect();
        format!("the survivors never agreed on {next}: {}", views.join("; "))
    })?;
    if trace {
        bar.suspend(|| {
            eprintln!("\n== trace: {}, failover {signal} at N={n}: times after the kill, ms", kind.name());
            eprintln!("events of the survivors, by kind: {}", census(survivors, killed..=agreed + 300));
            eprintln!(
                "requests the GCD answered from the kill until all followed {next}: {}",
                gcd.requests_since(killed)
            );
            // The new leader, and the survivor that switched last: what they went through.
            if let Some(new) = survivors.iter().find(|m| m.pid == next) {
                eprintln!("the new leader {next} (ELECTs received not shown):");
                timeline(new, killed, killed, agreed + 300, |e| e.event != "elect_received");
            }
            if let Some(last) = survivors.iter().max_by_key(|m| m.following().map_or(0, |(_, t)| t)) {
                eprintln!("the last to switch, {}, at +{} ms:", last.pid, agreed - killed);
                timeline(last, killed, killed, agreed + 300, |_| true);
            }
        });
    }
    let first_failed = survivors
        .iter()
        .flat_map(|m| m.events())
        .filter(|e| e.event == "probe_failed" && e.t >= killed)
        .map(|e| e.t)
        .min()
        .ok_or_else(|| {
            let seen: Vec<String> = survivors
                .iter()
                .flat_map(|m| {
                    m.events()
                        .into_iter()
                        .filter(|e| e.t + 2000 >= killed)
                        .map(move |e| format!("{} {} {}", m.pid, e.t, e.event))
                })
                .collect();
            format!("no PROBE failed after the kill at {killed}: {}", seen.join("; "))
        })?;
    Ok((
        Duration::from_millis(agreed.saturating_sub(first_failed)),
        Duration::from_millis(agreed.saturating_sub(killed)),
    ))
}

/// Resident memory (KiB), threads and CPU time (ms) of a process, from /proc.
fn usage(pid: u32) -> Option<(u64, u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status.lines().find_map(|l| l.strip_prefix(name))?.split_whitespace().next()?.parse().ok()
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    // utime and stime are fields 14 and 15 of /proc/PID/stat, in clock ticks (100/s).
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((field("VmRSS:")?, field("Threads:")?, ticks * 10))
}

/// A settled group of 5, idle (probing) for `idle`: per member, resident memory, threads
/// and CPU time spent.
fn idle_cost(kind: Kind, coordinator: Coordinator, idle: Duration) -> Result<(f64, f64, f64), String> {
    let gcd = Gcd::start(coordinator)?;
    let members = start_group(kind, &gcd, &identities(5, 7_000_000))?;
    settle(&members)?;
    let before: Vec<_> = members.iter().map(|m| usage(m.child.id()).unwrap_or_default()).collect();
    std::thread::sleep(idle);
    let after: Vec<_> = members.iter().map(|m| usage(m.child.id()).unwrap_or_default()).collect();
    let n = members.len() as f64;
    let rss = after.iter().map(|u| u.0 as f64).sum::<f64>() / n / 1024.0;
    let threads = after.iter().map(|u| u.1 as f64).sum::<f64>() / n;
    let cpu = after.iter().zip(&before).map(|(a, b)| a.2.saturating_sub(b.2) as f64).sum::<f64>() / n;
    Ok((rss, threads, cpu))
}

/// A settled, idle group of `n` (no failures: only the leader's check asks the GCD):
/// the requests the coordinator answered over `window`, counted from its own log.
fn gcd_load(coordinator: Coordinator, n: usize, window: Duration) -> Result<usize, String> {
    let gcd = Gcd::start(coordinator)?;
    let members = start_group(Kind::Rust, &gcd, &identities(n, 9_000_000))?;
    settle(&members)?;
    let since = now_ms();
    std::thread::sleep(window);
    let answered = gcd.requests_since(since);
    drop(members);
    Ok(answered)
}

/// The disturbances of the messages rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Disturbance {
    /// A new highest member registers.
    Join,
    /// The leader is SIGKILLed: connections to it are refused.
    Refused,
    /// The leader is SIGSTOPped: its port stays open and nothing answers.
    Silent,
}

impl Disturbance {
    const ALL: [Disturbance; 3] = [Disturbance::Join, Disturbance::Refused, Disturbance::Silent];

    fn name(self) -> &'static str {
        match self {
            Disturbance::Join => "a join (new highest)",
            Disturbance::Refused => "failover, refused (leader killed)",
            Disturbance::Silent => "failover, silent (leader stopped)",
        }
    }
}

/// What one disturbance cost a group.
#[derive(Clone, Copy, Debug)]
struct Episode {
    /// From the disturbance (a join: the newcomer's registration) until all followed the
    /// new leader, ms.
    agreed: u64,
    /// The window counted: from the disturbance until the group had been quiet for a
    /// second after agreeing, ms.
    window: u64,
    /// Members counted (the live ones).
    members: usize,
    tally: Tally,
}

/// A settled group of `n` (`n - 1` and a newcomer, for a join) is disturbed once: the
/// messages its live members send and receive, by their events, from the disturbance
/// until it agrees and has been quiet (nothing but probes) for a second.
fn disturbance(kind: Kind, coordinator: Coordinator, n: usize, what: Disturbance) -> Result<Episode, String> {
    let gcd = Gcd::start(coordinator)?;
    let size = if what == Disturbance::Join { n - 1 } else { n };
    let mut members = start_group(kind, &gcd, &identities(size, 8_500_000))?;
    settle(&members)?;
    let from = now_ms();
    let (live, leader): (&[Member], ProcessId) = match what {
        Disturbance::Join => {
            let newcomer = ProcessId::new(365, 8_500_999);
            members.push(Member::start(kind, gcd.port, newcomer).map_err(|e| e.to_string())?);
            (&members, newcomer)
        }
        Disturbance::Refused | Disturbance::Silent => {
            let (top, survivors) = members.split_last().expect("n >= 2");
            top.signal(if what == Disturbance::Refused { libc::SIGKILL } else { libc::SIGSTOP });
            (survivors, survivors.iter().map(|m| m.pid).max().expect("n >= 2"))
        }
    };
    let all: Vec<&Member> = live.iter().collect();
    let agreed = poll(SETTLE, || all_follow(&all, leader))
        .ok_or_else(|| format!("{} members never all followed {leader}", live.len()))?;
    // A join is timed from the newcomer's registration (its start-up is not the group's).
    let since = match what {
        Disturbance::Join => live.last().and_then(Member::joined).unwrap_or(from),
        _ => from,
    };
    // The episode's late messages: until nothing but probes for a second (10 s at most).
    let quiet = poll(Duration::from_secs(10), || {
        let news = live.iter().map(|m| m.lock().news).max().unwrap_or(0);
        (news.max(agreed) + 1000 < now_ms()).then_some(news.max(agreed))
    })
    .unwrap_or_else(now_ms);
    let window = from..=quiet + 1000;
    Ok(Episode {
        agreed: agreed.saturating_sub(since),
        window: window.end() - window.start(),
        members: live.len(),
        tally: Tally::of(live, &window),
    })
}

/// What the same-SU-ID clash did.
#[derive(Clone, Debug)]
struct ClashResult {
    /// Leader changes at the innocent member after the second clashing process started.
    changes: usize,
    /// ... of them in the second half of the watch.
    late_changes: usize,
    /// Clashes reported (`identity_clash` events) by the first and the second process.
    reported: (usize, usize),
    /// ELECTs the three sent in the watch.
    elects: usize,
    /// Whom each follows at the end: innocent, first, second.
    leaders: [Option<ProcessId>; 3],
}

/// Three members, two with one SU ID: an innocent member (lowest) and the first settle,
/// then a second process with the first's SU ID starts (other days, or with `same_days`
/// the very same id, listening on another port), as a student restarting with another
/// birthday while the old process still runs. Watched for `watch`.
fn clash(kind: Kind, coordinator: Coordinator, same_days: bool, watch: Duration) -> Result<ClashResult, String> {
    let gcd = Gcd::start(coordinator)?;
    let innocent = ProcessId::new(100, 4_400_001);
    let first = ProcessId::new(200, 4_400_002);
    let second = ProcessId::new(if same_days { 200 } else { 300 }, 4_400_002);
    let group = start_group(kind, &gcd, &[innocent, first])?;
    settle(&group)?;
    let from = now_ms();
    let newcomer = Member::start(kind, gcd.port, second).map_err(|e| e.to_string())?;
    std::thread::sleep(watch);
    let to = now_ms();
    let changes = |after: u64| group[0].lock().events.iter().filter(|e| e.event == "leader" && e.t >= after).count();
    let reported = |m: &Member| m.lock().events.iter().filter(|e| e.event == "identity_clash").count();
    let all = [&group[0], &group[1], &newcomer];
    Ok(ClashResult {
        changes: changes(from),
        late_changes: changes(from + (to - from) / 2),
        reported: (reported(&group[1]), reported(&newcomer)),
        elects: Tally::of(all, &(from..=to)).elect,
        leaders: all.map(|m| m.following().map(|(l, _)| l)),
    })
}

/// Busy processes that saturate the machine while they live; dropped, they are killed.
struct Load(Vec<Child>);

impl Load {
    fn start(procs: usize) -> Result<Load, String> {
        let mut load = Load(Vec::new());
        for _ in 0..procs {
            let mut busy = Command::new("python3");
            busy.args(["-c", "while True: pass"]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
            load.0.push(spawn(&mut busy).map_err(|e| format!("starting a busy process (python3): {e}"))?);
        }
        Ok(load)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.0.iter_mut().for_each(reap);
    }
}

/// CPU time (user + system, ms) of a process so far, from /proc/PID/stat.
fn cpu_ms(pid: u32) -> Option<u64> {
    usage(pid).map(|u| u.2)
}

/// Of one core, the share `members` used over `window` (100: one whole core).
fn group_cpu(members: &[Member], window: Duration) -> f64 {
    let total = || members.iter().filter_map(|m| cpu_ms(m.child.id())).sum::<u64>();
    let before = total();
    std::thread::sleep(window);
    total().saturating_sub(before) as f64 / window.as_millis().max(1) as f64 * 100.0
}

/// What the overload did.
#[derive(Clone, Copy, Debug)]
struct OverloadResult {
    /// When all survivors followed the next highest, ms after the load ended (negative:
    /// they already did while it lasted); `None` if not within a minute.
    agreed: Option<i64>,
    /// Survivors following the next highest at the end.
    following: usize,
    survivors: usize,
    /// ELECTs the survivors sent while the load lasted, and from its end until the end of
    /// the CPU window after.
    elect_during: usize,
    elect_after: usize,
    /// The group's CPU, % of one core: settled before the load, and once agreed after it.
    cpu_before: f64,
    cpu_after: f64,
}

/// A settled group of `n`; its CPU over `cpu_window`; then `procs` busy processes
/// saturate the machine for `load`, and halfway through the leader is SIGKILLed. After
/// the load: when all survivors follow the next highest (a minute at most), the ELECTs
/// sent during and after, and the group's CPU over `cpu_window` once agreed.
fn overload(
    kind: Kind,
    coordinator: Coordinator,
    n: usize,
    load: Duration,
    procs: usize,
    cpu_window: Duration,
) -> Result<OverloadResult, String> {
    let gcd = Gcd::start(coordinator)?;
    let members = start_group(kind, &gcd, &identities(n, 9_500_000))?;
    settle(&members)?;
    let cpu_before = group_cpu(&members, cpu_window);
    let (leader, survivors) = members.split_last().expect("n >= 2");
    let next = survivors.iter().map(|m| m.pid).max().expect("n >= 2");
    let busy = Load::start(procs)?;
    let load_start = now_ms();
    std::thread::sleep(load / 2);
    leader.signal(libc::SIGKILL);
    std::thread::sleep(load.saturating_sub(Duration::from_millis(now_ms() - load_start)));
    drop(busy);
    let load_end = now_ms();
    let all: Vec<&Member> = survivors.iter().collect();
    let agreed = poll(Duration::from_secs(60), || all_follow(&all, next)).map(|t| t as i64 - load_end as i64);
    let cpu_after = group_cpu(survivors, cpu_window);
    let end = now_ms();
    Ok(OverloadResult {
        agreed,
        following: survivors.iter().filter(|m| m.following().is_some_and(|(l, _)| l == next)).count(),
        survivors: survivors.len(),
        elect_during: Tally::of(survivors, &(load_start..=load_end)).elect,
        elect_after: Tally::of(survivors, &(load_end + 1..=end)).elect,
        cpu_before,
        cpu_after,
    })
}

/// What a scale run saw.
#[derive(Debug, Default)]
struct ScaleResult {
    /// Members started: fewer than asked when starting them overran its time (the
    /// machine is drowning).
    started: usize,
    /// When all members followed the highest, ms after its registration (within the watch).
    converged: Option<u64>,
    /// Members following the highest when the watch ended.
    following: usize,
    /// Members that exited by themselves.
    exited: usize,
    /// Requests the GCD answered from the first start to the end of the watch.
    requests: usize,
    /// ... of them from the last registration on.
    after_last: usize,
    /// Resident MiB per live member at the end: median and max.
    rss: (f64, f64),
    /// The most threads any member had, polled every half second.
    threads_max: u64,
    /// Where the resident memory of one member (the middle one) goes, KiB by kind:
    /// resident, and its proportional share (shared pages divided among their mappers).
    memory: Vec<(&'static str, u64, u64)>,
    /// Its threads, by name.
    threads: Vec<(String, usize)>,
    /// ELECTs sent per member started, from the first start to the end of the watch.
    elect_per_member: f64,
    /// ELECTs sent by the whole group while watched idle after the watch.
    idle_elects: usize,
}

impl ScaleResult {
    fn held(&self, n: usize) -> bool {
        self.started == n && self.converged.is_some() && self.exited == 0 && self.following == n
    }
}

/// Members join one after another 50 ms apart, each the new highest, on the serial
/// coordinator: do they all follow the last within `watch` (10 s by default) of its
/// registration, what did the GCD answer, who exited, and what does a node cost at this size?
fn scale(
    kind: Kind,
    coordinator: Coordinator,
    n: usize,
    watch: Duration,
    idle_watch: Duration,
    trace: bool,
    bar: &ProgressBar,
) -> Result<ScaleResult, String> {
    let gcd = Gcd::start(coordinator)?;
    let first = now_ms();
    let mut members = Vec::with_capacity(n);
    let mut threads_max = 0;
    let mut sampled = Instant::now();
    let mut sample = |members: &[Member], threads_max: &mut u64| {
        if sampled.elapsed() >= Duration::from_millis(500) {
            sampled = Instant::now();
            let most = members.iter().filter_map(|m| usage(m.child.id())).map(|u| u.1).max().unwrap_or(0);
            *threads_max = (*threads_max).max(most);
        }
    };
    // Starting takes n x 50 ms on schedule; a machine out of breath gets twice that and
    // 10 s more, then the group is measured as far as it got.
    let budget = STAGGER * 2 * n as u32 + Duration::from_secs(10);
    let starting = Instant::now();
    for pid in identities(n, 8_000_000) {
        if starting.elapsed() > budget {
            break;
        }
        std::thread::sleep(STAGGER);
        members.push(Member::start(kind, gcd.port, pid).map_err(|e| e.to_string())?);
        sample(&members, &mut threads_max);
    }
    let last = members.last().expect("n >= 2");
    let top = last.pid;
    // If the last never registers, the watch counts from its start.
    let joined = poll(watch, || last.joined()).unwrap_or(last.started);
    let mut converged = None;
    let all: Vec<&Member> = members.iter().collect();
    let end = joined + watch.as_millis() as u64;
    while now_ms() < end {
        if converged.is_none() {
            converged = all_follow(&all, top).map(|t| t.saturating_sub(joined));
        }
        sample(&members, &mut threads_max);
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(all);
    let following = members.iter().filter(|m| m.following().is_some_and(|(l, _)| l == top)).count();
    // The group idle: a settled one sends no ELECT (a PROBE finding the leader is all).
    let idle_end = end + idle_watch.as_millis() as u64;
    while now_ms() < idle_end {
        sample(&members, &mut threads_max);
        std::thread::sleep(Duration::from_millis(50).min(Duration::from_millis(idle_end.saturating_sub(now_ms()))));
    }
    let exited = members.iter_mut().map(|m| m.exited()).filter(|e| *e).count();
    let mut rss: Vec<u64> = members.iter().filter_map(|m| usage(m.child.id())).map(|u| u.0).collect();
    rss.sort_unstable();
    let mib = |k: u64| k as f64 / 1024.0;
    let middle = &members[members.len() / 2];
    let result = ScaleResult {
        started: members.len(),
        converged,
        following,
        exited,
        requests: gcd.requests_since(first),
        after_last: gcd.requests_since(joined),
        rss: (rss.get(rss.len() / 2).map_or(0.0, |k| mib(*k)), rss.last().map_or(0.0, |k| mib(*k))),
        threads_max,
        memory: memory_map(middle.child.id()).unwrap_or_default(),
        threads: thread_names(middle.child.id()),
        elect_per_member: Tally::of(&members, &(first..=end)).elect as f64 / members.len() as f64,
        idle_elects: Tally::of(&members, &(end + 1..=idle_end)).elect,
    };
    if trace {
        bar.suspend(|| trace_scale(kind, &members, &gcd, first, joined..=end, &result));
    }
    Ok(result)
}

/// Where the time of a scale run went, on stderr: registrations, the GCD's requests over
/// time, what every member did after the last join, and the timelines of the last
/// member and of the member that followed it last.
fn trace_scale(
    kind: Kind,
    members: &[Member],
    gcd: &Gcd,
    first: u64,
    watched: std::ops::RangeInclusive<u64>,
    r: &ScaleResult,
) {
    let (joined, end) = (*watched.start(), *watched.end());
    let n = members.len();
    let top = members.last().map(|m| m.pid);
    eprintln!("\n== trace: {}, scale N={n}: times after the last registration, ms", kind.name());
    let mut waits: Vec<u64> = members.iter().filter_map(|m| m.joined().map(|j| j.saturating_sub(m.started))).collect();
    waits.sort_unstable();
    if let (Some(median), Some(max)) = (waits.get(waits.len() / 2), waits.last()) {
        eprintln!(
            "registration (start -> registered, the process's start-up included): median {median} ms, \
             max {max} ms; {} of {n} registered",
            waits.len()
        );
    }
    // Requests per second of the run, from the first start; the last join's second marked.
    let times = gcd.request_times();
    let seconds = end.saturating_sub(first) / 1000 + 1;
    let per_second: Vec<String> = (0..seconds)
        .map(|s| {
            let k = times.iter().filter(|t| (**t).saturating_sub(first) / 1000 == s).count();
            if first + s * 1000 <= joined && joined < first + (s + 1) * 1000 {
                format!("[{k}]")
            } else {
                k.to_string()
            }
        })
        .collect();
    eprintln!(
        "GCD requests per second from the first start ([the last join's second]): {}; {} in all, {} after the last join",
        per_second.join(" "),
        r.requests,
        r.after_last
    );
    eprintln!("events of all members after the last join, by kind: {}", census(members, joined..=end));
    let mut rounds: Vec<(u64, &Member)> =
        members.iter().filter_map(|m| m.following().filter(|(l, _)| Some(*l) == top).map(|(_, t)| (t, m))).collect();
    rounds.sort_by_key(|(t, _)| *t);
    if let Some(last) = members.last() {
        eprintln!("the last member {}:", last.pid);
        timeline(last, joined, last.started, end, |e| !e.event.starts_with("probe_ok"));
    }
    if let Some((t, slowest)) = rounds.last() {
        eprintln!("the last to follow it, {}, at +{} ms:", slowest.pid, t.saturating_sub(joined));
        timeline(slowest, joined, joined.saturating_sub(2000), end, |e| !e.event.starts_with("probe_ok"));
    }
    let stragglers: Vec<String> = members
        .iter()
        .filter(|m| m.following().is_none_or(|(l, _)| Some(l) != top))
        .take(5)
        .map(|m| format!("{} follows {:?}", m.pid, m.following().map(|(l, _)| l)))
        .collect();
    if !stragglers.is_empty() {
        eprintln!("not following the highest at the end (first 5): {}", stragglers.join("; "));
    }
}

/// How many events of each kind `members` printed within `window`, busiest first.
fn census(members: &[Member], window: std::ops::RangeInclusive<u64>) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for m in members {
        for e in m.lock().events.iter().filter(|e| window.contains(&e.t)) {
            *counts.entry(e.event.clone()).or_default() += 1;
        }
    }
    let mut counts: Vec<_> = counts.into_iter().collect();
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    counts.iter().map(|(e, k)| format!("{e} {k}")).collect::<Vec<_>>().join(", ")
}

/// One member's events from `from` to `to` (those `show` keeps), times relative to `zero`.
fn timeline(m: &Member, zero: u64, from: u64, to: u64, show: impl Fn(&Ev) -> bool) {
    let events = m.events();
    let shown: Vec<&Ev> = events.iter().filter(|e| (from..=to).contains(&e.t) && show(e)).collect();
    for e in shown.iter().take(40) {
        // The line without the time and the node, which the columns already say.
        let rest = e.raw.split_once(r#""event":"#).map_or(e.raw.as_str(), |(_, r)| r);
        eprintln!("  {:>+7} ms  {}", e.t as i64 - zero as i64, rest.trim_end_matches('}'));
    }
    if shown.len() > 40 {
        eprintln!("  ... and {} more", shown.len() - 40);
    }
}

/// Resident memory of a process by what it holds, in KiB, from /proc/PID/smaps: its own
/// binary, shared libraries, the brk heap, thread stacks (an anonymous mapping right
/// after its guard page), the main thread's stack, and other anonymous memory (malloc's
/// arenas of the other threads, other mmaps). Each as (resident, proportional): the
/// pages of a binary that 200 processes run are resident in each but cost 1/200 each.
pub(crate) fn memory_map(pid: u32) -> Option<Vec<(&'static str, u64, u64)>> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let kinds = ["binary", "shared libraries", "heap (brk)", "thread stacks", "main stack", "other anonymous"];
    let (mut rss, mut pss) = ([0u64; 6], [0u64; 6]);
    let mut current: Option<usize> = None;
    // The previous mapping: its end, and whether it was an anonymous inaccessible page
    // (a guard).
    let mut previous_guard_end: Option<u64> = None;
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let is_header =
            fields.first().is_some_and(|f| f.contains('-') && f.chars().all(|c| c.is_ascii_hexdigit() || c == '-'));
        if is_header {
            let (start, end) = fields[0].split_once('-')?;
            let (start, end) = (u64::from_str_radix(start, 16).ok()?, u64::from_str_radix(end, 16).ok()?);
            let perms = fields.get(1).copied().unwrap_or("");
            let path = if fields.len() > 5 { fields[5..].join(" ") } else { String::new() };
            current = Some(match path.as_str() {
                "[heap]" => 2,
                "[stack]" => 4,
                "" if previous_guard_end == Some(start) => 3,
                "" => 5,
                p if p.starts_with('[') => 5,
                p if Path::new(p) == exe => 0,
                _ => 1,
            });
            previous_guard_end =
                (path.is_empty() && perms.starts_with("---") && end - start <= 64 * 1024).then_some(end);
        } else if let (Some(i), Some(&field)) = (current, fields.first()) {
            let kib = fields.get(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            match field {
                "Rss:" => rss[i] += kib,
                "Pss:" => pss[i] += kib,
                _ => {}
            }
        }
    }
    Some((0..kinds.len()).map(|i| (kinds[i], rss[i], pss[i])).collect())
}

/// A process's threads by name (digits and a trailing dash dropped, so pools count once).
fn thread_names(pid: u32) -> Vec<(String, usize)> {
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(comm) = std::fs::read_to_string(task.path().join("comm")) {
                let name = comm.trim().trim_end_matches(|c: char| c.is_ascii_digit() || c == '-').to_string();
                *names.entry(name).or_default() += 1;
            }
        }
    }
    names.into_iter().collect()
}

/// The physical minimum: connect, send one PROBE pickle, read the GOT_IT, on loopback.
fn floor(reps: usize) -> Result<Vec<Duration>, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let reply = encode(&Value::str("GOT_IT"), Style::Compact);
    std::thread::spawn(move || {
        for mut s in listener.incoming().take(reps).flatten() {
            if read_pickle(&mut s, 1024).is_ok() {
                let _ = s.write_all(&reply);
            }
        }
    });
    let probe = encode_message(&Message::Probe);
    (0..reps)
        .map(|_| {
            let started = Instant::now();
            let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
            s.write_all(&probe).map_err(|e| e.to_string())?;
            read_pickle(&mut s, 1024).map_err(|e| e.to_string())?;
            Ok(started.elapsed())
        })
        .collect()
}

/// Median, min and max, as "12.3 (10.1-15.0)" in milliseconds.
fn spread(mut d: Vec<Duration>) -> (Option<f64>, String) {
    if d.is_empty() {
        return (None, "-".into());
    }
    d.sort();
    let ms = |x: Duration| x.as_secs_f64() * 1000.0;
    let median = ms(d[d.len() / 2]);
    (Some(median), format!("{median:.1} ({:.1}-{:.1})", ms(d[0]), ms(d[d.len() - 1])))
}

fn ratio(ours: Option<f64>, theirs: Option<f64>) -> String {
    match (ours, theirs) {
        (Some(o), Some(t)) if o > 0.0 => format!("{:.1}x", t / o),
        _ => "-".into(),
    }
}

/// Runs every measurement and writes the tables (Markdown, for BENCHMARKS.md) to `out`,
/// with a progress bar on stderr if `progress`.
pub fn run(config: BenchConfig, out: &mut dyn Write, progress: bool) -> Result<(), String> {
    let mut kinds = vec![Kind::Rust];
    if let Some(path) = &config.baseline {
        check_baseline(path)?;
        kinds.push(Kind::Baseline(Box::leak(path.clone().into_boxed_path())));
    }
    if config.python {
        kinds.push(Kind::Python);
    }
    let bar = if progress { progress_bar(&config, kinds.len()) } else { ProgressBar::hidden() };
    // Table lines go to `out` between redraws of the bar (on stderr).
    let out = RefCell::new(out);
    macro_rules! out {
        ($($arg:tt)*) => { bar.suspend(|| { let _ = writeln!(out.borrow_mut(), $($arg)*); }) };
    }
    if let Some(path) = &config.baseline {
        out!("baseline: {}\n", path.display());
    }
    out!("coordinator: {}\n", config.gcd.name());
    let mut errors = Vec::new();
    if config.runs(Row::Timing) {
        timing_table(&config, &kinds, &bar, &out, &mut errors)?;
    }
    if config.runs(Row::Idle) {
        out!(
            "\n| idle cost per node (group of 5, {:.0} s) | resident MiB | threads | CPU ms |",
            config.idle.as_secs_f64()
        );
        out!("|---|---|---|---|");
        for &kind in &kinds {
            bar.set_message(format!(
                "idle cost, {}: watching 5 nodes for {:.0} s",
                kind.name(),
                config.idle.as_secs_f64()
            ));
            let result = idle_cost(kind, config.gcd, config.idle);
            bar.inc(1);
            match result {
                Ok((rss, threads, cpu)) => out!("| {} | {rss:.1} | {threads:.1} | {cpu:.0} |", kind.name()),
                Err(e) => errors.push(format!("idle, {}: {e}", kind.name())),
            }
        }
    }
    let held = if config.runs(Row::Scale) { scale_table(&config, &kinds, &bar, &out) } else { None };
    if config.runs(Row::GcdLoad) {
        // The GCD's load from the leader's check must not grow with the group: the smallest
        // join size against the largest group that held.
        let window = config.idle;
        out!(
            "\n| GCD load of a settled idle group (the leader's check, 10-20 s) | N | requests in {:.0} s | per second |",
            window.as_secs_f64()
        );
        out!("|---|---|---|---|");
        for n in gcd_load_sizes(&config, held) {
            bar.set_message(format!("GCD load, bully-node: a settled group of {n} for {:.0} s", window.as_secs_f64()));
            let result = gcd_load(config.gcd, n, window);
            bar.inc(1);
            match result {
                Ok(k) => out!("| bully-node | {n} | {k} | {:.3} |", k as f64 / window.as_secs_f64()),
                Err(e) => out!("| bully-node | {n} | did not: {e} | - |"),
            }
        }
    }
    // The rows of issue 20: bully-node and the baseline side by side (the Python peer
    // prints no events of what it decides).
    let ours: Vec<Kind> = kinds.iter().copied().filter(|k| *k != Kind::Python).collect();
    if config.runs(Row::Messages) {
        messages_table(&config, &ours, &bar, &out, &mut errors);
    }
    if config.runs(Row::Clash) {
        clash_table(&config, &ours, &bar, &out, &mut errors);
    }
    if config.runs(Row::Overload) {
        overload_table(&config, &ours, &bar, &out, &mut errors);
    }
    if !errors.is_empty() {
        out!("\nmeasurements that did not complete:");
        errors.iter().for_each(|e| out!("- {e}"));
    }
    bar.finish_and_clear();
    let _ = out.borrow_mut().flush();
    Ok(())
}

/// The sizes of the GCD-load row: the smallest join size, and the largest scale size
/// that held (or the largest scale size, when the scale rows did not run).
fn gcd_load_sizes(config: &BenchConfig, held: Option<usize>) -> Vec<usize> {
    let largest = if config.runs(Row::Scale) { held } else { config.scale.iter().max().copied() };
    let mut sizes: Vec<usize> = config.sizes.iter().min().into_iter().chain(largest.as_ref()).copied().collect();
    sizes.dedup();
    sizes
}

/// The floor, then join and failover times at every size, the F/J table and the
/// traffic of one join.
fn timing_table(
    config: &BenchConfig,
    kinds: &[Kind],
    bar: &ProgressBar,
    out: &RefCell<&mut dyn Write>,
    errors: &mut Vec<String>,
) -> Result<(), String> {
    macro_rules! out {
        ($($arg:tt)*) => { bar.suspend(|| { let _ = writeln!(out.borrow_mut(), $($arg)*); }) };
    }
    bar.set_message("floor: 200 PROBE round trips on loopback");
    let floor_times = floor(200)?;
    bar.inc(1);
    let (floor_median, floor_text) = spread(floor_times);
    let floor_ms = floor_median.unwrap_or(1.0);
    out!("floor (connect + one PROBE pickle + GOT_IT on loopback, 200 times): {floor_text} ms\n");
    let mut header = "| measurement | N | bully-node ms |".to_string();
    for kind in &kinds[1..] {
        header += &format!(" {0} ms | {0} / bully-node |", kind.name());
    }
    out!("{header} bully-node / floor |");
    out!("|---|---|{}---|", "---|".repeat(1 + 2 * (kinds.len() - 1)));
    // Medians by (measurement, N, kind), for the F/J table.
    let mut medians: BTreeMap<(&str, usize, usize), f64> = BTreeMap::new();
    let mut row = |what: &str, key: Option<&'static str>, n: usize, results: Vec<Vec<Duration>>| {
        let cells: Vec<(Option<f64>, String)> = results.into_iter().map(spread).collect();
        let ours = cells[0].0;
        let mut line = format!("| {what} | {n} | {} |", cells[0].1);
        for (i, cell) in cells.iter().enumerate() {
            if let (Some(key), Some(m)) = (key, cell.0) {
                medians.insert((key, n, i), m);
            }
            if i > 0 {
                line += &format!(" {} | {} |", cell.1, ratio(ours, cell.0));
            }
        }
        let multiple = ours.map_or("-".into(), |o| format!("{:.0}x", o / floor_ms));
        out!("{line} {multiple} |");
    };
    let mut traffic_rows = Vec::new();
    for &n in &config.sizes {
        let mut per_kind = Vec::new();
        for &kind in kinds {
            let mut times = Vec::new();
            for rep in 0..config.reps {
                bar.set_message(format!("join, {}, N={n}, run {} of {}", kind.name(), rep + 1, config.reps));
                let result = join(kind, config.gcd, n, rep);
                bar.inc(1);
                match result {
                    Ok((t, traffic)) => {
                        times.push(t);
                        if rep == 0 {
                            traffic_rows.push((n, kind, traffic));
                        }
                    }
                    Err(e) => errors.push(format!("join, {}, N={n}: {e}", kind.name())),
                }
            }
            per_kind.push(times);
        }
        row("join: new highest registers -> all follow it", Some("join"), n, per_kind);
    }
    for (signal, what) in [((libc::SIGKILL, "-KILL"), "refused"), ((libc::SIGSTOP, "-STOP"), "silent")] {
        for &n in &config.sizes {
            let (mut from_probe, mut from_kill) = (Vec::new(), Vec::new());
            for &kind in kinds {
                let (mut a, mut b) = (Vec::new(), Vec::new());
                for rep in 0..config.reps {
                    bar.set_message(format!(
                        "failover ({what}), {}, N={n}, run {} of {}",
                        kind.name(),
                        rep + 1,
                        config.reps
                    ));
                    let trace = config.trace && rep == 0 && Some(&n) == config.sizes.iter().max();
                    let result = failover(kind, config.gcd, n, rep, signal, bar, trace);
                    bar.inc(1);
                    match result {
                        Ok((x, y)) => {
                            a.push(x);
                            b.push(y);
                        }
                        Err(e) => errors.push(format!("failover {what}, {}, N={n}: {e}", kind.name())),
                    }
                }
                from_probe.push(a);
                from_kill.push(b);
            }
            row(&format!("failover, {what}: first failed PROBE -> all follow next"), Some(what), n, from_probe);
            row(&format!("failover, {what}: kill -> all follow next"), None, n, from_kill);
        }
    }
    out!("\n| F/J: failover from the first failed PROBE / one join fan-out (medians) | N | join ms | refused ms | refused F/J | silent ms | silent F/J |");
    out!("|---|---|---|---|---|---|---|");
    for &n in &config.sizes {
        for (i, kind) in kinds.iter().enumerate() {
            let get = |key: &str| medians.get(&(key, n, i)).copied();
            // One decimal, as the F/J ratio has: whole ms made small joins read "2" or "0".
            let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
            let fj = |f: Option<f64>| match (f, get("join")) {
                (Some(f), Some(j)) if j > 0.0 => format!("{:.1}", f / j),
                _ => "-".into(),
            };
            let (refused, silent) = (get("refused"), get("silent"));
            out!(
                "| {} | {n} | {} | {} | {} | {} | {} |",
                kind.name(),
                ms(get("join")),
                ms(refused),
                fj(refused),
                ms(silent),
                fj(silent)
            );
        }
    }
    out!("\n| traffic of one join | N | implementation | messages | bytes | bully worst case (n^2 - 1 messages) |");
    out!("|---|---|---|---|---|---|");
    for (n, kind, t) in traffic_rows {
        out!("| join | {n} | {} | {} | {} | {} |", kind.name(), t.messages, t.bytes, n * n - 1);
    }
    Ok(())
}

/// "1.5x": `theirs` over `ours`, where both are measured and `ours` is above zero.
fn times(ours: Option<f64>, theirs: Option<f64>) -> String {
    match (ours, theirs) {
        (Some(o), Some(t)) if o > 0.0 && t >= 0.0 => format!("{:.1}x", t / o),
        (Some(o), Some(t)) if o == 0.0 && t == 0.0 => "=".into(),
        _ => "-".into(),
    }
}

/// The cells of a "baseline / bully-node" row: column by column, when both were measured.
fn ratio_cells(ours: &[Option<f64>], theirs: &[Option<f64>]) -> String {
    ours.iter().zip(theirs).map(|(o, t)| times(*o, *t)).collect::<Vec<_>>().join(" | ")
}

/// For every measurement of the issue-20 rows: the numbers of each kind (`None`: not
/// measured), whose first is bully-node's; with a baseline, a row of ratios follows.
fn ratio_row(label: &str, per_kind: &[(Kind, Option<Vec<Option<f64>>>)]) -> Option<String> {
    let ours = per_kind.iter().find(|(k, _)| *k == Kind::Rust)?.1.as_ref()?;
    let theirs = per_kind.iter().find(|(k, _)| matches!(k, Kind::Baseline(_)))?.1.as_ref()?;
    Some(format!("{label} baseline / bully-node | {} |", ratio_cells(ours, theirs)))
}

/// Messages per disturbance: for each size and disturbance, each kind's sends and
/// receptions per live member, and the ratios.
fn messages_table(
    config: &BenchConfig,
    kinds: &[Kind],
    bar: &ProgressBar,
    out: &RefCell<&mut dyn Write>,
    errors: &mut Vec<String>,
) {
    macro_rules! out {
        ($($arg:tt)*) => { bar.suspend(|| { let _ = writeln!(out.borrow_mut(), $($arg)*); }) };
    }
    out!(
        "\n| messages per disturbance, per live member (from the members' events) | N | kind | all follow, ms | \
         window, s | ELECT sent | I_AM_LEADER sent | PROBE sent | ELECT received | I_AM_LEADER received | elections started |"
    );
    out!("|---|---|---|---|---|---|---|---|---|---|---|");
    for &n in &config.messages_at {
        for what in Disturbance::ALL {
            let mut per_kind = Vec::new();
            for &kind in kinds {
                bar.set_message(format!("messages, {}, {}, N={n}", what.name(), kind.name()));
                let result = disturbance(kind, config.gcd, n, what);
                bar.inc(1);
                match result {
                    Ok(ep) => {
                        let per = |k: usize| k as f64 / ep.members.max(1) as f64;
                        let t = ep.tally;
                        let cells = vec![
                            Some(ep.agreed as f64),
                            Some(ep.window as f64 / 1000.0),
                            Some(per(t.elect)),
                            Some(per(t.leader)),
                            Some(per(t.probe)),
                            Some(per(t.elect_in)),
                            Some(per(t.leader_in)),
                            Some(per(t.elections)),
                        ];
                        out!(
                            "| {} | {n} | {} | {} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                            what.name(),
                            kind.name(),
                            ep.agreed,
                            ep.window as f64 / 1000.0,
                            per(t.elect),
                            per(t.leader),
                            per(t.probe),
                            per(t.elect_in),
                            per(t.leader_in),
                            per(t.elections)
                        );
                        per_kind.push((kind, Some(cells)));
                    }
                    Err(e) => {
                        out!("| {} | {n} | {} | did not: {e} | - | - | - | - | - | - | - |", what.name(), kind.name());
                        errors.push(format!("messages, {}, {}, N={n}: {e}", what.name(), kind.name()));
                        per_kind.push((kind, None));
                    }
                }
            }
            if let Some(line) = ratio_row(&format!("| {} | {n} |", what.name()), &per_kind) {
                out!("{line}");
            }
        }
    }
}

/// The same-SU-ID clash, both variants, each kind, and the ratios.
fn clash_table(
    config: &BenchConfig,
    kinds: &[Kind],
    bar: &ProgressBar,
    out: &RefCell<&mut dyn Write>,
    errors: &mut Vec<String>,
) {
    macro_rules! out {
        ($($arg:tt)*) => { bar.suspend(|| { let _ = writeln!(out.borrow_mut(), $($arg)*); }) };
    }
    let watch = config.clash_watch.as_secs_f64();
    out!(
        "\n| same-SU-ID clash: (100, 4400001), (200, 4400002), then a second 4400002; watched {watch:.0} s | kind | \
         leader changes at the innocent member | in the last {:.0} s | clash reported by the first, the second | \
         ELECTs sent by the three | following at the end: innocent, first, second |",
        watch / 2.0
    );
    out!("|---|---|---|---|---|---|---|");
    for (same_days, variant) in [(false, "A: other days (300)"), (true, "B: same days, another port")] {
        let mut per_kind = Vec::new();
        for &kind in kinds {
            bar.set_message(format!("clash {variant}, {}: watching for {watch:.0} s", kind.name()));
            let result = clash(kind, config.gcd, same_days, config.clash_watch);
            bar.inc(1);
            match result {
                Ok(r) => {
                    let leaders: Vec<String> =
                        r.leaders.iter().map(|l| l.map_or("nobody".into(), |p| p.to_string())).collect();
                    out!(
                        "| {variant} | {} | {} | {} | {}, {} | {} | {} |",
                        kind.name(),
                        r.changes,
                        r.late_changes,
                        r.reported.0,
                        r.reported.1,
                        r.elects,
                        leaders.join("; ")
                    );
                    let cells = vec![Some(r.changes as f64), Some(r.late_changes as f64), None, Some(r.elects as f64)];
                    per_kind.push((kind, Some(cells)));
                }
                Err(e) => {
                    out!("| {variant} | {} | did not: {e} | - | - | - | - |", kind.name());
                    errors.push(format!("clash {variant}, {}: {e}", kind.name()));
                    per_kind.push((kind, None));
                }
            }
        }
        if let Some(line) = ratio_row(&format!("| {variant} |"), &per_kind) {
            out!("{line} |");
        }
    }
}

/// The overload rows: each size, each kind, and the ratios.
fn overload_table(
    config: &BenchConfig,
    kinds: &[Kind],
    bar: &ProgressBar,
    out: &RefCell<&mut dyn Write>,
    errors: &mut Vec<String>,
) {
    macro_rules! out {
        ($($arg:tt)*) => { bar.suspend(|| { let _ = writeln!(out.borrow_mut(), $($arg)*); }) };
    }
    let (load, cpu) = (config.load.as_secs_f64(), config.cpu_window.as_secs_f64());
    out!(
        "\n| overload: {} for {load:.0} s, the leader SIGKILLed {:.1} s in | N | kind | all follow the \
         next highest, ms after the load ends (negative: agreed during it) | following at the end | ELECTs sent during the load | after it | \
         group CPU settled before, % of a core | in the {cpu:.0} s once agreed after |",
        if config.load_procs == 1 {
            "1 busy process".to_string()
        } else {
            format!("{} busy processes", config.load_procs)
        },
        load / 2.0
    );
    out!("|---|---|---|---|---|---|---|---|---|");
    for &n in &config.overload_at {
        let mut per_kind = Vec::new();
        for &kind in kinds {
            bar.set_message(format!("overload, {}, N={n}", kind.name()));
            let result = overload(kind, config.gcd, n, config.load, config.load_procs, config.cpu_window);
            bar.inc(1);
            match result {
                Ok(r) => {
                    out!(
                        "| overload | {n} | {} | {} | {} of {} | {} | {} | {:.2} | {:.2} |",
                        kind.name(),
                        r.agreed.map_or("did not within 60 s".into(), |t| t.to_string()),
                        r.following,
                        r.survivors,
                        r.elect_during,
                        r.elect_after,
                        r.cpu_before,
                        r.cpu_after
                    );
                    let cells = vec![
                        r.agreed.map(|t| t as f64),
                        None,
                        Some(r.elect_during as f64),
                        Some(r.elect_after as f64),
                        Some(r.cpu_before),
                        Some(r.cpu_after),
                    ];
                    per_kind.push((kind, Some(cells)));
                }
                Err(e) => {
                    out!("| overload | {n} | {} | did not: {e} | - | - | - | - | - |", kind.name());
                    errors.push(format!("overload, {}, N={n}: {e}", kind.name()));
                    per_kind.push((kind, None));
                }
            }
        }
        if let Some(line) = ratio_row(&format!("| overload | {n} |"), &per_kind) {
            out!("{line}");
        }
    }
}

/// The scale rows (size by size, every kind at a size before the next size, so that a
/// before/after pair is measured minutes apart, not tens of minutes) and the memory of
/// one node at the largest size. Returns the largest size at which bully-node held.
fn scale_table(
    config: &BenchConfig,
    kinds: &[Kind],
    bar: &ProgressBar,
    out: &RefCell<&mut dyn Write>,
) -> Option<usize> {
    macro_rules! out {
        ($($arg:tt)*) => { bar.suspend(|| { let _ = writeln!(out.borrow_mut(), $($arg)*); }) };
    }
    out!(
        "\n| scale on {}: joins 50 ms apart, each the new highest | N | all follow the highest, ms after the \
         last join ({w} s at most) | following it after {w} s | exited | GCD requests | per member started | after the last join | \
         MiB per node, median | max | threads per node, max | ELECTs sent per member | ELECTs sent in the {i} s idle after |",
        config.gcd.name(),
        w = config.watch.as_secs_f64(),
        i = config.idle_watch.as_secs_f64()
    );
    out!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut stopped = vec![false; kinds.len()];
    let mut held = None;
    let mut memory: Vec<(Kind, usize, ScaleResult)> = Vec::new();
    for (step, &n) in config.scale.iter().enumerate() {
        if stopped[0] {
            // bully-node did not hold at a smaller size: larger ones are skipped.
            bar.inc((kinds.len() * (config.scale.len() - step)) as u64);
            break;
        }
        for (i, &kind) in kinds.iter().enumerate() {
            if stopped[i] {
                bar.inc(1);
                continue;
            }
            bar.set_message(format!("scale, {}: N={n}", kind.name()));
            let result = scale(kind, config.gcd, n, config.watch, config.idle_watch, config.trace, bar);
            bar.inc(1);
            match result {
                Ok(r) => {
                    let converged = match r.converged {
                        _ if r.started < n => format!("did not: only {} started in time", r.started),
                        Some(t) => t.to_string(),
                        None => "did not".into(),
                    };
                    out!(
                        "| {} | {n} | {converged} | {} of {n} | {} | {} | {:.1} | {} | {:.1} | {:.1} | {} | {:.1} | {} |",
                        kind.name(),
                        r.following,
                        r.exited,
                        r.requests,
                        r.requests as f64 / r.started.max(1) as f64,
                        r.after_last,
                        r.rss.0,
                        r.rss.1,
                        r.threads_max,
                        r.elect_per_member,
                        r.idle_elects
                    );
                    let ok = r.held(n);
                    if i == 0 && ok {
                        held = Some(n);
                    }
                    // The baseline is measured wherever bully-node is; the others stop.
                    stopped[i] = !ok && !matches!(kind, Kind::Baseline(_));
                    memory.retain(|(k, _, _)| *k != kind);
                    memory.push((kind, n, r));
                }
                Err(e) => {
                    out!("| {} | {n} | did not: {e} | - | - | - | - | - | - | - | - | - | - |", kind.name());
                    stopped[i] = !matches!(kind, Kind::Baseline(_));
                }
            }
        }
    }
    if !memory.is_empty() {
        let mut header =
            "\n| resident KiB (proportional share) of one node, the middle member, at the largest size run |"
                .to_string();
        let mut rule = "|---|".to_string();
        for (kind, n, _) in &memory {
            header += &format!(" {}, N={n} |", kind.name());
            rule += "---|";
        }
        out!("{header}");
        out!("{rule}");
        let kinds_of_memory: Vec<&str> = memory[0].2.memory.iter().map(|(k, _, _)| *k).collect();
        for what in kinds_of_memory {
            let cells: Vec<String> = memory
                .iter()
                .map(|(_, _, r)| {
                    r.memory.iter().find(|(k, _, _)| *k == what).map_or("-".into(), |(_, v, p)| format!("{v} ({p})"))
                })
                .collect();
            out!("| {what} | {} |", cells.join(" | "));
        }
        let totals: Vec<String> = memory
            .iter()
            .map(|(_, _, r)| {
                let sum = |f: fn(&(&str, u64, u64)) -> u64| r.memory.iter().map(f).sum::<u64>();
                format!("{} ({})", sum(|m| m.1), sum(|m| m.2))
            })
            .collect();
        out!("| total | {} |", totals.join(" | "));
        let threads: Vec<String> = memory
            .iter()
            .map(|(_, _, r)| r.threads.iter().map(|(name, k)| format!("{name} {k}")).collect::<Vec<_>>().join(", "))
            .collect();
        out!("| threads by name | {} |", threads.join(" | "));
    }
    held
}

/// The bar on stderr: what runs now, how many measurements of how many are done, time
/// so far and an estimate of what is left. Hidden when stderr is not a terminal.
fn progress_bar(config: &BenchConfig, kinds: usize) -> ProgressBar {
    // bully-node and the baseline, without the Python peer.
    let ours = if config.python { kinds - 1 } else { kinds };
    let rows = [
        (Row::Timing, 1 + 3 * config.sizes.len() * kinds * config.reps), // the floor, join, failovers
        (Row::Idle, kinds),
        (Row::Scale, kinds * config.scale.len()),
        (Row::GcdLoad, gcd_load_sizes(config, config.scale.iter().max().copied()).len()),
        (Row::Messages, ours * Disturbance::ALL.len() * config.messages_at.len()),
        (Row::Clash, ours * 2),
        (Row::Overload, ours * config.overload_at.len()),
    ];
    let steps: usize = rows.iter().filter(|(row, _)| config.runs(*row)).map(|(_, k)| k).sum();
    let bar = ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::stderr());
    let style =
        ProgressStyle::with_template("{spinner} {elapsed:>4} [{bar:24}] {pos}/{len} (about {eta} left) {wide_msg}")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    // Single measurements take many seconds: the spinner and clock show it is alive.
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}
