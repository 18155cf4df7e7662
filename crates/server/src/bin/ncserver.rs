//! `ncserver`: runs the netcluster daemon.
//!
//! Only argument parsing, config discovery, logging setup and signal
//! handling live here; the daemon itself is `netcluster_server::Server`.
//! On Windows, `service` installs, removes and runs it as a service.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use netcluster_server::config::Config;
use netcluster_server::Server;

#[cfg(windows)]
#[path = "ncserver/service.rs"]
mod service;

#[cfg(unix)]
#[path = "ncserver/systemd.rs"]
mod systemd;

/// No service manager notifications outside Unix (the Windows service
/// reports to the SCM itself).
#[cfg(not(unix))]
mod systemd {
    pub fn ready(_status: &str) {}
    pub fn reloading() {}
    pub fn stopping() {}
    pub fn watchdog() {}
    pub fn watchdog_interval() -> Option<std::time::Duration> {
        None
    }
}

/// Exit code for bad configuration or failed startup.
const EXIT_FAILURE: u8 = 2;

/// ncserver, the netcluster daemon: one local socket per channel, routing
/// between channels and, if configured, to other machines over UDP multicast.
#[derive(Parser, Debug)]
// `name` explicitly, as clap's default is the package's (netcluster-server);
// the doc comment above is the about text (a bare `about` would show the
// package's description of the crate instead).
#[command(name = "ncserver", version)]
struct Args {
    /// Config file (JSON with comments). Without it: config.json beside
    /// this executable, then /etc/netcluster/config.json (on Windows
    /// %ProgramData%\netcluster\config.json), then a built-in default with
    /// the channels control, A and B.
    config: Option<PathBuf>,

    /// Only check FILE: print what is wrong (file:line:column) or "ok", and
    /// exit. Runs every check start-up makes (socketgroup, interface, socket
    /// path lengths, network settings) without binding anything.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check: Option<PathBuf>,

    /// Log filter (tracing syntax), e.g. "debug" or "netcluster_server=debug".
    /// RUST_LOG is used when this is absent.
    #[arg(long, value_name = "FILTER")]
    log: Option<String>,

    /// Append the log to FILE instead of writing it to stderr.
    #[arg(long, value_name = "FILE")]
    log_file: Option<PathBuf>,

    /// Log line format: "plain" (readable text) or "json" (one JSON object
    /// per line: timestamp, level, target, fields; for log collectors).
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    log_format: LogFormat,

    /// Windows only: install ncserver as the service "netcluster" (started
    /// at boot, running as LocalSystem) with CONFIG, or with the default
    /// config discovery when CONFIG is omitted.
    #[arg(
        long,
        value_name = "CONFIG",
        num_args = 0..=1,
        conflicts_with_all = ["config", "check", "uninstall_service", "run_service"]
    )]
    install_service: Option<Option<PathBuf>>,

    /// Windows only: stop and remove the service "netcluster".
    #[arg(long, conflicts_with_all = ["config", "check", "run_service"])]
    uninstall_service: bool,

    /// Windows only: run under the service control manager (the service's
    /// command line, written by --install-service).
    #[arg(long, hide = true, conflicts_with = "check")]
    run_service: bool,
}

/// `--log-format`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    /// Readable text lines (coloured on a terminal).
    Plain,
    /// One JSON object per line.
    Json,
}

fn main() -> ExitCode {
    return_big_buffers_to_the_system();
    let args = Args::parse();
    if let Err(e) = init_logging(
        args.log.as_deref(),
        args.log_file.as_deref(),
        args.log_format,
    ) {
        eprintln!("ncserver: error: {e:#}");
        return ExitCode::from(EXIT_FAILURE);
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ncserver: error: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Buffers from this size up get their own mapping from glibc.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 1024 * 1024;

/// Makes glibc give every buffer of a megabyte or more (big messages,
/// unfinished frames) its own mapping, returned to the system when freed.
/// By default glibc raises that threshold to the largest buffer freed so
/// far (up to 32 MiB) and its trim threshold to twice that, after which
/// such buffers come from its heaps and tens of megabytes stay in the
/// daemon's RSS once they are gone (e.g. after a flood of frames that
/// never complete).
fn return_big_buffers_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter, before any other
    // thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    if args.install_service.is_some() || args.uninstall_service || args.run_service {
        return service_command(args);
    }
    if let Some(path) = args.check {
        let cfg = Config::load(&path)?;
        Server::check(&cfg)
            .with_context(|| format!("{}: ncserver would not start", path.display()))?;
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
    // Handlers first: a SIGTERM that comes as soon as the daemon says it
    // serves must stop it gracefully, not kill it (and a SIGHUP reload it).
    let mut signals = Signals::install()?;
    let channels = config.channels.len();
    let server = Server::start(config).context("cannot start ncserver")?;
    let serving = format!("serving {channels} channels");
    systemd::ready(&serving);
    tracing::info!(
        "ready. In another shell: `ncclient listen A` to print messages, `ncclient emit A greet '\"hello\"'` to send one, `ncclient` for the control REPL"
    );
    let watchdog = systemd::watchdog_interval();
    loop {
        match signals.next(watchdog) {
            Signal::Stop => break,
            Signal::Reload => {
                tracing::info!("SIGHUP received, reloading the config file");
                systemd::reloading();
                // The daemon logs a refused reload itself; the old config stays.
                let status = match server.reload() {
                    Ok(r) => format!("serving; last reload applied: {r}"),
                    Err(e) => format!("serving; last reload refused: {e}"),
                };
                systemd::ready(&status);
            }
            Signal::Tick => {
                // Ping systemd only for a daemon thread that answers: a
                // stuck event loop gets the unit restarted.
                if server.ping(watchdog.unwrap_or(Duration::from_secs(1))) {
                    systemd::watchdog();
                } else {
                    tracing::warn!("the daemon thread did not answer; not pinging the watchdog");
                }
            }
        }
    }
    tracing::info!("signal received, stopping");
    systemd::stopping();
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
    let system = system_config();
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

/// The machine-wide config file.
#[cfg(not(windows))]
fn system_config() -> PathBuf {
    PathBuf::from("/etc/netcluster/config.json")
}

/// The machine-wide config file: `%ProgramData%\netcluster\config.json`.
#[cfg(windows)]
fn system_config() -> PathBuf {
    service::program_data().join("config.json")
}

fn exists(p: &Path) -> bool {
    p.metadata().map(|m| m.is_file()).unwrap_or(false)
}

fn init_logging(
    filter: Option<&str>,
    file: Option<&Path>,
    format: LogFormat,
) -> anyhow::Result<()> {
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    use tracing_subscriber::EnvFilter;
    let filter = match filter {
        Some(f) => EnvFilter::new(f),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let (writer, terminal) = match file {
        None => {
            use std::io::IsTerminal;
            (
                BoxMakeWriter::new(std::io::stderr),
                std::io::stderr().is_terminal(),
            )
        }
        Some(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open log file {}", path.display()))?;
            (BoxMakeWriter::new(std::sync::Mutex::new(f)), false)
        }
    };
    // Colours only for plain lines on a terminal: logs piped to a file or
    // journal stay plain text, and JSON never gets escape codes.
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(terminal && format == LogFormat::Plain);
    match format {
        LogFormat::Plain => fmt.init(),
        LogFormat::Json => fmt.json().init(),
    }
    Ok(())
}

/// `--install-service`, `--uninstall-service`, `--run-service`.
#[cfg(windows)]
fn service_command(args: Args) -> anyhow::Result<()> {
    if let Some(config) = args.install_service {
        service::install(config.as_deref(), args.log.as_deref())
    } else if args.uninstall_service {
        service::uninstall()
    } else {
        service::run(args.config)
    }
}

/// The service flags exist only on Windows.
#[cfg(not(windows))]
fn service_command(args: Args) -> anyhow::Result<()> {
    let flag = if args.install_service.is_some() {
        "--install-service"
    } else if args.uninstall_service {
        "--uninstall-service"
    } else {
        "--run-service"
    };
    anyhow::bail!(
        "{flag} works only on Windows; on this system run ncserver under your service manager (e.g. a systemd unit)"
    )
}

/// What a signal asks for.
enum Signal {
    /// Stop gracefully.
    Stop,
    /// Reload the config file (SIGHUP).
    #[cfg_attr(windows, allow(dead_code))]
    Reload,
    /// Time to check the daemon and ping the watchdog.
    Tick,
}

/// The signals ncserver handles: SIGINT and SIGTERM stop it, SIGHUP
/// reloads its config (Ctrl-C, Ctrl-Break, close and shutdown stop it on
/// Windows), handled from the moment they are installed.
struct Signals {
    rt: tokio::runtime::Runtime,
    #[cfg(unix)]
    streams: (
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
    ),
    #[cfg(windows)]
    streams: (
        tokio::signal::windows::CtrlC,
        tokio::signal::windows::CtrlBreak,
        tokio::signal::windows::CtrlClose,
        tokio::signal::windows::CtrlShutdown,
    ),
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let _in_rt = rt.enter();
        #[cfg(unix)]
        let streams = {
            use tokio::signal::unix::{signal, SignalKind};
            (
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
                signal(SignalKind::hangup())?,
            )
        };
        #[cfg(windows)]
        let streams = {
            use tokio::signal::windows::{ctrl_break, ctrl_c, ctrl_close, ctrl_shutdown};
            (ctrl_c()?, ctrl_break()?, ctrl_close()?, ctrl_shutdown()?)
        };
        drop(_in_rt);
        Ok(Signals { rt, streams })
    }

    /// Blocks until a signal arrives and says what it asks for, or
    /// returns [`Signal::Tick`] after `tick` if given.
    fn next(&mut self, tick: Option<Duration>) -> Signal {
        let Signals { rt, streams } = self;
        rt.block_on(async move {
            let tick = async {
                match tick {
                    Some(t) => tokio::time::sleep(t).await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(unix)]
            tokio::select! {
                _ = streams.0.recv() => Signal::Stop,
                _ = streams.1.recv() => Signal::Stop,
                _ = streams.2.recv() => Signal::Reload,
                _ = tick => Signal::Tick,
            }
            #[cfg(windows)]
            tokio::select! {
                _ = streams.0.recv() => Signal::Stop,
                _ = streams.1.recv() => Signal::Stop,
                _ = streams.2.recv() => Signal::Stop,
                _ = streams.3.recv() => Signal::Stop,
                _ = tick => Signal::Tick,
            }
        })
    }
}
