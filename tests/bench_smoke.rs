//! The benchmark with tiny parameters, so it can't rot: it runs to the end and fills
//! the bully-node cells with numbers. (Never a timing assertion: see BENCHMARKS.md.)

mod common;

use common::{bully_node, Proc};

#[test]
fn the_benchmark_runs_and_fills_its_table() {
    let mut cmd = bully_node();
    cmd.args(["bench", "--sizes", "3", "--reps", "1", "--idle", "1s", "--scale", "3"]);
    let mut bench = Proc::spawn("bench", cmd);
    let (code, out) = bench.wait_exit_within(std::time::Duration::from_secs(240));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("floor (connect + one PROBE pickle + GOT_IT on loopback"), "{out}");
    for row in ["| join: new highest", "| failover, refused: kill", "| failover, silent: kill"] {
        let line = out.lines().find(|l| l.starts_with(row)).unwrap_or_else(|| panic!("no {row:?} in:\n{out}"));
        let ours = line.split('|').nth(3).unwrap().trim();
        assert!(ours.split(' ').next().unwrap().parse::<f64>().is_ok(), "bully-node cell {ours:?} in {line}");
    }
    assert!(out.lines().any(|l| l.starts_with("| bully-node | 3 |")), "scale row:\n{out}");
    // Not a terminal: no progress bar (tests/output.rs checks the terminal case).
    assert!(!out.contains(" left) ") && !out.contains('\r'), "a progress bar in a pipe:\n{out}");
    let load = out.lines().skip_while(|l| !l.starts_with("| GCD load")).nth(2).unwrap_or_default();
    assert!(load.split('|').nth(3).is_some_and(|c| c.trim().parse::<usize>().is_ok()), "GCD load row:\n{out}");
}
