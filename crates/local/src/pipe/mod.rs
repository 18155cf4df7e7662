//! Windows: channels are named pipes `\\.\pipe\netcluster-{channel}`.
//!
//! This module owns everything Windows-specific about the local transport:
//! the stream over a pipe instance ([`stream`]), the listener that keeps a
//! pending instance ready for the next client ([`listener`]), the pipes'
//! security descriptors ([`security`]) and the client-side connect with its
//! retry on busy pipes. The rest of the workspace sees the same
//! `LocalStream`, `LocalListener` and `connect` as on Unix.
//!
//! Pipe names live in one namespace per machine (per Wine prefix under
//! Wine), so the socket directory plays no part here: two daemons on one
//! machine cannot serve the same channel name.

pub mod listener;
pub mod security;
pub mod stream;
#[cfg(test)]
mod tests;

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::net::windows::named_pipe::ClientOptions;
use windows_sys::Win32::Foundation::ERROR_PIPE_BUSY;

use crate::LocalStream;

/// How long `connect` keeps retrying while every instance of the pipe is
/// taken (the daemon creates the next instance right after each accept, so
/// this only lasts while a burst of clients is being accepted).
const BUSY_WAIT: Duration = Duration::from_secs(5);
/// First pause between attempts on a busy pipe; it doubles up to
/// [`BUSY_PAUSE_MAX`].
const BUSY_PAUSE_MIN: Duration = Duration::from_millis(2);
/// Longest pause between attempts on a busy pipe.
const BUSY_PAUSE_MAX: Duration = Duration::from_millis(50);

/// Opens the channel's pipe as a client. A missing pipe is
/// `ErrorKind::NotFound`, a pipe this user may not open `PermissionDenied`,
/// as for a socket path on Unix.
pub async fn connect(path: &Path) -> io::Result<LocalStream> {
    let deadline = Instant::now() + BUSY_WAIT;
    let mut pause = BUSY_PAUSE_MIN;
    loop {
        match ClientOptions::new().open(path.as_os_str()) {
            Ok(c) => return Ok(LocalStream::from_client(c)),
            Err(e) if is_busy(&e) && Instant::now() < deadline => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(BUSY_PAUSE_MAX);
            }
            Err(e) if is_busy(&e) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("every instance of the pipe stayed busy for {BUSY_WAIT:?}"),
                ))
            }
            Err(e) => return Err(e),
        }
    }
}

/// `ERROR_PIPE_BUSY`: the pipe exists but no instance is waiting for a client.
fn is_busy(e: &io::Error) -> bool {
    e.raw_os_error() == Some(ERROR_PIPE_BUSY as i32)
}
