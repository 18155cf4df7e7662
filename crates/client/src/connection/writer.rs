//! Writing the output buffer to the socket.
//!
//! Every write takes bytes from the head of the one shared output buffer,
//! under its lock, whoever makes it: the emitting task itself (its fast
//! path) or the writer task (for what emitters left behind, and to wait
//! while the socket is full). No batch is ever held outside the buffer, so
//! frames leave in the order they were appended, from any number of
//! emitters on any threads, whichever of them writes.
//!
//! The emitting task writes itself in two cases. The first emit after the
//! task gave way (the reader or the writer task ran since the last one)
//! writes at once: a request or a ping-pong costs no hop to another task.
//! In a tight emit loop, which never gives way, later emits accumulate and
//! one of them writes each time the buffer has grown by [`WRITE_BATCH`]
//! since the last attempt: the daemon is fed in batches while the loop
//! runs, instead of waiting for the loop to yield (it only yields when the
//! buffer is full). The writer task writes whatever is left once the
//! emitting task waits, and waits for room when the socket is full: under
//! one write registration until the buffer is empty, and meanwhile no emit
//! tries a write of its own (it would only fail with `EAGAIN`), as a
//! blocking writer sleeps in `write` until there is room.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use netcluster_proto::frame::HEADER_LEN;
use tokio::sync::Notify;

use super::{Out, Shared, Stream};

/// An emit tries to write once the output buffer has grown by this much
/// since the last attempt (a write of about this size per syscall, as a
/// hand-written client batches).
pub(super) const WRITE_BATCH: usize = 64 * 1024;

/// An output buffer larger than this is released once written out, so
/// that one burst does not keep its memory for the connection's life.
const KEEP_CAPACITY: usize = 1024 * 1024;

impl Out {
    /// An empty output buffer, not connected yet.
    pub(super) fn new(buf: BytesMut) -> Out {
        Out {
            buf,
            closed: None,
            offline: None,
            closing: false,
            appended: 0,
            breaks: 0,
            window: (0, 0),
            last_break: String::new(),
            conn: None,
            head_partial: 0,
            retry_at: WRITE_BATCH,
            room_until: 0,
        }
    }

    /// Writes what the socket takes now from the head of the buffer,
    /// without waiting. A failure other than `WouldBlock` also forgets the
    /// socket: the reader will see the connection end.
    pub(super) fn write_head(&mut self) -> io::Result<usize> {
        let Some(conn) = &self.conn else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        let n = match conn.try_write(&self.buf) {
            Ok(n) => n,
            Err(e) => {
                if !matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) {
                    self.conn = None;
                }
                self.retry_at = self.buf.len() + WRITE_BATCH;
                return Err(e);
            }
        };
        self.written(n);
        Ok(n)
    }

    /// Drops the first `n` bytes, which were written, and keeps track of
    /// where the next whole frame starts.
    fn written(&mut self, n: usize) {
        if n == self.buf.len() {
            self.buf.clear();
            self.head_partial = 0;
            if self.buf.capacity() > KEEP_CAPACITY {
                self.buf = BytesMut::new();
            }
        } else {
            // Walk the frames the write covered (the buffer only ever holds
            // whole frames after `head_partial`); only cut writes pay this.
            let mut off = self.head_partial;
            while off < n {
                let len: [u8; 4] = self.buf[off + 1..off + HEADER_LEN]
                    .try_into()
                    .expect("4 bytes");
                off += HEADER_LEN + u32::from_le_bytes(len) as usize;
            }
            self.head_partial = off.max(n) - n;
            self.buf.advance(n);
        }
        self.retry_at = self.buf.len() + WRITE_BATCH;
    }

    /// The connection ended: no more writes to its socket, and the rest of
    /// a frame it cut must not start the next connection (that frame is
    /// lost, like any the broken connection did not deliver; the flush
    /// window counts the break).
    pub(super) fn disconnected(&mut self) {
        self.conn = None;
        let cut = std::mem::take(&mut self.head_partial);
        self.buf.advance(cut);
        self.retry_at = self.buf.len() + WRITE_BATCH;
    }
}

impl Shared {
    /// The emitting task's own write, just after appending a frame (see
    /// the module docs for when). Errors leave the bytes to the writer
    /// task or, after a break, to the next connection.
    #[inline]
    pub(super) fn write_now(&self, out: &mut Out) {
        // The common case in an emit loop first: neither reason holds.
        if out.buf.len() < out.retry_at && !self.direct.load(Ordering::Relaxed) {
            return;
        }
        // Not connected, or the writer task waits for room in a full
        // socket (`retry_at` is `usize::MAX` then: see `write_some`).
        if out.conn.is_none() || out.retry_at == usize::MAX {
            return;
        }
        self.direct.store(false, Ordering::Relaxed);
        let _ = out.write_head();
    }

    /// Lets the next emit write at once: the emitting task gave way (the
    /// reader or the writer task is running).
    pub(super) fn allow_direct(&self) {
        self.direct.store(true, Ordering::Relaxed);
    }
}

/// One attempt of the writer task: writes what the socket takes from the
/// head of the buffer. `Ok` once the buffer is empty; `WouldBlock` while
/// bytes remain (the socket is full: wait for room and call again); other
/// errors end the writer. Emitters waiting for room resume once half of
/// `max_pending` is free, not after every write the full socket takes:
/// each would otherwise append a few frames and wait again.
fn write_some(shared: &Shared) -> io::Result<()> {
    let mut out = shared.out();
    if out.closed.is_some() {
        return Err(io::ErrorKind::NotConnected.into());
    }
    if out.buf.is_empty() {
        // An emitter wrote the rest while this task waited.
        return Ok(());
    }
    let full = match out.write_head() {
        Ok(_) => !out.buf.is_empty(),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
        Err(e) => return Err(e),
    };
    if full {
        // This task now waits for room and writes as soon as there is
        // some; until then emitters do not try (their writes would fail
        // with `EAGAIN`). Its next write, or a break, resets this.
        out.retry_at = usize::MAX;
    }
    let left = out.buf.len();
    drop(out);
    shared.allow_direct();
    if left <= shared.opts.max_pending / 2 {
        shared.space.notify_waiters();
    }
    if full {
        Err(io::ErrorKind::WouldBlock.into())
    } else {
        Ok(())
    }
}

/// The writer task of one connection: writes what emitters left in the
/// buffer, waiting for room in the socket as needed, until `stop` or the
/// client closes. Sleeps while the buffer is empty; whoever makes it
/// non-empty wakes it.
pub(super) async fn writer(shared: Arc<Shared>, wr: Stream, stop: Arc<Notify>) {
    loop {
        let wake = shared.wake.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        let idle = {
            let out = shared.out();
            if out.closed.is_some() || out.conn.is_none() {
                // Closed, or a write failed: the reader sees the end.
                return;
            }
            if out.buf.is_empty() && out.closing {
                break;
            }
            out.buf.is_empty()
        };
        if idle {
            tokio::select! {
                _ = wake => {}
                _ = stop.notified() => return,
            }
            continue;
        }
        // Writes until the buffer is empty, waiting for room in between
        // under one write registration: a write the socket cut short
        // means it is full, and the wait goes on without giving the
        // registration back (each new one costs four system calls: `dup`,
        // two `epoll_ctl` and `close`, per 100-odd KiB in a throughput
        // run).
        let wrote = tokio::select! {
            r = wr.write_ready(|| write_some(&shared)) => r,
            _ = stop.notified() => return,
        };
        match wrote {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
    // Closing: everything was written; let the daemon see the end. Closing
    // here, not in the reader, lets a handler disconnect its own client.
    let _ = wr.shutdown_write();
    shared.close("disconnected by the application");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output buffer holding frames with these body lengths.
    fn out_with(bodies: &[usize]) -> Out {
        let mut buf = BytesMut::new();
        for (k, &len) in bodies.iter().enumerate() {
            buf.extend_from_slice(&[k as u8 + 1]);
            buf.extend_from_slice(&(len as u32).to_le_bytes());
            buf.extend(std::iter::repeat_n(k as u8 + 1, len));
        }
        Out::new(buf)
    }

    #[test]
    fn cut_writes_track_where_the_next_whole_frame_starts() {
        // Frames of 15, 8 and 25 bytes (headers included).
        let mut out = out_with(&[10, 3, 20]);
        out.written(7);
        assert_eq!((out.head_partial, out.buf.len()), (8, 41));
        out.written(5);
        assert_eq!((out.head_partial, out.buf.len()), (3, 36));
        // Ends the first frame, covers the second, cuts the third.
        out.written(13);
        assert_eq!((out.head_partial, out.buf.len()), (23, 23));
        assert_eq!(out.retry_at, 23 + WRITE_BATCH);
        out.written(23);
        assert_eq!((out.head_partial, out.buf.len()), (0, 0));
        assert_eq!(out.retry_at, WRITE_BATCH);
    }

    #[test]
    fn a_write_ending_on_a_frame_boundary_leaves_nothing_partial() {
        let mut out = out_with(&[10, 3, 20]);
        out.written(15);
        assert_eq!(out.head_partial, 0);
        out.written(8);
        assert_eq!((out.head_partial, out.buf.len()), (0, 25));
    }

    #[test]
    fn a_break_drops_the_rest_of_a_cut_frame_and_keeps_whole_ones() {
        let mut out = out_with(&[10, 3, 20]);
        out.written(9);
        out.disconnected();
        // The next connection starts with the second frame, whole.
        assert_eq!(out.head_partial, 0);
        assert_eq!(out.buf.len(), 8 + 25);
        assert_eq!(&out.buf[..5], &[2, 3, 0, 0, 0]);
        // Nothing cut: nothing dropped.
        let mut out = out_with(&[10, 3]);
        out.disconnected();
        assert_eq!(out.buf.len(), 23);
    }
}
