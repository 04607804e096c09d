//! The rubric: a line per check with its evidence for a person, and the same as JSON
//! (through serde_json) for a grader's scripts.

use super::dialect::Spoken;
use super::judge::{Check, Verdict};
use crate::identity::ProcessId;
use crate::membership::Addr;
use crate::protocol::RegisterName;
use serde_json::json;

#[derive(Clone, Debug)]
pub struct Report {
    /// The peer's command as run (placeholders filled in).
    pub command: Vec<String>,
    /// The identity the checker gave the peer.
    pub pid: ProcessId,
    pub gcd: Addr,
    pub gcd_message: RegisterName,
    /// The dialect its messages showed, if any did.
    pub dialect: Option<Spoken>,
    pub checks: Vec<Check>,
    pub seconds: f64,
    /// Said when the peer ended by itself during the check.
    pub exit_note: Option<String>,
    /// The peer's last lines of output, shown when a required check failed.
    pub last_lines: Vec<String>,
}

impl Report {
    pub fn count(&self, v: Verdict) -> usize {
        self.checks.iter().filter(|c| c.verdict == v).count()
    }

    /// Whether a required check failed (exit status 1).
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.required && c.verdict == Verdict::Fail)
    }

    pub fn dialect_name(&self) -> &'static str {
        self.dialect.map_or("unknown", |d| d.dialect.as_str())
    }

    /// The rubric as a person reads it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("bully-node check: {}\n", self.command.join(" ")));
        out.push_str(&format!(
            "  peer id {}, GCD at {} (accepting {}), dialect: {}{}\n\n",
            self.pid,
            self.gcd,
            self.gcd_message,
            self.dialect.map_or("unknown".to_string(), |d| d.to_string()),
            if self.dialect.is_some() { " (the checker answered it in that dialect)" } else { "" }
        ));
        for c in &self.checks {
            let mark = match c.verdict {
                Verdict::Pass => "✓",
                Verdict::Fail => "✗",
                Verdict::Skip => "-",
            };
            let tag = match (c.verdict, c.required) {
                (Verdict::Skip, _) => " (skipped)",
                (_, false) => " (advisory)",
                _ => "",
            };
            out.push_str(&format!("{mark} {}{tag}\n      {}\n", c.name, c.evidence));
        }
        if let Some(note) = &self.exit_note {
            out.push_str(&format!("\n{note}\n"));
        }
        if !self.last_lines.is_empty() {
            out.push_str(&format!("\nthe peer's last output:\n  {}\n", self.last_lines.join("\n  ")));
        }
        let failed_required = self.checks.iter().filter(|c| c.required && c.verdict == Verdict::Fail).count();
        out.push_str(&format!(
            "\n{} checks: {} passed, {} failed{}, {} skipped, in {:.1} s\n",
            self.checks.len(),
            self.count(Verdict::Pass),
            self.count(Verdict::Fail),
            if failed_required == self.count(Verdict::Fail) {
                String::new()
            } else {
                format!(" ({failed_required} required)")
            },
            self.count(Verdict::Skip),
            self.seconds
        ));
        out
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "command": self.command,
            "pid": [self.pid.days, self.pid.su_id],
            "dialect": self.dialect_name(),
            "checks": self.checks.iter().map(|c| json!({
                "name": c.name,
                "result": c.verdict.as_str(),
                "required": c.required,
                "evidence": c.evidence,
            })).collect::<Vec<_>>(),
            "passed": self.count(Verdict::Pass),
            "failed": self.count(Verdict::Fail),
            "skipped": self.count(Verdict::Skip),
            "seconds": (self.seconds * 10.0).round() / 10.0,
        })
    }
}
