//! A connected local stream (a Unix domain socket here), used the same way
//! by the daemon and the client.
//!
//! It exists for one reason of speed: tokio registers its sockets for read
//! *and* write readiness, so every time the peer consumes data the kernel
//! signals "writable" and wakes this process for nothing. On one CPU that
//! doubles the context switches of a round trip. This stream registers for
//! reading only; writes go straight to the socket, and only when one finds
//! the socket full does [`LocalStream::write_ready`] register a duplicate
//! descriptor for write readiness, for as long as that wait lasts. Reads
//! that do not fill the buffer count as "drained", so the next wait goes to
//! the kernel instead of costing a read that returns `EAGAIN`.

#[cfg(not(windows))]
use std::io::{self, IoSlice};

#[cfg(not(windows))]
use bytes::BytesMut;

#[cfg(unix)]
pub use unix::LocalStream;

#[cfg(windows)]
pub use crate::pipe::stream::LocalStream;

#[cfg(not(any(unix, windows)))]
pub use unsupported::LocalStream;

#[cfg(unix)]
mod unix {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    use tokio::io::unix::AsyncFd;
    use tokio::io::Interest;

    /// Registers a socket with the runtime for `interest` only.
    fn register(s: UnixStream, interest: Interest) -> io::Result<AsyncFd<UnixStream>> {
        // SAFETY: `s` owns its descriptor, which stays open and unchanged
        // until the AsyncFd (which owns `s`) is dropped.
        unsafe { AsyncFd::register_with_interest(s, interest) }.map_err(|e| e.into_parts().1)
    }

    /// See the module docs.
    #[derive(Debug)]
    pub struct LocalStream {
        io: AsyncFd<UnixStream>,
    }

    impl LocalStream {
        /// Wraps a connected socket (made non-blocking here). Must be
        /// called inside a tokio runtime.
        pub fn from_std(s: UnixStream) -> io::Result<Self> {
            s.set_nonblocking(true)?;
            Ok(LocalStream {
                io: register(s, Interest::READABLE)?,
            })
        }

        /// Wraps a tokio socket, moving it to read-only registration.
        pub fn from_tokio(s: tokio::net::UnixStream) -> io::Result<Self> {
            Self::from_std(s.into_std()?)
        }

        /// Waits until there is something to read (or the peer closed).
        pub async fn readable(&self) -> io::Result<()> {
            self.io.readable().await.map(drop)
        }

        /// [`LocalStream::readable`] as a poll: `Ready` while there is
        /// something to read (or the peer closed). Only the waker of the
        /// last call is woken (one slot, unlike `readable`'s list of
        /// waiters): for a caller that is the only one waiting at a time.
        pub fn poll_read_ready(
            &self,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            self.io.poll_read_ready(cx).map_ok(drop)
        }

        /// Reads once into `buf`'s spare capacity without waiting; reserve
        /// room first. `Ok(0)` means the peer closed; `WouldBlock` means no
        /// data yet.
        pub fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
            let spare = buf.capacity() - buf.len();
            if spare == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "no room to read into",
                ));
            }
            let mut got = None;
            let r = self.io.try_io(Interest::READABLE, |s| {
                let dst = buf.spare_capacity_mut();
                // SAFETY: `dst` is valid writable memory of `dst.len()` bytes
                // owned by `buf`; recv writes at most that many.
                let n = unsafe { libc::recv(s.as_raw_fd(), dst.as_mut_ptr().cast(), dst.len(), 0) };
                if n < 0 {
                    return Err(io::Error::last_os_error());
                }
                let n = n as usize;
                // SAFETY: the kernel initialized the first `n` spare bytes.
                unsafe { buf.set_len(buf.len() + n) };
                got = Some(n);
                // A short read drained the socket: clear readiness.
                if n > 0 && n < spare {
                    Err(io::ErrorKind::WouldBlock.into())
                } else {
                    Ok(n)
                }
            });
            match got {
                Some(n) => Ok(n),
                None => r,
            }
        }

        /// Reads at least one byte (or `Ok(0)` at end of stream), waiting as
        /// needed. Reserves room if `buf` has none.
        pub async fn read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
            if buf.capacity() == buf.len() {
                buf.reserve(64 * 1024);
            }
            loop {
                self.readable().await?;
                match self.try_read_buf(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    r => return r,
                }
            }
        }

        /// [`LocalStream::try_read_buf`] that also keeps the descriptors
        /// passed with the bytes (`SCM_RIGHTS`), appended to `fds`: the
        /// read of a connection that uses shared-memory pools.
        #[cfg(target_os = "linux")]
        pub fn try_read_buf_fds(
            &self,
            buf: &mut BytesMut,
            fds: &mut Vec<std::os::fd::OwnedFd>,
        ) -> io::Result<usize> {
            let spare = buf.capacity() - buf.len();
            if spare == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "no room to read into",
                ));
            }
            // Unlike `try_read_buf`, a short read does not mean the socket
            // is drained: the kernel ends a read at each message that
            // carries descriptors, with more bytes behind it. Readiness is
            // cleared only by a real `EAGAIN`.
            self.io.try_io(Interest::READABLE, |s| {
                crate::shm::recv_with_fds(s.as_raw_fd(), buf, fds)
            })
        }

        /// [`LocalStream::read_buf`] that keeps passed descriptors (see
        /// [`LocalStream::try_read_buf_fds`]).
        #[cfg(target_os = "linux")]
        pub async fn read_buf_fds(
            &self,
            buf: &mut BytesMut,
            fds: &mut Vec<std::os::fd::OwnedFd>,
        ) -> io::Result<usize> {
            if buf.capacity() == buf.len() {
                buf.reserve(64 * 1024);
            }
            loop {
                self.readable().await?;
                match self.try_read_buf_fds(buf, fds) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    r => return r,
                }
            }
        }

        /// Writes what the socket takes now of `b`, with `fd` attached to
        /// its first byte (`SCM_RIGHTS`); `WouldBlock` when nothing went.
        #[cfg(target_os = "linux")]
        pub fn try_write_with_fd(&self, b: &[u8], fd: std::os::fd::RawFd) -> io::Result<usize> {
            crate::shm::send_with_fd(self.io.get_ref().as_raw_fd(), b, fd)
        }

        /// Writes what the socket takes now, without waiting.
        pub fn try_write(&self, b: &[u8]) -> io::Result<usize> {
            self.io.get_ref().write(b)
        }

        /// Writes what the socket takes now from several buffers.
        pub fn try_write_vectored(&self, iov: &[IoSlice<'_>]) -> io::Result<usize> {
            self.io.get_ref().write_vectored(iov)
        }

        /// Runs `write` until it does not report `WouldBlock`, waiting for
        /// the socket to become writable between attempts. The write
        /// registration lives only for this call.
        pub async fn write_ready<R>(
            &self,
            mut write: impl FnMut() -> io::Result<R>,
        ) -> io::Result<R> {
            match write() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => return r,
            }
            let dup = self.io.get_ref().try_clone()?;
            let reg = register(dup, Interest::WRITABLE)?;
            loop {
                let mut guard = reg.writable().await?;
                if let Ok(r) = guard.try_io(|_| write()) {
                    return r;
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

        /// Tells the peer nothing more will be written.
        pub fn shutdown_write(&self) -> io::Result<()> {
            self.io.get_ref().shutdown(std::net::Shutdown::Write)
        }
    }
}

#[cfg(not(any(unix, windows)))]
mod unsupported {
    use super::*;

    fn unsupported() -> io::Error {
        io::Error::new(
            io::ErrorKind::Unsupported,
            "local channels are not supported on this platform yet",
        )
    }

    /// Placeholder: no local stream exists on this platform yet.
    #[derive(Debug)]
    pub struct LocalStream {
        _private: (),
    }

    impl LocalStream {
        /// Always fails.
        pub async fn readable(&self) -> io::Result<()> {
            Err(unsupported())
        }
        /// Always fails.
        pub fn try_read_buf(&self, _buf: &mut BytesMut) -> io::Result<usize> {
            Err(unsupported())
        }
        /// Always fails.
        pub async fn read_buf(&self, _buf: &mut BytesMut) -> io::Result<usize> {
            Err(unsupported())
        }
        /// Always fails.
        pub fn try_write(&self, _b: &[u8]) -> io::Result<usize> {
            Err(unsupported())
        }
        /// Always fails.
        pub fn try_write_vectored(&self, _iov: &[IoSlice<'_>]) -> io::Result<usize> {
            Err(unsupported())
        }
        /// Always fails.
        pub async fn write_ready<R>(&self, _write: impl FnMut() -> io::Result<R>) -> io::Result<R> {
            Err(unsupported())
        }
        /// Always fails.
        pub async fn write_all(&self, _b: &[u8]) -> io::Result<()> {
            Err(unsupported())
        }
        /// Always fails.
        pub fn shutdown_write(&self) -> io::Result<()> {
            Err(unsupported())
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_writes_and_waits_for_room() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let a = LocalStream::from_std(a).unwrap();
        let b = LocalStream::from_std(b).unwrap();
        // Fill a's send buffer so the last write must wait for b to read.
        let big = vec![7u8; 4 << 20];
        let reader = async {
            let mut got = 0;
            let mut buf = BytesMut::with_capacity(64 * 1024);
            while got < big.len() {
                let n = b.read_buf(&mut buf).await.unwrap();
                assert!(n > 0);
                got += n;
                buf.clear();
            }
            got
        };
        let (w, r) = tokio::join!(a.write_all(&big), reader);
        w.unwrap();
        assert_eq!(r, big.len());
        a.shutdown_write().unwrap();
        let mut buf = BytesMut::with_capacity(16);
        assert_eq!(b.read_buf(&mut buf).await.unwrap(), 0);
    }
}
