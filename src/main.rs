//! `polltgt`: the target binary. `polltgt serve [--config FILE]` loads the YAML configuration (or the embedded
//! default), builds the devices and targets, starts the reactors, the JSON-RPC socket and (optionally) the
//! Prometheus listener, and serves until SIGINT/SIGTERM. The other subcommands manage a running target through its
//! RPC socket (`list`, `show`, `set`, `scst`, `save-config`, ...) or work on files (`check-config`, `import-scst`).

mod build;
mod live;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use polltgt_dataplane::live::Control;
use polltgt_mgmt::server::{MetricsServer, RpcServer};
use polltgt_mgmt::{Config, Manager, DEFAULT_RPC_SOCKET};
use tracing_subscriber::prelude::*;
use tracing_subscriber::{reload, EnvFilter};

#[derive(Parser)]
#[command(name = "polltgt", version, about = "Userspace polled-mode iSCSI target")]
struct Cli {
    /// The RPC socket of the target to manage.
    #[arg(long, global = true, default_value = DEFAULT_RPC_SOCKET)]
    socket: PathBuf,
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
        /// The JSON-RPC socket, overriding mgmt.rpc_socket of the configuration.
        #[arg(long)]
        rpc_socket: Option<PathBuf>,
    },
    /// Check a configuration file and print it as polltgt understands it (with defaults filled in).
    CheckConfig {
        /// YAML configuration file.
        config: PathBuf,
    },
    #[command(flatten)]
    Mgmt(polltgt_mgmt::cli::Command),
}

fn main() -> ExitCode {
    // The filter can be replaced at run time (SCST's trace_level; RPC log_set_level).
    let initial = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_string());
    let filter = EnvFilter::try_new(&initial).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
    let set_trace: live::TraceSetter = Box::new(move |level: &str| {
        let f = EnvFilter::try_new(level).map_err(|e| format!("{level:?} is not a tracing filter: {e}"))?;
        handle.reload(f).map_err(|e| e.to_string())
    });
    let cli = Cli::parse();
    match cli.command {
        Cmd::Serve { config, rpc_socket } => {
            let cfg = match &config {
                Some(path) => match Config::load(path) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("polltgt: {e}");
                        return ExitCode::FAILURE;
                    }
                },
                None => Config::embedded_default(),
            };
            let config_path = config.map(|p| std::path::absolute(&p).unwrap_or(p));
            match serve(&cfg, config_path, rpc_socket, set_trace, initial) {
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
        Cmd::Mgmt(cmd) => match polltgt_mgmt::cli::run(cmd, &cli.socket) {
            Ok(out) => {
                print!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("polltgt: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// How long initiators get to log out when the target shuts down (RFC 7143 §11.9.1 AsyncEvent 1, Parameter3).
const LOGOUT_ON_SHUTDOWN: Duration = Duration::from_secs(3);

/// Prints the dataplane statistics as one machine-readable line, `polltgt-stats: {json}` (SIGUSR1 and shutdown):
/// the snapshot `dataplane_get_stats` serves over RPC, from the same collector.
fn print_stats(server: &polltgt_dataplane::server::Server) {
    use std::io::Write;
    let snap = server.snapshot(Duration::from_secs(1));
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "polltgt-stats: {}", snap.to_json());
    let _ = out.flush();
}

fn serve(
    cfg: &Config,
    config_path: Option<PathBuf>,
    rpc_socket: Option<PathBuf>,
    set_trace: live::TraceSetter,
    trace_level: String,
) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [libc::SIGINT, libc::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let report = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(libc::SIGUSR1, report.clone())?;
    let (server, pool) = build::start(cfg)?;
    let control = Control::new(server.registry().clone(), server.reactors().to_vec(), pool);
    let backend = Arc::new(live::LiveBackend::new(
        control,
        server.portal_control().clone(),
        server.isns().clone(),
        trace_level,
        set_trace,
    ));
    // The running configuration names the portals as bound (port 0 replaced by the kernel's choice), so that they
    // can be removed by address and save-config writes what listens.
    let mut running = cfg.clone();
    for (p, bound) in running.portals.iter_mut().zip(server.portals()) {
        p.address = bound.addr;
    }
    let manager = Arc::new(Manager::new(running, backend, config_path));
    let rpc = match rpc_socket.or_else(|| cfg.mgmt.rpc_socket.clone()) {
        Some(path) => Some(RpcServer::start(&path, manager.clone())?),
        None => None,
    };
    let metrics = match cfg.mgmt.prometheus {
        Some(addr) => Some(MetricsServer::start(addr, manager.clone())?),
        None => None,
    };
    if let Some(r) = &rpc {
        println!("polltgt: rpc socket {}", r.path().display());
    }
    if let Some(m) = &metrics {
        println!("polltgt: metrics on http://{}/metrics", m.addr());
    }
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
    drop(rpc);
    drop(metrics);
    server.shutdown_gracefully(LOGOUT_ON_SHUTDOWN);
    Ok(())
}
