//! Helpers for end-to-end tests: real processes on loopback, whose output is polled
//! against a deadline (never a fixed sleep), and which are killed when dropped.
#![allow(dead_code)] // each test file uses its own subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Generous: CI machines are slow, and a test only waits this long when it fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A child process whose stdout and stderr lines are collected as they come.
pub struct Proc {
    pub name: String,
    child: Child,
    lines: Receiver<String>,
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
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(line);
                }
                return (status.code(), self.seen.join("\n"));
            }
            assert!(Instant::now() < end, "{} did not exit within {DEADLINE:?}", self.name);
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
