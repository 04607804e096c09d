//! The benchmark (benches/bench.rs, included here) with tiny parameters, so it can't rot:
//! it runs to the end and fills the bully-node cells with numbers. (Never a timing
//! assertion: see BENCHMARKS.md.) `cargo test` does not build benches; this keeps it
//! compiling and running.

mod common;

#[path = "../benches/bench.rs"]
#[allow(dead_code)]
mod bench;

use bench::{BenchConfig, Coordinator, Row};
use bully_node::ProcessId;
use common::Proc;
use std::io::IsTerminal;
use std::process::Command;
use std::time::Duration;

/// The rows from before issue 20, tiny; the rows of issue 20 have tests of their own.
fn tiny(python: bool) -> BenchConfig {
    BenchConfig {
        sizes: vec![3],
        reps: 1,
        idle: Duration::from_secs(1),
        scale: vec![3],
        // Long enough for 3 members (Python ones too) to follow the last on a loaded
        // machine: "3 of 3" is asserted.
        watch: Duration::from_secs(10),
        idle_watch: Duration::from_secs(1),
        python,
        gcd: Coordinator::Rust,
        baseline: None,
        trace: false,
        only: vec![Row::Timing, Row::Idle, Row::Scale, Row::GcdLoad],
        ..BenchConfig::default()
    }
}

/// The binary cargo built for the tests, which serves as a baseline too.
const BULLY_NODE: &str = env!("CARGO_BIN_EXE_bully-node");

#[test]
fn the_benchmark_reads_both_kinds_of_event_lines() {
    let ours = r#"{"t":1795519750001,"node":[120,4000003],"event":"leader","leader":[200,4000002],"previous":null}"#;
    let e = bench::parse(ours).unwrap();
    assert_eq!((e.t, e.event.as_str(), e.leader), (1795519750001, "leader", Some(ProcessId::new(200, 4000002))));
    let started = r#"{"t":5,"node":[1,2],"event":"election_started","election":1,"reason":"x","asking":[[9,1000009],[8,1000008]]}"#;
    assert_eq!(bench::parse(started).unwrap().asking, 2);
    let python = r#"{"event": "sent", "name": "ELECT", "bytes": 277, "t": 1795519750002}"#;
    let e = bench::parse(python).unwrap();
    assert_eq!((e.t, e.name.as_str(), e.bytes), (1795519750002, "ELECT", 277));
    let python_leader = r#"{"event": "leader", "leader": [300, 4000004], "t": 9}"#;
    assert_eq!(bench::parse(python_leader).unwrap().leader, Some(ProcessId::new(300, 4000004)));
    let joined = r#"{"t":5,"node":[1,2],"event":"joined","members":3}"#;
    assert_eq!(bench::parse(joined).unwrap().asking, 0, "a count of members is not a list sent to");
    let announced = r#"{"t":5,"node":[1,2],"event":"announced_to","members":[[9,1000009]]}"#;
    assert_eq!(bench::parse(announced).unwrap().asking, 1);
    assert!(bench::parse("election #1: no member ranks higher").is_none());
    assert!(bench::parse(r#"{"t":5,"event":"leader","leader":[300,4000004]"#).is_none(), "a torn line");
}

/// The cells of the first row under the header that starts with `header`.
fn first_row(out: &str, header: &str, row: &str) -> Vec<String> {
    let line = out
        .lines()
        .skip_while(|l| !l.starts_with(header))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .find(|l| l.starts_with(row))
        .unwrap_or_else(|| panic!("no row {row:?} under {header:?} in:\n{out}"));
    line.split('|').map(|c| c.trim().to_string()).collect()
}

fn number(cell: &str) -> f64 {
    cell.split(' ').next().unwrap().parse().unwrap_or_else(|_| panic!("{cell:?} is not a number"))
}

/// With a baseline (this very binary): every bully-node and baseline cell holds a
/// number, the F/J table divides them, and the scale row counts what the serial
/// coordinator answered (at least one registration per member). The Python peer runs in
/// [`the_benchmark_runs_the_python_peer_too`], at the same time.
#[test]
fn the_benchmark_runs_and_fills_its_table() {
    let mut table = Vec::new();
    let config = BenchConfig { baseline: Some(BULLY_NODE.into()), ..tiny(false) };
    bench::run(config, &mut table, false).unwrap();
    let out = String::from_utf8(table).unwrap();
    assert!(out.contains("floor (connect + one PROBE pickle + GOT_IT on loopback"), "{out}");
    let header = "| measurement | N | bully-node ms | baseline ms | baseline / bully-node | bully-node / floor |";
    assert!(out.contains(header), "{out}");
    for row in ["| join: new highest", "| failover, refused: kill", "| failover, silent: kill"] {
        let cells = first_row(&out, "| measurement", row);
        // A join within the same whole ms (events carry ms) leaves nothing to divide by.
        let ours = number(&cells[3]);
        number(&cells[4]);
        assert!(cells[5].ends_with('x') || (ours == 0.0 && cells[5] == "-"), "a ratio: {cells:?}");
    }
    for kind in ["bully-node", "baseline"] {
        let fj = first_row(&out, "| F/J", &format!("| {kind} | 3 |"));
        let (join, refused) = (number(&fj[3]), number(&fj[4]));
        if join == 0.0 {
            // Events carry whole ms, and a 3-member group can follow a newcomer within
            // one: there is then nothing to divide by.
            assert_eq!(fj[5], "-", "F/J row: {fj:?}");
        } else {
            // Each cell is rounded to one decimal: the ratio of the unrounded medians lies
            // between what the rounded cells allow, give or take the ratio's own rounding.
            let ratio = number(&fj[5]);
            let (lo, hi) = ((refused - 0.05) / (join + 0.05), (refused + 0.05) / (join - 0.05));
            assert!(ratio >= lo - 0.051 && ratio <= hi + 0.051, "F/J row: {fj:?}");
        }
        let scale = first_row(&out, "| scale on `bully-node gcd --serial`", &format!("| {kind} | 3 |"));
        assert_eq!((scale[4].as_str(), scale[5].as_str()), ("3 of 3", "0"), "all follow, none exited: {scale:?}");
        assert!(number(&scale[6]) >= 3.0, "one registration per member at least: {scale:?}");
        assert!(number(&scale[9]) > 0.0 && number(&scale[11]) >= 1.0, "memory and threads: {scale:?}");
        // ELECTs per member over the run, and in the idle watch after it (a count).
        number(&scale[12]);
        scale[13].parse::<usize>().unwrap_or_else(|_| panic!("idle ELECTs: {scale:?}"));
    }
    let memory = first_row(&out, "| resident KiB (proportional share) of one node", "| binary |");
    assert!(number(&memory[2]) > 0.0, "the binary is resident: {memory:?}");
    assert!(!out.contains(" left) ") && !out.contains('\r'), "a progress bar in the table:\n{out}");
    let load = first_row(&out, "| GCD load", "| bully-node | 3 |");
    load[3].parse::<usize>().unwrap_or_else(|_| panic!("GCD load row: {load:?}"));
}

#[test]
fn the_benchmark_runs_the_python_peer_too_on_the_python_coordinator() {
    let mut table = Vec::new();
    bench::run(BenchConfig { gcd: Coordinator::Python, ..tiny(true) }, &mut table, false).unwrap();
    let out = String::from_utf8(table).unwrap();
    let header = "| measurement | N | bully-node ms | Python peer ms | Python peer / bully-node | bully-node / floor |";
    assert!(out.contains(header), "{out}");
    // Both kinds measured (a failed measurement reads "-"). bully-node decides at once
    // when the dead leader refuses, while a silent one costs it a socket timeout (the
    // Python peer waits out its election timer either way: ~2 s for both).
    let refused = first_row(&out, "| measurement", "| failover, refused: first failed PROBE");
    let silent = first_row(&out, "| measurement", "| failover, silent: first failed PROBE");
    assert!(number(&silent[3]) > number(&refused[3]), "{refused:?} {silent:?}");
    assert!(number(&refused[4]) > 0.0 && number(&silent[4]) > 0.0, "{refused:?} {silent:?}");
    for kind in ["bully-node", "Python peer"] {
        let scale = first_row(&out, "| scale on the Python gcd2.py stand-in", &format!("| {kind} | 3 |"));
        assert_eq!(scale[4], "3 of 3", "{scale:?}");
        // The stand-in's log lines are what is counted: one registration per member at least.
        assert!(number(&scale[6]) >= 3.0, "{scale:?}");
    }
}

#[test]
fn a_baseline_that_does_not_take_the_members_flags_is_refused() {
    let mut table = Vec::new();
    let err = bench::run(BenchConfig { baseline: Some("true".into()), ..tiny(false) }, &mut table, false).unwrap_err();
    assert!(err.contains("--baseline true: its --help does not list --gcd"), "{err}");
    let err = bench::run(BenchConfig { baseline: Some("/no/such/binary".into()), ..tiny(false) }, &mut table, false)
        .unwrap_err();
    assert!(err.contains("cannot run it"), "{err}");
    assert!(table.is_empty(), "nothing measured: {}", String::from_utf8_lossy(&table));
}

#[test]
fn the_coordinator_log_lines_that_count_as_requests() {
    let lines = [
        (
            "12:00:00.001 GCD HOWDY from (5, 1234567) listening at 127.0.0.1:4000: accepted, the group has 3 members",
            true,
        ),
        ("12:00:00.002 GCD request from 127.0.0.1:5555 refused: \"no such name\"", true),
        ("12:00:00.003 GCD 12 bytes from 127.0.0.1:5555 are not a pickle", true),
        ("12:00:00.004 GCD request from 127.0.0.1:5555 dropped without a reply: too long", true),
        ("12:00:00.000 GCD listening on 127.0.0.1:23600, accepting HOWDY (like gcd2.py); Ctrl-C stops it", false),
    ];
    for (line, counts) in lines {
        assert_eq!(bench::is_request(line), counts, "{line}");
    }
    // The benchmark's coordinator binds port 0 and says which port it got.
    assert_eq!(bench::listening_port(lines[4].0), Some(23600));
    assert_eq!(bench::listening_port(lines[0].0), None);
    // The Python stand-in's lines: its first names the port, then one per request it handles.
    assert_eq!(bench::listening_port("LISTENING 41234"), Some(41234));
    assert!(!bench::is_request("LISTENING 41234"));
    for line in [
        "REQUEST 5 1234567 ('HOWDY', ((5, 1234567), ('localhost', 4000)))",
        "REFUSED 'Unexpected message: BEGIN' ('BEGIN', ((5, 1234567), ('localhost', 4000)))",
        "REFUSED \"Expected a pickled message, got b'garbage'\"",
        "DROPPED ('HOWDY', ([5, 1234567], ('localhost', 4000)))",
    ] {
        assert!(bench::is_request(line), "{line}");
    }
}

/// Our own process's memory, by kind, adds up to what the kernel says is resident.
#[cfg(target_os = "linux")]
#[test]
fn the_memory_map_accounts_for_the_resident_memory() {
    let helper = std::thread::spawn(|| std::thread::park_timeout(Duration::from_secs(60)));
    let vm_rss = || -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    // Other tests of this binary run in threads of this process and change its memory
    // while the map is read: take a map during which VmRSS did not move (bounded tries).
    let mut tries = Vec::new();
    let (map, rss) = loop {
        let before = vm_rss();
        let map = bench::memory_map(std::process::id()).unwrap();
        let after = vm_rss();
        if before == after || tries.len() == 50 {
            break (map, after);
        }
        tries.push((before, after));
        std::thread::sleep(Duration::from_millis(20));
    };
    let kib = |what: &str| map.iter().find(|(k, _, _)| *k == what).unwrap().1;
    assert!(kib("binary") > 0 && kib("thread stacks") > 0 && kib("main stack") > 0, "{map:?}");
    assert!(map.iter().all(|(_, rss, pss)| pss <= rss), "a share is never more than the whole: {map:?}");
    let total: u64 = map.iter().map(|(_, v, _)| v).sum();
    assert!(
        total.abs_diff(rss) * 5 < rss,
        "the kinds add up to {total} KiB, VmRSS is {rss} KiB: {map:?}; VmRSS moved during {tries:?}"
    );
    helper.thread().unpark();
    helper.join().unwrap();
}

/// The benchmark shows a progress bar on a terminal: this test binary runs itself again
/// under util-linux's `script` (a pseudo-terminal), where [`bench_child_on_a_tty`] runs
/// a tiny benchmark with the bar on if stderr is a terminal, as `main` decides.
#[cfg(target_os = "linux")]
#[test]
fn the_benchmark_shows_progress_on_a_terminal() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` to make a terminal with");
        return;
    }
    let me = std::env::current_exe().unwrap();
    let child = format!("{} bench_child_on_a_tty --exact --ignored --nocapture", me.display());
    let mut cmd = Command::new("script");
    cmd.args(["-qfec", &child, "/dev/null"]).env_remove("NO_COLOR").env("TERM", "xterm");
    let mut p = Proc::spawn("bench on a terminal", cmd);
    let (code, out) = p.wait_exit_within(Duration::from_secs(120));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("1 passed"), "the child test did not run:\n{out}");
    assert!(out.contains(" left) "), "no progress bar:\n{out}");
    assert!(out.contains("join, bully-node, N=2"), "the bar says what runs:\n{out}");
    assert!(out.contains("| join: new highest registers"), "{out}");
}

/// Run by [`the_benchmark_shows_progress_on_a_terminal`] on a pseudo-terminal.
#[test]
#[ignore = "run on a terminal by the_benchmark_shows_progress_on_a_terminal"]
fn bench_child_on_a_tty() {
    let config = BenchConfig { sizes: vec![2], idle: Duration::from_millis(100), scale: vec![2], ..tiny(false) };
    bench::run(config, &mut std::io::stdout(), std::io::stderr().is_terminal()).unwrap();
}

/// Processes whose parent is `parent`, from /proc.
#[cfg(target_os = "linux")]
fn children_of(parent: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // After the command name in parentheses: state, then the parent's pid.
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid == Some(parent) {
            found.push(pid);
        }
    }
    found
}

/// Gone, or a zombie that nobody has reaped yet: either way no longer running.
#[cfg(target_os = "linux")]
fn dead(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_or(true, |stat| stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])))
}

/// SIGTERM (as Ctrl-C) stops the benchmark and every process it started: this test binary
/// runs itself again as [`bench_child_until_stopped`] (a benchmark with the benchmark's
/// own signal handler and a long idle measurement), waits until the idle measurement's
/// coordinator and five members run, sends it SIGTERM, and checks that they all die.
#[cfg(target_os = "linux")]
#[test]
fn sigterm_stops_the_benchmark_and_every_process_it_started() {
    let me = std::env::current_exe().unwrap();
    let mut cmd = Command::new(me);
    cmd.args(["bench_child_until_stopped", "--exact", "--ignored", "--nocapture"]);
    let mut p = Proc::spawn("bench to stop", cmd);
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let started = loop {
        let kids = children_of(p.pid());
        if kids.len() >= 6 {
            break kids;
        }
        assert!(std::time::Instant::now() < deadline, "the idle group of 5 never ran: {kids:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let term = Command::new("kill").args(["-TERM", &p.pid().to_string()]).status().unwrap();
    assert!(term.success());
    let (code, out) = p.wait_exit_within(Duration::from_secs(30));
    assert_eq!(code, Some(130), "{out}");
    assert!(out.contains("stopped: killed the"), "{out}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !started.iter().all(|pid| dead(*pid)) {
        let alive: Vec<_> = started.iter().filter(|pid| !dead(**pid)).collect();
        assert!(std::time::Instant::now() < deadline, "still running after the benchmark stopped: {alive:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Run by [`sigterm_stops_the_benchmark_and_every_process_it_started`], which stops it.
#[test]
#[ignore = "run and stopped by sigterm_stops_the_benchmark_and_every_process_it_started"]
fn bench_child_until_stopped() {
    bench::stop_children_on_signals().unwrap();
    let config = BenchConfig { idle: Duration::from_secs(120), ..tiny(false) };
    bench::run(config, &mut std::io::stdout(), false).unwrap();
    panic!("the benchmark was to be stopped during its idle measurement");
}

/// What `cargo bench --bench bench` runs with no arguments: every row, the scale rows
/// (and all others) on the gcd2.py-faithful Python stand-in, issue 20's sizes.
#[test]
fn the_defaults_are_issue_20s() {
    let config = BenchConfig::default();
    assert_eq!(config.gcd, Coordinator::Python);
    assert!(config.only.is_empty(), "every row: {:?}", config.only);
    assert_eq!((config.scale.as_slice(), config.watch, config.idle_watch), (&[100, 200, 300][..], secs(10), secs(10)));
    assert_eq!(config.messages_at, [50]);
    assert_eq!(config.clash_watch, secs(30));
    assert_eq!((config.overload_at.as_slice(), config.load, config.cpu_window), (&[30, 100][..], secs(20), secs(10)));
    assert!(config.load_procs >= 2, "at least twice the CPUs: {}", config.load_procs);
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Sends and receptions are counted from both kinds of event line, per message name.
#[test]
fn the_tally_counts_each_message_from_the_events() {
    let lines = [
        r#"{"t":1,"node":[1,2],"event":"election_started","election":1,"reason":"x","asking":[[9,1000009],[8,1000008]]}"#,
        r#"{"t":2,"node":[1,2],"event":"election_widened","election":1,"asking":[[7,1000007]]}"#,
        r#"{"t":3,"node":[1,2],"event":"won","election":1,"announcing_to":4}"#,
        r#"{"t":4,"node":[1,2],"event":"announced_to","members":[[3,1000003]]}"#,
        r#"{"t":5,"node":[1,2],"event":"leader_checked","members":6,"learned":[[5,1000005]],"forgot":0,"electing_for":null,"announced_to":[[5,1000005],[4,1000004]]}"#,
        r#"{"t":6,"node":[1,2],"event":"probe_ok","leader":[9,1000009]}"#,
        r#"{"t":7,"node":[1,2],"event":"probe_failed","leader":[9,1000009],"reason":"refused"}"#,
        r#"{"t":8,"node":[1,2],"event":"elect_received","from":null,"learned":[],"electing":false}"#,
        r#"{"t":9,"node":[1,2],"event":"i_am_leader_received","leader":[12,4000001]}"#,
        r#"{"t":10,"node":[1,2],"event":"i_am_leader_received","leader":[12,4000001]}"#,
        r#"{"t":11,"node":[1,2],"event":"joined","members":3}"#,
        r#"{"event": "sent", "name": "ELECT", "bytes": 277, "t": 12}"#,
        r#"{"event": "sent", "name": "I_AM_LEADER", "bytes": 50, "t": 13}"#,
        r#"{"event": "sent", "name": "PROBE", "bytes": 20, "t": 14}"#,
        r#"{"event": "sent", "name": "GOT_IT", "bytes": 20, "t": 15}"#,
    ];
    let mut tally = bench::Tally::default();
    lines.iter().map(|l| bench::parse(l).unwrap()).for_each(|e| tally.add(&e));
    let expected = bench::Tally { elect: 4, leader: 8, probe: 3, elect_in: 1, leader_in: 2, elections: 1 };
    assert_eq!(tally, expected);
}

/// The first row under `header` whose cells start with `start`, as cells.
fn row_of(out: &str, header: &str, start: &[&str]) -> Vec<String> {
    out.lines()
        .skip_while(|l| !l.starts_with(header))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.split('|').map(|c| c.trim().to_string()).collect::<Vec<_>>())
        .find(|cells| cells.len() > start.len() && cells[1..=start.len()].iter().zip(start).all(|(c, s)| c == s))
        .unwrap_or_else(|| panic!("no row {start:?} under {header:?} in:\n{out}"))
}

/// Messages per disturbance at 3 members, bully-node and a baseline (this very binary)
/// side by side: every cell a number, a ratio row, and what each disturbance must cost
/// at least (a failover: a failed PROBE, an election and an announcement).
#[test]
fn the_messages_rows_count_each_disturbance_for_both_kinds() {
    let config = BenchConfig {
        only: vec![Row::Messages],
        messages_at: vec![3],
        baseline: Some(BULLY_NODE.into()),
        python: false,
        ..BenchConfig::default()
    };
    let mut table = Vec::new();
    bench::run(config, &mut table, false).unwrap();
    let out = String::from_utf8(table).unwrap();
    let header = "| messages per disturbance";
    for what in ["a join (new highest)", "failover, refused (leader killed)", "failover, silent (leader stopped)"] {
        for kind in ["bully-node", "baseline"] {
            let cells = row_of(&out, header, &[what, "3", kind]);
            let numbers: Vec<f64> = cells[4..12].iter().map(|c| number(c)).collect();
            let [_agreed, window, _elect, leader, probe, _elect_in, leader_in, elections] = numbers[..] else {
                panic!("{cells:?}")
            };
            assert!(window >= 1.0, "a second of quiet at least: {cells:?}");
            assert!(leader > 0.0 && leader_in > 0.0, "the new leader announced itself: {cells:?}");
            assert!(elections > 0.0, "somebody elected: {cells:?}");
            if what.starts_with("failover") {
                assert!(probe > 0.0, "a PROBE found the leader gone: {cells:?}");
            }
        }
        let ratios = row_of(&out, header, &[what, "3", "baseline / bully-node"]);
        assert_eq!(ratios.len(), 13, "{ratios:?}");
        assert!(ratios[4..12].iter().all(|c| c.ends_with('x') || c == "=" || c == "-"), "{ratios:?}");
    }
    assert!(!out.contains("did not"), "{out}");
}

/// The clash, both variants, at a short watch: counts in every cell and whom each of
/// the three follows at the end.
#[test]
fn the_clash_rows_run_both_variants() {
    let config = BenchConfig {
        only: vec![Row::Clash],
        clash_watch: Duration::from_secs(3),
        python: false,
        ..BenchConfig::default()
    };
    let mut table = Vec::new();
    bench::run(config, &mut table, false).unwrap();
    let out = String::from_utf8(table).unwrap();
    let header = "| same-SU-ID clash";
    assert!(out.contains("watched 3 s | kind | leader changes at the innocent member | in the last 2 s"), "{out}");
    for variant in ["A: other days (300)", "B: same days, another port"] {
        let cells = row_of(&out, header, &[variant, "bully-node"]);
        let (changes, late) = (number(&cells[3]), number(&cells[4]));
        assert!(late <= changes, "{cells:?}");
        let reported: Vec<f64> = cells[5].split(", ").map(number).collect();
        assert_eq!(reported.len(), 2, "{cells:?}");
        number(&cells[6]);
        assert_eq!(cells[7].split("; ").count(), 3, "whom the three follow: {cells:?}");
    }
}

/// The overload at 3 members, one busy process for 2 s: the survivors agree (the cell
/// is ms after the load, negative if during it), and the ELECT and CPU cells are numbers.
#[test]
fn the_overload_row_loads_kills_and_measures() {
    let config = BenchConfig {
        only: vec![Row::Overload],
        overload_at: vec![3],
        load: Duration::from_secs(2),
        load_procs: 1,
        cpu_window: Duration::from_secs(1),
        python: false,
        ..BenchConfig::default()
    };
    let mut table = Vec::new();
    bench::run(config, &mut table, false).unwrap();
    let out = String::from_utf8(table).unwrap();
    assert!(out.contains("| overload: 1 busy process for 2 s, the leader SIGKILLed 1.0 s in |"), "{out}");
    let cells = row_of(&out, "| overload:", &["overload", "3", "bully-node"]);
    cells[4].parse::<i64>().unwrap_or_else(|_| panic!("agreement, ms after the load: {cells:?}"));
    assert_eq!(cells[5], "2 of 2", "{cells:?}");
    for cell in &cells[6..10] {
        assert!(number(cell) >= 0.0, "{cells:?}");
    }
}
