//! A client's outbound queue: the bytes the daemon still has to write to
//! one connection.
//!
//! Small frames are copied into one growing buffer, so a burst of messages
//! leaves in a single `write`; large payloads are queued as shared [`Bytes`]
//! (the same allocation for every recipient of a fan-out) and written with
//! vectored I/O, never copied. The queue tracks its size so the daemon can
//! apply each channel's slow-consumer policy against `queuebytes`.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::{Buf, Bytes, BytesMut};

/// Payloads at least this big are queued by reference instead of copied.
pub const SHARE_PAYLOAD_MIN: usize = 16 * 1024;
/// After the queue empties, a copy buffer bigger than this is released so an
/// idle client holds little memory.
const KEEP_CAPACITY: usize = 256 * 1024;
/// Size of the chunks a queue grows by.
pub const CHUNK: usize = 64 * 1024;
/// Most buffers handed to one `writev`.
const MAX_IOV: usize = 64;

/// See the module docs.
#[derive(Debug, Default)]
pub struct OutQueue {
    /// Frozen chunks in write order, all before `tail`.
    chunks: VecDeque<Bytes>,
    chunks_len: usize,
    /// Small frames being appended.
    tail: BytesMut,
}

impl OutQueue {
    /// Bytes waiting to be written.
    #[inline]
    pub fn len(&self) -> usize {
        self.chunks_len + self.tail.len()
    }

    /// True when nothing is waiting.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The buffer small frames are appended to. Call [`OutQueue::seal`]
    /// after appending.
    #[inline]
    pub fn tail(&mut self) -> &mut BytesMut {
        &mut self.tail
    }

    /// Appends a copy of `frame`.
    #[inline]
    pub fn push_copy(&mut self, frame: &[u8]) {
        if self.tail.capacity() - self.tail.len() < frame.len() {
            self.tail.reserve(frame.len().max(CHUNK));
        }
        self.tail.extend_from_slice(frame);
        self.seal();
    }

    /// Moves a full append buffer to the chunk list, so the queue grows in
    /// chunks of about [`CHUNK`] bytes rather than by doubling one buffer
    /// (a queue at its limit then holds little more than the limit).
    #[inline]
    pub fn seal(&mut self) {
        if self.tail.len() >= CHUNK {
            let full = self.tail.split().freeze();
            self.chunks_len += full.len();
            self.chunks.push_back(full);
        }
    }

    /// Queues `head` (copied) followed by `payload` (shared, not copied).
    pub fn push_shared(&mut self, head: &[u8], payload: Bytes) {
        self.tail.extend_from_slice(head);
        let frozen = self.tail.split().freeze();
        self.chunks_len += frozen.len() + payload.len();
        self.chunks.push_back(frozen);
        self.chunks.push_back(payload);
    }

    /// Writes as much as the writer accepts without blocking. Returns
    /// `Ok(true)` when the queue is empty, `Ok(false)` when the writer would
    /// block with data left, and the number of bytes written either way
    /// through `written`.
    pub fn write_to(
        &mut self,
        written: &mut usize,
        mut write: impl FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
    ) -> io::Result<bool> {
        loop {
            if self.is_empty() {
                // Written bytes are advanced past, not freed: `capacity()`
                // only counts what lies ahead, so reclaim the space first
                // to learn the buffer's real size.
                if self.tail.try_reclaim(KEEP_CAPACITY + 1) {
                    self.tail = BytesMut::new();
                }
                return Ok(true);
            }
            let res = if self.chunks.is_empty() {
                write(&[IoSlice::new(&self.tail)])
            } else {
                let mut iov = [IoSlice::new(&[]); MAX_IOV + 1];
                let mut k = 0;
                for c in self.chunks.iter().take(MAX_IOV) {
                    iov[k] = IoSlice::new(c);
                    k += 1;
                }
                if self.chunks.len() < MAX_IOV && !self.tail.is_empty() {
                    iov[k] = IoSlice::new(&self.tail);
                    k += 1;
                }
                write(&iov[..k])
            };
            let mut n = match res {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            *written += n;
            while n > 0 {
                match self.chunks.front_mut() {
                    Some(front) if front.len() <= n => {
                        n -= front.len();
                        self.chunks_len -= front.len();
                        self.chunks.pop_front();
                    }
                    Some(front) => {
                        front.advance(n);
                        self.chunks_len -= n;
                        n = 0;
                    }
                    None => {
                        self.tail.advance(n);
                        n = 0;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_small_and_shares_large_in_order() {
        let mut q = OutQueue::default();
        q.tail().extend_from_slice(b"ab");
        let big = Bytes::from(vec![b'x'; SHARE_PAYLOAD_MIN]);
        q.push_shared(b"H", big.clone());
        q.tail().extend_from_slice(b"cd");
        assert_eq!(q.len(), 2 + 1 + SHARE_PAYLOAD_MIN + 2);
        // A writer that takes 7 bytes per call.
        let mut out = Vec::new();
        let mut written = 0;
        let mut calls = 0;
        let done = q
            .write_to(&mut written, |iov| {
                calls += 1;
                if calls > 10_000 {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                let mut left = 7;
                let mut n = 0;
                for s in iov {
                    let take = s.len().min(left);
                    out.extend_from_slice(&s[..take]);
                    left -= take;
                    n += take;
                }
                Ok(n)
            })
            .unwrap();
        assert!(done);
        assert_eq!(written, out.len());
        let mut expect = b"abH".to_vec();
        expect.extend_from_slice(&big);
        expect.extend_from_slice(b"cd");
        assert_eq!(out, expect);
        assert!(q.is_empty());
    }

    #[test]
    fn would_block_keeps_data() {
        let mut q = OutQueue::default();
        q.tail().extend_from_slice(b"hello");
        let mut written = 0;
        let done = q
            .write_to(&mut written, |_| Err(io::ErrorKind::WouldBlock.into()))
            .unwrap();
        assert!(!done);
        assert_eq!(q.len(), 5);
        let err = q
            .write_to(&mut written, |_| Err(io::ErrorKind::BrokenPipe.into()))
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
