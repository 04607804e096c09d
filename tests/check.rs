//! `bully-node check` against real peers over loopback: bully-node itself (feigning
//! failure, as by default) passes every check; the Python reference peer passes every
//! required check; each of its planted flaws fails exactly its own check. The runs go
//! concurrently (each takes 30 to 90 s, mostly waiting), once each: every assertion is
//! exact, the set of failed checks and the set of skipped ones equal what is expected.

mod common;

use common::{bully_node, fixture, Proc, Scratch};
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

const ALL: [&str; 17] = [
    "registers",
    "answers_probe",
    "answers_elect",
    "learns_from_elect",
    "elects_on_join",
    "announces_when_highest",
    "follows_higher_leader",
    "waits_after_got_it",
    "wins_when_higher_silent",
    "probes_leader",
    "probe_interval",
    "reregisters_on_failed_probe",
    "not_blocking",
    "feigns_failure",
    "recovers_with_election",
    "survives_garbage",
    "large_elect",
];

struct Case {
    name: &'static str,
    /// The peer's command after `--`.
    peer: Vec<String>,
    failed: &'static [&'static str],
    skipped: &'static [&'static str],
    exit: i32,
}

fn python(flaw: Option<&str>) -> Vec<String> {
    let mut cmd: Vec<String> = ["python3", &fixture("bully_peer.py")]
        .into_iter()
        .chain(["--gcd", "{gcd}", "--days", "{days}", "--su-id", "{su_id}", "--probe", "--feign"])
        .map(String::from)
        .collect();
    if let Some(f) = flaw {
        cmd.extend(["--flaw".to_string(), f.to_string()]);
    }
    cmd
}

/// Runs the checker on `peer` with a JSON report; returns its exit code, output and report.
fn run_check(dir: &Scratch, name: &str, peer: &[String]) -> (Option<i32>, String, Value) {
    let json = dir.file(&format!("{name}.json"));
    let mut cmd = bully_node();
    cmd.args(["check", "--json", &json, "--"]).args(peer);
    let mut proc = Proc::spawn(&format!("check {name}"), cmd);
    let (code, out) = proc.wait_exit_within(Duration::from_secs(240));
    let report = std::fs::read_to_string(&json)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| panic!("{name}: no JSON report; output:\n{out}"));
    (code, out, report)
}

fn names(report: &Value, result: &str) -> BTreeSet<String> {
    report["checks"]
        .as_array()
        .expect("checks is a list")
        .iter()
        .filter(|c| c["result"] == result)
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn bully_node_and_the_reference_peer_pass_and_each_flaw_fails_its_own_check() {
    let node = env!("CARGO_BIN_EXE_bully-node").to_string();
    let mut cases = vec![
        Case {
            name: "bully-node",
            peer: [&node, "--gcd", "{gcd}", "--days", "{days}", "--su-id", "{su_id}", "--listen", "{listen}"]
                .map(String::from)
                .to_vec(),
            failed: &[],
            skipped: &[],
            exit: 0,
        },
        // recv(1024) cannot read a 60-member ELECT: advisory, so still exit 0.
        Case { name: "reference", peer: python(None), failed: &["large_elect"], skipped: &[], exit: 0 },
    ];
    let flaws: [(&str, &str, &[&str]); 7] = [
        // Without PROBE answers there is nothing to judge not_blocking by.
        ("no-probe-reply", "answers_probe", &["not_blocking"]),
        ("blocking", "not_blocking", &[]),
        ("announce-higher-only", "announces_when_highest", &[]),
        ("lead-after-got-it", "waits_after_got_it", &[]),
        ("no-reregister", "reregisters_on_failed_probe", &[]),
        ("fast-probe", "probe_interval", &[]),
        // No failure, nothing to recover from.
        ("no-feign", "feigns_failure", &["recovers_with_election"]),
    ];
    for (flaw, check, skipped) in flaws {
        let failed: &'static [&'static str] = Box::leak(vec![check, "large_elect"].into_boxed_slice());
        cases.push(Case { name: flaw, peer: python(Some(flaw)), failed, skipped, exit: 1 });
    }
    let dir = Scratch::new("check");
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .map(|case| {
                let dir = &dir;
                s.spawn(move || run_check(dir, case.name, &case.peer))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut problems = Vec::new();
    for (case, result) in cases.iter().zip(results) {
        let want_failed: BTreeSet<String> = case.failed.iter().map(|s| s.to_string()).collect();
        let want_skipped: BTreeSet<String> = case.skipped.iter().map(|s| s.to_string()).collect();
        let (code, out, report) = &result;
        let all: BTreeSet<String> = ALL.iter().map(|s| s.to_string()).collect();
        let listed: BTreeSet<String> =
            report["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_string()).collect();
        assert_eq!(listed, all, "{}: the report lists every check by its name", case.name);
        let failed = names(report, "fail");
        let skipped = names(report, "skip");
        if failed != want_failed || skipped != want_skipped || *code != Some(case.exit) {
            problems.push(format!(
                "{}: exit {code:?} (want {}), failed {failed:?} (want {want_failed:?}), skipped {skipped:?} (want {want_skipped:?})\n{out}",
                case.name, case.exit
            ));
            continue;
        }
        assert_eq!(report["dialect"], "standard", "{}", case.name);
        assert_eq!(report["failed"].as_u64(), Some(want_failed.len() as u64), "{}", case.name);
        assert_eq!(report["passed"].as_u64(), Some((17 - want_failed.len() - want_skipped.len()) as u64));
        // The rubric a person reads says the same: a line per check, marked.
        for c in ALL {
            let mark = if want_failed.contains(c) {
                "✗"
            } else if want_skipped.contains(c) {
                "-"
            } else {
                "✓"
            };
            assert!(
                out.lines().any(|l| l.starts_with(&format!("{mark} {c}"))),
                "{}: no line {mark} {c}\n{out}",
                case.name
            );
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[test]
fn a_peer_that_cannot_start_or_dies_at_once_is_exit_2_with_its_last_words() {
    let mut cmd = bully_node();
    cmd.args(["check", "--", "/nonexistent/peer", "{gcd}"]);
    let (code, out) = Proc::spawn("check nonexistent", cmd).wait_exit_within(Duration::from_secs(60));
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("cannot start \"/nonexistent/peer\""), "{out}");

    let mut cmd = bully_node();
    cmd.args(["check", "--", "sh", "-c", "echo my peer broke on {gcd_port}; exit 3"]);
    let (code, out) = Proc::spawn("check dying", cmd).wait_exit_within(Duration::from_secs(60));
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("exited (exit status: 3) before registering"), "{out}");
    assert!(out.contains("my peer broke on "), "its output is shown, placeholders filled: {out}");
    assert!(!out.contains("{gcd_port}"), "{out}");
}

#[test]
fn usage_errors_are_exit_2() {
    for args in [
        vec!["check"],
        vec!["check", "--time", "10s", "--", "true"],
        vec!["check", "--gcd-message", "HI", "--", "true"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_bully-node")).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn a_peer_that_never_registers_fails_registers_and_is_stopped() {
    // Listens nowhere, registers nowhere, ignores SIGTERM: the checker must still end it.
    let dir = Scratch::new("check-silent");
    let pidfile = dir.file("pid");
    let script = format!("trap '' TERM; echo $$ > {pidfile}; while true; do sleep 1; done");
    let (code, out, report) = run_check(&dir, "silent", &["sh".into(), "-c".into(), script]);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(names(&report, "fail"), BTreeSet::from(["registers".to_string()]), "{out}");
    assert_eq!(names(&report, "skip").len(), 16, "{out}");
    let pid = std::fs::read_to_string(&pidfile).unwrap().trim().to_string();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
    assert!(stat.is_err() || stat.unwrap().contains(") Z"), "the peer {pid} outlived the check");
}
