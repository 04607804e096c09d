//! `bully-node demo`: a whole group in one process, with nothing else installed. The
//! built-in coordinator and N real nodes (real sockets on 127.0.0.1, feigned failures
//! on) run side by side; their events merge into one timeline a person can follow, and
//! the run ends with swim lanes and the figures that matter.

use crate::gcd::{server, Coordinator, CoordinatorConfig, NameChoice};
use crate::identity::ProcessId;
use crate::membership::Addr;
use crate::node::{Event, Feign, Settings};
use crate::protocol::{Dialect, RegisterName};
use crate::report::events::{self, EventSink, Observer};
use crate::report::summary::{swim_lanes, GroupFigures, Observation, LANE_LEGEND};
use crate::runtime::{self, RunningNode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// What the demo runs.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    pub nodes: usize,
    pub duration: Duration,
    pub seed: u64,
    pub feign: bool,
    pub events: Option<String>,
    /// The registration name the demo's GCD takes: which course year it runs.
    pub accept: RegisterName,
    /// ANSI colours (a terminal, and NO_COLOR unset).
    pub color: bool,
    pub verbose: bool,
    pub quiet: bool,
}

/// Width of the swim lanes, in columns: with the labels, 80 in all.
const LANE_WIDTH: usize = 56;

/// Per-node colours: red, green, yellow, blue, magenta, cyan, then bright ones.
const COLORS: [&str; 12] = ["31", "32", "33", "34", "35", "36", "91", "92", "93", "94", "95", "96"];

struct Labels {
    nodes: Vec<(ProcessId, String)>,
    color: bool,
}

impl Labels {
    fn label(&self, pid: ProcessId) -> String {
        self.nodes.iter().find(|(p, _)| *p == pid).map_or_else(|| "?".into(), |(_, l)| l.clone())
    }

    fn paint(&self, pid: ProcessId, text: &str) -> String {
        let i = self.nodes.iter().position(|(p, _)| *p == pid).unwrap_or(0);
        if self.color {
            format!("\x1b[{}m{text}\x1b[0m", COLORS[i % COLORS.len()])
        } else {
            text.to_string()
        }
    }

    /// Puts each known member's label before its id, e.g. `C(200, 4000002)`.
    fn annotate(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (pid, label) in &self.nodes {
            out = out.replace(&pid.to_string(), &format!("{label}{pid}"));
        }
        out
    }
}

fn line_for(event: &Event, me: ProcessId) -> Option<String> {
    match event {
        Event::Joined { members } => Some(format!("HOWDY answered: joined a group of {members}")),
        other => events::describe(other, me),
    }
}

/// Runs the demo to its end (or Ctrl-C) and prints the summary.
pub fn run(config: DemoConfig) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?;
    let gcd_port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let coordinator = Arc::new(Coordinator::new(CoordinatorConfig { accept: config.accept, ..Default::default() }));
    // Stopped when the demo returns (dropped), however it returns.
    let gcd = server::start(listener, coordinator, server::Serving::Concurrent, None)
        .map_err(|e| format!("cannot start the GCD: {e}"))?;

    let mut pids: Vec<ProcessId> = Vec::new();
    while pids.len() < config.nodes {
        let pid = ProcessId::new(rng.random_range(1..=365), rng.random_range(1_000_000..=9_999_999));
        if !pids.iter().any(|p| p.su_id == pid.su_id) {
            pids.push(pid);
        }
    }
    let labels =
        Labels { nodes: pids.iter().enumerate().map(|(i, p)| (*p, label_of(i))).collect(), color: config.color };
    let sink = match &config.events {
        Some(path) => EventSink::open(path).map_err(|e| format!("cannot write events to {path}: {e}"))?,
        None => EventSink::none(),
    };

    // What a person reads goes to stdout, or to stderr when stdout carries the JSON
    // events. Each line takes the lock on its own: the events' writer thread needs
    // stdout too, and closing the sink waits for it.
    let events_on_stdout = config.events.as_deref() == Some("-");
    let mut out: Box<dyn Write> =
        if events_on_stdout { Box::new(std::io::stderr()) } else { Box::new(std::io::stdout()) };
    if !config.quiet {
        let _ = write!(out, "{}", intro(config.feign));
    }
    let _ = write!(out, "{}", era(config.accept));
    let _ = writeln!(
        out,
        "demo: a GCD at 127.0.0.1:{gcd_port} and {} for {:.0} s, feigned failures {}\n      \
         seed {}: replay this run with --seed {}\n      Ctrl-C ends it early\n",
        events::count(config.nodes, "node", "nodes"),
        config.duration.as_secs_f64(),
        if config.feign { "on" } else { "off" },
        config.seed,
        config.seed
    );
    let start = Instant::now();
    let (tx, rx) = mpsc::channel::<Observation>();
    let mut running: Vec<RunningNode> = Vec::new();
    for pid in &pids {
        let tx = tx.clone();
        let observer = Observer(Arc::new(move |node, event: &Event| {
            let _ = tx.send(Observation { at: start.elapsed(), node, event: event.clone() });
        }));
        let node = runtime::Config {
            listen: Some(Addr::new("127.0.0.1", 0)),
            settings: Settings { feign: config.feign.then(Feign::default), ..Settings::default() },
            seed: rng.random(),
            observer: Some(observer),
            log_events: false,
            gcd_message: NameChoice::Fixed(config.accept),
            ..runtime::Config::new(Addr::new("127.0.0.1", gcd_port), *pid)
        };
        running.push(runtime::start(node).map_err(|e| e.to_string())?);
    }
    drop(tx);

    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&interrupted);
    // Only one handler per process; if one is set already, Ctrl-C simply ends the demo.
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));

    let mut seen: Vec<Observation> = Vec::new();
    let deadline = start + config.duration;
    while !interrupted.load(Ordering::SeqCst) && Instant::now() < deadline {
        let wait = deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(100));
        if let Ok(o) = rx.recv_timeout(wait) {
            show(&mut out, &labels, &config, &sink, &o);
            seen.push(o);
        }
    }
    for node in &running {
        node.stopper().stop();
    }
    for node in running {
        node.wait();
    }
    let end = start.elapsed();
    while let Ok(o) = rx.try_recv() {
        show(&mut out, &labels, &config, &sink, &o);
        seen.push(o);
    }
    gcd.stop();
    let mut sink = sink;
    sink.close();
    seen.sort_by_key(|o| o.at);
    let _ = write!(out, "{}", summary(&seen, &labels, end));
    let _ = out.flush();
    Ok(())
}

/// What someone who never saw the bully algorithm needs before the first line: one
/// screen, in the words the timeline uses.
fn intro(feign: bool) -> String {
    let mut s = String::from(
        "\
The bully algorithm elects a leader among peers. Each peer has an id: (days
until its mother's next birthday, SU ID), compared days first. Of the peers
that answer, the highest id leads. Peers join through the GCD (the group
coordinator), which tells them who the members are. Four messages:
  ELECT        \"I'm electing\": sent to every member with a higher id
  GOT_IT       the answer to ELECT or PROBE: \"I'm alive\" (and, to an ELECT,
               \"I take over\"); an election that gets no GOT_IT at all is won
  I_AM_LEADER  the winner's announcement to every member
  PROBE        a follower checking now and then that its leader still answers
",
    );
    if feign {
        s.push_str(
            "\
A feigned failure: a node plays dead for a few seconds (its port closed), then
recovers and starts an election. That is what keeps the group electing.
",
        );
    }
    s.push_str(
        "\
Each line: time, the node's letter and id (days, SU ID), what it did or heard.
An election's reason is in parentheses; \"ELECTs arrived while settling\": ELECTs
came just after a leader was agreed, and one election answers them all.
At the end: swim lanes of who led, followed, elected or was down, and figures.

",
    );
    s
}

/// Which protocol the demo's nodes speak with one another, named as a student knows it:
/// the one their GCD's year suggests (see `runtime::first_try`).
fn era(accept: RegisterName) -> String {
    let dialect = runtime::first_try(accept);
    match dialect {
        Dialect::Standard => String::new(),
        _ => format!(
            "\
This GCD takes {accept}, as gcd2.py did in the years whose assignment named the
messages ELECTION, OK and COORDINATOR (for ELECT, GOT_IT and I_AM_LEADER).
Every node here {}, as
classmates' peers of those years do, with the members dict as every message's
data. The timeline below keeps the assignment's names.

",
            dialect.describe()
        ),
    }
}

fn label_of(i: usize) -> String {
    let letter = (b'A' + (i % 26) as u8) as char;
    if i < 26 {
        letter.to_string()
    } else {
        format!("{letter}{}", i / 26)
    }
}

fn show(out: &mut impl Write, labels: &Labels, config: &DemoConfig, sink: &EventSink, o: &Observation) {
    sink.write(&events::json(&o.event, o.node));
    let shown = match &o.event {
        _ if config.verbose => true,
        Event::Leader { .. } => true,
        _ if config.quiet => false,
        Event::ProbeOk { .. } => false,
        _ => true,
    };
    let Some(text) = shown.then(|| line_for(&o.event, o.node)).flatten() else { return };
    let time = chrono::Local::now().format("%H:%M:%S%.3f");
    let who = labels.paint(o.node, &format!("{:<2} {:<18}", labels.label(o.node), o.node.to_string()));
    // One write per line, so nothing interleaves.
    let _ = writeln!(out, "{time} {who} {}", labels.annotate(&text));
}

fn summary(seen: &[Observation], labels: &Labels, end: Duration) -> String {
    let pids: Vec<ProcessId> = labels.nodes.iter().map(|(p, _)| *p).collect();
    let lanes = swim_lanes(seen, &pids, end, LANE_WIDTH);
    let mut s = format!("\nsummary after {:.1} s\n", end.as_secs_f64());
    s.push_str(&format!("{:22}|0 s{:>w$}|\n", "", format!("{:.0} s", end.as_secs_f64()), w = LANE_WIDTH - 3));
    for ((pid, label), lane) in labels.nodes.iter().zip(lanes) {
        let who = labels.paint(*pid, &format!("{label:<2} {:<18}", pid.to_string()));
        s.push_str(&format!("{who} |{}|\n", labels.paint(*pid, &lane)));
    }
    s.push_str(&format!("{:22} {LANE_LEGEND}\n\n", ""));
    s.push_str(&GroupFigures::compute(seen, end).render());
    s
}
