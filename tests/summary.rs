//! The end-of-run summaries say what the events say: the demo's figures and a node's
//! Ctrl-C figures are recomputed here from the --events file each wrote.

mod common;

use common::{bully_node, rust_gcd, wait_all_follow, Node, Proc, Scratch};
use serde_json::Value;

/// How many process ids the JSON array under `key` of `e` holds (0 if it is no array).
fn pids_in(e: &Value, key: &str) -> usize {
    e[key].as_array().map_or(0, Vec::len)
}

fn number_in(e: &Value, key: &str) -> usize {
    e[key].as_u64().unwrap_or_else(|| panic!("no number {key:?} in {e}")) as usize
}

struct Counts {
    started: usize,
    won: usize,
    messages: usize,
}

/// The figures that can be counted straight off the events.
fn count(lines: &[Value]) -> Counts {
    let is = |l: &Value, e: &str| l["event"] == e;
    let mut messages = 0;
    for l in lines {
        messages += pids_in(l, "asking") + pids_in(l, "members") * usize::from(is(l, "announced_to"));
        if is(l, "won") {
            messages += number_in(l, "announcing_to");
        }
        if is(l, "probe_ok") || is(l, "probe_failed") || is(l, "former_leader_probe_failed") {
            messages += 1;
        }
    }
    Counts {
        started: lines.iter().filter(|l| is(l, "election_started")).count(),
        won: lines.iter().filter(|l| is(l, "won")).count(),
        messages,
    }
}

/// The number after `label` in the printed summary.
fn figure(out: &str, label: &str) -> usize {
    let line =
        out.lines().find(|l| l.trim_start().starts_with(label)).unwrap_or_else(|| panic!("no {label:?} in:\n{out}"));
    line[line.find(label).unwrap() + label.len()..]
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn the_demos_figures_agree_with_its_events() {
    let dir = Scratch::new("demo");
    let events = dir.file("demo.jsonl");
    let mut cmd = bully_node();
    cmd.args(["demo", "--nodes", "4", "--duration", "4s", "--seed", "7", "--events", &events]);
    let mut demo = Proc::spawn("demo", cmd);
    let (code, out) = demo.wait_exit();
    assert_eq!(code, Some(0), "{out}");
    let lines: Vec<Value> = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .map(|l| common::event(l).unwrap_or_else(|| panic!("not a JSON event: {l:?}")))
        .collect();
    let c = count(&lines);
    assert!(c.started > 0 && c.won > 0, "{out}");
    assert_eq!(figure(&out, "elections started:"), c.started, "{out}");
    assert_eq!(figure(&out, "elections won:"), c.won, "{out}");
    assert_eq!(figure(&out, "messages sent (ELECT, I_AM_LEADER, PROBE):"), c.messages, "{out}");
    // Four lanes, each 56 columns between bars (80 with the labels), and a share between 0 and 100 %.
    let lanes: Vec<&str> = out.lines().filter(|l| l.ends_with('|') && !l.contains("0 s")).collect();
    assert_eq!(lanes.len(), 4, "{out}");
    assert!(lanes.iter().all(|l| l.rsplit('|').nth(1).unwrap().chars().count() == 56), "{out}");
    let share = out.lines().find(|l| l.contains("% of the run")).unwrap();
    let pct: f64 = share.split_whitespace().find(|w| w.ends_with('%')).unwrap().trim_end_matches('%').parse().unwrap();
    assert!((0.0..=100.0).contains(&pct), "{share}");
    // Every node stopped at the end, and said so.
    assert_eq!(lines.iter().filter(|l| l["event"] == "stopped").count(), 4);
}

#[test]
fn a_node_stopped_with_ctrl_c_prints_figures_that_agree_with_its_events() {
    let dir = Scratch::new("ctrl-c");
    let (_gcd, port) = rust_gcd("HOWDY");
    let mut low = Node::start(&dir, port, (5, 6000001), &["--probe-interval", "100ms..200ms"]);
    let high = Node::start(&dir, port, (9, 6000002), &[]);
    wait_all_follow(&[&low, &high], (9, 6000002));
    // Let it probe a few times, so there is something to count.
    low.proc.wait_for("probes", |l| l.matches("PROBE to leader").count() > 0 && l.contains("GOT_IT"));
    let status = std::process::Command::new("kill").args(["-INT", &low.proc.pid().to_string()]).status().unwrap();
    assert!(status.success());
    let (code, out) = low.proc.wait_exit();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("summary of (5, 6000001)"), "{out}");
    let c = count(&low.events());
    assert_eq!(figure(&out, "elections started:"), c.started, "{out}");
    assert_eq!(figure(&out, "elections won:"), c.won, "{out}");
    assert_eq!(figure(&out, "messages sent (ELECT, I_AM_LEADER, PROBE):"), c.messages, "{out}");
    let probes = low.events_of("probe_ok").len();
    assert!(probes > 0);
    assert!(out.contains(&format!("probes answered: {probes}, failed: 0")), "{out}");
}
