//! The `bully-node` binary: parse the command line, set up logging, run, and map
//! errors to exit codes (0 normal, 1 runtime error, 2 usage error).

mod cli;

use bully_node::{
    gcd_server, local_today, logging, run_check, run_demo, CheckConfig, CheckError, Coordinator, DemoConfig,
};
use clap::{CommandFactory, FromArgMatches};
use cli::{Cli, ColorArg, Command};
use std::ffi::OsString;
use std::io::IsTerminal;
use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Arc;

fn main() -> ExitCode {
    let args = habits(std::env::args_os().collect());
    let color = ColorArg::scan(&args);
    let bare = args.len() == 1;
    let cli = match Cli::command().color(color.clap()).try_get_matches_from(&args) {
        Ok(matches) => Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit()),
        Err(e) if bare && e.kind() == clap::error::ErrorKind::MissingRequiredArgument => {
            let _ = e.print();
            eprintln!("\nNew here? `bully-node demo` runs a whole group on this machine and explains what it shows.");
            return ExitCode::from(2);
        }
        Err(e) if e.kind() == clap::error::ErrorKind::UnknownArgument && forgot_dashes(&args) => {
            let _ = e.print();
            eprintln!(
                "\nPut `--` before the peer's command, so that its arguments are not read as the checker's:\n  \
                 bully-node check [OPTIONS] -- python3 lab2.py {{gcd_host}} {{gcd_port}} ..."
            );
            return ExitCode::from(2);
        }
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Some(Command::Gcd(args)) => {
            restore_sigpipe();
            let log_color = cli.color.enabled(std::io::stdout().is_terminal());
            logging::init("GCD".into(), cli.verbose, args.quiet, false, log_color);
            let listen = args.listen_addr();
            // The server blocks in accept() and keeps nothing to save: Ctrl-C or SIGTERM
            // ends the process at once, saying so. Installed before "listening" is
            // printed, so whoever reads that line may stop it right away.
            if let Err(e) = ctrlc::set_handler(|| {
                log::info!("stopped (Ctrl-C or SIGTERM)");
                std::process::exit(0);
            }) {
                log::warn!("Ctrl-C will end the GCD without a word: {e}");
            }
            match TcpListener::bind((listen.host.as_str(), listen.port)) {
                Ok(listener) => {
                    let bound = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
                    let config = args.coordinator_config();
                    log::info!(
                        "listening on {bound}, accepting {} (like gcd2.py{}); Ctrl-C stops it",
                        config.accept,
                        if config.allow_remote { ", remote members allowed" } else { "" }
                    );
                    let coordinator = Arc::new(Coordinator::new(config));
                    let serving = if args.serial { gcd_server::Serving::Serial } else { gcd_server::Serving::Concurrent };
                    // Runs until Ctrl-C, whose handler exits the process.
                    match gcd_server::start(listener, coordinator, serving, None) {
                        Ok(_gcd) => loop {
                            std::thread::park();
                        },
                        Err(e) => Err(e.to_string()),
                    }
                }
                Err(e) => Err(format!(
                    "cannot listen on {listen}: {e}; pick another PORT or --listen HOST:PORT (port 0 takes any free one)"
                )),
            }
        }
        Some(Command::Demo(args)) => {
            restore_sigpipe();
            // The demo prints its own timeline; the log only carries warnings. With the
            // events on stdout, everything a person reads goes to stderr.
            let events_on_stdout = args.events.as_deref() == Some("-");
            logging::init("demo".into(), 0, true, true, false);
            let tty = if events_on_stdout { std::io::stderr().is_terminal() } else { std::io::stdout().is_terminal() };
            run_demo(DemoConfig {
                nodes: args.nodes.into(),
                duration: args.duration,
                seed: args.seed.unwrap_or_else(rand::random),
                feign: !args.no_feign,
                events: args.events,
                accept: args.accept.into(),
                color: cli.color.enabled(tty),
                verbose: cli.verbose > 0,
                quiet: args.quiet,
            })
        }
        Some(Command::Check(args)) => return check_main(args),
        None => match cli.node.into_config(local_today()) {
            Ok(config) => {
                restore_sigpipe();
                let events_on_stdout = config.events.as_deref() == Some("-");
                let tty =
                    if events_on_stdout { std::io::stderr().is_terminal() } else { std::io::stdout().is_terminal() };
                logging::init(config.pid.to_string(), cli.verbose, cli.quiet, events_on_stdout, cli.color.enabled(tty));
                run_node(config)
            }
            Err(e) => {
                eprintln!("error: {}", cli::explain_config(&e));
                return ExitCode::from(2);
            }
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// `bully-node check python3 lab2.py ...`: the peer's command without the `--` before it.
fn forgot_dashes(args: &[OsString]) -> bool {
    args.get(1).is_some_and(|a| a == "check") && !args.iter().any(|a| a == "--")
}

/// Habits people bring from other tools, turned into what they mean here:
/// `help --help` (or `help -h`) asks for the help; `-q demo` (or `-q gcd`) is `demo -q`,
/// as when -q was a flag of every subcommand.
fn habits(mut args: Vec<OsString>) -> Vec<OsString> {
    let quiet = |a: &OsString| a == "-q" || a == "--quiet";
    if args.len() > 2 && quiet(&args[1]) && (args[2] == "demo" || args[2] == "gcd") {
        args.swap(1, 2);
    }
    let is_help_flag = |a: &OsString| a == "--help" || a == "-h";
    if args.get(1).is_some_and(|a| a == "help") && args[2..].iter().any(is_help_flag) {
        let flag = args[2..].iter().find(|a| is_help_flag(a)).cloned().unwrap_or_else(|| "--help".into());
        args.truncate(1);
        args.push(flag);
    }
    args
}

/// Lets a closed standard output (`bully-node ... | head`) end the process quietly, as
/// other command-line tools do, instead of running on with nowhere to write. Rust
/// ignores SIGPIPE by default; sockets are unaffected (std sends with MSG_NOSIGNAL, so
/// a peer that hangs up is still an error the node handles).
fn restore_sigpipe() {
    #[cfg(unix)]
    {
        // SAFETY: setting a signal's disposition to its default has no preconditions.
        #[allow(unsafe_code)]
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
}

/// Caps glibc's malloc at two arenas. By default each thread that allocates may get an
/// arena of its own (up to 8 per core), and a node runs a thread per message it sends or
/// receives: a burst of them left arenas with memory that is never given back, most of
/// a node's resident memory in a large group (issue 13). Two keep the main loop and
/// the connection and send threads from contending on one lock.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets a tuning parameter; called before any thread starts.
        #[allow(unsafe_code)]
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// Runs a node until Ctrl-C (SIGINT) or SIGTERM, which stop it cleanly. The handler is
/// in place from the start: during start-up (waiting for the GCD) there is nothing to
/// save, so it says `stopped` and ends the process at once (exit 130, as for any
/// interrupted command); once the node runs, it stops the node, which says `stopped`.
fn run_node(config: bully_node::Config) -> Result<(), String> {
    limit_malloc_arenas();
    let seed = config.seed;
    let running: Arc<std::sync::Mutex<Option<bully_node::Stopper>>> = Arc::default();
    let handler = {
        let running = Arc::clone(&running);
        move || match running.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            Some(stopper) => stopper.stop(),
            None => {
                log::info!("stopped (Ctrl-C or SIGTERM during start-up, before joining the group)");
                std::process::exit(130);
            }
        }
    };
    if let Err(e) = ctrlc::set_handler(handler) {
        log::warn!("Ctrl-C will end the node without a clean stop: {e}");
    }
    let node = bully_node::start(config).map_err(|e| cli::explain_node(&e))?;
    log::info!("random choices seeded with {seed} (replay them with --seed {seed})");
    *running.lock().unwrap_or_else(|e| e.into_inner()) = Some(node.stopper());
    node.wait();
    Ok(())
}

/// `bully-node check`: the rubric on stdout, exit 0 (no required check failed), 1 (one
/// did) or 2 (usage error, a peer that could not be started).
fn check_main(args: cli::CheckArgs) -> ExitCode {
    use std::sync::atomic::{AtomicBool, Ordering};
    // The rubric goes to stdout; the few warnings the checker may log go to stderr.
    logging::init("check".into(), 0, true, true, false);
    if args.time < bully_node::CHECK_MIN_LIMIT {
        eprintln!(
            "error: --time {:?} is too short: the scenarios need at least {:?}",
            args.time,
            bully_node::CHECK_MIN_LIMIT
        );
        return ExitCode::from(2);
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&interrupted);
    if let Err(e) = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)) {
        log::warn!("Ctrl-C will not stop the peer under test cleanly: {e}");
    }
    let config = CheckConfig {
        command: args.command,
        gcd_message: args.gcd_message.into(),
        limit: args.time,
        today: local_today(),
        interrupted,
    };
    match run_check(&config) {
        Ok(report) => {
            print!("{}", report.render());
            if let Some(path) = &args.json {
                let text = serde_json::to_string_pretty(&report.to_json()).expect("a JSON value serializes");
                if let Err(e) = std::fs::write(path, text + "\n") {
                    eprintln!("error: cannot write the JSON report to {path}: {e}");
                    return ExitCode::from(2);
                }
            }
            ExitCode::from(if report.failed() { 1 } else { 0 })
        }
        Err(e @ CheckError::Interrupted) => {
            eprintln!("{e}");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
