//! The rubric: a line per check with its evidence for a person, and the same as JSON
//! (through serde_json) for a grader's scripts.

use super::dialect::Spoken;
use super::judge::{Check, Tier, Verdict};
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
    /// What the run itself says beyond the checks: the peer ended by itself, or died
    /// right after one of the checker's own messages.
    pub notes: Vec<String>,
    /// The peer's last lines of output, shown when a required check failed.
    pub last_lines: Vec<String>,
    /// Whether the peer registered at all: if not, nothing else was tried.
    pub registered: bool,
}

impl Report {
    pub fn count(&self, v: Verdict) -> usize {
        self.checks.iter().filter(|c| c.verdict == v).count()
    }

    /// Whether a core check failed (exit status 1). Extra credit and advice never fail a
    /// run: the assignment counts extra credit only on top of the core.
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.required() && c.verdict == Verdict::Fail)
    }

    pub fn dialect_name(&self) -> &'static str {
        self.dialect.map_or("unknown", |d| d.dialect.as_str())
    }

    /// The rubric as a person reads it: the core, then each extra-credit feature, then
    /// advice; a line per check with its evidence under it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("bully-node check: {}\n", self.command.join(" ")));
        if !self.registered {
            // One line, not sixteen skipped ones: nothing else could be tried.
            let registers = self.checks.iter().find(|c| c.name == "registers");
            out.push_str(&format!(
                "\n✗ the peer never registered with the checker's GCD at {} (accepting {}), so nothing else was tried: {}\n",
                self.gcd,
                self.gcd_message,
                registers.map_or("", |c| c.evidence.as_str())
            ));
            out.push_str(
                "  Does it take the GCD's address from the command ({gcd}, or {gcd_host} {gcd_port})? \
                 Is the registration name right (--gcd-message HOWDY, BEGIN or JOIN)?\n",
            );
            if self.last_lines.is_empty() {
                out.push_str("\nthe peer printed nothing\n");
            } else {
                out.push_str(&format!("\nthe peer's last output:\n  {}\n", self.last_lines.join("\n  ")));
            }
            return out;
        }
        out.push_str(&format!(
            "  peer id {}, GCD at {} (accepting {}), dialect: {}{}\n",
            self.pid,
            self.gcd,
            self.gcd_message,
            self.dialect.map_or("unknown".to_string(), |d| d.to_string()),
            if self.dialect.is_some() { " (the checker answered it in that dialect)" } else { "" }
        ));
        for tier in [Tier::Core, Tier::Probe, Tier::Feign, Tier::Advisory] {
            let checks: Vec<&Check> = self.checks.iter().filter(|c| c.tier == tier).collect();
            if checks.is_empty() {
                continue;
            }
            let heading = match tier {
                Tier::Core => "Required (the assignment's core)",
                Tier::Probe => "Extra credit: PROBE the leader, re-register and elect when it fails",
                Tier::Feign => "Extra credit: feign failure and recover",
                Tier::Advisory => "Advisory (beyond the assignment)",
            };
            out.push_str(&format!("\n{heading}\n"));
            for c in checks {
                let mark = match c.verdict {
                    Verdict::Pass => "✓",
                    Verdict::Fail => "✗",
                    Verdict::Skip => "-",
                    Verdict::NotAttempted => "○",
                };
                let tag = match c.verdict {
                    Verdict::Skip => " (skipped)",
                    Verdict::NotAttempted => " (not attempted)",
                    _ => "",
                };
                out.push_str(&format!("{mark} {}{tag}\n      {}\n", c.name, c.evidence));
            }
        }
        for note in &self.notes {
            out.push_str(&format!("\n{note}\n"));
        }
        if !self.last_lines.is_empty() {
            out.push_str(&format!("\nthe peer's last output:\n  {}\n", self.last_lines.join("\n  ")));
        }
        let core_failed = self.checks.iter().filter(|c| c.required() && c.verdict == Verdict::Fail).count();
        let not_attempted = self.count(Verdict::NotAttempted);
        out.push_str(&format!(
            "\n{} checks: {} passed, {} failed{}, {} skipped{}, in {:.1} s\n",
            self.checks.len(),
            self.count(Verdict::Pass),
            self.count(Verdict::Fail),
            if core_failed == self.count(Verdict::Fail) { String::new() } else { format!(" ({core_failed} required)") },
            self.count(Verdict::Skip),
            if not_attempted > 0 { format!(", {not_attempted} not attempted") } else { String::new() },
            self.seconds
        ));
        out
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "command": self.command,
            "pid": [self.pid.days, self.pid.su_id],
            "dialect": self.dialect_name(),
            "old_names": self.dialect.is_some_and(|d| d.old_names),
            "checks": self.checks.iter().map(|c| json!({
                "name": c.name,
                "result": c.verdict.as_str(),
                "required": c.required(),
                "tier": c.tier.as_str(),
                "evidence": c.evidence,
            })).collect::<Vec<_>>(),
            "passed": self.count(Verdict::Pass),
            "failed": self.count(Verdict::Fail),
            "skipped": self.count(Verdict::Skip),
            "not_attempted": self.count(Verdict::NotAttempted),
            "notes": self.notes,
            "seconds": (self.seconds * 10.0).round() / 10.0,
        })
    }
}
