//! Many seeded runs of the group simulator (tests/sim): random groups of up to 50
//! members join, crash, restart and feign failures in both modes, with GCD outages,
//! GCD restarts and overloads (slow deliveries, connections timing out), and the
//! invariants of the bully algorithm are checked after every run.
//!
//! A failing seed is printed with the command that replays it:
//!   SIM_SEED=<seed> cargo test --test simulator replay -- --nocapture
//! SIM_SEEDS=<n> changes how many seeds `many_seeds` runs (default 1000).
//! SIM_TABLE_500=1 adds the 500-member column to the messages-per-disturbance table.

mod sim;

use sim::{run, Report, Scenario};
use std::time::{Duration, Instant};

const MAX_NODES: usize = 50;

/// Elections per member that one disturbance may cause. Every follower that detects a
/// dead leader elects, and so does every member an ELECT reaches while idle; recoveries
/// and late announcements add a few. Measured worst over 1,000 seeds: see the closing
/// line of `many_seeds`.
const ELECTIONS_PER_MEMBER: usize = 4;

/// Checks one run against the invariants; the error says which one broke.
fn check(sc: &Scenario, r: &Report) -> Result<(), String> {
    let bound = sc.bound();
    if r.exhausted {
        return Err(format!("still busy after {} events at {:?}: a storm that never settles", r.events, r.ended_at));
    }
    if r.unknown_leaders > 0 {
        return Err(format!("{} times a member followed a leader that never registered", r.unknown_leaders));
    }
    if r.longest_wrong > bound {
        return Err(format!("a stable member followed a lower leader for {:?} (bound {bound:?})", r.longest_wrong));
    }
    if r.expected_leader.is_none() {
        return Ok(()); // everyone crashed: nothing to agree on
    }
    let Some(agreed) = r.agreed_at else {
        return Err(format!("never agreed after quiet at {:?}; final leaders {:?}", r.quiet_at, r.final_leaders));
    };
    if agreed > r.quiet_at + bound {
        return Err(format!("agreed {:?} after quiet (bound {bound:?})", agreed - r.quiet_at));
    }
    if r.ended_at < agreed + bound {
        return Err(format!("agreement at {agreed:?} was watched only until {:?}", r.ended_at));
    }
    if r.changes_after_agreement > 0 {
        return Err(format!("{} leader changes after agreement", r.changes_after_agreement));
    }
    if r.final_leaders.iter().any(|(_, l)| *l != r.expected_leader) {
        return Err(format!("final leaders {:?}, expected {:?}", r.final_leaders, r.expected_leader));
    }
    // Idle, the group is quiet: at most the leader's first check of its term asks a
    // member the GCD lists above it (gcd2.py never drops a dead one: an ELECT, refused)
    // and tells everyone once more that it leads (one fan-out of I_AM_LEADER).
    if r.idle_messages > r.members {
        return Err(format!("{} election messages in the idle end of the run among {}", r.idle_messages, r.members));
    }
    // One election among n members costs at most n-1 ELECTs, their n-1 GOT_ITs and,
    // when it is won, n-1 I_AM_LEADERs: the bully algorithm's bound, per election.
    let n = r.members;
    for e in r.episodes.iter().filter(|e| !e.overloaded) {
        // (+1: an episode can carry the end of an election begun just before it.)
        if e.messages > 3 * (n - 1) * (e.elections + 1) {
            return Err(format!("{} election messages for {} elections among {n}", e.messages, e.elections));
        }
        // No storms: after one disturbance each member elects a few times at most.
        if e.elections > ELECTIONS_PER_MEMBER * n {
            return Err(format!("{} elections after one disturbance among {n}", e.elections));
        }
    }
    Ok(())
}

#[test]
fn many_seeds() {
    let seeds: u64 = std::env::var("SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let started = Instant::now();
    let mut failures = Vec::new();
    let (mut members, mut largest, mut worst_agreement, mut messages) = (0, 0, Duration::ZERO, 0);
    let (mut worst_ratio, mut worst_per_election): (f64, f64) = (0.0, 0.0);
    let mut idle_messages = 0;
    for seed in 0..seeds {
        let sc = Scenario::random(seed, MAX_NODES);
        let r = run(&sc);
        members += r.members;
        largest = largest.max(r.members);
        messages += r.messages;
        if let Some(agreed) = r.agreed_at {
            worst_agreement = worst_agreement.max(agreed.saturating_sub(r.quiet_at));
        }
        idle_messages = idle_messages.max(r.idle_messages);
        if std::env::var_os("SIM_SHOW_IDLE").is_some() && r.idle_messages > 0 {
            println!("seed {seed}: {} election messages at the end", r.idle_messages);
        }
        for e in r.episodes.iter().filter(|e| !e.overloaded) {
            worst_ratio = worst_ratio.max(e.elections as f64 / r.members as f64);
            worst_per_election =
                worst_per_election.max(e.messages as f64 / (e.elections.max(1) * (r.members - 1)) as f64);
        }
        if let Err(why) = check(&sc, &r) {
            failures.push(format!(
                "seed {seed} ({} members): {why}\n  replay: SIM_SEED={seed} cargo test --test simulator replay -- --nocapture",
                r.members
            ));
        }
    }
    println!(
        "{seeds} runs, {members} members in all (largest group {largest}), {messages} election messages, \
         slowest agreement {worst_agreement:?} after quiet (bound {:?}), at most {:.2} elections per member \
         after one disturbance, at most {:.2} x (n-1) messages per election, at most {idle_messages} election \
         messages in a run's idle end, in {:?}",
        Scenario::random(0, MAX_NODES).bound(),
        worst_ratio,
        worst_per_election,
        started.elapsed()
    );
    assert!(failures.is_empty(), "{} of {seeds} seeds failed:\n{}", failures.len(), failures.join("\n"));
}

/// Runs one seed (SIM_SEED, or seed 1 by default) and shows its whole report.
#[test]
fn replay() {
    let seed: u64 = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let sc = Scenario::random(seed, MAX_NODES);
    println!("{sc:#?}");
    let r = run(&sc);
    println!("{r:#?}");
    check(&sc, &r).unwrap_or_else(|why| panic!("seed {seed}: {why}"));
}

/// The lab's case (issue 15): three members settle, the GCD restarts on the same
/// address, and a higher member joins it. With the default settings and feigning off,
/// the group follows the newcomer within 30 s of its joining, whatever the seed; with
/// the leader's check off, it never does.
#[test]
fn a_gcd_restart_then_a_higher_newcomer_heals_within_30_s() {
    use bully_node::ProcessId;
    use bully_node::Settings;
    // The newcomer joins at a different point of the leader's check period each seed.
    let joins_at = |seed: u64| Duration::from_secs(8) + Duration::from_millis(seed * 97 % 20_000);
    let scenario = |seed: u64, settings: Settings| Scenario {
        seed,
        pids: [100, 200, 250, 300].iter().map(|d| ProcessId::new(*d, 4_300_000 + d)).collect(),
        settings: vec![settings; 4],
        joins: vec![Duration::ZERO, Duration::from_millis(100), Duration::from_millis(200), joins_at(seed)],
        crashes: vec![],
        gcd_outages: vec![],
        gcd_restarts: vec![joins_at(seed) - Duration::from_secs(1)],
        rebirths: vec![],
        chaos_end: Duration::from_secs(1),
        socket_timeout: bully_node::SOCKET_TIMEOUT,
        delay: bully_node::Span::new(Duration::from_millis(1), Duration::from_millis(20)),
        feigns: vec![],
        outside_elects: vec![],
        overloads: vec![],
    };
    let quiet = Settings { feign: None, ..Settings::default() };
    let mut worst = Duration::ZERO;
    for seed in 0..200 {
        let r = run(&scenario(seed, quiet));
        assert_eq!(r.quiet_at, joins_at(seed), "the newcomer's join is the last disturbance");
        let healed = r.agreed_at.unwrap_or_else(|| panic!("seed {seed}: never healed: {:?}", r.final_leaders));
        worst = worst.max(healed - r.quiet_at);
    }
    println!("healed at worst {worst:?} after the newcomer joined");
    assert!(worst <= Duration::from_secs(30), "{worst:?}");
    let off = Settings { leader_check: None, ..quiet };
    let r = run(&scenario(1, off));
    assert_eq!(r.agreed_at, None, "without the check the split stays: {:?}", r.final_leaders);
}

/// The checks cost the serial GCD the same whatever the group's size: in a settled,
/// idle group (no failures, so nobody else asks), the leader's one request per 10-20 s,
/// and the followers' half as many in all (each asks every 2 x (members - 1) x 10-20 s,
/// so in a large group none of them within the five minutes watched).
#[test]
fn the_gcd_load_of_an_idle_group_does_not_grow_with_its_size() {
    for n in [5usize, 50, 200] {
        // Nothing feigns; a late end of "chaos" only makes the run, and the window
        // watched, five minutes long.
        let sc = Scenario { chaos_end: Duration::from_secs(300), ..growing_group(n, true) };
        let r = run(&sc);
        assert!(!r.exhausted && r.agreed_at.is_some(), "{n} members did not settle");
        // From well after the last join to the end of the run.
        let from = *sc.joins.last().unwrap() + Duration::from_secs(30);
        let window = (r.ended_at - from).as_secs_f64();
        let asked = r.gcd_requests.iter().filter(|t| **t >= from).count();
        println!("{n} members: {asked} GCD requests in {window:.0} s ({:.3}/s)", asked as f64 / window);
        // The leader's one request per 10 to 20 s, give or take the one under way at
        // each end, and at most half as many from the followers.
        let (fewest, most) = (window / 20.0 - 1.0, 1.5 * window / 10.0 + 2.0);
        assert!((fewest..=most).contains(&(asked as f64)), "{n} members: {asked} requests in {window:.0} s");
    }
}

/// A group of `n` with the default settings (no feigning), member `i` joining at
/// `i * 50 ms`; `ascending` makes each newcomer the new highest (every join then
/// changes the leader), otherwise the identities are spread over the year.
fn growing_group(n: usize, ascending: bool) -> Scenario {
    use bully_node::ProcessId;
    use bully_node::Settings;
    let days = |i: usize| if ascending { 1 + (i * 359 / n) as u32 } else { 1 + ((i * 7919) % 359) as u32 };
    Scenario {
        seed: n as u64,
        pids: (0..n).map(|i| ProcessId::new(days(i), 5_000_000 + i as u32)).collect(),
        settings: vec![Settings { feign: None, ..Settings::default() }; n],
        joins: (0..n).map(|i| Duration::from_millis(50 * i as u64)).collect(),
        crashes: vec![],
        gcd_outages: vec![],
        gcd_restarts: vec![],
        rebirths: vec![],
        chaos_end: Duration::from_secs(1),
        socket_timeout: bully_node::SOCKET_TIMEOUT,
        delay: bully_node::Span::new(Duration::from_millis(1), Duration::from_millis(20)),
        feigns: vec![],
        outside_elects: vec![],
        overloads: vec![],
    }
}

/// A settled group of `n` whose leader crashes: the election messages (ELECT, GOT_IT,
/// I_AM_LEADER) and elections from the crash on, the GCD requests, and how long until
/// every survivor followed the next highest.
fn failover(n: usize) -> (usize, usize, usize, Duration) {
    let mut sc = growing_group(n, true);
    let crash_at = Duration::from_millis(50 * n as u64) + Duration::from_secs(15);
    sc.crashes = vec![(n - 1, crash_at, None)];
    let r = run(&sc);
    check(&sc, &r).unwrap_or_else(|why| panic!("{n} members: {why}"));
    assert_eq!(r.quiet_at, crash_at, "the crash is the last disturbance");
    // check() holds every survivor to the highest one alive: here, the second highest.
    assert_eq!(r.expected_leader, Some(sc.pids[n - 2]));
    assert!(r.final_leaders.iter().all(|(_, l)| *l == Some(sc.pids[n - 2])), "{:?}", r.final_leaders);
    let e = r.episodes.last().expect("the crash's episode");
    let asked = r.gcd_requests.iter().filter(|t| **t >= crash_at).count();
    (e.messages, e.elections, asked, r.agreed_at.unwrap() - crash_at)
}

/// The textbook's bully algorithm costs about n^2/2 ELECTs when the leader fails: every
/// follower that notices elects, and each ELECT makes a higher member elect too. Paced,
/// highest-first ELECTs keep a failover near one fan-out of I_AM_LEADER: O(n) messages,
/// whatever the size (500 members only in release builds: debug is slow).
#[test]
fn a_failover_costs_messages_in_proportion_to_the_group() {
    let sizes: &[usize] = if cfg!(debug_assertions) { &[50, 200] } else { &[50, 200, 500] };
    for &n in sizes {
        let (messages, elections, asked, took) = failover(n);
        println!(
            "{n} members: leader crashed; {messages} election messages ({:.2} per member), {elections} \
             elections, {asked} GCD requests, all followed the next highest {took:?} after the crash",
            messages as f64 / n as f64
        );
        // One fan-out of I_AM_LEADER is n - 2 messages; the cascade would be n^2/2.
        assert!(messages <= 4 * n, "{n} members: {messages} messages for one failover");
    }
}

/// Members ask the GCD for an announcer's address only when they need it (to PROBE it),
/// so a group growing by one new highest member every 50 ms costs the GCD a bounded
/// number of requests per join, not one per member per join.
#[test]
fn the_gcd_requests_per_join_stay_bounded_as_the_group_grows() {
    for n in [50usize, 100] {
        let sc = growing_group(n, true);
        let r = run(&sc);
        check(&sc, &r).unwrap_or_else(|why| panic!("{n} members: {why}"));
        // From the first join until the group has settled after the last (registrations
        // at join are not counted: they are the joins themselves).
        let until = *sc.joins.last().unwrap() + Duration::from_secs(5);
        let asked = r.gcd_requests.iter().filter(|t| **t <= until).count();
        let per_join = asked as f64 / n as f64;
        println!("{n} members joining 50 ms apart, each the new highest: {asked} GCD requests, {per_join:.2} per join");
        assert!(per_join <= 4.0, "{n} members: {asked} GCD requests for {n} joins");
    }
}

/// Issue 20, item 2: no storm outlives its cause. A settled group's machine is
/// saturated for 20 s (deliveries 50 times slower, half the connections timing out)
/// and the leader crashes inside that window; once the load has passed, every member
/// follows the highest live one within the scenario's bound and the group goes quiet.
#[test]
fn an_overload_passes_and_the_group_settles_then_goes_quiet() {
    for n in [30usize, 100] {
        let mut sc = growing_group(n, false);
        let from = Duration::from_millis(50 * n as u64) + Duration::from_secs(15);
        let until = from + Duration::from_secs(20);
        sc.overloads = vec![sim::Overload { from, until, slowdown: 50, timeouts: 0.5 }];
        let top = (0..n).max_by_key(|i| sc.pids[*i]).unwrap();
        sc.crashes = vec![(top, from + Duration::from_secs(10), None)];
        let r = run(&sc);
        check(&sc, &r).unwrap_or_else(|why| panic!("{n} members: {why}"));
        let agreed = r.agreed_at.expect("checked") - r.quiet_at;
        println!(
            "{n} members, 20 s of overload with the leader crashing inside it: all followed the highest live \
             member {agreed:?} after the last slowed message landed (bound {:?}); {} election messages, {} of \
             them in the idle end",
            sc.bound(),
            r.messages,
            r.idle_messages
        );
        assert!(r.quiet_at >= until, "the overload's end is the last disturbance");
    }
}

/// One disturbance to a settled group, for the table of messages per disturbance.
#[derive(Clone, Copy, Debug)]
enum Disturbance {
    /// A member joins, ranking in the middle.
    Join,
    /// A peer outside the simulated group sends the lowest member an ELECT.
    ElectFromPeer,
    /// The lowest member feigns failure (listener closed) for 2 s, then recovers.
    Recovery,
    /// The GCD restarts, then a member above the leader joins it alone: the leader's
    /// check heals the split.
    Heal,
    /// The leader crashes: its followers' PROBEs fail.
    FailedProbe,
}

/// The election messages (ELECT, GOT_IT, I_AM_LEADER) and elections that `kind` costs a
/// settled group (spread identities, no feigning) of `n` members once disturbed,
/// counted from the disturbance.
fn disturb(n: usize, kind: Disturbance) -> (usize, usize) {
    use bully_node::ProcessId;
    // A join or heal adds a member to n - 1: n members in all, the most a node keeps
    // (`MAX_LEARNED_MEMBERS`), at 500.
    let adds = matches!(kind, Disturbance::Join | Disturbance::Heal);
    let mut sc = growing_group(if adds { n - 1 } else { n }, false);
    let n = sc.pids.len();
    // The group settles; the disturbance comes 15 s after the last join.
    let at = Duration::from_millis(50 * n as u64) + Duration::from_secs(15);
    let order = {
        let mut o: Vec<usize> = (0..n).collect();
        o.sort_by_key(|i| sc.pids[*i]);
        o
    };
    match kind {
        Disturbance::Join => {
            // Between the two middle members: same days as the lower one, and an SU ID
            // above everyone's that nobody has (mid.su_id + 1 was the next member's: a
            // second process of its student, whom the GCD then no longer listed).
            let mid = sc.pids[order[n / 2]];
            sc.pids.push(ProcessId::new(mid.days, 5_000_000 + n as u32));
            sc.settings.push(sc.settings[0]);
            sc.joins.push(at);
        }
        Disturbance::ElectFromPeer => sc.outside_elects = vec![(order[0], at)],
        Disturbance::Recovery => sc.feigns = vec![(order[0], at, Duration::from_secs(2))],
        Disturbance::Heal => {
            sc.gcd_restarts = vec![at - Duration::from_secs(1)];
            let top = sc.pids[order[n - 1]];
            sc.pids.push(ProcessId::new(top.days + 1, 6_000_000));
            sc.settings.push(sc.settings[0]);
            sc.joins.push(at);
        }
        Disturbance::FailedProbe => sc.crashes = vec![(order[n - 1], at, None)],
    }
    let r = run(&sc);
    check(&sc, &r).unwrap_or_else(|why| panic!("{kind:?} among {n}: {why}"));
    let e = r.episodes.last().expect("the disturbance's episode");
    (e.messages, e.elections)
}

/// Issue 20, item 1: every kind of disturbance costs the group O(n) election messages.
/// Prints the table (`-- --nocapture`); 500 members only with SIM_TABLE_500 set (it
/// takes a few seconds in release, and much longer in debug builds).
#[test]
fn every_disturbance_costs_messages_in_proportion_to_the_group() {
    let mut sizes = vec![50usize, 200];
    if std::env::var_os("SIM_TABLE_500").is_some() {
        sizes.push(500);
    }
    let kinds = [
        ("join", Disturbance::Join),
        ("ELECT from a peer", Disturbance::ElectFromPeer),
        ("recovery", Disturbance::Recovery),
        ("heal (GCD restart)", Disturbance::Heal),
        ("failed PROBE", Disturbance::FailedProbe),
    ];
    let mut table = String::from("messages (per member) / elections after one disturbance\n");
    table.push_str(&format!("{:<20}", "disturbance"));
    for n in &sizes {
        table.push_str(&format!("{:>24}", format!("{n} members")));
    }
    table.push('\n');
    let mut worst: f64 = 0.0;
    for (name, kind) in kinds {
        table.push_str(&format!("{name:<20}"));
        for &n in &sizes {
            let (messages, elections) = disturb(n, kind);
            let per = messages as f64 / n as f64;
            worst = worst.max(per);
            table.push_str(&format!("{:>24}", format!("{messages} ({per:.2}) / {elections}")));
            // One fan-out of I_AM_LEADER is n - 1 messages; a few per member at most.
            assert!(messages <= 6 * n, "{name} among {n}: {messages} messages");
        }
        table.push('\n');
    }
    println!("{table}at most {worst:.2} messages per member");
}

/// Issue 20, item 3: a duplicated SU ID settles. Three members, two of them one student
/// (one SU ID) running twice: with other days (two ids; the GCD keeps whichever
/// registered last), or the same days (one id at two addresses). Each process reports
/// a clash at most once; the innocent third member follows the higher twin in the end,
/// after a few leader changes at most, and the group does not storm.
///
/// Not settled in every run: with other days, when no member ever held the lower twin's
/// address (the GCD lists one twin at a time and announcements carry no address), the
/// lower twin goes on leading itself unseen; the rest of the group is not disturbed.
/// The count of such runs is printed.
#[test]
fn a_duplicated_su_id_settles() {
    use bully_node::{ProcessId, Settings};
    let only: Option<u64> = std::env::var("TWIN_SEED").ok().and_then(|s| s.parse().ok());
    for (variant, a, b) in [
        ("other days", ProcessId::new(100, 2_000_000), ProcessId::new(200, 2_000_000)),
        ("same days", ProcessId::new(100, 2_000_000), ProcessId::new(100, 2_000_000)),
    ] {
        let (mut worst, mut last, mut unseen, mut told) = (0, Duration::ZERO, 0, 0);
        let seeds = only.map_or(0..100, |s| s..s + 1);
        for seed in seeds.clone() {
            let innocent = ProcessId::new(50, 1_000_001);
            let sc = Scenario {
                seed,
                pids: vec![innocent, a, b],
                settings: vec![Settings { feign: None, ..Settings::default() }; 3],
                joins: vec![Duration::ZERO, Duration::from_millis(100), Duration::from_millis(200 + seed * 37)],
                crashes: vec![],
                gcd_outages: vec![],
                gcd_restarts: vec![],
                rebirths: vec![],
                chaos_end: Duration::from_secs(1),
                socket_timeout: bully_node::SOCKET_TIMEOUT,
                delay: bully_node::Span::new(Duration::from_millis(1), Duration::from_millis(20)),
                feigns: vec![],
                outside_elects: vec![],
                overloads: vec![],
            };
            let r = run(&sc);
            assert!(!r.exhausted && r.ended_at >= Duration::from_secs(60), "{variant}, seed {seed}: {:?}", r.ended_at);
            assert!(r.elections_started <= 30, "{variant}, seed {seed}: {} elections", r.elections_started);
            assert!(r.clashes_told.iter().all(|n| *n <= 1), "{variant}, seed {seed}: told {:?}", r.clashes_told);
            told += usize::from(r.clashes_told[1] + r.clashes_told[2] > 0);
            let follows = |i: usize| r.final_leaders.iter().find(|(p, _)| *p == sc.pids[i]).and_then(|(_, l)| *l);
            assert_eq!(follows(0), Some(b.max(a)), "{variant}, seed {seed}: {:?}", r.final_leaders);
            unseen += usize::from(follows(1) != Some(b.max(a)));
            // After the joins (each a leader change of its own at first), a few at most.
            let after_joins = sc.joins[2] + Duration::from_secs(1);
            let late: Vec<_> = r.leader_changes[0].iter().filter(|t| **t > after_joins).collect();
            assert!(late.len() <= 3, "{variant}, seed {seed}: leader changes at {late:?}");
            worst = worst.max(late.len());
            last = last.max(late.last().map_or(Duration::ZERO, |t| **t));
        }
        println!(
            "{variant}: over {} runs, the innocent member saw at most {worst} leader changes after the joins, \
             the last {last:?} after the start; the clash was reported in {told} runs; the lower twin led \
             itself unseen at the end of {unseen}",
            seeds.count()
        );
    }
}
