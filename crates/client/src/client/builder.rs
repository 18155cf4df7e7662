//! Configuring a connection: [`ClientBuilder`] with its defaults (output
//! bound, subscription buffer, request timeout, reconnecting, offline
//! queue), the socket directory and name a client uses when none is given,
//! and the connect that turns the options into a [`Client`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use netcluster_proto::names;

use super::{Client, CloseOnDrop};
use crate::connection::{self, Options};
use crate::error::ConnectError;

/// Default bound of a client's unsent output before `emit` waits (256
/// KiB). A publisher faster than its daemon waits here, asleep, as a
/// blocking writer waits in `write`; with 4 MiB (the default until issue
/// 15's fifth round) it ran up to 16,000 messages of 256 bytes ahead of a
/// full socket, through a buffer larger than the CPU's caches, and took
/// the CPU from the daemon and the subscriber meanwhile (see "Fifth
/// round" in docs/PERFORMANCE.md).
pub const DEFAULT_MAX_PENDING: usize = 256 * 1024;
/// Default bound of the emits kept while reconnecting (4 MiB): what a
/// client may queue while its daemon restarts, independent of
/// [`DEFAULT_MAX_PENDING`].
pub const DEFAULT_OFFLINE_QUEUE: usize = 4 * 1024 * 1024;
/// Default number of messages a [`Subscription`](super::Subscription) buffers before the
/// connection waits for the application to read.
pub const DEFAULT_SUBSCRIPTION_CAPACITY: usize = 1024;
/// Default time to wait for a control answer.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Configures a connection. Start with [`Client::builder`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    pub(super) channel: String,
    pub(super) socket_dir: Option<PathBuf>,
    pub(super) name: Option<String>,
    pub(super) echo: bool,
    pub(super) max_pending: usize,
    pub(super) subscription_capacity: usize,
    pub(super) request_timeout: Duration,
    pub(super) reconnect: bool,
    pub(super) offline_bytes: usize,
    pub(super) shm_pool: Option<usize>,
}

impl ClientBuilder {
    /// Whether to reconnect (with backoff) when the daemon goes away, for
    /// example when it restarts; listeners are subscribed again on the new
    /// connection. On by default. Off, a lost connection closes the client.
    pub fn reconnect(mut self, on: bool) -> Self {
        self.reconnect = on;
        self
    }

    /// How many bytes of emits to keep while reconnecting; emits beyond
    /// fail with [`EmitError::Disconnected`](crate::error::EmitError::Disconnected). 0 makes every emit fail at
    /// once while disconnected. Default: [`DEFAULT_OFFLINE_QUEUE`].
    pub fn offline_queue(mut self, bytes: usize) -> Self {
        self.offline_bytes = bytes;
        self
    }

    /// The directory holding the channel sockets. Default: the same rule
    /// as the daemon (`NETCLUSTER_SOCKET_DIR`, `/var/run` for root,
    /// `$XDG_RUNTIME_DIR`, `/tmp`).
    pub fn socket_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.socket_dir = Some(dir.into());
        self
    }

    /// Large payloads (`emit_bytes` of at least 16 KiB) over shared
    /// memory instead of the socket, with a pool of `pool_bytes` per
    /// connection (at most the daemon's `shmbytes`), and messages from
    /// other such clients read in place, without a copy (Linux; elsewhere,
    /// or when the daemon refuses, everything goes through the socket).
    /// A handler's payload then stays valid while the message (or a
    /// `bytes()` clone) is kept; dropping it gives the slot back. When the
    /// pool is full, an emit waits up to 200 ms for a slot, then sends the
    /// payload through the socket. `0` only receives this way.
    /// [`Client::loan`](crate::Client::loan) builds a payload in a slot
    /// directly. The pool is the publisher's window over its subscribers:
    /// a few slots more than they keep at once is enough, and a pool much
    /// larger than the CPU caches is slower (4 MiB ran 1.5–1.7× faster
    /// than 64 MiB for 64 KiB and 1 MiB messages). See docs/SHM.md.
    pub fn shared_memory(mut self, pool_bytes: usize) -> Self {
        self.shm_pool = Some(pool_bytes);
        self
    }

    /// A name shown by the daemon's `showchannel`. Default: the program name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Whether this client's own emits also reach its own listeners (the
    /// seed's behaviour, and the default). The daemon never sends a client
    /// its own messages; this echo happens inside the library.
    pub fn echo(mut self, on: bool) -> Self {
        self.echo = on;
        self
    }

    /// Bytes of unsent output after which `emit` waits (until half of it
    /// is written). Default: [`DEFAULT_MAX_PENDING`] (256 KiB). A larger
    /// bound absorbs longer bursts without waiting, but a publisher that
    /// outruns the daemon then fills that much memory before it waits,
    /// which costs throughput (see [`DEFAULT_MAX_PENDING`]).
    pub fn max_pending(mut self, bytes: usize) -> Self {
        self.max_pending = bytes.max(1);
        self
    }

    /// Messages a [`Subscription`](super::Subscription) buffers before reading from the daemon
    /// pauses.
    pub fn subscription_capacity(mut self, n: usize) -> Self {
        self.subscription_capacity = n.max(1);
        self
    }

    /// How long [`Client::request`] waits for an answer.
    pub fn request_timeout(mut self, t: Duration) -> Self {
        self.request_timeout = t;
        self
    }

    /// Connects. Needs a running tokio runtime.
    pub async fn connect(self) -> Result<Client, ConnectError> {
        let dir = self.socket_dir.clone().unwrap_or_else(default_socket_dir);
        let name = self.name.clone().unwrap_or_else(program_name);
        let opts = Options {
            reconnect: self.reconnect,
            offline_bytes: self.offline_bytes,
            name,
            echo: self.echo,
            max_pending: self.max_pending,
            shm_pool: self.shm_pool,
        };
        let shared = connection::open(&dir, &self.channel, opts).await?;
        Ok(Client {
            _guard: Arc::new(CloseOnDrop(shared.clone())),
            shared,
            subscription_capacity: self.subscription_capacity,
            request_timeout: self.request_timeout,
        })
    }
}

/// The socket directory clients use when none is given.
pub fn default_socket_dir() -> PathBuf {
    names::default_socket_dir(|k| std::env::var(k).ok(), is_root())
}

fn is_root() -> bool {
    #[cfg(unix)]
    {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() == 0 }
    }
    #[cfg(not(unix))]
    {
        false
    }
}

fn program_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "netcluster-client".into())
}
