//! `ncserver`: runs the netcluster daemon.
//!
//! Only argument parsing, config discovery, logging setup and signal
//! handling live here; the daemon itself is `netcluster_server::Server`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use netcluster_server::config::Config;
use netcluster_server::Server;

/// Exit code for bad configuration or failed startup.
const EXIT_FAILURE: u8 = 2;

/// The netcluster daemon: one local socket per channel, routing between
/// channels and, if configured, to other machines over UDP multicast.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// Config file (JSON with comments). Without it: config.json beside
    /// this executable, then /etc/netcluster/config.json, then a built-in
    /// default with the channels control, A and B.
    config: Option<PathBuf>,

    /// Only check FILE: print what is wrong (file:line:column) or "ok", and exit.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check: Option<PathBuf>,

    /// Log filter (tracing syntax), e.g. "debug" or "netcluster_server=debug".
    /// RUST_LOG is used when this is absent.
    #[arg(long, value_name = "FILTER")]
    log: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.log.as_deref());
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ncserver: error: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    if let Some(path) = args.check {
        let cfg = Config::load(&path)?;
        let names: Vec<&str> = cfg.channels.iter().map(|c| c.name.as_str()).collect();
        println!(
            "{}: ok ({} channels: {})",
            path.display(),
            names.len(),
            names.join(", ")
        );
        return Ok(());
    }
    let (config, how) = find_config(args.config)?;
    tracing::info!("using {how}");
    let server = Server::start(config).context("cannot start ncserver")?;
    tracing::info!(
        "ready. In another shell: `ncclient listen A` to print messages, `ncclient emit A greet '\"hello\"'` to send one, `ncclient` for the control REPL"
    );
    wait_for_signal()?;
    tracing::info!("signal received, stopping");
    server.stop();
    Ok(())
}

/// The config to use and a description of where it came from.
fn find_config(arg: Option<PathBuf>) -> anyhow::Result<(Config, String)> {
    if let Some(path) = arg {
        let cfg = Config::load(&path)?;
        return Ok((cfg, format!("config {}", path.display())));
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("config.json")));
    let system = PathBuf::from("/etc/netcluster/config.json");
    for candidate in beside.iter().chain(std::iter::once(&system)) {
        if exists(candidate) {
            let cfg = Config::load(candidate)?;
            return Ok((cfg, format!("config {}", candidate.display())));
        }
    }
    Ok((
        Config::builtin(),
        "the built-in default config (channels control, A, B)".into(),
    ))
}

fn exists(p: &Path) -> bool {
    p.metadata().map(|m| m.is_file()).unwrap_or(false)
}

fn init_logging(filter: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match filter {
        Some(f) => EnvFilter::new(f),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Blocks until SIGINT or SIGTERM (Ctrl-C on Windows).
fn wait_for_signal() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate())?;
            let mut int = signal(SignalKind::interrupt())?;
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        #[cfg(not(unix))]
        tokio::signal::ctrl_c().await?;
        Ok(())
    })
}
