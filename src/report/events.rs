//! Reporting what the node does: a line for a person, in the protocol's words, and with
//! `--events PATH` one JSON object per line for tools and tests, each with `"t"`
//! (milliseconds since the Unix epoch), `"node"` (`[days, su_id]`) and `"event"`.

use crate::identity::ProcessId;
use crate::node::{Clash, Event, FeignMode};
use std::fmt::Write as _;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::time::{SystemTime, UNIX_EPOCH};

/// A callback that takes a node's id and one of its events.
pub type ObserverFn = dyn Fn(ProcessId, &Event) + Send + Sync;

/// Receives every event of a node as it happens (the demo merges a group's this way).
#[derive(Clone)]
pub struct Observer(pub std::sync::Arc<ObserverFn>);

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}

/// `1 member`, `3 members`: a count with its noun, singular or plural.
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn pids(list: &[ProcessId]) -> String {
    list.iter().map(ProcessId::to_string).collect::<Vec<_>>().join(", ")
}

/// Whether a person should act on `event`, and so see it as a warning. The protocol's
/// expected failures (an ELECT refused by a member that is down, a PROBE finding the
/// leader gone) are the algorithm working, not warnings; a GCD that can't be reached is
/// (at start-up, on re-registration, or at the leader's check),
/// and so is another process holding our SU ID or our address (stop one of them).
pub fn is_warning(event: &Event) -> bool {
    matches!(event, Event::ReregistrationFailed { .. } | Event::LeaderCheckFailed { .. } | Event::IdentityClash { .. })
}

/// The line a person reads for `event`, or `None` for events shown otherwise.
pub fn describe(event: &Event, me: ProcessId) -> Option<String> {
    Some(match event {
        Event::Joined { .. } => return None, // the runtime prints the group it joined
        Event::ElectionStarted { election, reason, asking, .. } if asking.is_empty() => {
            format!("election #{election} ({reason}): no member ranks higher")
        }
        Event::ElectionStarted { election, reason, asking, higher } if *higher > asking.len() => {
            let rest = higher - asking.len();
            format!(
                "election #{election} ({reason}): ELECT to {} first; {} above us next, highest first, until one answers",
                pids(asking),
                count(rest, "other member", "others")
            )
        }
        Event::ElectionStarted { election, reason, asking, .. } => {
            format!("election #{election} ({reason}): ELECT to {}", pids(asking))
        }
        Event::GotIt { from } => format!("GOT_IT from {from}"),
        Event::ElectFailed { to, reason } => format!("ELECT to {to} failed: {reason}"),
        Event::Leader { leader, .. } if *leader == me => "I am the leader now".into(),
        Event::Leader { leader, .. } => format!("following leader {leader}"),
        Event::Won { election, announcing_to } => {
            format!("won election #{election}: I_AM_LEADER to {}", count(*announcing_to, "member", "members"))
        }
        Event::NoLeaderAfterGotIt { election } => {
            format!("election #{election}: no I_AM_LEADER came after GOT_IT")
        }
        Event::ElectReceived { from, learned, electing } => {
            let from = from.map_or("a peer".into(), |p| p.to_string());
            let mut s = format!("ELECT from {from}, answered GOT_IT");
            if !learned.is_empty() {
                let _ = write!(s, ", learned {}", pids(learned));
            }
            if *electing {
                s.push_str(" (already electing)");
            }
            s
        }
        Event::IAmLeaderReceived { leader } => format!("I_AM_LEADER from {leader}"),
        Event::Reregistered { members, learned } if learned.is_empty() => {
            format!("registered again with the GCD: {}", count(*members, "member", "members"))
        }
        Event::Reregistered { members, learned } => {
            format!("registered again with the GCD: {}, new: {}", count(*members, "member", "members"), pids(learned))
        }
        Event::ReregistrationFailed { reason } => {
            format!("registering again with the GCD failed, keeping the members we have: {reason}")
        }
        Event::ProbeOk { leader } => format!("PROBE to leader {leader}: GOT_IT"),
        Event::ProbeFailed { leader, reason } => {
            format!("PROBE to leader {leader} failed: {reason}; asking the GCD for the members, then electing")
        }
        Event::FormerLeaderProbeFailed { former, leader, reason, again } => {
            let now = leader.map_or("nobody yet".to_string(), |l| l.to_string());
            let then = if *again { "; asking it again later" } else { "" };
            format!("PROBE to former leader {former} failed: {reason}; we follow {now} now{then}")
        }
        Event::Failed { mode: FeignMode::Close, lasting } => {
            format!("feigning failure for {} ms: listener closed", lasting.as_millis())
        }
        Event::Failed { mode: FeignMode::Ignore, lasting } => {
            format!("feigning failure for {} ms: ignoring every message", lasting.as_millis())
        }
        Event::Recovered => "recovered: listening again, registering, then electing".into(),
        Event::ElectionRound { election, asking } => {
            format!("election #{election}: ELECT to {} (next, highest first)", pids(asking))
        }
        Event::ElectionWidened { election, asking } => {
            format!("election #{election}: ELECT also to {} (learned meanwhile)", pids(asking))
        }
        Event::LateAnnouncement { leader, following } => format!(
            "I_AM_LEADER from {leader} came just after {following}'s, which ranks higher: it crossed in flight; still following {following}"
        ),
        Event::WaitingForLeader { election, leader } => format!(
            "election #{election}: nobody to ask; leader {leader} announced itself just now, but the GCD does not list where it listens: waiting for its I_AM_LEADER instead of winning"
        ),
        Event::AnnouncedTo { members } => format!("I_AM_LEADER to {} (new to us)", pids(members)),
        Event::IdentityClash { other, addr, clash, source } => {
            let at = addr.as_ref().map_or(String::new(), |a| format!(" at {a}"));
            match clash {
                Clash::SuId => format!(
                    "{other}{at} has our SU ID {} ({source}): the GCD keeps one process per SU ID, so whichever of us registered last replaced the other, and each re-registration replaces it again; stop the other process, or give one of us another --su-id",
                    me.su_id
                ),
                Clash::SameId => format!(
                    "another process runs as our id {me}{at} ({source}): the GCD keeps the latest registration, so one of us replaced the other; stop one of them"
                ),
                Clash::Address => format!(
                    "{other} is listed at our address{at} ({source}): a stale entry of a process that used this port before us (or it replaced us at the GCD); we never ELECT it or pass it on"
                ),
            }
        }
        Event::Moved { from, to } => {
            format!(
                "our port {from} was taken while we were down: listening at {to} now, and registered it with the GCD"
            )
        }
        Event::LeaderChecked { members, learned, forgot, electing_for, announced_to } => {
            let mut s = format!("asked the GCD again (leader's check): it lists {members}, ");
            match learned.len() {
                0 => s.push_str("nothing new"),
                1 => s.push_str("learned 1 member"),
                n => {
                    let _ = write!(s, "learned {n} members");
                }
            }
            if *forgot > 0 {
                let _ = write!(s, ", it has forgotten {forgot} we know (restarted?)");
            }
            if let Some(higher) = electing_for {
                let _ = write!(s, ", {higher} ranks higher: electing");
            } else if !announced_to.is_empty() {
                let _ = write!(s, ": I_AM_LEADER to {}", pids(announced_to));
            }
            s
        }
        Event::LeaderCheckFailed { reason } => {
            format!("asking the GCD again (leader's check) failed, asking again next period: {reason}")
        }
        Event::Stopped => "stopped".into(),
    })
}

/// One line of `--events`: when, whose, and the event's own fields.
#[derive(serde::Serialize)]
struct Line<'a> {
    t: u128,
    node: ProcessId,
    #[serde(flatten)]
    event: &'a Event,
}

/// The JSON line for `event`.
pub fn json(event: &Event, me: ProcessId) -> String {
    let t = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    json_at(event, me, t)
}

/// The JSON line for `event` at `t` milliseconds since the Unix epoch.
fn json_at(event: &Event, me: ProcessId, t: u128) -> String {
    serde_json::to_string(&Line { t, node: me, event }).expect("an event serializes")
}

/// Lines of events waiting for the writer before new ones are dropped.
pub const EVENT_QUEUE: usize = 4096;

/// Where JSON events go: nowhere, stdout, or a file. Lines are handed to a writer thread
/// through a bounded queue, so the node's main loop never waits on the output: a reader
/// that stops reading a piped `--events -` must not stall elections (a benchmark harness
/// that read slowly did exactly that). If the queue is full, lines are dropped and
/// counted. Closing (or dropping) the sink writes out what is queued.
pub struct EventSink {
    queue: Option<SyncSender<String>>,
    writer: Option<std::thread::JoinHandle<()>>,
    dropped: AtomicU64,
}

impl EventSink {
    pub fn none() -> Self {
        EventSink { queue: None, writer: None, dropped: AtomicU64::new(0) }
    }

    /// `-` is stdout; anything else a file, created or truncated.
    pub fn open(path: &str) -> io::Result<Self> {
        let out: Box<dyn Write + Send> =
            if path == "-" { Box::new(io::stdout()) } else { Box::new(std::fs::File::create(path)?) };
        Self::to_writer(out)
    }

    /// Events to any writer, one line per event, each flushed.
    pub fn to_writer(mut out: Box<dyn Write + Send>) -> io::Result<Self> {
        let (queue, lines) = sync_channel::<String>(EVENT_QUEUE);
        let writer = std::thread::Builder::new().name("events".into()).spawn(move || {
            for line in lines {
                // An events file that can't be written must not stop the node.
                let _ = writeln!(out, "{line}").and_then(|_| out.flush());
            }
        })?;
        Ok(EventSink { queue: Some(queue), writer: Some(writer), dropped: AtomicU64::new(0) })
    }

    /// Queues one line; never waits.
    pub fn write(&self, line: &str) {
        let Some(queue) = &self.queue else { return };
        if let Err(TrySendError::Full(_)) = queue.try_send(line.to_owned()) {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            crate::report::logging::throttled_warn(&format!("the events output is not keeping up: {n} lines dropped"));
        }
    }

    /// Lines dropped because the writer was behind.
    #[cfg(test)]
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Writes out everything queued and stops the writer.
    pub fn close(&mut self) {
        self.queue.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl Drop for EventSink {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{Failure, Why};

    /// One event of every kind, with a `reason` that needs escaping.
    fn one_of_each() -> Vec<Event> {
        use crate::membership::Addr;
        let a = ProcessId::new(9, 1000009);
        let b = ProcessId::new(12, 4000001);
        let reason = "refused: \"x\" \\ y\nz\tw\r\u{1}é".to_string();
        vec![
            Event::Joined { members: 3 },
            Event::ElectionStarted {
                election: 3,
                reason: Why::AboveAnnouncer { leader: a, higher: b },
                asking: vec![a, b],
                higher: 2,
            },
            Event::ElectionStarted { election: 7, reason: Why::ElectFrom { sender: None }, asking: vec![b], higher: 3 },
            Event::ElectionRound { election: 7, asking: vec![a] },
            Event::GotIt { from: a },
            Event::ElectFailed { to: b, reason: Failure::Frame(reason.clone()) },
            Event::Leader { leader: a, previous: None },
            Event::Leader { leader: b, previous: Some(a) },
            Event::Won { election: 4, announcing_to: 2 },
            Event::NoLeaderAfterGotIt { election: 5 },
            Event::ElectReceived { from: None, learned: vec![], electing: false },
            Event::ElectReceived { from: Some(a), learned: vec![b], electing: true },
            Event::IAmLeaderReceived { leader: b },
            Event::Reregistered { members: 4, learned: vec![a] },
            Event::ReregistrationFailed { reason: reason.clone() },
            Event::ProbeOk { leader: a },
            Event::ProbeFailed { leader: a, reason: Failure::Frame(reason.clone()) },
            Event::Failed { mode: FeignMode::Close, lasting: std::time::Duration::from_millis(1500) },
            Event::Failed { mode: FeignMode::Ignore, lasting: std::time::Duration::from_micros(2_000_900) },
            Event::Recovered,
            Event::ElectionWidened { election: 6, asking: vec![b] },
            Event::LateAnnouncement { leader: a, following: b },
            Event::WaitingForLeader { election: 8, leader: b },
            Event::AnnouncedTo { members: vec![a, b] },
            Event::IdentityClash { other: a, addr: None, clash: Clash::SuId, source: "the GCD".into() },
            Event::IdentityClash {
                other: a,
                addr: Some(Addr::new("127.0.0.1", 5001)),
                clash: Clash::SameId,
                source: "an ELECT".into(),
            },
            Event::IdentityClash {
                other: b,
                addr: Some(Addr::new("localhost", 5002)),
                clash: Clash::Address,
                source: "the GCD".into(),
            },
            Event::Moved { from: Addr::new("127.0.0.1", 5001), to: Addr::new("127.0.0.1", 5003) },
            Event::LeaderChecked { members: 5, learned: vec![], forgot: 0, electing_for: None, announced_to: vec![] },
            Event::LeaderChecked {
                members: 5,
                learned: vec![a, b],
                forgot: 2,
                electing_for: Some(b),
                announced_to: vec![a],
            },
            Event::LeaderCheckFailed { reason: reason.clone() },
            Event::Stopped,
        ]
    }

    /// Pins the exact bytes of one line per event kind (key order included): tools that
    /// read `--events` rely on them.
    #[test]
    fn every_kind_of_event_has_its_exact_line() {
        let want = [
            r#"{"t":1764067200123,"node":[5,1234567],"event":"joined","members":3}"#,
            r#"{"t":1764067200123,"node":[5,1234567],"event":"election_started","election":3,"reason":"(9, 1000009) announced itself but (12, 4000001) ranks higher","asking":[[9,1000009],[12,4000001]],"higher":2}"#,
            r#"{"t":1764067200123,"node":[5,1234567],"event":"election_started","election":7,"reason":"ELECT from a peer","asking":[[12,4000001]],"higher":3}"#,
            r#"{"t":1764067200123,"node":[5,1234567],"event":"election_round","election":7,"asking":[[9,1000009]]}"#,
            r#"{"t":1764067200123,"node":[5,1234567],"event":"got_it","from":[9,1000009]}"#,
            r#"{"t":1764067200123,"node":[5,1234567],"event":"elect_failed","to":[12,4000001],"reason":"refused: \"x\" \\ y\nz\tw\r\u0001é"}"#,
            r#"{"t":1764067200123,"node":[5,1234567],"event":"leader","leader":[9,1000009],"previous":null}"#,
            r#"{"t":1764067200123,"node":[5,1234567],"event":"leader","leader":[12,4000001],"previous":[9,1000009]}"#,
            r#"{"t":1764067200123,"node":[5,1234567],"event":"won","election":4,"announcing_to":2}"#,
            r#"{"t":1764067200123,"node":[5,1234567],"event":"no_leader_after_got_it","election":5}"#,
            r#"{"t":1764067200123,"node":[5,1234567],"event":"elect_received","from":null,"learned":[],"electing":false}"#,
            r#"{"t":1764067200123,"node":[5,1234567],"event":"elect_received","from":[9,1000009],"learned":[[12,4000001]],"electing":true}"#,
            r#"{"t":1764067200123,"node":[5,1234567],"event":"i_am_leader_received","leader":[12,4000001]}"#,
            r#"{"t":1764067200123,"node":[5,1234567],"event":"reregistered","members":4,"learned":[[9,1000009]]}"#,
            r#"{"t":1764067200123,"node":[5,1234567],"event":"reregistration_failed","reason":"refused: \"x\" \\ y\nz\tw\r\u0001é"}"#,
            r#"{"t":1764067200123,"node":[5,1234567],"event":"probe_ok","leader":[9,1000009]}"#,
            r#"{"t":1764067200123,"node":[5,1234567],"event":"probe_failed","leader":[9,1000009],"reason":"refused: \"x\" \\ y\nz\tw\r\u0001é"}"#,
            r#"{"t":1764067200123,"node":[5,1234567],"event":"failed","mode":"close","ms":1500}"#,
            r#"{"t":1764067200123,"node":[5,1234567],"event":"failed","mode":"ignore","ms":2000}"#,
            r#"{"t":1764067200123,"node":[5,1234567],"event":"recovered"}"#,
            r#"{"t":1764067200123,"node":[5,1234567],"event":"election_widened","election":6,"asking":[[12,4000001]]}"#,
            r#"{"t":1764067200123,"node":[5,1234567],"event":"late_announcement","leader":[9,1000009],"following":[12,4000001]}"#,
            r#"{"t":1764067200123,"node":[5,1234567],"event":"waiting_for_leader","election":8,"leader":[12,4000001]}"#,
            r#"{"t":1764067200123,"node":[5,1234567],"event":"announced_to","members":[[9,1000009],[12,4000001]]}"#,
            r#"{"t":1764067200123,"node":[5,1234567],"event":"identity_clash","other":[9,1000009],"clash":"su_id","source":"the GCD"}"#,
            r#"{"t":1764067200123,"node":[5,1234567],"event":"identity_clash","other":[9,1000009],"clash":"same_id","addr":"127.0.0.1:5001","source":"an ELECT"}"#,
            r#"{"t":1764067200123,"node":[5,1234567],"event":"identity_clash","other":[12,4000001],"clash":"address","addr":"localhost:5002","source":"the GCD"}"#,
            r#"{"t":1764067200123,"node":[5,1234567],"event":"moved","from":"127.0.0.1:5001","to":"127.0.0.1:5003"}"#,
            r#"{"t":1764067200123,"node":[5,1234567],"event":"leader_checked","members":5,"learned":[],"forgot":0,"electing_for":null,"announced_to":[]}"#,
            r#"{"t":1764067200123,"node":[5,1234567],"event":"leader_checked","members":5,"learned":[[9,1000009],[12,4000001]],"forgot":2,"electing_for":[12,4000001],"announced_to":[[9,1000009]]}"#,
            r#"{"t":1764067200123,"node":[5,1234567],"event":"leader_check_failed","reason":"refused: \"x\" \\ y\nz\tw\r\u0001é"}"#,
            r#"{"t":1764067200123,"node":[5,1234567],"event":"stopped"}"#,
        ];
        let events = one_of_each();
        assert_eq!(events.len(), want.len());
        for (event, want) in events.iter().zip(want) {
            assert_eq!(json_at(event, ProcessId::new(5, 1234567), 1764067200123), want);
        }
    }

    #[test]
    fn json_lines_carry_time_node_and_event() {
        let me = ProcessId::new(5, 1234567);
        let line = json(
            &Event::ElectionStarted {
                election: 3,
                reason: Why::ElectFrom { sender: None },
                asking: vec![ProcessId::new(9, 1000009)],
                higher: 1,
            },
            me,
        );
        assert!(line.starts_with("{\"t\":1"), "{line}");
        assert!(line.contains(r#""node":[5,1234567],"event":"election_started","election":3"#), "{line}");
        assert!(line.contains(r#""reason":"ELECT from a peer","asking":[[9,1000009]],"higher":1}"#), "{line}");
        let line = json(&Event::Leader { leader: me, previous: None }, me);
        assert!(line.ends_with(r#""leader":[5,1234567],"previous":null}"#), "{line}");
    }

    /// A writer that blocks until released, like a pipe nobody reads.
    struct Stuck(std::sync::Arc<std::sync::Barrier>, std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.1.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            if self.1.lock().unwrap().iter().filter(|b| **b == b'\n').count() == 1 {
                self.0.wait(); // the first line blocks until the test lets it go
            }
            Ok(())
        }
    }

    #[test]
    fn a_stuck_output_never_blocks_the_caller_and_closing_writes_what_is_queued() {
        let gate = std::sync::Arc::new(std::sync::Barrier::new(2));
        let written = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut sink = EventSink::to_writer(Box::new(Stuck(gate.clone(), written.clone()))).unwrap();
        let total = EVENT_QUEUE + 500;
        for i in 0..total {
            sink.write(&format!("line {i}")); // returns although the writer is stuck
        }
        assert!(sink.dropped() >= 499, "dropped {}", sink.dropped());
        gate.wait();
        sink.close();
        let lines = String::from_utf8(written.lock().unwrap().clone()).unwrap().lines().count();
        assert_eq!(lines as u64 + sink.dropped(), total as u64);
    }

    #[test]
    fn lines_in_the_protocols_words() {
        let me = ProcessId::new(5, 1234567);
        let other = ProcessId::new(9, 1000009);
        assert_eq!(describe(&Event::GotIt { from: other }, me).unwrap(), "GOT_IT from (9, 1000009)");
        assert_eq!(describe(&Event::Leader { leader: me, previous: None }, me).unwrap(), "I am the leader now");
        assert_eq!(
            describe(&Event::Leader { leader: other, previous: None }, me).unwrap(),
            "following leader (9, 1000009)"
        );
        // A paced election names only the ELECTs it sent, round by round.
        let why = Why::ElectFrom { sender: None };
        let paced = Event::ElectionStarted { election: 2, reason: why, asking: vec![other], higher: 3 };
        assert_eq!(
            describe(&paced, me).unwrap(),
            "election #2 (ELECT from a peer): ELECT to (9, 1000009) first; 2 others above us next, highest first, until one answers"
        );
        let round = Event::ElectionRound { election: 2, asking: vec![other, me] };
        assert_eq!(
            describe(&round, me).unwrap(),
            "election #2: ELECT to (9, 1000009), (5, 1234567) (next, highest first)"
        );
    }

    #[test]
    fn counts_agree_with_their_nouns_and_only_actionable_events_warn() {
        let me = ProcessId::new(5, 1234567);
        let other = ProcessId::new(9, 1000009);
        assert_eq!(count(1, "node", "nodes"), "1 node");
        assert_eq!(count(0, "node", "nodes"), "0 nodes");
        let won = describe(&Event::Won { election: 1, announcing_to: 1 }, me).unwrap();
        assert!(won.ends_with("I_AM_LEADER to 1 member"), "{won}");
        let again = describe(&Event::Reregistered { members: 1, learned: vec![] }, me).unwrap();
        assert!(again.ends_with("1 member"), "{again}");
        assert!(!is_warning(&Event::ElectFailed { to: other, reason: Failure::ClosedSilently }));
        assert!(!is_warning(&Event::ProbeFailed { leader: other, reason: Failure::ClosedSilently }));
        assert!(is_warning(&Event::ReregistrationFailed { reason: "GCD down".into() }));
        let clash = Event::IdentityClash { other, addr: None, clash: crate::node::Clash::SuId, source: "GCD".into() };
        assert!(is_warning(&clash));
    }
}
