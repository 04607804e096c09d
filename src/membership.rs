//! The group's members: who is in it and where each one listens.
//!
//! Every GCD version answers with `{pid: (ip, port)}`; the assignment describes
//! `{(host, port): pid}`. Both are read, and a map remembers which layout it came in so
//! that our ELECTs go out in the layout the group's GCD uses. Entries are merged by the
//! GCD's own rules: one process id per SU ID (a re-join with new days replaces the old
//! entry) and one process id per listen address (a newcomer evicts the old owner).
//! Peers that bind `'localhost'` list themselves by name, so addresses compare with
//! `localhost` and `127.0.0.1` as the same host.

use crate::identity::ProcessId;
use std::fmt;
use std::sync::Arc;

/// Where a member listens, as the group lists it (an IP or a host name).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Addr {
    pub host: String,
    pub port: u16,
}

/// The most members a node takes in from peers' messages (the GCD's list is taken
/// whole). Course groups have tens; each member costs an exchange per election, on a
/// thread of its own (the runtime caps how many run at once).
pub const MAX_LEARNED_MEMBERS: usize = 500;

impl Addr {
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Addr { host: host.into(), port }
    }

    /// Whether two addresses name the same listener: host names compare without case,
    /// and `localhost` is `127.0.0.1` (the GCD resolves it to that for everyone).
    pub fn same_listener(&self, other: &Addr) -> bool {
        self.port == other.port && canonical_host(&self.host) == canonical_host(&other.host)
    }
}

fn canonical_host(host: &str) -> String {
    let h = host.to_ascii_lowercase();
    if h == "localhost" {
        "127.0.0.1".into()
    } else {
        h
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// `"host:port"`, as the events write an address.
impl serde::Serialize for Addr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl std::str::FromStr for Addr {
    type Err = String;

    /// `HOST:PORT`, the form used on the command line.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (host, port) =
            s.rsplit_once(':').ok_or_else(|| format!("{s:?} is not HOST:PORT (e.g. 127.0.0.1:23600)"))?;
        let port: u16 = port.parse().map_err(|_| format!("{s:?} has a port that is not 0 to 65535"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{s:?} has no host (e.g. 127.0.0.1:{port})"));
        }
        Ok(Addr::new(host, port))
    }
}

/// Which way round a members dict is keyed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Layout {
    /// `{(days, su_id): (host, port)}`: what every GCD version sends.
    #[default]
    ByPid,
    /// `{(host, port): (days, su_id)}`: what the assignment text describes.
    ByAddr,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub pid: ProcessId,
    pub addr: Addr,
}

/// The members map, in the order entries were first learned (the GCD's order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Members {
    /// Shared until changed: an election sends the same map to every higher member,
    /// so a clone must cost a reference count, not a copy of every host name.
    entries: Arc<Vec<Member>>,
    layout: Layout,
}

impl Members {
    pub fn new(layout: Layout) -> Self {
        Members { entries: Arc::new(Vec::new()), layout }
    }

    /// A map of exactly these entries in this order, without the merge rules: what a
    /// peer or the GCD listed, kept as listed so the node can judge stale entries.
    /// The caller keeps ids unique.
    pub fn from_listed(entries: Vec<Member>, layout: Layout) -> Self {
        Members { entries: Arc::new(entries), layout }
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Member> {
        self.entries.iter()
    }

    pub fn get(&self, pid: ProcessId) -> Option<&Addr> {
        self.entries.iter().find(|m| m.pid == pid).map(|m| &m.addr)
    }

    pub fn contains(&self, pid: ProcessId) -> bool {
        self.get(pid).is_some()
    }

    /// The members ranked above `pid`: the ones an election must ask.
    pub fn higher_than(&self, pid: ProcessId) -> impl Iterator<Item = &Member> {
        self.entries.iter().filter(move |m| m.pid > pid)
    }

    /// Adds or updates `pid` at `addr` by the GCD's rules: an older entry with the same
    /// SU ID goes, an existing `pid` keeps its place with the new address, and any
    /// other entry listening at `addr` goes.
    pub fn insert(&mut self, pid: ProcessId, addr: Addr) {
        let entries = Arc::make_mut(&mut self.entries);
        entries.retain(|m| m.pid.su_id != pid.su_id || m.pid == pid);
        match entries.iter_mut().find(|m| m.pid == pid) {
            Some(existing) => existing.addr = addr.clone(),
            None => entries.push(Member { pid, addr: addr.clone() }),
        }
        entries.retain(|m| m.pid == pid || !m.addr.same_listener(&addr));
    }

    /// Takes in every member of `other` that we did not know, by the same rules;
    /// members we know keep the address we have. Returns the newcomers. Stops at
    /// `MAX_LEARNED_MEMBERS`: a peer's message can't grow the group without bound.
    pub fn merge(&mut self, other: &Members) -> Vec<ProcessId> {
        let mut learned = Vec::new();
        for m in other.entries.iter() {
            if self.len() >= MAX_LEARNED_MEMBERS {
                break;
            }
            if !self.contains(m.pid) {
                self.insert(m.pid, m.addr.clone());
                learned.push(m.pid);
            }
        }
        learned
    }

    /// Takes in members a peer's message lists, by rules kinder than the GCD's: nothing
    /// we know is ever removed or moved (a peer's list may be stale: classmates' peers
    /// only ever add members), so two ids can share an SU ID or an address here until
    /// the GCD is asked again. Entries `skip` refuses are left out. Returns the
    /// newcomers. Stops at `MAX_LEARNED_MEMBERS`.
    pub fn learn(&mut self, other: &Members, mut skip: impl FnMut(&Member) -> bool) -> Vec<ProcessId> {
        let mut learned = Vec::new();
        for m in other.entries.iter() {
            if self.len() >= MAX_LEARNED_MEMBERS {
                break;
            }
            if !self.contains(m.pid) && !skip(m) {
                Arc::make_mut(&mut self.entries).push(m.clone());
                learned.push(m.pid);
            }
        }
        learned
    }
}

impl FromIterator<(ProcessId, Addr)> for Members {
    fn from_iter<I: IntoIterator<Item = (ProcessId, Addr)>>(iter: I) -> Self {
        let mut m = Members::default();
        for (pid, addr) in iter {
            m.insert(pid, addr);
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(days: u32, su: u32) -> ProcessId {
        ProcessId::new(days, su)
    }

    #[test]
    fn gcd_rules_one_pid_per_su_id_and_per_address() {
        let mut m = Members::default();
        m.insert(pid(10, 1_000_001), Addr::new("127.0.0.1", 5001));
        m.insert(pid(20, 1_000_002), Addr::new("127.0.0.1", 5002));
        // Same SU ID, new days: replaces the old entry.
        m.insert(pid(11, 1_000_001), Addr::new("127.0.0.1", 5003));
        assert_eq!(m.iter().map(|x| x.pid).collect::<Vec<_>>(), [pid(20, 1_000_002), pid(11, 1_000_001)]);
        // A newcomer on an address someone holds evicts them, even by host name.
        m.insert(pid(30, 1_000_003), Addr::new("localhost", 5002));
        assert!(!m.contains(pid(20, 1_000_002)));
        // Re-registering the same pid moves its address in place.
        m.insert(pid(11, 1_000_001), Addr::new("127.0.0.1", 6000));
        assert_eq!(m.iter().next().unwrap().addr.port, 6000);
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn merge_learns_only_unknown_members() {
        let mut ours: Members = [(pid(5, 1_000_001), Addr::new("127.0.0.1", 1))].into_iter().collect();
        let theirs: Members =
            [(pid(5, 1_000_001), Addr::new("127.0.0.1", 2)), (pid(9, 1_000_002), Addr::new("localhost", 3))]
                .into_iter()
                .collect();
        assert_eq!(ours.merge(&theirs), [pid(9, 1_000_002)]);
        assert_eq!(ours.get(pid(5, 1_000_001)).unwrap().port, 1);
        assert_eq!(ours.higher_than(pid(5, 1_000_001)).count(), 1);
    }

    #[test]
    fn learning_from_a_peer_never_removes_anyone() {
        let me = pid(5, 1_000_001);
        let mut ours: Members =
            [(me, Addr::new("127.0.0.1", 1)), (pid(9, 1_000_002), Addr::new("127.0.0.1", 2))].into_iter().collect();
        let theirs: Members = [
            (pid(7, 1_000_001), Addr::new("127.0.0.1", 7)), // our SU ID, another pid
            (pid(8, 1_000_003), Addr::new("localhost", 2)), // 9's address
            (pid(6, 1_000_004), Addr::new("127.0.0.1", 1)), // our address
        ]
        .into_iter()
        .collect();
        let learned = ours.learn(&theirs, |m| m.addr.same_listener(&Addr::new("127.0.0.1", 1)));
        assert_eq!(learned, [pid(7, 1_000_001), pid(8, 1_000_003)]);
        assert!(ours.contains(me) && ours.contains(pid(9, 1_000_002)), "{ours:?}");
        // merge (the GCD's rules) would have removed us and 9.
        let mut gcd_rules = ours.clone();
        gcd_rules.merge(&[(pid(2, 1_000_001), Addr::new("127.0.0.1", 3))].into_iter().collect());
        assert!(!gcd_rules.contains(me));
    }

    #[test]
    fn addr_parses_from_the_command_line() {
        assert_eq!("127.0.0.1:23600".parse::<Addr>().unwrap(), Addr::new("127.0.0.1", 23600));
        assert_eq!("[::1]:80".parse::<Addr>().unwrap(), Addr::new("::1", 80));
        assert!("nohost".parse::<Addr>().is_err());
        assert!(":80".parse::<Addr>().is_err());
        assert!("h:99999".parse::<Addr>().is_err());
    }
}
