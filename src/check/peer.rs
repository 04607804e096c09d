//! The peer under test as a process: its command with the placeholders filled in, its
//! last lines of output, and a guard that stops it and everything it started.
//!
//! The peer runs in a process group of its own, so that a shell wrapper or a peer that
//! forks leaves nothing behind: stopping signals the whole group (SIGTERM, then SIGKILL
//! after a grace period) and reaps the child. [`PeerProcess`] does this when dropped,
//! so a panic or an early return cannot leave the peer running.

use crate::identity::ProcessId;
use chrono::{Datelike, NaiveDate};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the placeholders stand for.
#[derive(Clone, Debug)]
pub struct Placeholders {
    pub gcd_host: String,
    pub gcd_port: u16,
    pub port: u16,
    pub pid: ProcessId,
    /// MM-DD whose next occurrence is `pid.days` days away.
    pub birthday: String,
}

/// Every placeholder [`Placeholders::fill`] knows, as written in a command.
pub const PLACEHOLDERS: [&str; 8] =
    ["{gcd}", "{gcd_host}", "{gcd_port}", "{port}", "{listen}", "{su_id}", "{days}", "{birthday}"];

/// The `{name}`s in `args` that look like placeholders (lower-case letters, digits and
/// `_`) but are none the checker knows: a typo such as `{gcdport}` would reach the peer
/// as it is written.
pub fn unknown_placeholders(args: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for arg in args {
        let mut rest = arg.as_str();
        while let Some(open) = rest.find('{') {
            rest = &rest[open + 1..];
            let Some(close) = rest.find('}') else { break };
            let name = &rest[..close];
            let looks = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                && name.starts_with(|c: char| c.is_ascii_lowercase());
            let written = format!("{{{name}}}");
            if looks && !PLACEHOLDERS.contains(&written.as_str()) && !out.contains(&written) {
                out.push(written);
            }
        }
    }
    out
}

impl Placeholders {
    /// Replaces every `{name}` the issue defines in `arg`; other braces stay as written.
    pub fn fill(&self, arg: &str) -> String {
        arg.replace("{gcd}", &format!("{}:{}", self.gcd_host, self.gcd_port))
            .replace("{gcd_host}", &self.gcd_host)
            .replace("{gcd_port}", &self.gcd_port.to_string())
            .replace("{listen}", &format!("127.0.0.1:{}", self.port))
            .replace("{port}", &self.port.to_string())
            .replace("{su_id}", &self.pid.su_id.to_string())
            .replace("{days}", &self.pid.days.to_string())
            .replace("{birthday}", &self.birthday)
    }
}

/// The MM-DD whose next occurrence after `today` is `days` away (1 to 365).
pub fn birthday_in(today: NaiveDate, days: u32) -> String {
    let date = today + chrono::Days::new(days.into());
    format!("{:02}-{:02}", date.month(), date.day())
}

/// Lines of output kept to show when the peer misbehaves.
const KEEP_LINES: usize = 30;
/// Tracebacks whose times are kept: a peer that prints one per message need not be
/// followed further.
const TRACEBACKS_KEPT: usize = 50;
/// The most characters of one of its lines that are shown.
const LINE_MAX: usize = 300;

/// A running peer; stopped (with its whole process group) when dropped.
pub struct PeerProcess {
    child: Mutex<Option<Child>>,
    pub os_pid: u32,
    output: Arc<Mutex<VecDeque<String>>>,
    /// When the peer printed a Python traceback (the first [`TRACEBACKS_KEPT`]).
    traceback: Arc<Mutex<Vec<Instant>>>,
    exit: Mutex<Option<ExitStatus>>,
}

impl PeerProcess {
    /// Starts `command` (already filled in) with stdin closed and its output collected.
    pub fn spawn(command: &[String]) -> std::io::Result<PeerProcess> {
        let (program, args) =
            command.split_first().ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no command"))?;
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn()?;
        let output = Arc::new(Mutex::new(VecDeque::new()));
        let streams: [Option<Box<dyn Read + Send>>; 2] = [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
            child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
        ];
        let traceback = Arc::new(Mutex::new(Vec::new()));
        for stream in streams.into_iter().flatten() {
            let output = Arc::clone(&output);
            let traceback = Arc::clone(&traceback);
            let _ = std::thread::Builder::new().name("peer-output".into()).spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if line.starts_with("Traceback (most recent call last)") {
                        let mut seen = traceback.lock().unwrap_or_else(|e| e.into_inner());
                        if seen.len() < TRACEBACKS_KEPT {
                            seen.push(Instant::now());
                        }
                    }
                    let line = crate::report::printable(line.as_bytes(), LINE_MAX);
                    let mut kept = output.lock().unwrap_or_else(|e| e.into_inner());
                    if kept.len() == KEEP_LINES {
                        kept.pop_front();
                    }
                    kept.push_back(line);
                }
            });
        }
        Ok(PeerProcess {
            os_pid: child.id(),
            child: Mutex::new(Some(child)),
            output,
            traceback,
            exit: Mutex::new(None),
        })
    }

    /// When the peer printed Python tracebacks, in order.
    pub fn tracebacks(&self) -> Vec<Instant> {
        self.traceback.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The exit status if the peer has ended.
    pub fn exited(&self) -> Option<ExitStatus> {
        let mut exit = self.exit.lock().unwrap_or_else(|e| e.into_inner());
        if exit.is_none() {
            if let Some(child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                *exit = child.try_wait().ok().flatten();
            }
        }
        *exit
    }

    /// The last lines the peer printed (stdout and stderr interleaved as they came).
    pub fn last_lines(&self, n: usize) -> Vec<String> {
        let kept = self.output.lock().unwrap_or_else(|e| e.into_inner());
        kept.iter().skip(kept.len().saturating_sub(n)).cloned().collect()
    }

    /// Stops the peer and its process group, and reaps it. Safe to call twice.
    pub fn stop(&self) {
        let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
        signal_group(self.os_pid, false);
        let end = Instant::now() + Duration::from_secs(1);
        let mut status = None;
        while Instant::now() < end {
            if let Ok(Some(s)) = child.try_wait() {
                status = Some(s);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Whatever else is left in the group goes too, even if the child itself ended.
        signal_group(self.os_pid, true);
        if status.is_none() {
            let _ = child.kill();
            status = child.wait().ok();
        }
        let mut exit = self.exit.lock().unwrap_or_else(|e| e.into_inner());
        if exit.is_none() {
            *exit = status;
        }
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(unix)]
fn signal_group(pgid: u32, kill: bool) {
    let sig = if kill { libc::SIGKILL } else { libc::SIGTERM };
    if let Ok(pgid) = libc::pid_t::try_from(pgid) {
        // SAFETY: kill(2) with a negative pid signals that process group; no memory is involved.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(-pgid, sig);
        }
    }
}

#[cfg(not(unix))]
fn signal_group(_pgid: u32, _kill: bool) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_everywhere_in_an_argument() {
        let p = Placeholders {
            gcd_host: "127.0.0.1".into(),
            gcd_port: 23600,
            port: 40001,
            pid: ProcessId::new(42, 4_123_456),
            birthday: "01-06".into(),
        };
        assert_eq!(p.fill("--gcd={gcd}"), "--gcd=127.0.0.1:23600");
        assert_eq!(p.fill("{gcd_host} {gcd_port} {port} {listen}"), "127.0.0.1 23600 40001 127.0.0.1:40001");
        assert_eq!(p.fill("{su_id}/{days}/{birthday}/{other}"), "4123456/42/01-06/{other}");
    }

    #[test]
    fn a_mistyped_placeholder_is_found_and_known_ones_and_other_braces_are_not() {
        let args: Vec<String> =
            ["--gcd={gcd}", "{gcdport}", "{port}{Port}", "${HOME}", "{\"a\": 1}", "{su-id}", "{gcdport}", "{}"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        assert_eq!(unknown_placeholders(&args), vec!["{gcdport}".to_string()]);
        let known: Vec<String> = PLACEHOLDERS.iter().map(|s| s.to_string()).collect();
        assert!(unknown_placeholders(&known).is_empty());
    }

    #[test]
    fn the_birthday_is_the_given_days_away() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 25).unwrap();
        for days in [1, 36, 97, 200, 365] {
            let bd: crate::identity::Birthday = birthday_in(today, days).parse().unwrap();
            assert_eq!(bd.days_until_next(today), days, "{days}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn stopping_takes_the_whole_process_group() {
        // A shell that starts a grandchild and waits: both must be gone after stop().
        let cmd: Vec<String> = ["sh", "-c", "sleep 30 & echo $!; wait"].iter().map(|s| s.to_string()).collect();
        let peer = PeerProcess::spawn(&cmd).unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        let grandchild = loop {
            if let Some(line) = peer.last_lines(1).first() {
                break line.trim().parse::<i32>().unwrap();
            }
            assert!(Instant::now() < end, "the shell printed nothing");
            std::thread::sleep(Duration::from_millis(20));
        };
        peer.stop();
        assert!(peer.exited().is_some());
        let end = Instant::now() + Duration::from_secs(10);
        // Gone, or a zombie waiting for init to reap it.
        let alive = || {
            std::fs::read_to_string(format!("/proc/{grandchild}/stat"))
                .is_ok_and(|stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
        };
        while alive() {
            assert!(Instant::now() < end, "the grandchild {grandchild} outlived the stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
