//! Errors, one enum per operation. Each message says what went wrong and,
//! where it can, what to do about it. A cause is written into the message
//! and not also returned by `source()`: printing the chain (anyhow's `{:#}`)
//! would otherwise repeat it.

use std::path::PathBuf;

use netcluster_proto::names::NameError;

/// Why [`crate::Client::connect`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// No socket exists for the channel.
    #[error(
        "no channel {channel:?}: nothing at {path}. Channels come from the server's config: is ncserver running \
         with a config that lists {channel:?}, and does it use this socket directory? (The client's directory \
         comes from its socket_dir option, else NETCLUSTER_SOCKET_DIR, else /var/run for root, $XDG_RUNTIME_DIR, /tmp.)"
    )]
    NoSuchChannel {
        /// The channel asked for.
        channel: String,
        /// The socket path tried.
        path: PathBuf,
    },
    /// The socket exists but nobody accepts on it.
    #[error("no ncserver is accepting on {path} (channel {channel:?}); it may have stopped. Start ncserver and retry")]
    NotRunning {
        /// The channel asked for.
        channel: String,
        /// The socket path tried.
        path: PathBuf,
    },
    /// The socket's permissions do not let this user in.
    #[error("permission denied on {path} (channel {channel:?}): check the server's socketmode and your user's groups")]
    PermissionDenied {
        /// The channel asked for.
        channel: String,
        /// The socket path tried.
        path: PathBuf,
    },
    /// The server answered the handshake with an error.
    #[error("the server refused the connection to channel {channel:?}: {message}")]
    Refused {
        /// The channel asked for.
        channel: String,
        /// The server's explanation.
        message: String,
    },
    /// The handshake did not complete.
    #[error("handshake with the server on {path} failed: {reason}")]
    Handshake {
        /// The socket path.
        path: PathBuf,
        /// What happened.
        reason: String,
    },
    /// Another I/O error.
    #[error("cannot connect to {path}: {cause}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The cause (shown in the message, so not also a `source()`).
        cause: std::io::Error,
    },
    /// The channel name is invalid.
    #[error(transparent)]
    BadName(#[from] NameError),
    /// No tokio runtime is running (the async client spawns tasks).
    #[error("the async client needs a running tokio runtime; use netcluster::blocking::Client outside async code")]
    NoRuntime,
}

/// Why [`crate::Client::emit`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmitError {
    /// The connection is closed.
    #[error("not connected: {0}")]
    Disconnected(String),
    /// The payload exceeds the server's `maxmessage`.
    #[error("message of {len} bytes exceeds the server's maxmessage of {max} bytes")]
    TooLarge {
        /// Payload size.
        len: usize,
        /// The server's limit.
        max: usize,
    },
    /// The event name is invalid.
    #[error(transparent)]
    BadEvent(#[from] NameError),
    /// The data could not be serialized to JSON.
    #[error("cannot serialize the data to JSON: {0}")]
    Serialize(serde_json::Error),
}

/// Why [`crate::Client::subscribe`] or [`crate::Client::on`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// The connection is closed.
    #[error("not connected: {0}")]
    Disconnected(String),
    /// The event name is invalid.
    #[error(transparent)]
    BadEvent(#[from] NameError),
    /// The server refused the subscription.
    #[error("the server refused the subscription: {0}")]
    Refused(String),
}

/// Why [`crate::Client::request`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The connection is closed.
    #[error("not connected: {0}")]
    Disconnected(String),
    /// No answer in time.
    #[error("no answer from the server within {0:?}")]
    Timeout(std::time::Duration),
    /// The server ran the request and reports a failure.
    #[error("{0}")]
    Failed(String),
    /// The argument could not be serialized.
    #[error("cannot serialize the argument to JSON: {0}")]
    Serialize(serde_json::Error),
    /// The request name is invalid.
    #[error(transparent)]
    BadName(#[from] NameError),
    /// The answer was not valid JSON.
    #[error("the server's answer is not valid JSON: {0}")]
    BadResponse(serde_json::Error),
}

/// Why [`crate::Client::flush`] or [`crate::Client::disconnect`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlushError {
    /// The connection closed before everything was written.
    #[error("not connected: {0}")]
    Disconnected(String),
    /// The connection to the daemon broke since the previous flush: of the
    /// `count` messages emitted since then, any may have been lost (those
    /// written before the break and not yet handled by the daemon); the
    /// daemon confirmed none of them. Those still queued in the client were
    /// sent after reconnecting, unless the client is closed.
    #[error("{count} messages not confirmed by the daemon: the connection broke ({reason})")]
    Unconfirmed {
        /// Messages emitted since the previous flush (none confirmed).
        count: u64,
        /// Why the connection broke, as last known.
        reason: String,
    },
}

impl FlushError {
    /// How many messages this error leaves unconfirmed (0 when it does not
    /// say).
    pub fn unconfirmed(&self) -> u64 {
        match self {
            FlushError::Unconfirmed { count, .. } => *count,
            FlushError::Disconnected(_) => 0,
        }
    }
}
