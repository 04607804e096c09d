//! What a person sees: one line per event, `HH:MM:SS.mmm <who> <what>`, in the
//! protocol's own words. `-q` keeps leader changes, warnings and errors, `-v` adds
//! per-connection detail, `RUST_LOG` overrides. With colour (a terminal, see `--color`),
//! leader changes are bold, warnings yellow and errors red, so they stand out of a busy
//! log; nothing else is coloured.

use std::io::Write;

/// The log target of leader changes, which `-q` keeps.
pub const LEADER_TARGET: &str = "leader";

/// Installs the logger. `who` labels every line: the node's id, or `GCD`.
/// With `to_stderr`, human lines go to stderr (when stdout carries JSON events). With
/// `color`, lines carry ANSI colours (the caller decided the stream takes them).
pub fn init(who: String, verbose: u8, quiet: bool, to_stderr: bool, color: bool) {
    let level = match (quiet, verbose) {
        (true, _) => log::LevelFilter::Warn,
        (false, 0) => log::LevelFilter::Info,
        (false, _) => log::LevelFilter::Debug,
    };
    let mut builder = env_logger::Builder::new();
    builder.filter_level(level);
    // Leader changes show at every level, -q included.
    builder.filter(Some(LEADER_TARGET), level.max(log::LevelFilter::Info));
    if let Ok(spec) = std::env::var("RUST_LOG") {
        builder.parse_filters(&spec);
    }
    builder
        .format(move |buf, record| {
            let now = chrono::Local::now().format("%H:%M:%S%.3f");
            let (on, off) = match record.level() {
                _ if !color => ("", ""),
                log::Level::Error => ("\x1b[1;31m", "\x1b[0m"),
                log::Level::Warn => ("\x1b[33m", "\x1b[0m"),
                log::Level::Info if record.target() == LEADER_TARGET => ("\x1b[1m", "\x1b[0m"),
                log::Level::Info => ("", ""),
                log::Level::Debug | log::Level::Trace => ("\x1b[2m", "\x1b[0m"),
            };
            match record.level() {
                log::Level::Info => writeln!(buf, "{now} {who} {on}{}{off}", record.args()),
                log::Level::Debug | log::Level::Trace => {
                    writeln!(buf, "{on}{now} {who}   {}{off}", record.args())
                }
                level => writeln!(buf, "{now} {who} {on}{level}: {}{off}", record.args()),
            }
        })
        .write_style(if color { env_logger::WriteStyle::Always } else { env_logger::WriteStyle::Never })
        .target(if to_stderr { env_logger::Target::Stderr } else { env_logger::Target::Stdout })
        .init();
}

/// The most characters of a warning about what the network sent.
const NETWORK_LINE_MAX: usize = 300;

/// A warning about what the network sent, at most once a second across the process (a
/// flood of junk must not flood the terminal too), saying how many like it were held
/// back meanwhile; the held-back ones go to the debug level.
/// What the network sent reaches the terminal escaped and capped (`report::printable`).
pub fn throttled_warn(line: &str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let line = super::printable(line.as_bytes(), NETWORK_LINE_MAX);
    let line = line.as_str();
    static LAST_MS: AtomicU64 = AtomicU64::new(0);
    static HELD_BACK: AtomicU64 = AtomicU64::new(0);
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let last = LAST_MS.load(Ordering::Relaxed);
    if now_ms.saturating_sub(last) >= 1000
        && LAST_MS.compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    {
        let held = HELD_BACK.swap(0, Ordering::Relaxed);
        if held > 0 {
            log::warn!("{line} ({held} more like it held back)");
        } else {
            log::warn!("{line}");
        }
    } else {
        HELD_BACK.fetch_add(1, Ordering::Relaxed);
        log::debug!("{line}");
    }
}
