//! A connected named pipe, either end, with the methods of the Unix
//! `LocalStream` so daemon and client code need no `cfg`.
//!
//! tokio (through mio) drives a pipe with overlapped I/O: a write copies the
//! bytes into a buffer of its own and starts one overlapped write, so a
//! write either takes everything it is given or, while the previous one is
//! still in flight, reports `WouldBlock`; the pipe turns writable again when
//! that write completes. Reads come from a buffer filled by an overlapped
//! read kept in flight. Named pipes have no half-close: the peer sees the
//! end of the stream when this end is dropped (writes already started still
//! complete while the runtime runs).

use std::io::{self, IoSlice};

use bytes::BytesMut;
use tokio::io::Interest;
use tokio::net::windows::named_pipe::{NamedPipeClient, NamedPipeServer};

/// Bytes reserved by [`LocalStream::read_buf`] when the buffer is full.
const READ_RESERVE: usize = 64 * 1024;

/// Which end of the pipe this is.
#[derive(Debug)]
enum End {
    /// An instance the daemon accepted a client on.
    Server(NamedPipeServer),
    /// A client's handle.
    Client(NamedPipeClient),
}

/// Runs the same expression on whichever end `$s` holds.
macro_rules! on_end {
    ($s:expr, $p:ident => $e:expr) => {
        match &$s.end {
            End::Server($p) => $e,
            End::Client($p) => $e,
        }
    };
}

/// See the module docs.
#[derive(Debug)]
pub struct LocalStream {
    end: End,
}

impl LocalStream {
    /// Wraps a connected server instance.
    pub fn from_server(p: NamedPipeServer) -> Self {
        LocalStream {
            end: End::Server(p),
        }
    }

    /// Wraps a client handle.
    pub fn from_client(p: NamedPipeClient) -> Self {
        LocalStream {
            end: End::Client(p),
        }
    }

    /// Waits until there is something to read (or the peer closed).
    pub async fn readable(&self) -> io::Result<()> {
        on_end!(self, p => p.readable().await)
    }

    /// Reads once into `buf`'s spare capacity without waiting; reserve
    /// room first. `Ok(0)` means the peer closed; `WouldBlock` means no
    /// data yet.
    pub fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        if buf.capacity() == buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no room to read into",
            ));
        }
        on_end!(self, p => p.try_read_buf(buf))
    }

    /// Reads at least one byte (or `Ok(0)` at end of stream), waiting as
    /// needed. Reserves room if `buf` has none.
    pub async fn read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        if buf.capacity() == buf.len() {
            buf.reserve(READ_RESERVE);
        }
        loop {
            self.readable().await?;
            match self.try_read_buf(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return r,
            }
        }
    }

    /// Writes what the pipe takes now, without waiting.
    pub fn try_write(&self, b: &[u8]) -> io::Result<usize> {
        on_end!(self, p => p.try_write(b))
    }

    /// Writes what the pipe takes now from several buffers.
    pub fn try_write_vectored(&self, iov: &[IoSlice<'_>]) -> io::Result<usize> {
        on_end!(self, p => p.try_write_vectored(iov))
    }

    /// Runs `write` until it does not report `WouldBlock`, waiting for the
    /// pipe to become writable between attempts. `write` may report
    /// `WouldBlock` after a partial write of its own: every write the pipe
    /// accepts starts an overlapped write whose completion makes the pipe
    /// writable again, so the wait always ends.
    pub async fn write_ready<R>(&self, mut write: impl FnMut() -> io::Result<R>) -> io::Result<R> {
        loop {
            // try_io clears the write readiness when `write` reports
            // WouldBlock, so the next wait is for a new completion.
            match on_end!(self, p => p.try_io(Interest::WRITABLE, &mut write)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    on_end!(self, p => p.writable().await)?;
                }
                r => return r,
            }
        }
    }

    /// Writes all of `b`, waiting as needed.
    pub async fn write_all(&self, mut b: &[u8]) -> io::Result<()> {
        while !b.is_empty() {
            let n = self.write_ready(|| self.try_write(b)).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            b = &b[n..];
        }
        Ok(())
    }

    /// Named pipes cannot be half-closed: this does nothing, and the peer
    /// sees the end of the stream when this end is dropped.
    pub fn shutdown_write(&self) -> io::Result<()> {
        Ok(())
    }
}
