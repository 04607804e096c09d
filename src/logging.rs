//! What a person sees: one line per event, `HH:MM:SS.mmm <who> <what>`, in the
//! protocol's own words. `-q` keeps warnings and errors (leader changes are logged at
//! warn's neighbour, see `node`), `-v` adds per-connection detail, `RUST_LOG` overrides.

use std::io::Write;

/// Installs the logger. `who` labels every line: the node's id, or `GCD`.
pub fn init(who: String, verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => log::LevelFilter::Warn,
        (false, 0) => log::LevelFilter::Info,
        (false, _) => log::LevelFilter::Debug,
    };
    let mut builder = env_logger::Builder::new();
    builder.filter_level(level);
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
        .target(env_logger::Target::Stdout)
        .init();
}
