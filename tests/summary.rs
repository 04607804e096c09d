//! The end-of-run summaries say what the events say: the demo's figures and a node's
//! Ctrl-C figures are recomputed here from the --events file each wrote.

mod common;

use common::{bully_node, rust_gcd, wait_all_follow, Node, Proc, Scratch};

/// How many process ids the JSON array under `"key":[...]` of `line` holds.
fn pids_in(line: &str, key: &str) -> usize {
    let Some(start) = line.find(&format!("\"{key}\":[")) else { return 0 };
    let rest = &line[start + key.len() + 4..];
    if rest.starts_with(']') {
        return 0;
    }
    let end = rest.find("]]").expect("a closed array of pairs");
    rest[..end].matches('[').count()
}

fn number_in(line: &str, key: &str) -> usize {
    let start = line.find(&format!("\"{key}\":")).unwrap() + key.len() + 3;
    line[start..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

struct Counts {
    started: usize,
    won: usize,
    messages: usize,
}

/// The figures that can be counted straight off the event lines.
fn count(lines: &[String]) -> Counts {
    let is = |l: &String, e: &str| l.contains(&format!("\"event\":\"{e}\""));
    let mut messages = 0;
    for l in lines {
        messages += pids_in(l, "asking") + pids_in(l, "members") * usize::from(is(l, "announced_to"));
        if is(l, "won") {
            messages += number_in(l, "announcing_to");
        }
        if is(l, "probe_ok") || is(l, "probe_failed") {
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
    let lines: Vec<String> = std::fs::read_to_string(&events).unwrap().lines().map(str::to_owned).collect();
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
    assert_eq!(lines.iter().filter(|l| l.contains("\"event\":\"stopped\"")).count(), 4);
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
    let c = count(&low.event_lines());
    assert_eq!(figure(&out, "elections started:"), c.started, "{out}");
    assert_eq!(figure(&out, "elections won:"), c.won, "{out}");
    assert_eq!(figure(&out, "messages sent (ELECT, I_AM_LEADER, PROBE):"), c.messages, "{out}");
    let probes = low.event_lines().iter().filter(|l| l.contains("\"event\":\"probe_ok\"")).count();
    assert!(probes > 0);
    assert!(out.contains(&format!("probes answered: {probes}, failed: 0")), "{out}");
}
