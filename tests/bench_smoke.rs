//! The benchmark (benches/bench.rs, included here) with tiny parameters, so it can't rot:
//! it runs to the end and fills the bully-node cells with numbers. (Never a timing
//! assertion: see BENCHMARKS.md.) `cargo test` does not build benches; this keeps it
//! compiling and running.

mod common;

#[path = "../benches/bench.rs"]
#[allow(dead_code)]
mod bench;

use bench::BenchConfig;
use bully_node::ProcessId;
use common::Proc;
use std::io::IsTerminal;
use std::process::Command;
use std::time::Duration;

fn tiny(python: bool) -> BenchConfig {
    BenchConfig { sizes: vec![3], reps: 1, idle: Duration::from_secs(1), scale: vec![3], python }
}

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

#[test]
fn the_benchmark_runs_and_fills_its_table() {
    let mut table = Vec::new();
    bench::run(tiny(true), &mut table, false).unwrap();
    let out = String::from_utf8(table).unwrap();
    assert!(out.contains("floor (connect + one PROBE pickle + GOT_IT on loopback"), "{out}");
    for row in ["| join: new highest", "| failover, refused: kill", "| failover, silent: kill"] {
        let line = out.lines().find(|l| l.starts_with(row)).unwrap_or_else(|| panic!("no {row:?} in:\n{out}"));
        let ours = line.split('|').nth(3).unwrap().trim();
        assert!(ours.split(' ').next().unwrap().parse::<f64>().is_ok(), "bully-node cell {ours:?} in {line}");
    }
    assert!(out.lines().any(|l| l.starts_with("| bully-node | 3 |")), "scale row:\n{out}");
    assert!(!out.contains(" left) ") && !out.contains('\r'), "a progress bar in the table:\n{out}");
    let load = out.lines().skip_while(|l| !l.starts_with("| GCD load")).nth(2).unwrap_or_default();
    assert!(load.split('|').nth(3).is_some_and(|c| c.trim().parse::<usize>().is_ok()), "GCD load row:\n{out}");
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
