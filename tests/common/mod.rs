//! Helpers for end-to-end tests: real processes on loopback, whose output is polled
//! against a deadline (never a fixed sleep), and which are killed when dropped.
#![allow(dead_code)] // each test file uses its own subset

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Generous: CI machines are slow, and a test only waits this long when it fails. (A
/// Python process once took over 20 s to print its first line here, at load average 40.)
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A child process whose stdout and stderr lines are collected as they come.
pub struct Proc {
    pub name: String,
    child: Child,
    pub lines: Receiver<String>,
    pub seen: Vec<String>,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let (tx, lines) = channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for stream in [Box::new(out) as Box<dyn Read + Send>, Box::new(err)] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Proc { name: name.into(), child, lines, seen: Vec::new() }
    }

    /// Waits until a line satisfies `pred` and returns it; panics with everything seen
    /// when the deadline passes or the process ends first.
    pub fn wait_for(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        if let Some(line) = self.seen.iter().find(|l| pred(l)) {
            return line.clone();
        }
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{}: no line {what} within {DEADLINE:?}; saw:\n{}", self.name, self.seen.join("\n"))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("{}: ended before a line {what}; saw:\n{}", self.name, self.seen.join("\n"))
                }
            }
        }
    }

    /// Waits for the process to exit by itself and returns its code and all output.
    pub fn wait_exit(&mut self) -> (Option<i32>, String) {
        self.wait_exit_within(DEADLINE)
    }

    /// [`Proc::wait_exit`] with a deadline of its own, for long runs.
    pub fn wait_exit_within(&mut self, limit: Duration) -> (Option<i32>, String) {
        let end = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(line);
                }
                return (status.code(), self.seen.join("\n"));
            }
            assert!(Instant::now() < end, "{} did not exit within {limit:?}", self.name);
            while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(20)) {
                self.seen.push(line);
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn bully_node() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bully-node"))
}

pub fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The Python stand-in for gcd2.py, accepting `accept`; returns it and its port.
pub fn python_gcd(accept: &str) -> (Proc, u16) {
    let mut cmd = Command::new("python3");
    cmd.args([fixture("gcd_standin.py").as_str(), "--port", "0", "--accept", accept]);
    let mut p = Proc::spawn(&format!("python gcd ({accept})"), cmd);
    let line = p.wait_for("LISTENING", |l| l.starts_with("LISTENING "));
    let port = line["LISTENING ".len()..].trim().parse().unwrap();
    (p, port)
}

/// `bully-node gcd` accepting `accept`; returns it and its port.
pub fn rust_gcd(accept: &str) -> (Proc, u16) {
    let mut cmd = bully_node();
    cmd.args(["gcd", "--listen", "127.0.0.1:0", "--accept", accept]);
    let mut p = Proc::spawn(&format!("bully-node gcd ({accept})"), cmd);
    let line = p.wait_for("listening on", |l| l.contains("listening on 127.0.0.1:"));
    let port = line.split("127.0.0.1:").nth(1).unwrap().split(|c: char| !c.is_ascii_digit()).next().unwrap();
    (p, port.parse().unwrap())
}

/// Sends `bytes` in one write to 127.0.0.1:`port` and reads until the other side closes.
pub fn send_raw(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(bytes).unwrap();
    let mut reply = Vec::new();
    match s.read_to_end(&mut reply) {
        Ok(_) => {}
        // A peer that closes with unread data resets the connection: still "no more".
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("reading the reply from port {port}: {e}"),
    }
    reply
}

/// A process id as the events write it: `[days, su_id]`.
pub type Pid = (u32, u32);

/// The JSON object of an event line (ours or a Python peer's), if `line` is one.
pub fn event(line: &str) -> Option<Value> {
    let v: Value = serde_json::from_str(line).ok()?;
    v["event"].is_string().then_some(v)
}

/// Whether `line` is an event of `kind` (`"leader"`, `"stopped"`, ...).
pub fn is_event(line: &str, kind: &str) -> bool {
    event(line).is_some_and(|e| e["event"] == kind)
}

/// A process id as JSON, `[days, su_id]`, to compare with an event's fields.
pub fn pid_json(p: Pid) -> Value {
    serde_json::json!([p.0, p.1])
}

/// The leader an event names, if it is a leader event.
pub fn leader_of(e: &Value) -> Option<Pid> {
    if e["event"] != "leader" {
        return None;
    }
    let p = e["leader"].as_array()?;
    Some((p.first()?.as_u64()?.try_into().ok()?, p.get(1)?.as_u64()?.try_into().ok()?))
}

/// The leader in a JSON event line, if it is a leader event.
pub fn leader_in(line: &str) -> Option<Pid> {
    leader_of(&event(line)?)
}

/// Whether a string field `key` of `e` contains `text`.
pub fn says(e: &Value, key: &str, text: &str) -> bool {
    e[key].as_str().is_some_and(|s| s.contains(text))
}

/// A scratch directory removed when dropped.
pub struct Scratch(pub std::path::PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("bully-{name}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn file(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A bully-node process with its events file.
pub struct Node {
    pub pid: Pid,
    pub events: String,
    pub proc: Proc,
}

impl Node {
    /// Starts `bully-node` as `pid` against the GCD on `gcd_port`, events in `dir`.
    /// Feigned failure is off unless `extra` sets a `--feign-*` option.
    pub fn start(dir: &Scratch, gcd_port: u16, pid: Pid, extra: &[&str]) -> Node {
        let events = dir.file(&format!("{}-{}.jsonl", pid.0, pid.1));
        let mut cmd = bully_node();
        cmd.args(["--gcd", &format!("127.0.0.1:{gcd_port}"), "--days", &pid.0.to_string()])
            .args(["--su-id", &pid.1.to_string(), "--listen", "127.0.0.1:0", "--events", &events])
            .args(extra);
        if !extra.iter().any(|a| a.starts_with("--feign")) {
            cmd.arg("--no-feign");
        }
        Node { pid, events, proc: Proc::spawn(&format!("node {pid:?}"), cmd) }
    }

    /// Every event written so far, parsed. Each whole line must be a JSON event (a test
    /// that looks for an event must not pass because the lines changed shape); a last
    /// line without its newline is still being written and is left for the next read.
    pub fn events(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.events).unwrap_or_default();
        text.split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .map(|l| event(l).unwrap_or_else(|| panic!("{}: not a JSON event: {l:?}", self.events)))
            .collect()
    }

    /// Every event of `kind` written so far.
    pub fn events_of(&self, kind: &str) -> Vec<Value> {
        self.events().into_iter().filter(|e| e["event"] == kind).collect()
    }

    /// The leader this node follows now, per its latest leader event.
    pub fn leader(&self) -> Option<Pid> {
        self.events().iter().rev().find_map(leader_of)
    }
}

/// Polls `cond` every 50 ms until it holds; panics with `describe()` after DEADLINE.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool, describe: impl Fn() -> String) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < end, "{what}: not within {DEADLINE:?}\n{}", describe());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until every node follows `leader`.
pub fn wait_all_follow(nodes: &[&Node], leader: Pid) {
    wait_until(
        &format!("all follow {leader:?}"),
        || nodes.iter().all(|n| n.leader() == Some(leader)),
        || {
            let mut report = String::new();
            for n in nodes {
                report.push_str(&format!("{:?} follows {:?}\n", n.pid, n.leader()));
                if n.leader() != Some(leader) {
                    let events: Vec<String> = n.events().iter().map(Value::to_string).collect();
                    report.push_str(&format!("  its events:\n    {}\n", events.join("\n    ")));
                }
            }
            report
        },
    );
}

/// A Python reference peer (tests/fixtures/bully_peer.py).
pub struct PyPeer {
    pub pid: Pid,
    pub proc: Proc,
}

impl PyPeer {
    pub fn start(gcd_port: u16, pid: Pid, name: &str) -> PyPeer {
        Self::start_with(gcd_port, pid, name, &[])
    }

    pub fn start_with(gcd_port: u16, pid: Pid, name: &str, extra: &[&str]) -> PyPeer {
        let mut cmd = Command::new("python3");
        cmd.arg(fixture("bully_peer.py"))
            .args(["--gcd", &format!("127.0.0.1:{gcd_port}"), "--days", &pid.0.to_string()])
            .args(["--su-id", &pid.1.to_string(), "--name", name])
            .args(extra);
        let mut proc = Proc::spawn(&format!("python peer {pid:?}"), cmd);
        proc.wait_for("listening", |l| is_event(l, "listening"));
        PyPeer { pid, proc }
    }

    /// Waits until this peer's latest leader line names `leader`.
    pub fn wait_follows(&mut self, leader: Pid) {
        let end = Instant::now() + DEADLINE;
        loop {
            // Take every line that has arrived, then judge by the latest leader line.
            while let Ok(line) = self.proc.lines.recv_timeout(Duration::from_millis(50)) {
                self.proc.seen.push(line);
            }
            if self.proc.seen.iter().rev().find_map(|l| leader_in(l)) == Some(leader) {
                return;
            }
            assert!(
                Instant::now() < end,
                "python peer {:?} never followed {leader:?}:\n{}",
                self.pid,
                self.proc.seen.join("\n")
            );
        }
    }
}

/// Python values in few keystrokes: `s("ELECT")`, `i(5)`, `t([i(5), i(1234567)])`.
pub fn s(x: &str) -> bully_node::wire::Value {
    bully_node::wire::Value::str(x)
}

pub fn i(x: i64) -> bully_node::wire::Value {
    bully_node::wire::Value::Int(x)
}

pub fn t<const N: usize>(items: [bully_node::wire::Value; N]) -> bully_node::wire::Value {
    bully_node::wire::Value::tuple(items)
}
