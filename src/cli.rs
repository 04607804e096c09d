//! The command line (a module of the binary, not the library: clap stays at the edge):
//! clap definitions, and their validation into the library's configs.

use bully_node::{
    Addr, Advice, Birthday, BirthdayProblem, Config, ConfigError, ConfigField, CoordinatorConfig, Feign, FeignMode,
    GcdError, IdentityError, NameChoice, NodeError, ProcessId, RegisterName, Settings, Span, Timeouts, MAX_SPAN,
    MAX_TIMEOUT, MIN_FEIGN, MIN_LEADER_CHECK, MIN_PROBE_WAIT,
};
use chrono::NaiveDate;
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use std::time::Duration;

const EXAMPLES: &str = "\
Examples:
  # New here? Watch a whole group (a coordinator and 5 nodes) elect and fail,
  # with a few lines first on what the bully algorithm does:
  bully-node demo

  # Join a group run by the course's GCD (python3 gcd2.py 23600) on this machine:
  bully-node --gcd 127.0.0.1:23600 --birthday 03-14 --su-id 4123456

  # The same with the days given directly, listening on a chosen port, with the
  # election's events as JSON lines in a file:
  bully-node --gcd localhost:23600 --days 42 --su-id 4123456 \\
      --listen 127.0.0.1:40001 --events node.jsonl

  # Next to classmates' Python peers, which wait longer than the defaults:
  bully-node --gcd localhost:23600 --days 42 --su-id 4123456 \\
      --elect-timeout 3s --leader-timeout 5s

  # Run a coordinator that answers like gcd2.py (fall 2025: HOWDY), on its port:
  bully-node gcd 23600
  # ... on loopback only, like the fall 2019 version:
  bully-node gcd --listen 127.0.0.1:23600 --accept JOIN

Exit status: 0 normal, 1 runtime error (GCD unreachable or refusing, address
in use), 2 usage error, 130 stopped during start-up.";

/// What `-h` adds under the flags: where the rest is.
const SHORT_AFTER: &str = "New here? `bully-node demo` runs a whole group on this machine and explains it.";

#[derive(Parser, Debug)]
#[command(
    name = "bully-node",
    version,
    about = "A peer for the CPSC 5520 bully leader election, next to gcd2.py and Python peers",
    long_about = "A peer for the CPSC 5520 bully leader election, next to gcd2.py and Python peers.\n\n\
        Each peer has an id (days until the birthday, SU ID); of the peers that answer, the one \
        with the highest id leads. A node registers with the GCD (the group coordinator), holds \
        elections, answers its peers, checks the leader, and now and then feigns a failure.",
    after_help = SHORT_AFTER,
    after_long_help = EXAMPLES,
    override_usage = "bully-node [OPTIONS] --gcd HOST:PORT --su-id N --birthday MM-DD\n       \
        bully-node [OPTIONS] --gcd HOST:PORT --su-id N --days N\n       \
        bully-node <COMMAND> [OPTIONS]   (gcd, demo, check: see below)",
    max_term_width = 100,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub node: NodeArgs,

    /// Show more: -v adds each connection's detail
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Show only leader changes and errors
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,

    /// When to use colour
    ///
    /// auto: on a terminal, unless NO_COLOR is set (not empty) or TERM=dumb; always and
    /// never say so outright.
    #[arg(long, global = true, value_name = "WHEN", value_enum, default_value = "auto")]
    pub color: ColorArg,
}

/// `--color WHEN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorArg {
    Auto,
    Always,
    Never,
}

impl ColorArg {
    /// The choice `args` make, looked for before clap parses them, so that clap's own help
    /// and errors follow it too. Anything unreadable is `Auto` (clap then reports it).
    pub fn scan(args: &[std::ffi::OsString]) -> ColorArg {
        let mut choice = ColorArg::Auto;
        let mut it = args.iter().skip(1).map(|a| a.to_string_lossy());
        while let Some(arg) = it.next() {
            let value = match arg.strip_prefix("--color") {
                Some("") => it.next().map(|v| v.into_owned()),
                Some(rest) => rest.strip_prefix('=').map(str::to_owned),
                None if arg == "--" => break,
                None => None,
            };
            if let Some(v) = value {
                choice = ColorArg::from_str(&v, true).unwrap_or(ColorArg::Auto);
            }
        }
        choice
    }

    /// Whether to write colour to a stream that is (or is not) a terminal: `always` and
    /// `never` say so outright; `auto` means a terminal, no `NO_COLOR` (set and not empty)
    /// and a `TERM` other than `dumb`.
    pub fn enabled(self, is_terminal: bool) -> bool {
        self.enabled_with(is_terminal, std::env::var_os("NO_COLOR"), std::env::var_os("TERM"))
    }

    /// [`ColorArg::enabled`] with the environment given.
    pub fn enabled_with(
        self,
        is_terminal: bool,
        no_color: Option<std::ffi::OsString>,
        term: Option<std::ffi::OsString>,
    ) -> bool {
        match self {
            ColorArg::Always => true,
            ColorArg::Never => false,
            ColorArg::Auto => is_terminal && no_color.is_none_or(|v| v.is_empty()) && term.is_none_or(|t| t != "dumb"),
        }
    }

    /// The same choice for clap's help and error messages.
    pub fn clap(self) -> clap::ColorChoice {
        match self {
            ColorArg::Auto if !ColorArg::Auto.enabled(true) => clap::ColorChoice::Never,
            ColorArg::Auto => clap::ColorChoice::Auto,
            ColorArg::Always => clap::ColorChoice::Always,
            ColorArg::Never => clap::ColorChoice::Never,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a Group Coordinator Daemon (GCD) that answers exactly as the course's gcd2.py does
    Gcd(GcdArgs),
    /// Watch a whole group elect and fail, explained (new here? start with this)
    ///
    /// Runs a coordinator and N nodes in this process, on real sockets on 127.0.0.1,
    /// and shows one timeline, then swim lanes and figures.
    Demo(DemoArgs),
    /// Check any peer (yours, in any language) by what it does on the wire: run it
    /// against a coordinator and scripted members, and print a rubric
    Check(CheckArgs),
}

#[derive(Args, Debug)]
#[command(after_help = CHECK_HELP)]
pub struct CheckArgs {
    /// The registration name the checker's coordinator accepts (which year's gcd2.py;
    /// JOIN or BEGIN for peers of the ELECTION / OK / COORDINATOR years)
    #[arg(long, value_enum, default_value = "HOWDY", ignore_case = true)]
    pub gcd_message: AcceptName,

    /// Also write the rubric as JSON to this file
    #[arg(long, value_name = "PATH")]
    pub json: Option<String>,

    /// The most the whole check may take (at least 45s)
    #[arg(long, value_name = "LIMIT", default_value = "110s", value_parser = parse_run_time)]
    pub time: Duration,

    /// The peer's command, after --, with placeholders filled in by the checker
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

const CHECK_HELP: &str = "\
Placeholders in COMMAND: {gcd} (HOST:PORT of the checker's coordinator), {gcd_host},
{gcd_port}, {port} (a free port for the peer), {listen} (127.0.0.1:{port}), {su_id},
{days}, {birthday} (MM-DD, {days} days from today).

Examples:
  bully-node check -- python3 lab2.py {gcd_host} {gcd_port} {port} {su_id} {birthday}
  bully-node check --json rubric.json -- bully-node --gcd {gcd} --days {days} --su-id {su_id}

The rubric: the assignment's core, then extra credit (PROBE; feigning failure), then
advice. An extra-credit feature the peer never tries is not attempted, not failed.

Exit status: 0 no core check failed (extra credit and advice never fail a run), 1 one
did or the peer never registered, 2 usage error or a peer that could not be started,
130 Ctrl-C. More: docs/check.md.";

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// How many nodes, 1 to 50
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = parse_demo_nodes)]
    pub nodes: u16,

    /// How long to run (Ctrl-C ends it early), e.g. 30s, 2.5s, 90s
    #[arg(long, value_name = "TIME", default_value = "30s", value_parser = parse_run_time)]
    pub duration: Duration,

    /// Seed for identities and every random choice, to replay a run
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Keep every node up (no feigned failures)
    #[arg(long)]
    pub no_feign: bool,

    /// Write every node's events as JSON lines to this file (- for standard output)
    #[arg(long, value_name = "PATH")]
    pub events: Option<String>,

    /// Show only leader changes
    #[arg(short, long)]
    pub quiet: bool,

    /// Which year's GCD the demo runs; with JOIN or BEGIN the nodes speak the 2019–2022
    /// ELECTION/OK/COORDINATOR protocol, as the peers of those years did
    #[arg(long, value_enum, default_value = "HOWDY", ignore_case = true)]
    pub accept: AcceptName,
}

/// The most nodes a demo runs: past this, one timeline is more than a person can read
/// (the benchmark, `cargo bench --bench bench -- --scale`, measures larger groups).
pub const MAX_DEMO_NODES: u16 = 50;

/// `demo --nodes`: 1 to [`MAX_DEMO_NODES`].
pub fn parse_demo_nodes(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u16>() {
        Ok(n) if (1..=MAX_DEMO_NODES).contains(&n) => Ok(n),
        _ => Err(format!(
            "the demo runs 1 to {MAX_DEMO_NODES} nodes, so that its timeline stays readable; \
             larger groups are measured by the benchmark (BENCHMARKS.md)"
        )),
    }
}

/// `--gcd HOST:PORT`, with a word for the forms people try first: a URL's scheme.
pub fn parse_gcd_addr(s: &str) -> Result<Addr, String> {
    if let Some((scheme, rest)) = s.split_once("://") {
        let rest = rest.trim_end_matches('/');
        return Err(format!(
            "{s:?} has a URL scheme ({scheme}://), but a GCD speaks pickles over plain TCP: drop the scheme, \
             e.g. --gcd {rest}"
        ));
    }
    s.parse::<Addr>().map_err(|e| e.to_string())
}

/// `--gcd-wait`: 0 (one attempt), or a time up to an hour.
pub fn parse_gcd_wait(s: &str) -> Result<Duration, String> {
    if matches!(s.trim(), "0" | "0s" | "0ms") {
        return Ok(Duration::ZERO);
    }
    parse_time(s, MAX_SPAN)
}

/// A run's length: up to an hour.
pub fn parse_run_time(s: &str) -> Result<Duration, String> {
    parse_time(s, MAX_SPAN)
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("identity").args(["birthday", "days"]).required(true)))]
pub struct NodeArgs {
    /// The GCD to register with, HOST:PORT
    #[arg(long, value_name = "HOST:PORT", required = true, value_parser = parse_gcd_addr)]
    pub gcd: Option<Addr>,

    /// How long to keep trying a GCD that is not up yet at start-up (0: try once)
    ///
    /// Meanwhile the node says it is waiting, every few seconds; Ctrl-C stops it at once.
    #[arg(long, value_name = "TIME", default_value = "30s", value_parser = parse_gcd_wait)]
    pub gcd_wait: std::time::Duration,

    /// Your 7-digit Seattle U student id (1000000 to 9999999)
    #[arg(long, value_name = "N", required = true)]
    pub su_id: Option<u32>,

    /// Your mother's birthday, month and day without the year; the id's days count to its
    /// next occurrence
    ///
    /// The assignment's id is (days until your mother's next birthday, SU ID). A birthday
    /// today counts as next year's (the GCD refuses 0 days); 02-29 falls on 02-28 in common
    /// years.
    #[arg(long, value_name = "MM-DD", value_parser = parse_birthday)]
    pub birthday: Option<Birthday>,

    /// The days until your mother's next birthday, given directly (1 to 365)
    #[arg(long, value_name = "N", value_parser = parse_days)]
    pub days: Option<u32>,

    /// Where to listen for peers
    ///
    /// [default: 127.0.0.1 when the GCD runs on this machine (its address is one of ours,
    /// whatever name --gcd used), else the local address that reaches the GCD; any free port]
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<Addr>,

    /// The registration message
    ///
    /// auto tries HOWDY (2025), then BEGIN (2024), then JOIN (2019).
    #[arg(long, value_name = "NAME", default_value = "auto")]
    pub gcd_message: NameChoice,

    /// How long an election waits for any GOT_IT before declaring victory
    ///
    /// Times are written 2s, 1500ms, 2.5s or a bare number of milliseconds.
    #[arg(long, value_name = "TIME", default_value = "2s", value_parser = parse_duration)]
    pub elect_timeout: Duration,

    /// How long to wait for I_AM_LEADER after a GOT_IT before electing again
    #[arg(long, value_name = "TIME", default_value = "4s", value_parser = parse_duration)]
    pub leader_timeout: Duration,

    /// How long a connection to a peer may take to connect and to answer
    #[arg(long, value_name = "TIME", default_value = "1500ms", value_parser = parse_duration)]
    pub socket_timeout: Duration,

    /// Write one JSON object per event to this file (- for standard output)
    ///
    /// With -, standard output carries only the JSON lines; the log and the stop
    /// summary go to stderr.
    #[arg(long, value_name = "PATH")]
    pub events: Option<String>,

    /// The random wait before each PROBE of the leader, each end at least 100ms
    #[arg(long, value_name = "MIN..MAX", default_value = "500ms..3s", value_parser = parse_probe_span)]
    pub probe_interval: Span,

    /// Never PROBE the leader
    #[arg(long)]
    pub no_probe: bool,

    /// While leading, the wait before asking the GCD again who is in the group
    ///
    /// Heals a group split by a GCD restart: the leader asks at most once per wait, and
    /// each follower registers again after 2 x (members - 1) waits, so the group's
    /// requests do not grow with its size.
    #[arg(long, value_name = "MIN..MAX", default_value = "10s..20s", value_parser = parse_check_span)]
    pub leader_check: Span,

    /// Never ask the GCD again while leading or following
    ///
    /// A group split by a GCD restart then stays split until someone fails.
    #[arg(long)]
    pub no_leader_check: bool,

    /// Time to the next feigned failure, drawn at random
    ///
    /// Counted from start-up or recovery.
    #[arg(long, value_name = "MIN..MAX", default_value = "0s..10s", value_parser = parse_span)]
    pub feign_after: Span,

    /// How long each feigned failure lasts, each end at least 100ms
    #[arg(long, value_name = "MIN..MAX", default_value = "1s..4s", value_parser = parse_feign_span)]
    pub feign_for: Span,

    /// How to feign failure
    ///
    /// close: close the listening socket (peers are refused); ignore: accept and drop
    /// every message without a reply (peers time out).
    #[arg(long, value_enum, default_value = "close")]
    pub feign_mode: FeignModeArg,

    /// Never feign failure
    #[arg(long)]
    pub no_feign: bool,

    /// Seed for every random choice, to replay a run
    ///
    /// The probe waits and the failures' times and lengths.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FeignModeArg {
    Close,
    Ignore,
}

/// `--birthday MM-DD`, with [`explain_identity`]'s advice when it is not one.
pub fn parse_birthday(s: &str) -> Result<Birthday, String> {
    s.parse().map_err(|e| explain_identity(&e))
}

/// `--days N`: the GCD takes 1 to 365.
pub fn parse_days(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(d) if (1..=365).contains(&d) => Ok(d),
        _ => Err(format!("{s:?} is not a number of days the GCD accepts: give 1 to 365")),
    }
}

/// `--probe-interval MIN..MAX`, each end at least [`MIN_PROBE_WAIT`].
pub fn parse_probe_span(s: &str) -> Result<Span, String> {
    let span = parse_span(s)?;
    if span.min < MIN_PROBE_WAIT {
        return Err(format!(
            "{s:?} waits less than {}ms before a PROBE; give each end at least {}ms, e.g. 500ms..3s",
            MIN_PROBE_WAIT.as_millis(),
            MIN_PROBE_WAIT.as_millis()
        ));
    }
    Ok(span)
}

/// `--feign-for MIN..MAX`, each end at least [`MIN_FEIGN`].
pub fn parse_feign_span(s: &str) -> Result<Span, String> {
    let span = parse_span(s)?;
    if span.min < MIN_FEIGN {
        return Err(format!(
            "{s:?} is shorter than {}ms, too short for a peer to notice; give each end at least {}ms, e.g. 1s..4s",
            MIN_FEIGN.as_millis(),
            MIN_FEIGN.as_millis()
        ));
    }
    Ok(span)
}

/// `MIN..MAX`, each a time as for the timeouts (0 allowed), e.g. `500ms..3s`.
pub fn parse_span(s: &str) -> Result<Span, String> {
    let (lo, hi) = s.split_once("..").ok_or_else(|| format!("{s:?} is not MIN..MAX, e.g. 500ms..3s"))?;
    let one = |t: &str| -> Result<Duration, String> {
        let t = t.trim();
        if matches!(t, "0" | "0s" | "0ms") {
            return Ok(Duration::ZERO);
        }
        let d = parse_time(t, MAX_SPAN)?;
        Ok(d)
    };
    let span = Span::new(one(lo)?, one(hi)?);
    if span.min > span.max {
        return Err(format!("{s:?} has MIN above MAX"));
    }
    Ok(span)
}

/// A leader's check period: as [`parse_span`], but at least [`MIN_LEADER_CHECK`], so
/// that no setting can make a leader hammer the serial GCD.
pub fn parse_check_span(s: &str) -> Result<Span, String> {
    let span = parse_span(s)?;
    if span.min < MIN_LEADER_CHECK {
        return Err(format!(
            "{s:?}: MIN must be at least {}ms (the GCD serves one request at a time)",
            MIN_LEADER_CHECK.as_millis()
        ));
    }
    Ok(span)
}

/// `1500ms`, `2s`, `2.5s`, or a bare number of milliseconds; more than 0, at most a minute.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    parse_time(s, MAX_TIMEOUT)
}

fn parse_time(s: &str, max: Duration) -> Result<Duration, String> {
    let t = s.trim();
    let (number, unit_ms) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (t, 1.0)
    };
    let value: f64 = number.trim().parse().map_err(|_| format!("{s:?} is not a time like 2s or 1500ms"))?;
    let ms = value * unit_ms;
    if ms.is_nan() || ms < 1.0 || ms > max.as_millis() as f64 {
        return Err(format!("{s:?} must be at least 1ms and at most {}s", max.as_secs()));
    }
    Ok(Duration::from_secs_f64(ms / 1000.0))
}

#[derive(Args, Debug)]
pub struct GcdArgs {
    /// The port to listen on, on every interface, as `python3 gcd2.py PORT` does
    #[arg(value_name = "PORT", conflicts_with = "listen")]
    pub port: Option<u16>,

    /// Where to listen, HOST:PORT
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:23600")]
    pub listen: Addr,

    /// The registration name to accept, i.e. which year's gcd2.py to behave as
    #[arg(long, value_enum, default_value = "HOWDY", ignore_case = true)]
    pub accept: AcceptName,

    /// Accept members listening on other hosts (gcd2.py accepts only its own host)
    #[arg(long)]
    pub allow_remote: bool,

    /// Serve one request at a time, as gcd2.py does (a slow client holds up everyone)
    #[arg(long)]
    pub serial: bool,

    /// Show only warnings and errors
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum AcceptName {
    Howdy,
    Begin,
    Join,
}

impl From<AcceptName> for RegisterName {
    fn from(a: AcceptName) -> Self {
        match a {
            AcceptName::Howdy => RegisterName::Howdy,
            AcceptName::Begin => RegisterName::Begin,
            AcceptName::Join => RegisterName::Join,
        }
    }
}

impl NodeArgs {
    /// Checks the node's arguments; `today` is the local date the birthday counts from.
    pub fn into_config(self, today: NaiveDate) -> Result<Config, ConfigError> {
        let su_id = self.su_id.expect("clap requires --su-id");
        let days = match (self.days, self.birthday) {
            (Some(days), _) => days,
            (None, Some(bd)) => bd.days_until_next(today),
            (None, None) => unreachable!("clap requires --birthday or --days"),
        };
        let config = Config {
            gcd: self.gcd.expect("clap requires --gcd"),
            pid: ProcessId::new(days, su_id),
            listen: self.listen,
            gcd_message: self.gcd_message,
            settings: Settings {
                timeouts: Timeouts { elect: self.elect_timeout, leader: self.leader_timeout },
                probe: (!self.no_probe).then_some(self.probe_interval),
                feign: (!self.no_feign).then_some(Feign {
                    after: self.feign_after,
                    lasting: self.feign_for,
                    mode: match self.feign_mode {
                        FeignModeArg::Close => FeignMode::Close,
                        FeignModeArg::Ignore => FeignMode::Ignore,
                    },
                }),
                leader_check: (!self.no_leader_check).then_some(self.leader_check),
            },
            seed: self.seed.unwrap_or_else(rand::random),
            observer: None,
            log_events: true,
            summary_on_stop: true,
            socket_timeout: self.socket_timeout,
            events: self.events,
            gcd_wait: self.gcd_wait,
        };
        config.validate()?;
        Ok(config)
    }
}

/// An identity error and which flag to change: the library says what is wrong with the
/// id, the command line knows where it came from.
pub fn explain_identity(e: &IdentityError) -> String {
    match e {
        IdentityError::DaysOutOfRange(366) => format!("{e}; pass --days 365 instead"),
        IdentityError::DaysOutOfRange(_) => format!("{e}; pick --days between 1 and 365"),
        IdentityError::SuIdOutOfRange(_) => format!("{e}; pass your 7-digit student number to --su-id"),
        IdentityError::BadBirthday { input, problem: BirthdayProblem::HasYear { month, day } } => {
            format!("birthday {input:?} has a year; drop it and give month and day: --birthday {month}-{day}")
        }
        IdentityError::BadBirthday { .. } => e.to_string(),
    }
}

/// A configuration error and which flag to change. Only the id can be wrong once clap
/// has parsed the flags (their parsers enforce the same limits); the rest is for a
/// config that changed under them.
pub fn explain_config(e: &ConfigError) -> String {
    let flag = |field: &ConfigField| match field {
        ConfigField::SocketTimeout => "--socket-timeout",
        ConfigField::ElectTimeout => "--elect-timeout",
        ConfigField::LeaderTimeout => "--leader-timeout",
        ConfigField::Probe => "--probe-interval",
        ConfigField::LeaderCheck => "--leader-check",
        ConfigField::FeignAfter => "--feign-after",
        ConfigField::FeignLasting => "--feign-for",
    };
    match e {
        ConfigError::Pid(e) => explain_identity(e),
        ConfigError::Time { field, .. }
        | ConfigError::SpanReversed { field, .. }
        | ConfigError::SpanOutOfRange { field, .. } => format!("{e} (set by {})", flag(field)),
    }
}

/// A GCD error with what to do about it, in terms of this command line's flags.
pub fn explain_gcd(e: &GcdError) -> String {
    let gcd = e.gcd();
    let hint = match e.advice() {
        None => return e.to_string(),
        Some(Advice::CheckHost) => format!("check the host in --gcd (e.g. --gcd 127.0.0.1:{})", gcd.port),
        Some(Advice::StartGcd) => {
            format!("start it (python3 gcd2.py PORT, or bully-node gcd --listen {gcd}) or fix --gcd")
        }
        Some(Advice::CheckNotStuck) => "check that --gcd names a GCD and that it is not stuck".into(),
        Some(Advice::CheckIsGcd) => "check that --gcd names a GCD (gcd2.py drops requests it cannot handle)".into(),
        Some(Advice::TryAgain) => "try again".into(),
        Some(Advice::ListenOnGcdHost) => "the GCD only takes members listening on its own host: run the node on \
            that machine, or pass --listen with an address there (e.g. --listen 127.0.0.1:0)"
            .into(),
        Some(Advice::CheckId) => "check --days (1 to 365) or --birthday, and --su-id (7 digits)".into(),
        Some(Advice::ListenPort) => "pass --listen with a port from 1 to 65535, or 0 for any free port".into(),
        Some(Advice::RegisterName) => {
            "this GCD wants another registration name: use --gcd-message auto, or the name it expects".into()
        }
        Some(Advice::ListenIp) => {
            "the GCD could not resolve the host we listen on: pass --listen with an IP address".into()
        }
        Some(Advice::SeeMessage) => "see the GCD's message above".into(),
        Some(Advice::CheckIsCourseGcd) => "check that --gcd names the course's GCD".into(),
        Some(Advice::NotAGcd) => "is --gcd really a GCD? Something else answers at that address".into(),
    };
    format!("{e}; {hint}")
}

/// A start-up error with what to do about it, in terms of this command line's flags.
pub fn explain_node(e: &NodeError) -> String {
    match e {
        NodeError::Bind { .. } => format!("{e}; pick another --listen HOST:PORT (port 0 takes any free one)"),
        NodeError::Events { .. } => format!("{e}; pick another --events path"),
        NodeError::Config(e) => explain_config(e),
        NodeError::Gcd { error, attempts: 1, .. } => explain_gcd(error),
        NodeError::Gcd { error, attempts, waited } => {
            format!("{} (gave up after {attempts} attempts over {:.1} s)", explain_gcd(error), waited.as_secs_f64())
        }
    }
}

impl GcdArgs {
    /// Where to listen: a bare PORT listens on every interface, like gcd2.py.
    pub fn listen_addr(&self) -> Addr {
        match self.port {
            Some(port) => Addr::new("0.0.0.0", port),
            None => self.listen.clone(),
        }
    }

    pub fn coordinator_config(&self) -> CoordinatorConfig {
        CoordinatorConfig { accept: self.accept.into(), allow_remote: self.allow_remote }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("bully-node").chain(args.iter().copied()))
    }

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 24).unwrap()
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn node_arguments() {
        let cli = parse(&["--gcd", "127.0.0.1:23600", "--birthday", "11-25", "--su-id", "4123456"]).unwrap();
        let config = cli.node.into_config(today()).unwrap();
        assert_eq!(config.pid, ProcessId::new(1, 4123456));
        assert_eq!(config.gcd_message, NameChoice::Auto);
        let cli = parse(&["--gcd", "h:1", "--days", "7", "--su-id", "4123456", "--gcd-message", "join"]).unwrap();
        assert_eq!(cli.node.gcd_message, NameChoice::Fixed(RegisterName::Join));
    }

    #[test]
    fn usage_errors() {
        // Missing identity, both identities, a bad birthday, a bad address.
        assert!(parse(&["--gcd", "h:1", "--su-id", "4123456"]).is_err());
        assert!(parse(&["--gcd", "h:1", "--su-id", "4123456", "--days", "3", "--birthday", "01-01"]).is_err());
        assert!(parse(&["--gcd", "h:1", "--su-id", "4123456", "--birthday", "02-30"]).is_err());
        assert!(parse(&["--gcd", "nohost", "--su-id", "4123456", "--days", "3"]).is_err());
        // Valid syntax, but an id the GCD would refuse: refused at start-up.
        let cli = parse(&["--gcd", "h:1", "--su-id", "123", "--days", "3"]).unwrap();
        let err = cli.node.into_config(today()).unwrap_err();
        assert_eq!(err, ConfigError::Pid(IdentityError::SuIdOutOfRange(123)));
        assert!(explain_config(&err).ends_with("to --su-id"), "{}", explain_config(&err));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2.5s"), Ok(Duration::from_millis(2500)));
        for bad in ["0", "-1s", "2m", "", "NaN", "61s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        let cli = parse(&["--gcd", "h:1", "--days", "7", "--su-id", "4123456", "--elect-timeout", "500ms"]).unwrap();
        let config = cli.node.into_config(today()).unwrap();
        assert_eq!(config.settings.timeouts.elect, Duration::from_millis(500));
        assert_eq!(config.settings.timeouts.leader, Duration::from_secs(4));
        assert_eq!(config.socket_timeout, bully_node::SOCKET_TIMEOUT, "one default, spelled once");
    }

    #[test]
    fn probe_and_feign_flags() {
        let base = ["--gcd", "h:1", "--days", "7", "--su-id", "4123456"];
        let config = parse(&base).unwrap().node.into_config(today()).unwrap();
        assert_eq!(config.settings, Settings::default(), "the defaults are the assignment's");
        let mut args = base.to_vec();
        args.extend(["--no-probe", "--feign-mode", "ignore", "--feign-for", "2s..2s", "--seed", "7"]);
        let config = parse(&args).unwrap().node.into_config(today()).unwrap();
        assert_eq!(config.settings.probe, None);
        let feign = config.settings.feign.unwrap();
        assert_eq!(feign.mode, FeignMode::Ignore);
        assert_eq!(feign.lasting, Span::new(Duration::from_secs(2), Duration::from_secs(2)));
        assert_eq!(config.seed, 7);
        assert_eq!(parse_span("0..10s"), Ok(Span::new(Duration::ZERO, Duration::from_secs(10))));
        for bad in ["3s..1s", "1s", "a..b", "1s..2h"] {
            assert!(parse_span(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn leader_check_flags() {
        let base = ["--gcd", "h:1", "--days", "7", "--su-id", "4123456"];
        let config = parse(&base).unwrap().node.into_config(today()).unwrap();
        assert_eq!(config.settings.leader_check, Some(bully_node::LEADER_CHECK));
        let mut args = base.to_vec();
        args.extend(["--leader-check", "500ms..1s"]);
        let config = parse(&args).unwrap().node.into_config(today()).unwrap();
        assert_eq!(config.settings.leader_check, Some(Span::new(Duration::from_millis(500), Duration::from_secs(1))));
        let mut args = base.to_vec();
        args.push("--no-leader-check");
        assert_eq!(parse(&args).unwrap().node.into_config(today()).unwrap().settings.leader_check, None);
        for bad in ["0..10s", "50ms..1s", "20s..10s"] {
            let mut args = base.to_vec();
            args.extend(["--leader-check", bad]);
            assert!(parse(&args).is_err(), "{bad}");
        }
    }

    #[test]
    fn gcd_subcommand_needs_no_node_arguments() {
        let cli = parse(&["gcd", "--accept", "BEGIN", "--listen", "127.0.0.1:0"]).unwrap();
        let Some(Command::Gcd(args)) = cli.command else { panic!() };
        assert_eq!(args.coordinator_config().accept, RegisterName::Begin);
        assert_eq!(args.listen.port, 0);
    }

    #[test]
    fn colour_follows_the_flag_then_the_terminal_and_the_environment() {
        let os = |s: &str| Some(std::ffi::OsString::from(s));
        assert!(ColorArg::Auto.enabled_with(true, None, os("xterm-256color")));
        assert!(ColorArg::Auto.enabled_with(true, os(""), None), "an empty NO_COLOR is unset");
        assert!(!ColorArg::Auto.enabled_with(false, None, os("xterm")), "not a terminal");
        assert!(!ColorArg::Auto.enabled_with(true, os("1"), os("xterm")), "NO_COLOR");
        assert!(!ColorArg::Auto.enabled_with(true, None, os("dumb")), "TERM=dumb");
        assert!(ColorArg::Always.enabled_with(false, os("1"), os("dumb")), "the flag wins");
        assert!(!ColorArg::Never.enabled_with(true, None, os("xterm")));
        let args = |a: &[&str]| a.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        assert_eq!(ColorArg::scan(&args(&["b", "demo", "--color", "always"])), ColorArg::Always);
        assert_eq!(ColorArg::scan(&args(&["b", "--color=never", "demo"])), ColorArg::Never);
        assert_eq!(ColorArg::scan(&args(&["b", "--color", "bogus"])), ColorArg::Auto);
        assert_eq!(ColorArg::scan(&args(&["b", "demo"])), ColorArg::Auto);
    }

    #[test]
    fn floors_and_limits_say_what_to_give() {
        let err = parse_probe_span("0..0").unwrap_err();
        assert!(err.contains("at least 100ms"), "{err}");
        assert!(parse_probe_span("99ms..3s").is_err());
        assert_eq!(parse_probe_span("100ms..100ms").unwrap().min, Duration::from_millis(100));
        assert!(parse_feign_span("0..0").unwrap_err().contains("at least 100ms"));
        let err = parse_days("366").unwrap_err();
        assert!(err.contains("1 to 365") && !err.contains("birthday"), "{err}");
        assert_eq!(parse_days("365"), Ok(365));
        assert!(parse_days("0").is_err());
        assert!(parse_demo_nodes("51").unwrap_err().contains("1 to 50"));
        assert_eq!(parse_demo_nodes("50"), Ok(50));
    }

    #[test]
    fn identity_errors_name_the_flag_to_change() {
        let explain = |days, su_id| explain_identity(&ProcessId::new(days, su_id).validate().unwrap_err());
        assert!(explain(0, 1_234_567).ends_with("; pick --days between 1 and 365"), "{}", explain(0, 1_234_567));
        assert!(explain(366, 1_234_567).ends_with("; pass --days 365 instead"), "{}", explain(366, 1_234_567));
        let err = explain(5, 999_999);
        assert!(err.starts_with("SU ID 999999 is outside") && err.ends_with("to --su-id"), "{err}");
        let err = parse_birthday("2025-03-14").unwrap_err();
        assert!(err.contains("has a year") && err.ends_with("--birthday 03-14"), "{err}");
        assert!(!err.contains("not a number"), "{err}");
        let err = parse_birthday("02-30").unwrap_err();
        assert!(err.contains("is not a date") && err.contains("MM-DD"), "{err}");
        assert_eq!(parse_birthday("03-14"), Ok(Birthday { month: 3, day: 14 }));
        // What clap shows for a bad --birthday is the same advice.
        let err = parse(&["--gcd", "h:1", "--su-id", "4123456", "--birthday", "2025-03-14"]).unwrap_err().to_string();
        assert!(err.contains("--birthday 03-14"), "{err}");
    }

    #[test]
    fn whatever_the_flags_accept_the_engine_accepts() {
        let edges = [
            "--socket-timeout=60s",
            "--elect-timeout=1ms",
            "--leader-timeout=1ms",
            "--probe-interval=100ms..3600s",
            "--leader-check=100ms..100ms",
            "--feign-after=0..0",
            "--feign-for=100ms..3600s",
        ];
        let mut args = vec!["--gcd", "h:1", "--days", "365", "--su-id", "9999999"];
        args.extend(edges);
        let config = parse(&args).unwrap().node.into_config(today()).unwrap();
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.settings.probe.unwrap().min, MIN_PROBE_WAIT);
        // One step past each edge, the flag's parser refuses it.
        for past in
            ["--socket-timeout=61s", "--probe-interval=99ms..1s", "--feign-for=99ms..1s", "--leader-check=99ms..1s"]
        {
            let mut args = vec!["--gcd", "h:1", "--days", "365", "--su-id", "9999999"];
            args.push(past);
            assert!(parse(&args).is_err(), "{past}");
        }
        // A config changed after parsing is named by its flag.
        let mut config = config;
        config.settings.probe = Some(Span::new(Duration::ZERO, Duration::ZERO));
        let text = explain_config(&config.validate().unwrap_err());
        assert!(text.starts_with("settings.probe 0..0ms") && text.ends_with("(set by --probe-interval)"), "{text}");
    }

    #[test]
    fn gcd_errors_get_the_flag_to_change() {
        let gcd = Addr::new("127.0.0.1", 23600);
        let refused = |reason: &str| GcdError::Refused { gcd: gcd.clone(), reason: reason.into() };
        assert_eq!(
            explain_gcd(&refused("Unexpected message: HOWDY")),
            "the GCD at 127.0.0.1:23600 refused us: 'Unexpected message: HOWDY'; this GCD wants another \
             registration name: use --gcd-message auto, or the name it expects"
        );
        assert!(explain_gcd(&refused("Only local group members currently allowed")).contains("--listen 127.0.0.1:0"));
        assert!(explain_gcd(&refused("Malformed process id")).contains("--su-id (7 digits)"));
        let down = GcdError::Unreachable { gcd: gcd.clone(), cause: std::io::Error::from_raw_os_error(111) };
        let text = explain_gcd(&down);
        assert!(text.starts_with("cannot reach the GCD at 127.0.0.1:23600: "), "{text}");
        assert!(text
            .ends_with("; start it (python3 gcd2.py PORT, or bully-node gcd --listen 127.0.0.1:23600) or fix --gcd"));
        let nowhere = Addr::new("nosuch.invalid", 4000);
        let unknown = GcdError::Unreachable { gcd: nowhere, cause: std::io::Error::other("no such name") };
        assert!(explain_gcd(&unknown).ends_with("; check the host in --gcd (e.g. --gcd 127.0.0.1:4000)"));
        let garbage = GcdError::BadReply { gcd: gcd.clone(), what: "5, not a members dict".into() };
        assert_eq!(explain_gcd(&garbage), garbage.to_string(), "nothing to add");
        let gave_up = NodeError::Gcd { error: down, attempts: 5, waited: Duration::from_millis(3800) };
        let text = explain_node(&gave_up);
        assert!(text.ends_with("or fix --gcd (gave up after 5 attempts over 3.8 s)"), "{text}");
        let in_use = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let text = explain_node(&NodeError::Bind { addr: gcd, cause: in_use });
        assert!(text.starts_with("cannot listen on 127.0.0.1:23600: ") && text.contains("pick another --listen"));
        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        let text = explain_node(&NodeError::Events { path: "/x/y".into(), cause: missing });
        assert!(text.ends_with("; pick another --events path"), "{text}");
    }

    #[test]
    fn gcd_takes_a_bare_port_like_gcd2_py() {
        let cli = parse(&["gcd", "23600"]).unwrap();
        let Some(Command::Gcd(args)) = cli.command else { panic!() };
        assert_eq!(args.listen_addr(), Addr::new("0.0.0.0", 23600));
        assert!(parse(&["gcd", "23600", "--listen", "127.0.0.1:1"]).is_err(), "one or the other");
        let cli = parse(&["gcd"]).unwrap();
        let Some(Command::Gcd(args)) = cli.command else { panic!() };
        assert_eq!(args.listen_addr(), Addr::new("127.0.0.1", 23600));
    }
}
