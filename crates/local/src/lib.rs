//! netcluster-local: the local transport between clients and the daemon.
//!
//! One stream type and one listener, the same for the daemon (which binds
//! a listener per channel) and the client library (which connects): Unix
//! domain sockets at `{socketdir}/netcluster-{channel}` on Unix, named
//! pipes `\\.\pipe\netcluster-{channel}` on Windows ([`pipe`]); on other
//! platforms every operation fails with a clear "not supported yet".
//! Framing lives in `netcluster-proto`, not here.
#![warn(missing_docs)]

pub mod endpoint;
pub mod listener;
#[cfg(windows)]
pub mod pipe;
#[cfg(target_os = "linux")]
pub mod shm;
pub mod stream;

pub use listener::{channel_path, group_id, BindError, LocalListener, PeerInfo};
pub use stream::LocalStream;

/// Connects to the channel socket at `path`.
#[cfg(unix)]
pub async fn connect(path: &std::path::Path) -> std::io::Result<LocalStream> {
    let s = tokio::net::UnixStream::connect(path).await?;
    LocalStream::from_tokio(s)
}

/// Connects to the channel's pipe `path`, retrying briefly while every
/// instance is busy.
#[cfg(windows)]
pub async fn connect(path: &std::path::Path) -> std::io::Result<LocalStream> {
    pipe::connect(path).await
}

/// Connects to the channel at `path` (not supported on this platform yet).
#[cfg(not(any(unix, windows)))]
pub async fn connect(_path: &std::path::Path) -> std::io::Result<LocalStream> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "local channels are not supported on this platform yet",
    ))
}
