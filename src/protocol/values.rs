//! Pickle values to and from the domain's types: process ids as `(days, su_id)`,
//! addresses as `(host, port)`, members dicts in either layout. Reading is lenient
//! and bounded: an unusable entry is dropped and counted, never taken in.

use crate::identity::{ProcessId, DAYS_RANGE, SU_ID_RANGE};
use crate::membership::{Addr, Layout, Member, Members};
use crate::wire::Value;

/// Longest host name DNS allows; anything longer in a message is junk.
const MAX_HOST_LEN: usize = 253;

/// A process id in the range the GCD accepts, from a `(days, su_id)` tuple or list.
pub fn pid_from_value(v: &Value) -> Option<ProcessId> {
    let (days, su_id) = v.as_pair()?;
    let days = u32::try_from(days.as_int()?).ok().filter(|d| DAYS_RANGE.contains(d))?;
    let su_id = u32::try_from(su_id.as_int()?).ok().filter(|s| SU_ID_RANGE.contains(s))?;
    Some(ProcessId::new(days, su_id))
}

pub fn pid_to_value(pid: ProcessId) -> Value {
    Value::tuple([Value::Int(pid.days.into()), Value::Int(pid.su_id.into())])
}

/// What reading a members dict found besides the members.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    pub members: Members,
    /// Entries that were neither `pid: addr` nor `addr: pid` with valid fields.
    pub rejected: usize,
}

impl Addr {
    pub fn to_value(&self) -> Value {
        Value::tuple([Value::str(self.host.clone()), Value::Int(self.port.into())])
    }

    /// `(host, port)` with a usable host and a port in 1..=65535, or `None`.
    pub fn from_value(v: &Value) -> Option<Addr> {
        let (host, port) = v.as_pair()?;
        let host = host.as_str()?;
        let port = u16::try_from(port.as_int()?).ok().filter(|p| *p != 0)?;
        if host.is_empty() || host.len() > MAX_HOST_LEN || host.contains(['\0', ' ', '/']) {
            return None;
        }
        Some(Addr::new(host, port))
    }
}

impl Members {
    /// Reads a members dict in either layout (deciding per entry), every entry as
    /// listed. Entries with unusable ids or addresses are dropped and counted, never
    /// taken in.
    pub fn from_value(v: &Value) -> Option<Parsed> {
        let Value::Dict(pairs) = v else { return None };
        let mut listed: Vec<Member> = Vec::new();
        let mut layout = None;
        let mut rejected = 0;
        for (k, v) in pairs {
            let (entry, this_layout) = match (pid_from_value(k), Addr::from_value(v)) {
                (Some(pid), Some(addr)) => ((pid, addr), Layout::ByPid),
                _ => match (Addr::from_value(k), pid_from_value(v)) {
                    (Some(addr), Some(pid)) => ((pid, addr), Layout::ByAddr),
                    _ => {
                        rejected += 1;
                        continue;
                    }
                },
            };
            layout.get_or_insert(this_layout);
            // As listed: a peer's list may hold stale ids beside live ones (the same SU
            // ID twice, an old id at a reused address), and the node must see them all
            // to judge them; only a repeated id keeps its first address.
            if !listed.iter().any(|m| m.pid == entry.0) {
                listed.push(Member { pid: entry.0, addr: entry.1 });
            }
        }
        Some(Parsed { members: Members::from_listed(listed, layout.unwrap_or_default()), rejected })
    }

    /// The dict in this map's layout.
    pub fn to_value(&self) -> Value {
        Value::Dict(
            self.iter()
                .map(|m| {
                    let (pid, addr) = (pid_to_value(m.pid), m.addr.to_value());
                    match self.layout() {
                        Layout::ByPid => (pid, addr),
                        Layout::ByAddr => (addr, pid),
                    }
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(days: u32, su: u32) -> ProcessId {
        ProcessId::new(days, su)
    }

    #[test]
    fn reads_both_layouts_and_remembers_which() {
        let by_pid = Value::Dict(vec![(pid_to_value(pid(5, 1_234_567)), Addr::new("127.0.0.1", 9000).to_value())]);
        let by_addr = Value::Dict(vec![(Addr::new("localhost", 9000).to_value(), pid_to_value(pid(5, 1_234_567)))]);
        let a = Members::from_value(&by_pid).unwrap();
        let b = Members::from_value(&by_addr).unwrap();
        assert_eq!(a.members.layout(), Layout::ByPid);
        assert_eq!(b.members.layout(), Layout::ByAddr);
        assert_eq!(a.members.get(pid(5, 1_234_567)).unwrap().port, 9000);
        assert_eq!(b.members.get(pid(5, 1_234_567)).unwrap().host, "localhost");
        assert_eq!(b.members.to_value(), by_addr, "written back in the layout it came in");
    }

    #[test]
    fn junk_entries_are_counted_not_taken_in() {
        let junk = Value::Dict(vec![
            (pid_to_value(pid(5, 1_234_567)), Addr::new("127.0.0.1", 9000).to_value()),
            (Value::Int(3), Value::None),
            (pid_to_value(pid(400, 1_234_568)), Addr::new("127.0.0.1", 9001).to_value()),
            (pid_to_value(pid(6, 1_234_569)), Value::tuple([Value::str("127.0.0.1"), Value::Int(0)])),
            (pid_to_value(pid(7, 1_234_570)), Value::tuple([Value::Bool(true), Value::Int(9003)])),
        ]);
        let parsed = Members::from_value(&junk).unwrap();
        assert_eq!(parsed.members.len(), 1);
        assert_eq!(parsed.rejected, 4);
        assert!(Members::from_value(&Value::List(vec![])).is_none());
    }
}
