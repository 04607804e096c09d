//! The `bully-node` binary: parse the command line, set up logging, run, and map
//! errors to exit codes (0 normal, 1 runtime error, 2 usage error).

use bully_node::bench::{self, BenchConfig};
use bully_node::cli::NodeConfig;
use bully_node::cli::{Cli, Command};
use bully_node::demo::{self, DemoConfig};
use bully_node::gcd::{server, Coordinator};
use bully_node::{identity, logging, runtime};
use clap::Parser;
use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Arc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Gcd(args)) => {
            logging::init("GCD".into(), cli.verbose, cli.quiet, false);
            let listen = &args.listen;
            match TcpListener::bind((listen.host.as_str(), listen.port)) {
                Ok(listener) => {
                    let bound = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
                    let config = args.coordinator_config();
                    log::info!(
                        "listening on {bound}, accepting {} (like gcd2.py{})",
                        config.accept,
                        if config.allow_remote { ", remote members allowed" } else { "" }
                    );
                    server::serve(listener, Arc::new(Coordinator::new(config))).map_err(|e| e.to_string())
                }
                Err(e) => Err(format!(
                    "cannot listen on {listen}: {e}; pick another --listen HOST:PORT (port 0 takes any free one)"
                )),
            }
        }
        Some(Command::Demo(args)) => {
            // The demo prints its own timeline; the log only carries warnings.
            logging::init("demo".into(), 0, true, false);
            let color = std::io::IsTerminal::is_terminal(&std::io::stdout()) && std::env::var_os("NO_COLOR").is_none();
            demo::run(DemoConfig {
                nodes: args.nodes.into(),
                duration: args.duration,
                seed: args.seed.unwrap_or_else(rand::random),
                feign: !args.no_feign,
                events: args.events,
                color,
                verbose: cli.verbose > 0,
                quiet: cli.quiet,
            })
        }
        Some(Command::Check(args)) => return check_main(args),
        Some(Command::Bench(args)) => {
            logging::init("bench".into(), 0, true, true);
            bench::run(BenchConfig {
                sizes: args.sizes.into_iter().filter(|n| *n >= 2).collect(),
                reps: args.reps.max(1),
                idle: args.idle,
                scale: args.scale,
                python: !args.no_python,
            })
        }
        None => match cli.node.into_config(identity::local_today()) {
            Ok(config) => {
                let events_on_stdout = config.events.as_deref() == Some("-");
                logging::init(config.pid.to_string(), cli.verbose, cli.quiet, events_on_stdout);
                run_node(config)
            }
            Err(e) => {
                eprintln!("error: {e}");
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

/// Runs a node until Ctrl-C (SIGINT) or SIGTERM, which stop it cleanly.
fn run_node(config: NodeConfig) -> Result<(), String> {
    let node = runtime::start(config).map_err(|e| e.to_string())?;
    let stopper = node.stopper();
    if let Err(e) = ctrlc::set_handler(move || stopper.stop()) {
        log::warn!("Ctrl-C will end the node without a clean stop: {e}");
    }
    node.wait();
    Ok(())
}

/// `bully-node check`: the rubric on stdout, exit 0 (no required check failed), 1 (one
/// did) or 2 (usage error, a peer that could not be started).
fn check_main(args: bully_node::cli::CheckArgs) -> ExitCode {
    use bully_node::check::{self, CheckConfig, CheckError};
    use std::sync::atomic::{AtomicBool, Ordering};
    logging::init("check".into(), 0, true, false);
    if args.time < check::MIN_LIMIT {
        eprintln!("error: --time {:?} is too short: the scenarios need at least {:?}", args.time, check::MIN_LIMIT);
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
        today: identity::local_today(),
        interrupted,
    };
    match check::run(&config) {
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
