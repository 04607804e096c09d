//! What a person sees: one line per event, `HH:MM:SS.mmm <who> <what>`, in the
//! protocol's own words. `-q` keeps leader changes, warnings and errors, `-v` adds
//! per-connection detail, `RUST_LOG` overrides.

use std::io::Write;

/// Installs the logger. `who` labels every line: the node's id, or `GCD`.
/// With `to_stderr`, human lines go to stderr (when stdout carries JSON events).
pub fn init(who: String, verbose: u8, quiet: bool, to_stderr: bool) {
    let level = match (quiet, verbose) {
        (true, _) => log::LevelFilter::Warn,
        (false, 0) => log::LevelFilter::Info,
        (false, _) => log::LevelFilter::Debug,
    };
    let mut builder = env_logger::Builder::new();
    builder.filter_level(level);
    // Leader changes show at every level, -q included.
    builder.filter(Some(crate::events::LEADER_TARGET), level.max(log::LevelFilter::Info));
    if let Ok(spec) = std::env::var("RUST_LOG") {
        builder.parse_filters(&spec);
    }
    builder
        .format(move |buf, record| {
            let now = chrono::Local::now().format("%H:%M:%S%.3f");
            match record.level() {
                log::Level::Info => writeln!(buf, "{now} {who} {}", record.args()),
                log::Level::Debug | log::Level::Trace => {
                    writeln!(buf, "{now} {who}   {}", record.args())
                }
                level => writeln!(buf, "{now} {who} {level}: {}", record.args()),
            }
        })
        .target(if to_stderr { env_logger::Target::Stderr } else { env_logger::Target::Stdout })
        .init();
}
