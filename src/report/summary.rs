//! Figures a person reads at the end of a run, computed from the event stream alone (so
//! a tool reading the `--events` file can check them): one node's own figures, and for
//! a demo group the swim lanes and the group's figures.

use crate::identity::ProcessId;
use crate::node::Event;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

/// What a node is doing, for time accounting and swim lanes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activity {
    NotRunning,
    Electing,
    Leading,
    Following,
    Down,
}

impl Activity {
    fn lane_char(self) -> char {
        match self {
            Activity::NotRunning => ' ',
            Activity::Electing => '?',
            Activity::Leading => '█',
            Activity::Following => '─',
            Activity::Down => 'x',
        }
    }
}

/// ELECT, I_AM_LEADER and PROBE messages an event says were sent.
pub fn messages_sent(event: &Event) -> usize {
    match event {
        Event::ElectionStarted { asking, .. }
        | Event::ElectionRound { asking, .. }
        | Event::ElectionWidened { asking, .. } => asking.len(),
        Event::Won { announcing_to, .. } => *announcing_to,
        Event::AnnouncedTo { members } => members.len(),
        Event::LeaderChecked { announced_to, .. } => announced_to.len(),
        Event::ProbeOk { .. } | Event::ProbeFailed { .. } | Event::FormerLeaderProbeFailed { .. } => 1,
        _ => 0,
    }
}

/// The activity an event leaves a node in, if it changes it.
fn activity_after(event: &Event, me: ProcessId) -> Option<Activity> {
    Some(match event {
        Event::Joined { .. } | Event::ElectionStarted { .. } | Event::Recovered => Activity::Electing,
        Event::Won { .. } => Activity::Leading,
        Event::Leader { leader, .. } | Event::IAmLeaderReceived { leader } if *leader == me => Activity::Leading,
        // A lower member's announcement is ignored (an election follows): no change yet.
        Event::IAmLeaderReceived { leader } if *leader < me => return None,
        Event::Leader { .. } | Event::IAmLeaderReceived { .. } => Activity::Following,
        Event::Failed { .. } => Activity::Down,
        Event::Stopped => Activity::NotRunning,
        _ => return None,
    })
}

/// One node's figures over its run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeFigures {
    pub me: ProcessId,
    pub elections_started: usize,
    pub elections_won: usize,
    pub leader_changes: usize,
    pub messages_sent: usize,
    pub probes_ok: usize,
    pub probes_failed: usize,
    /// PROBEs from others that we answered (logged only at -v: a leader answers many).
    pub probes_received: usize,
    pub failures: usize,
    /// Time spent in each activity.
    pub time: BTreeMap<&'static str, Duration>,
    activity: Activity,
    since: Duration,
    last: Duration,
}

impl NodeFigures {
    pub fn new(me: ProcessId) -> Self {
        NodeFigures {
            me,
            elections_started: 0,
            elections_won: 0,
            leader_changes: 0,
            messages_sent: 0,
            probes_ok: 0,
            probes_failed: 0,
            probes_received: 0,
            failures: 0,
            time: BTreeMap::new(),
            activity: Activity::NotRunning,
            since: Duration::ZERO,
            last: Duration::ZERO,
        }
    }

    /// Takes in an event at `at` (time since the node started).
    pub fn record(&mut self, at: Duration, event: &Event) {
        self.messages_sent += messages_sent(event);
        match event {
            Event::ElectionStarted { .. } => self.elections_started += 1,
            Event::Won { .. } => self.elections_won += 1,
            Event::Leader { .. } => self.leader_changes += 1,
            Event::ProbeOk { .. } => self.probes_ok += 1,
            Event::ProbeFailed { .. } | Event::FormerLeaderProbeFailed { .. } => self.probes_failed += 1,
            Event::Failed { .. } => self.failures += 1,
            _ => {}
        }
        if let Some(next) = activity_after(event, self.me) {
            self.account(at);
            self.activity = next;
        }
        self.last = self.last.max(at);
    }

    fn account(&mut self, at: Duration) {
        let name = match self.activity {
            Activity::NotRunning => "stopped",
            Activity::Electing => "electing",
            Activity::Leading => "leading",
            Activity::Following => "following",
            Activity::Down => "failed (feigned)",
        };
        if self.activity != Activity::NotRunning {
            *self.time.entry(name).or_default() += at.saturating_sub(self.since);
        }
        self.since = at;
    }

    /// The summary printed when the node stops.
    pub fn render(&mut self, at: Duration) -> String {
        self.account(at);
        let mut s = format!("summary of {} over {:.1} s:\n", self.me, at.as_secs_f64());
        let _ = writeln!(s, "  elections started: {}", self.elections_started);
        let _ = writeln!(s, "  elections won: {}", self.elections_won);
        let _ = writeln!(s, "  leader changes seen: {}", self.leader_changes);
        let _ = writeln!(s, "  messages sent (ELECT, I_AM_LEADER, PROBE): {}", self.messages_sent);
        let _ = writeln!(s, "  probes answered: {}, failed: {}", self.probes_ok, self.probes_failed);
        let _ = writeln!(s, "  PROBEs from others, answered: {}", self.probes_received);
        let _ = writeln!(s, "  feigned failures: {}", self.failures);
        for (name, d) in &self.time {
            let share = if at.is_zero() { 0.0 } else { 100.0 * d.as_secs_f64() / at.as_secs_f64() };
            let _ = writeln!(s, "  time {name}: {:.1} s ({share:.0}%)", d.as_secs_f64());
        }
        s
    }
}

/// One event of a group run.
#[derive(Clone, Debug)]
pub struct Observation {
    /// Time since the run started.
    pub at: Duration,
    pub node: ProcessId,
    pub event: Event,
}

/// A group's figures over a run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupFigures {
    pub elections_started: usize,
    pub elections_won: usize,
    /// Times the highest live member changed.
    pub leader_changes: usize,
    /// After each change, how long until every live member followed the new highest.
    pub times_to_agree: Vec<Duration>,
    /// Changes after which the group did not agree before the next change.
    pub changes_not_settled: usize,
    pub messages_sent: usize,
    /// Share of the run in which every live member followed the highest live member.
    pub agreed_share: f64,
}

impl GroupFigures {
    /// Sweeps the observations (in time order) of a run of length `end`.
    pub fn compute(observations: &[Observation], end: Duration) -> GroupFigures {
        let mut g = GroupFigures::default();
        let mut live: BTreeMap<ProcessId, bool> = BTreeMap::new();
        let mut views: BTreeMap<ProcessId, Option<ProcessId>> = BTreeMap::new();
        let mut truth: Option<ProcessId> = None;
        let mut changed_at: Option<Duration> = None;
        let mut last_top: Option<ProcessId> = None;
        let (mut agreed, mut agreed_since) = (false, Duration::ZERO);
        let mut agreed_total = Duration::ZERO;
        for o in observations {
            g.messages_sent += messages_sent(&o.event);
            match &o.event {
                Event::ElectionStarted { .. } => g.elections_started += 1,
                Event::Won { .. } => g.elections_won += 1,
                Event::Joined { .. } | Event::Recovered => {
                    live.insert(o.node, true);
                }
                // Stopping is the end of the run, not a failure the group must get over.
                Event::Failed { .. } => {
                    live.insert(o.node, false);
                }
                Event::Leader { leader, .. } => {
                    views.insert(o.node, Some(*leader));
                }
                _ => {}
            }
            let highest = live.iter().filter(|(_, up)| **up).map(|(p, _)| *p).max();
            if highest != truth {
                if changed_at.is_some() && !agreed {
                    g.changes_not_settled += 1;
                }
                // A change is a new member at the top; a group whose every member is
                // down for a moment has none to change to.
                if highest.is_some() && highest != last_top {
                    g.leader_changes += 1;
                    last_top = highest;
                }
                truth = highest;
                changed_at = Some(o.at);
            }
            let now_agreed = highest.is_some()
                && live.iter().filter(|(_, up)| **up).all(|(p, _)| views.get(p).copied().flatten() == highest);
            if now_agreed && !agreed {
                agreed_since = o.at;
                if let Some(at) = changed_at.take() {
                    g.times_to_agree.push(o.at - at);
                }
            } else if !now_agreed && agreed {
                agreed_total += o.at - agreed_since;
            }
            agreed = now_agreed;
        }
        if agreed {
            agreed_total += end.saturating_sub(agreed_since);
        }
        g.agreed_share = if end.is_zero() { 0.0 } else { agreed_total.as_secs_f64() / end.as_secs_f64() };
        g
    }

    pub fn median_to_agree(&self) -> Option<Duration> {
        let mut t = self.times_to_agree.clone();
        t.sort();
        t.get(t.len().saturating_sub(1) / 2).copied().filter(|_| !t.is_empty())
    }

    pub fn worst_to_agree(&self) -> Option<Duration> {
        self.times_to_agree.iter().max().copied()
    }

    pub fn render(&self) -> String {
        let ms = |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{} ms", d.as_millis()));
        let mut s = String::new();
        let _ = writeln!(s, "  elections started: {}", self.elections_started);
        let _ = writeln!(s, "  elections won: {}", self.elections_won);
        let _ = writeln!(s, "  leader changes (the highest live member changed): {}", self.leader_changes);
        let _ = writeln!(
            s,
            "  time to agree after a change: median {}, worst {} ({}, {} overtaken by the next)",
            ms(self.median_to_agree()),
            ms(self.worst_to_agree()),
            crate::report::events::count(self.times_to_agree.len(), "change", "changes"),
            self.changes_not_settled
        );
        let _ = writeln!(s, "  messages sent (ELECT, I_AM_LEADER, PROBE): {}", self.messages_sent);
        let _ = writeln!(
            s,
            "  every live member followed the highest live member {:.1}% of the run",
            100.0 * self.agreed_share
        );
        s
    }
}

/// Each node's activity over the run, sampled into `width` columns.
pub fn swim_lanes(observations: &[Observation], nodes: &[ProcessId], end: Duration, width: usize) -> Vec<String> {
    let mut changes: BTreeMap<ProcessId, Vec<(Duration, Activity)>> = BTreeMap::new();
    for o in observations {
        if let Some(a) = activity_after(&o.event, o.node) {
            changes.entry(o.node).or_default().push((o.at, a));
        }
    }
    nodes
        .iter()
        .map(|node| {
            let list = changes.get(node).map(Vec::as_slice).unwrap_or(&[]);
            (0..width)
                .map(|col| {
                    let t = end.mul_f64((col as f64 + 0.5) / width as f64);
                    list.iter().take_while(|(at, _)| *at <= t).last().map_or(Activity::NotRunning, |(_, a)| *a)
                })
                .map(Activity::lane_char)
                .collect()
        })
        .collect()
}

/// The legend under the lanes.
pub const LANE_LEGEND: &str = "█ leading   ─ following   ? electing   x failed (feigned)";

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(d: u32) -> ProcessId {
        ProcessId::new(d, 1_000_000 + d)
    }

    fn obs(ms: u64, node: u32, event: Event) -> Observation {
        Observation { at: Duration::from_millis(ms), node: pid(node), event }
    }

    fn leader(l: u32) -> Event {
        Event::Leader { leader: pid(l), previous: None }
    }

    #[test]
    fn group_figures_follow_the_truth() {
        let o = vec![
            obs(0, 1, Event::Joined { members: 1 }),
            obs(
                0,
                1,
                Event::ElectionStarted {
                    election: 1,
                    reason: crate::node::Why::JoinedGroup,
                    asking: vec![],
                    higher: 0,
                },
            ),
            obs(0, 1, leader(1)),
            obs(0, 1, Event::Won { election: 1, announcing_to: 0 }),
            obs(100, 2, Event::Joined { members: 2 }),
            obs(
                100,
                2,
                Event::ElectionStarted {
                    election: 1,
                    reason: crate::node::Why::JoinedGroup,
                    asking: vec![],
                    higher: 0,
                },
            ),
            obs(100, 2, leader(2)),
            obs(100, 2, Event::Won { election: 1, announcing_to: 1 }),
            obs(150, 1, leader(2)),
            obs(600, 2, Event::Failed { mode: crate::node::FeignMode::Close, lasting: Duration::from_secs(1) }),
            obs(900, 1, Event::ProbeFailed { leader: pid(2), reason: crate::node::Failure::ClosedSilently }),
            obs(900, 1, leader(1)),
        ];
        let g = GroupFigures::compute(&o, Duration::from_millis(1000));
        assert_eq!(g.elections_started, 2);
        assert_eq!(g.elections_won, 2);
        assert_eq!(g.messages_sent, 2); // one I_AM_LEADER, one PROBE
        assert_eq!(g.leader_changes, 3); // 1, then 2, then 1 again
        assert_eq!(g.times_to_agree, [Duration::ZERO, Duration::from_millis(50), Duration::from_millis(300)]);
        // Agreed 0-100, 150-600, 900-1000: 650 ms of 1000.
        assert!((g.agreed_share - 0.65).abs() < 1e-9, "{}", g.agreed_share);
        let lanes = swim_lanes(&o, &[pid(1), pid(2)], Duration::from_millis(1000), 10);
        assert_eq!(lanes[0], "█────────█");
        assert_eq!(lanes[1], " █████xxxx");
    }

    #[test]
    fn node_figures_account_time() {
        let mut f = NodeFigures::new(pid(1));
        f.record(Duration::ZERO, &Event::Joined { members: 2 });
        f.record(
            Duration::ZERO,
            &Event::ElectionStarted {
                election: 1,
                reason: crate::node::Why::JoinedGroup,
                asking: vec![pid(2)],
                higher: 1,
            },
        );
        f.record(Duration::from_secs(1), &Event::IAmLeaderReceived { leader: pid(2) });
        f.record(Duration::from_secs(1), &leader(2));
        let text = f.render(Duration::from_secs(4));
        assert!(text.contains("elections started: 1"), "{text}");
        assert!(text.contains("messages sent (ELECT, I_AM_LEADER, PROBE): 1"), "{text}");
        assert!(text.contains("time electing: 1.0 s (25%)"), "{text}");
        assert!(text.contains("time following: 3.0 s (75%)"), "{text}");
    }

    #[test]
    fn a_lone_node_has_one_leader_change_and_stopping_is_none() {
        let o = vec![
            obs(0, 1, Event::Joined { members: 1 }),
            obs(
                0,
                1,
                Event::ElectionStarted {
                    election: 1,
                    reason: crate::node::Why::JoinedGroup,
                    asking: vec![],
                    higher: 0,
                },
            ),
            obs(0, 1, leader(1)),
            obs(0, 1, Event::Won { election: 1, announcing_to: 0 }),
            obs(900, 1, Event::Stopped),
        ];
        let g = GroupFigures::compute(&o, Duration::from_millis(1000));
        assert_eq!(g.leader_changes, 1);
        assert_eq!(g.changes_not_settled, 0);
        assert!((g.agreed_share - 1.0).abs() < 1e-9, "{}", g.agreed_share);
        assert!(g.render().contains("(1 change, 0 overtaken"), "{}", g.render());
    }

    #[test]
    fn a_leader_ignoring_a_lower_announcement_keeps_leading() {
        let mut f = NodeFigures::new(pid(5));
        f.record(Duration::ZERO, &Event::Joined { members: 2 });
        f.record(Duration::ZERO, &leader(5));
        f.record(Duration::from_secs(1), &Event::IAmLeaderReceived { leader: pid(2) });
        let text = f.render(Duration::from_secs(4));
        assert!(text.contains("time leading: 4.0 s (100%)"), "{text}");
        assert!(!text.contains("following"), "{text}");
    }
}
