//! What a person and a tool get from the binary: `--events -` streams that are JSON
//! lines only (parsed line by line), the demo ending instead of hanging, exit codes and
//! messages of usage errors, help that fits the terminal, colour rules, Ctrl-C, and a
//! closed pipe ending the process quietly. Every process has a hard deadline and is
//! killed when the test fails.

mod common;

use common::{bully_node, rust_gcd, DEADLINE};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Instant;

/// A child with stdout and stderr kept apart, killed when dropped.
struct Split {
    child: Child,
    out: Receiver<String>,
    err: Receiver<String>,
    stdout: Vec<String>,
    stderr: Vec<String>,
}

fn lines_of(stream: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Split {
    fn spawn(mut cmd: Command) -> Split {
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let out = lines_of(child.stdout.take().unwrap());
        let err = lines_of(child.stderr.take().unwrap());
        Split { child, out, err, stdout: Vec::new(), stderr: Vec::new() }
    }

    fn drain(&mut self) {
        self.stdout.extend(self.out.try_iter());
        self.stderr.extend(self.err.try_iter());
    }

    /// Waits until a stdout line satisfies `pred`; panics (the child is killed on drop)
    /// past the deadline.
    fn wait_stdout(&mut self, what: &str, pred: impl Fn(&str) -> bool) {
        let end = Instant::now() + DEADLINE;
        while Instant::now() < end {
            self.drain();
            if self.stdout.iter().any(|l| pred(l)) {
                return;
            }
            if let Ok(line) = self.out.recv_timeout(std::time::Duration::from_millis(50)) {
                self.stdout.push(line);
            }
        }
        panic!("no stdout line {what} within {DEADLINE:?}\nstdout:\n{}\nstderr:\n{}", self.text(), self.errors());
    }

    /// Waits for the exit, then for the rest of the output; kills and panics past the deadline.
    fn wait_exit(&mut self) -> ExitStatus {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The readers end with the pipes.
                self.stdout.extend(self.out.iter());
                self.stderr.extend(self.err.iter());
                return status;
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                self.drain();
                panic!("did not exit within {DEADLINE:?}\nstdout:\n{}\nstderr:\n{}", self.text(), self.errors());
            }
            self.drain();
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill").args([name, &self.child.id().to_string()]).status().unwrap().success();
        assert!(ok, "kill {name}");
    }

    fn text(&self) -> String {
        self.stdout.join("\n")
    }

    fn errors(&self) -> String {
        self.stderr.join("\n")
    }
}

impl Drop for Split {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every stdout line is one JSON object with a node and an event; returns the events' names.
fn all_json(lines: &[String]) -> Vec<String> {
    assert!(!lines.is_empty(), "no JSON lines at all");
    lines
        .iter()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\nall:\n{}", lines.join("\n")));
            assert!(v["node"].is_array() && v["t"].is_u64(), "{line}");
            v["event"].as_str().unwrap_or_else(|| panic!("no event: {line}")).to_string()
        })
        .collect()
}

#[test]
fn demo_with_events_on_stdout_ends_and_writes_only_json_there() {
    // This hung forever before (the demo held the stdout lock the events' writer waited for).
    let mut cmd = bully_node();
    cmd.args(["demo", "--nodes", "3", "--duration", "2s", "--seed", "1", "--events", "-"]);
    let mut demo = Split::spawn(cmd);
    let status = demo.wait_exit();
    assert!(status.success(), "{status:?}\n{}", demo.errors());
    let events = all_json(&demo.stdout);
    assert!(events.iter().any(|e| e == "leader"), "{events:?}");
    assert!(events.iter().any(|e| e == "stopped"), "every event is out before the exit: {events:?}");
    // What a person reads went to stderr.
    let err = demo.errors();
    assert!(err.contains("summary after") && err.contains("elections won:"), "{err}");
}

#[test]
fn demo_stops_on_ctrl_c_and_sigterm() {
    for signal in ["-INT", "-TERM"] {
        let mut cmd = bully_node();
        cmd.args(["demo", "--nodes", "2", "--duration", "60s", "--seed", "2", "--events", "-"]);
        let mut demo = Split::spawn(cmd);
        demo.wait_stdout("with a leader", |l| common::is_event(l, "leader"));
        demo.signal(signal);
        let status = demo.wait_exit();
        assert!(status.success(), "{signal}: {status:?}");
        all_json(&demo.stdout);
        assert!(demo.errors().contains("summary after"), "{signal}: {}", demo.errors());
    }
}

#[test]
fn a_node_with_events_on_stdout_keeps_its_summary_off_stdout() {
    let (_gcd, port) = rust_gcd("HOWDY");
    let mut cmd = bully_node();
    cmd.args(["--gcd", &format!("127.0.0.1:{port}"), "--days", "9", "--su-id", "7700001", "--no-feign"]).args([
        "--listen",
        "127.0.0.1:0",
        "--events",
        "-",
    ]);
    let mut node = Split::spawn(cmd);
    node.wait_stdout("with a leader", |l| common::is_event(l, "leader"));
    node.signal("-INT");
    let status = node.wait_exit();
    assert!(status.success(), "{status:?}");
    let events = all_json(&node.stdout);
    assert_eq!(events.last().map(String::as_str), Some("stopped"), "{events:?}");
    let err = node.errors();
    assert!(err.contains("summary of (9, 7700001)") && err.contains("I am the leader now"), "{err}");
}

/// Runs the binary to its end with `args` (and `env`), within the deadline.
fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut cmd = bully_node();
    cmd.args(args).env_remove("NO_COLOR").env_remove("COLUMNS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut p = Split::spawn(cmd);
    let status = p.wait_exit();
    (status.code(), p.text(), p.errors())
}

#[test]
fn usage_errors_exit_2_and_say_what_to_give() {
    let node = ["--gcd", "127.0.0.1:1", "--su-id", "4123456"];
    let with = |extra: &[&'static str]| -> Vec<&'static str> { node.iter().chain(extra).copied().collect() };
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (with(&["--days", "366"]), "1 to 365", "birthday"),
        (with(&["--birthday", "2025-03-14"]), "--birthday 03-14", "not a number"),
        (with(&["--days", "3", "--probe-interval", "0..0"]), "at least 100ms", "panicked"),
        (with(&["--days", "3", "--feign-for", "0..0"]), "at least 100ms", "panicked"),
        (vec!["demo", "--nodes", "200"], "1 to 50", "1..=50"),
        (vec![], "bully-node demo", "panicked"),
    ];
    for (args, want, unwanted) in cases {
        let (code, out, err) = run(&args, &[]);
        assert_eq!(code, Some(2), "{args:?}: {out}{err}");
        assert!(err.contains(want), "{args:?}: wanted {want:?} in:\n{err}");
        assert!(!err.contains(unwanted), "{args:?}: {unwanted:?} in:\n{err}");
        assert!(out.is_empty(), "{args:?}: errors go to stderr, stdout had:\n{out}");
    }
}

#[test]
fn a_gcd_host_that_does_not_resolve_is_not_told_to_run_a_gcd_there() {
    // .invalid never resolves (RFC 6761).
    let (code, _, err) = run(&["--gcd", "nosuchhost.invalid:23600", "--days", "3", "--su-id", "4123456", "-q"], &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("check the host in --gcd"), "{err}");
    assert!(!err.contains("bully-node gcd --listen"), "{err}");
}

#[test]
fn help_is_short_with_h_long_with_help_and_fits_the_terminal() {
    let (code, short, _) = run(&["-h"], &[]);
    assert_eq!(code, Some(0));
    let (_, long, _) = run(&["--help"], &[]);
    assert!(long.contains("Examples:") && !short.contains("Examples:"), "{short}");
    assert!(short.lines().count() < long.lines().count());
    assert!(short.contains("bully-node demo"), "{short}");
    let (code, help_help, _) = run(&["help", "--help"], &[]);
    assert_eq!(code, Some(0));
    assert_eq!(help_help, long);
    let (_, demo, _) = run(&["demo", "--help"], &[]);
    assert!(demo.contains("1 to 50"), "{demo}");
    assert!(long.contains("your mother's birthday") || long.contains("Your mother's birthday"), "{long}");
    for args in [&["--help"][..], &["-h"], &["demo", "--help"], &["gcd", "--help"], &["check", "--help"]] {
        for (columns, width) in [("80", 80), ("72", 72)] {
            let (_, text, _) = run(args, &[("COLUMNS", columns)]);
            let long_lines: Vec<&str> = text.lines().filter(|l| l.chars().count() > width).collect();
            assert!(long_lines.is_empty(), "{args:?} at {columns} columns:\n{}", long_lines.join("\n"));
        }
        let (_, text, _) = run(args, &[]);
        assert!(text.lines().all(|l| l.chars().count() <= 100), "{args:?} with no width known:\n{text}");
    }
}

#[test]
fn colour_only_when_asked_or_on_a_terminal() {
    let esc = |s: &str| s.contains('\u{1b}');
    let (_, forced, _) = run(&["--help", "--color", "always"], &[]);
    assert!(esc(&forced), "--color always colours the help");
    let (_, piped, _) = run(&["--help"], &[]);
    assert!(!esc(&piped), "a pipe gets no colour");
    let (_, never, _) = run(&["--help", "--color=never"], &[("CLICOLOR_FORCE", "1")]);
    assert!(!esc(&never));
    let (_, _, err_forced) = run(&["demo", "--nodes", "0", "--color", "always"], &[]);
    assert!(esc(&err_forced), "errors follow --color too: {err_forced:?}");
    let (_, _, err_piped) = run(&["demo", "--nodes", "0"], &[]);
    assert!(!esc(&err_piped), "{err_piped:?}");

    // The demo's own colours: forced, and absent in a pipe (NO_COLOR and TERM=dumb only
    // matter on a terminal; the unit tests check those rules).
    let demo = ["demo", "--nodes", "2", "--duration", "1s", "--seed", "3", "--no-feign"];
    let (code, out, _) = run(&[&demo[..], &["--color", "always"]].concat(), &[]);
    assert_eq!(code, Some(0));
    assert!(esc(&out), "{out}");
    let (_, out, _) = run(&demo, &[("TERM", "xterm-256color")]);
    assert!(!esc(&out), "{out}");

    // The node's log: leader changes bold when forced, plain otherwise.
    let (_gcd, port) = rust_gcd("HOWDY");
    for (color, want) in [("always", true), ("auto", false)] {
        let mut cmd = bully_node();
        cmd.args(["--gcd", &format!("127.0.0.1:{port}"), "--days", "4", "--su-id", "7700002", "--no-feign"]).args([
            "--listen",
            "127.0.0.1:0",
            "--color",
            color,
        ]);
        let mut node = Split::spawn(cmd);
        node.wait_stdout("with the leader", |l| l.contains("I am the leader now"));
        let line = node.stdout.iter().find(|l| l.contains("I am the leader now")).unwrap().clone();
        assert_eq!(esc(&line), want, "--color {color}: {line:?}");
    }
}

#[test]
fn the_demo_opens_with_what_a_newcomer_needs_on_one_screen() {
    let (code, out, _) = run(&["demo", "--nodes", "1", "--duration", "1s", "--seed", "4"], &[]);
    assert_eq!(code, Some(0));
    let intro: Vec<&str> = out.lines().take_while(|l| !l.starts_with("demo: ")).collect();
    assert!(intro.len() <= 20, "{} lines", intro.len());
    assert!(intro.iter().all(|l| l.chars().count() <= 80), "{}", intro.join("\n"));
    let text = intro.join("\n");
    for word in ["highest id leads", "ELECT", "GOT_IT", "I_AM_LEADER", "PROBE", "GCD", "feigned failure", "settling"] {
        assert!(text.contains(word), "{word:?} not explained in:\n{text}");
    }
    assert!(out.contains("and 1 node for"), "{out}");
    assert!(out.lines().skip(intro.len()).take(3).all(|l| l.chars().count() <= 80), "{out}");
    assert!(out.contains("leader changes (the highest live member changed): 1\n"), "{out}");
    // -q is for those who know it already.
    let (_, quiet, _) = run(&["demo", "--nodes", "1", "--duration", "1s", "--seed", "4", "-q"], &[]);
    assert!(quiet.starts_with("demo: "), "{quiet}");
}

#[test]
fn gcd_takes_a_bare_port_and_stops_on_ctrl_c() {
    let mut cmd = bully_node();
    cmd.args(["gcd", "0"]);
    let mut gcd = Split::spawn(cmd);
    gcd.wait_stdout("listening", |l| l.contains("listening on 0.0.0.0:"));
    gcd.signal("-INT");
    let status = gcd.wait_exit();
    assert!(status.success(), "{status:?}");
    assert!(gcd.text().contains("stopped"), "{}", gcd.text());
}

#[cfg(unix)]
#[test]
fn a_node_whose_stdout_closes_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let (_gcd, port) = rust_gcd("HOWDY");
    let gcd = format!("127.0.0.1:{port}");
    // The leader logs each PROBE it answers; its stdout is closed after the first line.
    let mut cmd = bully_node();
    cmd.args(["--gcd", &gcd, "--days", "30", "--su-id", "7700003", "--no-feign", "--listen", "127.0.0.1:0"]);
    let mut leader = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut first = String::new();
    BufReader::new(leader.stdout.take().unwrap()).read_line(&mut first).unwrap(); // then dropped: closed
    let err = lines_of(leader.stderr.take().unwrap());
    let mut cmd = bully_node();
    cmd.args(["--gcd", &gcd, "--days", "2", "--su-id", "7700004", "--no-feign", "--listen", "127.0.0.1:0"])
        .args(["--probe-interval", "100ms..200ms"]);
    let _follower = Split::spawn(cmd);
    let end = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = leader.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > end {
            let _ = leader.kill();
            let _ = leader.wait();
            panic!("the node kept running after its stdout closed");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(status.signal(), Some(13), "ended by SIGPIPE, as `| head` expects: {status:?}");
    let err: Vec<String> = err.iter().collect();
    assert!(err.is_empty(), "quietly: {err:?}");
}

#[test]
fn the_first_commands_a_person_mistypes_get_told_what_to_type() {
    // A URL for --gcd: drop the scheme.
    let (code, _, err) = run(&["--gcd", "http://localhost:23600", "--days", "3", "--su-id", "4123456"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("drop the scheme, e.g. --gcd localhost:23600"), "{err}");
    // The peer's command without -- before it.
    let (code, _, err) = run(&["check", "python3", "lab2.py", "{gcd}"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("Put `--` before the peer's command"), "{err}");
    // A placeholder the checker does not know is not handed to the peer as written.
    let (code, out, err) = run(&["check", "--", "python3", "lab2.py", "{gcd_host}", "{gcdport}"], &[]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains("{gcdport}") && err.contains("the known ones are {gcd} {gcd_host} {gcd_port}"), "{err}");
}

#[test]
fn each_subcommands_help_lists_only_what_applies_to_it() {
    for sub in ["gcd", "check"] {
        let (_, help, _) = run(&[sub, "--help"], &[]);
        assert!(!help.contains("leader changes"), "{sub} --help:\n{help}");
        assert!(help.contains("[default: HOWDY]") && !help.contains("[default: howdy]"), "{sub} --help:\n{help}");
    }
    let (_, help, _) = run(&["gcd", "--help"], &[]);
    assert!(help.contains("-q, --quiet") && help.contains("Show only warnings and errors"), "{help}");
    let (_, help, _) = run(&["check", "--help"], &[]);
    assert!(!help.contains("--quiet"), "{help}");
    let (_, help, _) = run(&["--help"], &[]);
    assert!(help.contains("--gcd-wait") && help.contains("[default: 30s]"), "{help}");
}

#[test]
fn quiet_before_the_subcommand_still_means_quiet() {
    let (code, quiet, err) = run(&["-q", "demo", "--nodes", "1", "--duration", "1s", "--seed", "4"], &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(quiet.starts_with("demo: "), "{quiet}");
}
