//! Plumbing shared by the hand-written peer clients: a receive buffer that
//! parsers read in place (no copy, no allocation per message) and a
//! batching writer (many commands per `write`, as the issue asks of every
//! client).

use std::io::{self, Read, Write};
use std::ops::Range;

/// Bytes read per `read` call at most.
pub const READ_CHUNK: usize = 256 * 1024;
/// A writer sends once this many bytes are buffered.
pub const WRITE_BATCH: usize = 64 * 1024;

/// Received bytes not yet parsed.
#[derive(Debug)]
pub struct RecvBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Default for RecvBuf {
    fn default() -> Self {
        RecvBuf {
            buf: vec![0; READ_CHUNK],
            start: 0,
            end: 0,
        }
    }
}

impl RecvBuf {
    /// The unparsed bytes.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Offset of `data()[0]` in the buffer (add it to ranges found in
    /// `data()` to get ranges for [`RecvBuf::get`]).
    #[inline]
    pub fn offset(&self) -> usize {
        self.start
    }

    /// Bytes at an absolute range; valid until the next [`RecvBuf::fill`].
    #[inline]
    pub fn get(&self, r: Range<usize>) -> &[u8] {
        &self.buf[r]
    }

    /// Marks `n` bytes as parsed.
    #[inline]
    pub fn consume(&mut self, n: usize) {
        self.start += n;
        debug_assert!(self.start <= self.end);
    }

    /// Reads more (blocking). Moves the unparsed rest to the front first
    /// and grows the buffer when one item does not fit. EOF is an error:
    /// the benchmark never expects the broker to hang up.
    pub fn fill(&mut self, r: &mut impl Read) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.buf.len() - self.end < READ_CHUNK / 4 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.end > self.buf.len() / 2 {
                self.buf.resize(self.buf.len() * 2, 0);
            }
        }
        loop {
            match r.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the broker closed the connection",
                    ))
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Position of the first `\r\n` in `b`.
#[inline]
pub fn find_crlf(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'\r' && b[i + 1] == b'\n' {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Parses an unsigned decimal number.
#[inline]
pub fn parse_usize(b: &[u8]) -> Option<usize> {
    if b.is_empty() || b.len() > 19 {
        return None;
    }
    let mut n = 0usize;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (c - b'0') as usize;
    }
    Some(n)
}

/// Buffers commands and writes them in batches of [`WRITE_BATCH`].
#[derive(Debug)]
pub struct BatchWriter {
    buf: Vec<u8>,
}

impl Default for BatchWriter {
    fn default() -> Self {
        BatchWriter {
            buf: Vec::with_capacity(WRITE_BATCH * 2),
        }
    }
}

impl BatchWriter {
    /// Appends one command; writes the batch if it is full.
    #[inline]
    pub fn push(&mut self, w: &mut impl Write, parts: &[&[u8]]) -> io::Result<()> {
        for p in parts {
            self.buf.extend_from_slice(p);
        }
        if self.buf.len() >= WRITE_BATCH {
            self.flush(w)?;
        }
        Ok(())
    }

    /// Writes what is buffered.
    pub fn flush(&mut self, w: &mut impl Write) -> io::Result<()> {
        if !self.buf.is_empty() {
            w.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_lines() {
        assert_eq!(parse_usize(b"256"), Some(256));
        assert_eq!(parse_usize(b""), None);
        assert_eq!(parse_usize(b"2x"), None);
        assert_eq!(find_crlf(b"ab\r\ncd"), Some(2));
        assert_eq!(find_crlf(b"ab\r"), None);
    }

    #[test]
    fn recv_buf_keeps_partial_items_across_reads() {
        // A reader that hands out 3 bytes at a time.
        struct Slow<'a>(&'a [u8]);
        impl Read for Slow<'_> {
            fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(3).min(b.len());
                b[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut r = Slow(b"hello\r\nworld\r\n");
        let mut rb = RecvBuf::default();
        let mut lines = Vec::new();
        while lines.len() < 2 {
            match find_crlf(rb.data()) {
                Some(i) => {
                    lines.push(rb.data()[..i].to_vec());
                    rb.consume(i + 2);
                }
                None => {
                    rb.fill(&mut r).unwrap();
                }
            }
        }
        assert_eq!(lines, vec![b"hello".to_vec(), b"world".to_vec()]);
        assert_eq!(
            rb.fill(&mut r).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }
}
