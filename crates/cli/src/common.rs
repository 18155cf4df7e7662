//! What every command shares: the global options, connecting to a channel,
//! the tokio runtime the async client runs on, and the exit statuses.
//!
//! Exit statuses follow one rule everywhere: 0 on success, 1 when the
//! daemon answered a request with an error ([`DaemonError`]), 2 for
//! everything else (bad usage, bad input, no daemon, connection lost).

use std::fmt;
use std::path::PathBuf;

use netcluster::Client;

/// Longest name quoted whole in an error message; a longer one (event
/// names may have up to 1024 bytes) is cut there, with its length, so the
/// message stays readable.
pub const QUOTE_MAX: usize = 64;

/// `name` quoted for a message, cut after [`QUOTE_MAX`] characters.
pub fn quote_name(name: &str) -> String {
    if name.chars().count() <= QUOTE_MAX {
        return format!("{name:?}");
    }
    let head: String = name.chars().take(QUOTE_MAX).collect();
    format!("{head:?}… ({} bytes)", name.len())
}

/// Exit status when the daemon refused a request.
pub const EXIT_DAEMON_ERROR: u8 = 1;
/// Exit status for usage, input and connection errors.
pub const EXIT_ERROR: u8 = 2;

/// Options that apply to every command.
#[derive(Debug, Clone, Default)]
pub struct Global {
    /// The socket directory; `None` = the library's default rule.
    pub socket_dir: Option<PathBuf>,
    /// Reconnect when the daemon goes away (long-running commands).
    pub reconnect: bool,
}

impl Global {
    /// Connects to `channel`, naming this client `name` in the daemon's
    /// `showchannel`. `echo` is the library's echo-to-self option.
    pub async fn connect(&self, channel: &str, name: &str, echo: bool) -> anyhow::Result<Client> {
        let mut b = Client::builder(channel)
            .name(name)
            .echo(echo)
            .reconnect(self.reconnect);
        if let Some(dir) = &self.socket_dir {
            b = b.socket_dir(dir);
        }
        match b.connect().await {
            Ok(c) => Ok(c),
            // The library's text names its own option (socket_dir); here
            // the user's handle is the flag.
            Err(netcluster::ConnectError::NoSuchChannel { channel, path }) => Err(anyhow::anyhow!(
                "no channel {}: nothing at {}. Channels come from the daemon's config: is ncserver \
                 running with a config that lists it, and does it use this socket directory? \
                 (ncclient's directory comes from --socket-dir, else NETCLUSTER_SOCKET_DIR, else \
                 /var/run for root, $XDG_RUNTIME_DIR, /tmp; `ncclient -c 'showchannel()'` lists \
                 the channels.)",
                quote_name(&channel),
                path.display()
            )),
            Err(e) => Err(e.into()),
        }
    }
}

/// The runtime the client's connection tasks run on. One worker thread is
/// enough for one connection; it keeps the connection serviced while the
/// main thread waits for the terminal or stdin.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("ncclient-io")
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))
}

/// An error message the daemon answered a request with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonError(pub String);

impl fmt::Display for DaemonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DaemonError {}

/// The exit status for an error, by the rule in this module's doc.
pub fn exit_status(e: &anyhow::Error) -> u8 {
    if e.chain().any(|c| c.is::<DaemonError>()) {
        EXIT_DAEMON_ERROR
    } else {
        EXIT_ERROR
    }
}

/// True if `e` is a write to a closed pipe (e.g. output piped into
/// `head`), which ends a command quietly rather than as an error.
pub fn is_broken_pipe(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}
