//! Which OK a members-dict peer of the ELECTION / OK / COORDINATOR years reads.
//!
//! Their ELECTION and PROBE name no sender, and no single reply form serves them all
//! (PROTOCOL.md): some unpack every reply as `name, data`, others compare it with the
//! string `'OK'`. What a member does next tells which form it did not understand: it
//! declares victory right after we answered its ELECTION (its COORDINATOR names it), or
//! it elects right after we answered its PROBE. The book keeps what each member showed
//! (switched at most once, so a belief never flips back and forth) and a default for
//! members that showed nothing yet (switched at most once too). Pure: time comes in as
//! an argument, so the rules are tested with a fake clock.

use super::{Dialect, Heard, Message, OkHabit};
use crate::identity::ProcessId;
use crate::wire::Value;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// How long after we answered an ELECTION a COORDINATOR from a lower member shows that
/// it read our OK as no answer: those peers wait 1 to 2 s for OK, then declare victory.
pub const AFTER_ELECTION: Duration = Duration::from_secs(4);

/// How long after we answered a PROBE an ELECTION shows that the PROBE read as failed
/// (those peers re-register and elect at once).
pub const AFTER_PROBE: Duration = Duration::from_millis(1500);

/// ELECTIONs right after our PROBE answers in one form before the default changes: an
/// ELECTION may also come from a member that just joined, so one is not enough.
pub const PROBE_MISSES: u32 = 2;

/// Answers remembered for matching (the newest).
const REMEMBERED: usize = 32;

/// Members whose habit the book keeps.
const MAX_MEMBERS: usize = 2 * crate::membership::MAX_LEARNED_MEMBERS;

/// One answer to a members-dict message whose sender we could not name.
#[derive(Clone, Debug)]
struct Answer {
    at: Duration,
    probe: bool,
    habit: OkHabit,
    /// Who may have sent it: the members its dict lists below us (an ELECTION goes up).
    candidates: Vec<ProcessId>,
}

/// What a piece of evidence taught, for the log (each at most once per member).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Learned {
    /// The member that showed it, when known.
    pub member: Option<ProcessId>,
    /// The form it reads.
    pub habit: OkHabit,
    /// Whether members that showed nothing yet are answered this way from now on.
    pub default_changed: bool,
}

#[derive(Debug)]
pub struct ReplyBook {
    me: ProcessId,
    habits: HashMap<ProcessId, OkHabit>,
    default: OkHabit,
    default_switched: bool,
    answers: VecDeque<Answer>,
    probe_misses: u32,
}

impl ReplyBook {
    /// `('OK', None)` first: the members-dict messages are `(name, data)` tuples, and so
    /// is the reply their template reads.
    pub fn new(me: ProcessId) -> ReplyBook {
        ReplyBook {
            me,
            habits: HashMap::new(),
            default: OkHabit::Tuple,
            default_switched: false,
            answers: VecDeque::new(),
            probe_misses: 0,
        }
    }

    /// The habit we answer `pid` with.
    pub fn habit_of(&self, pid: ProcessId) -> OkHabit {
        self.habits.get(&pid).copied().unwrap_or(self.default)
    }

    /// The reply to `heard` on its own connection at time `now`, or None when it takes
    /// none there (I_AM_LEADER, a three-part ELECTION).
    pub fn answer(&mut self, now: Duration, heard: &Heard) -> Option<Value> {
        let probe = match heard.message {
            Message::Probe => true,
            Message::Elect { .. } => false,
            _ => return None,
        };
        let habit = match (heard.dialect, heard.sender) {
            (Dialect::OldNames, Some(pid)) => self.habit_of(pid),
            (Dialect::OldNames, None) => {
                let candidates = match &heard.message {
                    Message::Elect { members, .. } => members.iter().map(|m| m.pid).filter(|p| *p < self.me).collect(),
                    _ => Vec::new(),
                };
                let habit = self.choose(&candidates);
                if self.answers.len() == REMEMBERED {
                    self.answers.pop_front();
                }
                self.answers.push_back(Answer { at: now, probe, habit, candidates });
                habit
            }
            _ => self.default,
        };
        heard.dialect.answer(self.me, habit, probe)
    }

    /// The habit most of `candidates` showed, else the default (also on a tie).
    fn choose(&self, candidates: &[ProcessId]) -> OkHabit {
        let shown = |h: OkHabit| candidates.iter().filter(|p| self.habits.get(p) == Some(&h)).count();
        let (tuple, bare) = (shown(OkHabit::Tuple), shown(OkHabit::Bare));
        match tuple.cmp(&bare) {
            std::cmp::Ordering::Greater => OkHabit::Tuple,
            std::cmp::Ordering::Less => OkHabit::Bare,
            std::cmp::Ordering::Equal => self.default,
        }
    }

    /// A members-dict COORDINATOR from `leader`, below us, arrived at `now`: if we
    /// answered an ELECTION it may have sent shortly before, it did not read that OK.
    pub fn coordinator_from_below(&mut self, now: Duration, leader: ProcessId) -> Option<Learned> {
        if leader >= self.me {
            return None;
        }
        let misread = self
            .answers
            .iter()
            .rev()
            .take_while(|a| now.saturating_sub(a.at) <= AFTER_ELECTION)
            .find(|a| !a.probe && a.candidates.contains(&leader))?
            .habit;
        self.answers.retain(|a| !a.candidates.contains(&leader));
        let habit = misread.other();
        let member_new = match self.habits.get(&leader) {
            Some(_) => false, // shown before: a belief never flips back
            None if self.habits.len() < MAX_MEMBERS => {
                self.habits.insert(leader, habit);
                true
            }
            None => false,
        };
        let default_changed = self.switch_default(misread);
        (member_new || default_changed).then_some(Learned { member: Some(leader), habit, default_changed })
    }

    /// A members-dict ELECTION (sender unnamed) arrived at `now`: right after PROBE
    /// answers in one form, it says that form read as a failed PROBE. Call after
    /// [`ReplyBook::answer`] for it.
    pub fn election_heard(&mut self, now: Duration) -> Option<Learned> {
        let misread =
            self.answers.iter().rev().take_while(|a| now.saturating_sub(a.at) <= AFTER_PROBE).find(|a| a.probe)?.habit;
        if misread != self.default || self.default_switched {
            return None;
        }
        self.answers.retain(|a| !a.probe);
        self.probe_misses += 1;
        if self.probe_misses < PROBE_MISSES {
            return None;
        }
        let default_changed = self.switch_default(misread);
        default_changed.then_some(Learned { member: None, habit: misread.other(), default_changed })
    }

    /// Members that showed nothing are answered in the other form from now on, once.
    fn switch_default(&mut self, misread: OkHabit) -> bool {
        if self.default_switched || self.default != misread {
            return false;
        }
        self.default = misread.other();
        self.default_switched = true;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::{Addr, Members};

    const ME: ProcessId = ProcessId { days: 50, su_id: 5_000_000 };

    fn pid(n: u32) -> ProcessId {
        ProcessId::new(n, 1_000_000 + n)
    }

    fn election(pids: &[ProcessId]) -> Heard {
        let members: Members = pids.iter().map(|p| (*p, Addr::new("127.0.0.1", 9000 + p.days as u16))).collect();
        Heard {
            message: Message::Elect { members, sender: None, rejected: 0 },
            dialect: Dialect::OldNames,
            sender: None,
        }
    }

    fn probe() -> Heard {
        Heard { message: Message::Probe, dialect: Dialect::OldNames, sender: None }
    }

    fn at(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn a_victory_right_after_our_ok_switches_that_member_and_the_default_once() {
        let mut book = ReplyBook::new(ME);
        let group = [pid(1), pid(2), ME, pid(60)];
        assert_eq!(book.answer(at(0), &election(&group)), Some(OkHabit::Tuple.reply()));
        // pid(2) declares victory 1.5 s later: it read ('OK', None) as no answer.
        let learned = book.coordinator_from_below(at(1500), pid(2)).unwrap();
        assert_eq!(learned, Learned { member: Some(pid(2)), habit: OkHabit::Bare, default_changed: true });
        assert_eq!(book.habit_of(pid(2)), OkHabit::Bare);
        assert_eq!(book.answer(at(2000), &election(&group)), Some(OkHabit::Bare.reply()));
        // Another member then declares victory over a bare 'OK': it reads tuples. Its
        // belief is set, the default does not flip back.
        let learned = book.coordinator_from_below(at(3000), pid(1)).unwrap();
        assert_eq!(learned, Learned { member: Some(pid(1)), habit: OkHabit::Tuple, default_changed: false });
        assert_eq!(book.habit_of(pid(1)), OkHabit::Tuple);
        assert_eq!(book.habit_of(pid(3)), OkHabit::Bare);
        // No answer of ours in the window, or the member showed before: nothing new.
        book.answer(at(4000), &election(&group));
        assert_eq!(book.coordinator_from_below(at(9000), pid(2)), None);
        book.answer(at(10_000), &election(&group));
        assert_eq!(book.coordinator_from_below(at(10_500), pid(2)), None);
        assert_eq!(book.habit_of(pid(2)), OkHabit::Bare);
    }

    #[test]
    fn an_election_asks_in_the_form_its_possible_senders_showed() {
        let mut book = ReplyBook::new(ME);
        book.answer(at(0), &election(&[pid(1), ME]));
        book.coordinator_from_below(at(1000), pid(1)).unwrap();
        // Only members below us can have sent an ELECTION to us.
        assert_eq!(book.answer(at(2000), &election(&[pid(1), ME, pid(60)])), Some(OkHabit::Bare.reply()));
        // A COORDINATOR from above, or from a member no answer could concern, teaches nothing.
        assert_eq!(book.coordinator_from_below(at(2100), pid(60)), None);
        assert_eq!(book.coordinator_from_below(at(2100), pid(7)), None);
    }

    #[test]
    fn elections_right_after_probe_answers_switch_the_default_after_two() {
        let mut book = ReplyBook::new(ME);
        let group = [pid(1), pid(2), ME];
        assert_eq!(book.answer(at(0), &probe()), Some(OkHabit::Tuple.reply()));
        book.answer(at(300), &election(&group));
        assert_eq!(book.election_heard(at(300)), None, "one could be a join");
        // An ELECTION long after the PROBE answer says nothing.
        book.answer(at(5000), &probe());
        book.answer(at(9000), &election(&group));
        assert_eq!(book.election_heard(at(9000)), None);
        book.answer(at(10_000), &probe());
        book.answer(at(10_200), &election(&group));
        let learned = book.election_heard(at(10_200)).unwrap();
        assert_eq!(learned, Learned { member: None, habit: OkHabit::Bare, default_changed: true });
        assert_eq!(book.answer(at(11_000), &probe()), Some(OkHabit::Bare.reply()));
        // Never back.
        book.answer(at(12_000), &election(&group));
        for t in [13_000, 14_000, 15_000] {
            book.answer(at(t), &probe());
            book.answer(at(t + 100), &election(&group));
            assert_eq!(book.election_heard(at(t + 100)), None);
        }
        assert_eq!(book.answer(at(20_000), &probe()), Some(OkHabit::Bare.reply()));
    }

    #[test]
    fn other_dialects_are_answered_in_their_own_form() {
        let mut book = ReplyBook::new(ME);
        let tagged = Heard { message: Message::Probe, dialect: Dialect::OldTagged, sender: Some(pid(1)) };
        assert_eq!(
            book.answer(at(0), &tagged),
            Some(Value::tuple([Value::str("OK"), Value::tuple([crate::protocol::pid_to_value(ME), Value::None])]))
        );
        let triple = Heard {
            message: Message::Elect { members: Members::default(), sender: Some(pid(1)), rejected: 0 },
            dialect: Dialect::OldTriple,
            sender: Some(pid(1)),
        };
        assert_eq!(book.answer(at(0), &triple), None, "answered on a new connection");
        let triple_probe = Heard { message: Message::Probe, dialect: Dialect::OldTriple, sender: None };
        assert_eq!(book.answer(at(0), &triple_probe), Some(Value::str("OK")));
        let standard = Heard { message: Message::Probe, dialect: Dialect::Standard, sender: None };
        assert_eq!(book.answer(at(0), &standard), Some(Value::str("GOT_IT")));
        let leader = Heard {
            message: Message::IAmLeader { leader: pid(1), addr: None },
            dialect: Dialect::OldNames,
            sender: Some(pid(1)),
        };
        assert_eq!(book.answer(at(0), &leader), None);
    }
}
