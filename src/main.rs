//! `polltgt`: the target binary. `polltgt serve [--config FILE]` loads the YAML configuration (or the embedded
//! default), builds the devices and targets, starts the reactors and serves until SIGINT/SIGTERM.

mod build;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use polltgt_mgmt::Config;

#[derive(Parser)]
#[command(name = "polltgt", version, about = "Userspace polled-mode iSCSI target")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve iSCSI targets: from --config FILE, or the embedded default (1 GiB RAM LUN on 127.0.0.1:3260).
    Serve {
        /// YAML configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Check a configuration file and print it as polltgt understands it (with defaults filled in).
    CheckConfig {
        /// YAML configuration file.
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let cli = Cli::parse();
    match cli.command {
        Cmd::Serve { config } => {
            let cfg = match config {
                Some(path) => match Config::load(&path) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("polltgt: {e}");
                        return ExitCode::FAILURE;
                    }
                },
                None => Config::embedded_default(),
            };
            match serve(&cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("polltgt: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::CheckConfig { config } => match Config::load(&config).and_then(|c| c.to_yaml()) {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("polltgt: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Prints the dataplane statistics as one machine-readable line: `polltgt-stats: {json}` (SIGUSR1 and shutdown;
/// the management RPC will serve the same snapshot).
fn print_stats(server: &polltgt_dataplane::server::Server) {
    use std::io::Write;
    let snap = server.snapshot(Duration::from_secs(1));
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "polltgt-stats: {}", snap.to_json());
    let _ = out.flush();
}

fn serve(cfg: &Config) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [libc::SIGINT, libc::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let report = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(libc::SIGUSR1, report.clone())?;
    let server = build::start(cfg)?;
    for p in server.portals() {
        // Tests and scripts read this line to learn the port when the configuration asks for port 0.
        println!("polltgt: listening on {} (tpgt {})", p.addr, p.tpgt);
    }
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if report.swap(false, Ordering::Relaxed) {
            print_stats(&server);
        }
    }
    tracing::info!("shutting down");
    print_stats(&server);
    server.shutdown();
    Ok(())
}
