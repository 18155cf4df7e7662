//! What the two sides of a channel endpoint have in common on every
//! platform: where a channel is served (`channel_path`), who is on the
//! other end (`PeerInfo`), and why binding failed (`BindError`). The
//! platform listeners build on it.

use std::io;
use std::path::{Path, PathBuf};

use netcluster_proto::names;

/// Why a channel's socket could not be bound.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    /// Another process is accepting connections on the path.
    #[error("another ncserver is already serving channel {channel:?} at {path}: {holder} accepts connections there (stop it, or give this daemon another socketdir)")]
    InUse {
        /// Channel name.
        channel: String,
        /// Socket path.
        path: PathBuf,
        /// Who was found serving it, e.g. `process 4242 (ncserver)`, or
        /// `a process` when the system does not tell.
        holder: String,
    },
    /// A file that is not a socket is in the way.
    #[error("{path} exists and is not a socket; refusing to replace it (channel {channel:?})")]
    NotASocket {
        /// Channel name.
        channel: String,
        /// The path.
        path: PathBuf,
    },
    /// The full socket path does not fit a `sockaddr_un`.
    #[error("socket path {path} for channel {channel:?} is {len} bytes; the system limit is {max} (use a shorter socketdir or channel name)")]
    PathTooLong {
        /// Channel name.
        channel: String,
        /// The path.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The channel name cannot be used.
    #[error(transparent)]
    BadName(#[from] names::NameError),
    /// An I/O error while preparing or binding the socket.
    #[error("cannot bind channel {channel:?} at {path}: {cause}")]
    Io {
        /// Channel name.
        channel: String,
        /// The path.
        path: PathBuf,
        /// The cause (in the message, so not also a `source()`, which would
        /// print it twice in a chain).
        cause: io::Error,
    },
    /// `socketgroup` names a group that does not exist.
    #[error("socketgroup {name:?}: no such group")]
    UnknownGroup {
        /// The group name.
        name: String,
    },
    /// `socketgroup` was given on Windows, where pipes have no group owner.
    #[error("socketgroup cannot be used on Windows: named pipes have no group owner (socketmode \"0666\" lets every local user connect)")]
    GroupsUnsupported,
    /// This platform has no local listener yet.
    #[error("local channels are not supported on this platform yet (channel {channel:?})")]
    Unsupported {
        /// Channel name.
        channel: String,
    },
}

/// Who is on the other end of an accepted connection, as the kernel says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// Effective user id.
    pub uid: Option<u32>,
    /// Effective group id.
    pub gid: Option<u32>,
    /// Process id.
    pub pid: Option<i32>,
}

/// The path (or pipe name) a channel is served at: `{dir}/netcluster-{channel}`,
/// or on Windows `\\.\pipe\netcluster-{channel}` whatever `dir` is.
pub fn channel_path(dir: &Path, channel: &str) -> PathBuf {
    #[cfg(windows)]
    {
        let _ = dir;
        PathBuf::from(format!(r"\\.\pipe\{}", names::socket_file_name(channel)))
    }
    #[cfg(not(windows))]
    dir.join(names::socket_file_name(channel))
}
