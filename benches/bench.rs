//! `cargo bench --bench bench [-- --sizes 3 --reps 1 ...]`: how fast a group decides,
//! what a node costs, and how far it scales, for bully-node and, side by side under the
//! same schedule, for the Python reference peer of the test suite
//! (tests/fixtures/bully_peer.py). Every member is a real process on 127.0.0.1 (the
//! `bully-node` binary cargo builds for this target) registered with that binary's own
//! coordinator; times come from the members' own JSON events (wall-clock milliseconds),
//! so both kinds are measured the same way. The floor is a bare connect, one pickle and
//! its reply. Outside the library and the release binary: it drives them from outside,
//! and it points into the source tree (the Python peer). tests/bench_smoke.rs includes
//! this file to run it small.

use bully_node::wire::{encode, read_pickle, Style, Value};
use bully_node::{encode_message, Addr, Members, Message, ProcessId};
use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::cell::RefCell;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Measure bully-node against the Python reference peer: how fast groups of each decide,
/// what a node costs, and how far a group scales (real processes on 127.0.0.1).
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

    /// Group sizes tried for the scale measurement, in order, until one fails
    #[arg(long, value_delimiter = ',', default_value = "50,100,150,200")]
    scale: Vec<usize>,

    /// Measure bully-node only (the Python peer needs python3)
    #[arg(long)]
    no_python: bool,
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
    let config = BenchConfig {
        sizes: args.sizes.into_iter().filter(|n| *n >= 2).collect(),
        reps: args.reps.max(1),
        idle: args.idle,
        scale: args.scale,
        python: !args.no_python,
    };
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
    pub python: bool,
}

const PYTHON_PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bully_peer.py");
/// The binary cargo built for this target: members and coordinators run it.
const BULLY_NODE: &str = env!("CARGO_BIN_EXE_bully-node");

/// How long a group may take to settle before a measurement counts as "did not".
const SETTLE: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Rust,
    Python,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Rust => "bully-node",
            Kind::Python => "Python peer",
        }
    }
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
    })
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
}

impl Member {
    fn start(kind: Kind, gcd_port: u16, pid: ProcessId) -> std::io::Result<Member> {
        let gcd = format!("127.0.0.1:{gcd_port}");
        let (days, su) = (pid.days.to_string(), pid.su_id.to_string());
        let mut cmd = match kind {
            Kind::Rust => {
                let mut c = Command::new(BULLY_NODE);
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
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
        let log = Arc::new(Mutex::new(Log::default()));
        let sink = Arc::clone(&log);
        let out = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
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
        Ok(Member { pid, child, log })
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

    fn signal(&self, sig: libc::c_int) {
        let Ok(pid) = libc::pid_t::try_from(self.child.id()) else { return };
        // SAFETY: kill(2) takes two integers and touches no memory of ours. The pid is our
        // own child's, not yet waited for, so it still names that process and no other.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A coordinator process on a free port.
struct Gcd {
    child: Child,
    port: u16,
}

impl Gcd {
    fn start() -> std::io::Result<Gcd> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(BULLY_NODE)
            .args(["gcd", "--listen", &format!("127.0.0.1:{port}"), "-q"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(std::io::Error::other("the coordinator did not start"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Gcd { child, port })
    }
}

impl Drop for Gcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
fn join(kind: Kind, n: usize, rep: usize) -> Result<(Duration, Traffic), String> {
    let gcd = Gcd::start().map_err(|e| e.to_string())?;
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
            match (kind, e.event.as_str()) {
                (Kind::Rust, "election_started" | "election_widened") => {
                    traffic.messages += e.asking;
                    traffic.bytes += e.asking * elect_bytes;
                }
                (Kind::Rust, "got_it") => {
                    traffic.messages += 1;
                    traffic.bytes += got_it_bytes;
                }
                (Kind::Rust, "won") => {
                    traffic.messages += e.announcing;
                    traffic.bytes += e.announcing * leader_bytes;
                }
                (Kind::Rust, "announced_to") => {
                    traffic.messages += e.asking;
                    traffic.bytes += e.asking * leader_bytes;
                }
                (Kind::Python, "sent") if e.name != "PROBE" => {
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
    n: usize,
    rep: usize,
    (signum, signal): (libc::c_int, &str),
    bar: &ProgressBar,
) -> Result<(Duration, Duration), String> {
    let gcd = Gcd::start().map_err(|e| e.to_string())?;
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
    if std::env::var_os("BENCH_TRACE").is_some() {
        bar.suspend(|| {
            // The survivor that switched last, and what it went through after the kill.
            if let Some(new) = survivors.iter().find(|m| m.pid == next) {
                eprintln!("{} {signal}: the new leader {next}:", kind.name());
                for e in new
                    .events()
                    .iter()
                    .filter(|e| e.t >= killed && !e.event.starts_with("probe_ok") && e.event != "elect_received")
                {
                    eprintln!("  +{:>5} ms {:<22} leader {:?}", e.t - killed, e.event, e.leader);
                }
            }
            if let Some(last) = survivors.iter().max_by_key(|m| m.following().map_or(0, |(_, t)| t)) {
                eprintln!("{} {signal}: last to switch {} at +{} ms:", kind.name(), last.pid, agreed - killed);
                for e in last.events().iter().filter(|e| e.t >= killed && !e.event.starts_with("probe_ok")) {
                    eprintln!("  +{:>5} ms {:<22} leader {:?}", e.t - killed, e.event, e.leader);
                }
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
fn idle_cost(kind: Kind, idle: Duration) -> Result<(f64, f64, f64), String> {
    let gcd = Gcd::start().map_err(|e| e.to_string())?;
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
/// the registrations the coordinator answered over `window`, counted from its own log.
fn gcd_load(n: usize, window: Duration) -> Result<usize, String> {
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    let mut child = Command::new(BULLY_NODE)
        .args(["gcd", "--listen", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&answered);
    let err = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if line.contains(": accepted") {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    let gcd = Gcd { child, port };
    poll(Duration::from_secs(5), || TcpStream::connect(("127.0.0.1", port)).ok()).ok_or("no coordinator")?;
    let members = start_group(Kind::Rust, &gcd, &identities(n, 9_000_000))?;
    settle(&members)?;
    let before = answered.load(std::sync::atomic::Ordering::Relaxed);
    std::thread::sleep(window);
    Ok(answered.load(std::sync::atomic::Ordering::Relaxed) - before)
}

/// Members join one after another, each the new highest: does the whole group follow
/// the last within 10 s of its registration? Returns the time and the group's memory.
fn scale(kind: Kind, n: usize) -> Result<(Duration, f64), String> {
    let gcd = Gcd::start().map_err(|e| e.to_string())?;
    let members = start_group(kind, &gcd, &identities(n, 8_000_000))?;
    let last = members.last().unwrap();
    let joined = poll(SETTLE, || last.joined()).ok_or("no join")?;
    let all: Vec<&Member> = members.iter().collect();
    let agreed = poll(Duration::from_secs(10), || all_follow(&all, last.pid))
        .ok_or_else(|| format!("{n} members did not all follow the highest within 10 s"))?;
    let rss: u64 = members.iter().filter_map(|m| usage(m.child.id())).map(|u| u.0).sum();
    Ok((Duration::from_millis(agreed.saturating_sub(joined)), rss as f64 / 1024.0))
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

/// Runs every measurement and writes the table (Markdown, for BENCHMARKS.md) to `out`,
/// with a progress bar on stderr if `progress`.
pub fn run(config: BenchConfig, out: &mut dyn Write, progress: bool) -> Result<(), String> {
    let kinds: Vec<Kind> = if config.python { vec![Kind::Rust, Kind::Python] } else { vec![Kind::Rust] };
    let bar = if progress { progress_bar(&config, kinds.len()) } else { ProgressBar::hidden() };
    // Table lines go to `out` between redraws of the bar (on stderr).
    let out = RefCell::new(out);
    macro_rules! out {
        ($($arg:tt)*) => { bar.suspend(|| { let _ = writeln!(out.borrow_mut(), $($arg)*); }) };
    }
    bar.set_message("floor: 200 PROBE round trips on loopback");
    let floor_times = floor(200)?;
    bar.inc(1);
    let (floor_median, floor_text) = spread(floor_times);
    let floor_ms = floor_median.unwrap_or(1.0);
    out!("floor (connect + one PROBE pickle + GOT_IT on loopback, 200 times): {floor_text} ms\n");
    out!("| measurement | N | bully-node ms | Python peer ms | Python / bully-node | bully-node / floor |");
    out!("|---|---|---|---|---|---|");
    let mut errors = Vec::new();
    let row = |what: &str, n: usize, results: Vec<Vec<Duration>>| {
        let cells: Vec<(Option<f64>, String)> = results.into_iter().map(spread).collect();
        let ours = cells[0].0;
        let theirs = cells.get(1).and_then(|c| c.0);
        let python = cells.get(1).map_or("not run".to_string(), |c| c.1.clone());
        let multiple = ours.map_or("-".into(), |o| format!("{:.0}x", o / floor_ms));
        out!("| {what} | {n} | {} | {python} | {} | {multiple} |", cells[0].1, ratio(ours, theirs));
    };
    let mut traffic_rows = Vec::new();
    for &n in &config.sizes {
        let mut per_kind = Vec::new();
        for &kind in &kinds {
            let mut times = Vec::new();
            for rep in 0..config.reps {
                bar.set_message(format!("join, {}, N={n}, run {} of {}", kind.name(), rep + 1, config.reps));
                let result = join(kind, n, rep);
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
        row("join: new highest registers -> all follow it", n, per_kind);
    }
    for (signal, what) in [((libc::SIGKILL, "-KILL"), "refused"), ((libc::SIGSTOP, "-STOP"), "silent")] {
        for &n in &config.sizes {
            let (mut from_probe, mut from_kill) = (Vec::new(), Vec::new());
            for &kind in &kinds {
                let (mut a, mut b) = (Vec::new(), Vec::new());
                for rep in 0..config.reps {
                    bar.set_message(format!(
                        "failover ({what}), {}, N={n}, run {} of {}",
                        kind.name(),
                        rep + 1,
                        config.reps
                    ));
                    let result = failover(kind, n, rep, signal, &bar);
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
            row(&format!("failover, {what}: first failed PROBE -> all follow next"), n, from_probe);
            row(&format!("failover, {what}: kill -> all follow next"), n, from_kill);
        }
    }
    out!("\n| traffic of one join | N | implementation | messages | bytes | bully worst case (n^2 - 1 messages) |");
    out!("|---|---|---|---|---|---|");
    for (n, kind, t) in traffic_rows {
        out!("| join | {n} | {} | {} | {} | {} |", kind.name(), t.messages, t.bytes, n * n - 1);
    }
    out!("\n| idle cost per node (group of 5, {:.0} s) | resident MiB | threads | CPU ms |", config.idle.as_secs_f64());
    out!("|---|---|---|---|");
    for &kind in &kinds {
        bar.set_message(format!("idle cost, {}: watching 5 nodes for {:.0} s", kind.name(), config.idle.as_secs_f64()));
        let result = idle_cost(kind, config.idle);
        bar.inc(1);
        match result {
            Ok((rss, threads, cpu)) => out!("| {} | {rss:.1} | {threads:.1} | {cpu:.0} |", kind.name()),
            Err(e) => errors.push(format!("idle, {}: {e}", kind.name())),
        }
    }
    // The smallest join size, then the scale sizes (by default 5, 50, 100, 150, 200):
    // the check's cost must not grow with the group.
    let window = config.idle;
    let load_sizes = config.sizes.iter().min().into_iter().chain(&config.scale);
    out!(
        "\n| GCD load of a settled idle group (the leader's check, 10-20 s) | N | requests in {:.0} s | per second |",
        window.as_secs_f64()
    );
    out!("|---|---|---|---|");
    for &n in load_sizes {
        match gcd_load(n, window) {
            Ok(k) => out!("| bully-node | {n} | {k} | {:.3} |", k as f64 / window.as_secs_f64()),
            Err(e) => {
                out!("| bully-node | {n} | did not: {e} | - |");
                break;
            }
        }
    }
    out!("\n| scale: all follow the highest within 10 s of the last join | N | ms after the last join | group's resident MiB |");
    out!("|---|---|---|---|");
    for &kind in &kinds {
        for (i, &n) in config.scale.iter().enumerate() {
            bar.set_message(format!("scale, {}: N={n}", kind.name()));
            let result = scale(kind, n);
            bar.inc(1);
            match result {
                Ok((t, rss)) => out!("| {} | {n} | {} | {rss:.0} |", kind.name(), t.as_millis()),
                Err(e) => {
                    out!("| {} | {n} | did not: {e} | - |", kind.name());
                    bar.inc((config.scale.len() - i - 1) as u64); // larger sizes are skipped
                    break;
                }
            }
        }
    }
    if !errors.is_empty() {
        out!("\nmeasurements that did not complete:");
        errors.iter().for_each(|e| out!("- {e}"));
    }
    bar.finish_and_clear();
    let _ = out.borrow_mut().flush();
    Ok(())
}

/// The bar on stderr: what runs now, how many measurements of how many are done, time
/// so far and an estimate of what is left. Hidden when stderr is not a terminal.
fn progress_bar(config: &BenchConfig, kinds: usize) -> ProgressBar {
    let steps = 1 // the floor
        + 3 * config.sizes.len() * kinds * config.reps // join, failover refused, failover silent
        + kinds // idle cost
        + kinds * config.scale.len();
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
