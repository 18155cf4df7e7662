//! What every command shares: the global options, connecting to a channel,
//! the tokio runtime the async client runs on, and the exit statuses.
//!
//! Exit statuses follow one rule everywhere: 0 on success, 1 when the
//! daemon answered a request with an error ([`DaemonError`]), 2 for
//! everything else (bad usage, bad input, no daemon, connection lost).

use std::fmt;
use std::path::PathBuf;

use netcluster::Client;

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
        Ok(b.connect().await?)
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
