//! Bytes held for unfinished frames, and their bound across all clients.
//!
//! A client's bytes that do not yet form a whole frame (or seed packet)
//! stay in that session's own buffer until the rest arrives. This module
//! owns that buffer's growth and its accounting: the buffer grows with the
//! data that actually arrives (never to what a header merely announces,
//! and never past the announced end), every allocation is charged to the
//! daemon-wide [`Budget`] before it is made (at most the frame plus room for
//! one read, or just the frame when the budget is tight), and a charge that would pass
//! `partialbytes` is refused, so the session closes that one client. The
//! charge is given back when the buffer empties or the session ends. It
//! also says what an unfinished frame is, where it ends, and when its
//! `frametimeoutms` clock starts.

use std::cell::Cell;
use std::time::Duration;

use bytes::BytesMut;
use netcluster_proto::frame::HEADER_LEN;
use netcluster_proto::legacy;
use tokio::time::Instant;

use crate::conn::Dialect;

/// How much is read per syscall when no frame size is known.
pub const READ_CHUNK: usize = 256 * 1024;

/// Reads are given at least this much room (or what is left of the frame,
/// when less), so that a slowly arriving frame is not read byte by byte.
const MIN_ROOM: usize = 4096;

/// The bytes all sessions' unfinished-frame buffers hold together; one per
/// daemon (in the hub).
#[derive(Debug, Default)]
pub struct Budget {
    used: Cell<usize>,
}

impl Budget {
    /// Bytes charged now, by all sessions.
    pub fn used(&self) -> usize {
        self.used.get()
    }
}

/// One session's charge against the [`Budget`]; dropping it gives it back.
#[derive(Debug)]
pub struct Held<'a> {
    budget: &'a Budget,
    bytes: usize,
}

impl<'a> Held<'a> {
    /// A session holding nothing yet.
    pub fn new(budget: &'a Budget) -> Self {
        Held { budget, bytes: 0 }
    }

    /// Bytes this session holds.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Makes this session's charge `bytes`, if all sessions together then
    /// hold at most `limit` (a smaller charge always succeeds); `Err` gives
    /// the total that was refused.
    pub fn set(&mut self, bytes: usize, limit: usize) -> Result<(), usize> {
        let total = self.budget.used.get() - self.bytes + bytes;
        if bytes > self.bytes && total > limit {
            return Err(total);
        }
        self.budget.used.set(total);
        self.bytes = bytes;
        Ok(())
    }

    /// Gives the whole charge back (the buffer is empty).
    pub fn clear(&mut self) {
        let _ = self.set(0, 0);
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Makes room in `buf` for the next read of up to `want` bytes. `end` is
/// where the frame at the start of `buf` ends, when known (native frames
/// say it in their header): the buffer grows by doubling (amortized
/// copies), but not past that end plus one read, into a new allocation of
/// exactly the size charged to `held`. `Err` is the message for the client
/// when `limit` would be passed.
pub fn make_room(
    buf: &mut BytesMut,
    want: usize,
    end: Option<usize>,
    held: &mut Held<'_>,
    limit: usize,
) -> Result<(), String> {
    let len = buf.len();
    let rest = end.filter(|&e| e > len).map(|e| e - len);
    let needed = want.min(MIN_ROOM).min(rest.unwrap_or(usize::MAX)).max(1);
    if buf.capacity() - len >= needed {
        return Ok(());
    }
    let mut cap = (len * 2).max(len + want);
    if let Some(end) = end {
        // Room for one read past the frame (the next frames may be there),
        // no doubling past it.
        cap = cap.min(end.max(len + want));
    }
    if held.set(cap, limit).is_err() {
        // Tight: the frame alone, without room for what follows it, so
        // that a whole frame of maxmessage always fits (the config checks
        // that `partialbytes` holds one).
        match end.filter(|&e| e > len && e < cap) {
            Some(e) if held.set(e, limit).is_ok() => cap = e,
            _ => return Err(refusal(len, limit)),
        }
    }
    let mut grown = BytesMut::with_capacity(cap);
    grown.extend_from_slice(buf);
    *buf = grown;
    Ok(())
}

/// Moves the unfinished tail of a read (in the shared read buffer) into
/// its own buffer of exactly that size, charged to `held`: a client that
/// stops after a few bytes holds only those.
pub fn keep(tail: &[u8], held: &mut Held<'_>, limit: usize) -> Result<BytesMut, String> {
    if held.set(tail.len(), limit).is_err() {
        return Err(refusal(tail.len(), limit));
    }
    let mut b = BytesMut::with_capacity(tail.len());
    b.extend_from_slice(tail);
    Ok(b)
}

fn refusal(len: usize, limit: usize) -> String {
    format!(
        "unfinished frames of all clients would hold more than partialbytes ({limit} bytes); \
         this client's unfinished frame ({len} bytes so far) is refused"
    )
}

/// After handling input: no unfinished frame stops the clock; a new one
/// at the start of `pending` (the one before was completed, so `pending`
/// shrank below its length `before` the handling, or none was timed)
/// starts it.
pub fn restart_clock(started: &mut Option<Instant>, pending: &[u8], before: usize, d: Dialect) {
    if !holds_partial(pending, d) {
        *started = None;
    } else if started.is_none() || pending.len() < before {
        *started = Some(Instant::now());
    }
}

/// Where the frame at the start of `buf` ends, if known: a native header
/// says it; a seed packet ends by `max` (+ its NUL) at the latest.
pub fn frame_end(buf: &[u8], dialect: Dialect, max: usize) -> Option<usize> {
    match dialect {
        Dialect::Native if buf.len() >= HEADER_LEN => {
            Some(HEADER_LEN + u32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize)
        }
        Dialect::Native => None,
        Dialect::Legacy => Some(max + 1),
    }
}

/// The error for a frame that did not complete in time.
pub fn too_slow(buf: &[u8], dialect: Dialect, timeout: Duration) -> String {
    let ms = timeout.as_millis();
    match frame_end(buf, dialect, usize::MAX - 1) {
        Some(end) if dialect == Dialect::Native => format!(
            "frame not completed within frametimeoutms ({ms} ms): {} of its {end} bytes arrived",
            buf.len()
        ),
        _ => {
            format!(
            "{} not completed within frametimeoutms ({ms} ms): {} bytes arrived without its end",
            if dialect == Dialect::Native { "frame" } else { "packet (no NUL terminator)" },
            buf.len()
        )
        }
    }
}

/// True if `buf` holds the start of a message that was never finished.
pub fn holds_partial(buf: &[u8], dialect: Dialect) -> bool {
    match dialect {
        Dialect::Native => !buf.is_empty(),
        Dialect::Legacy => !legacy::is_blank(buf),
    }
}

/// How many bytes the next read should make room for.
pub fn wanted(buf: &BytesMut, dialect: Dialect) -> usize {
    if dialect == Dialect::Native && buf.len() >= HEADER_LEN {
        let total = HEADER_LEN + u32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        if total > buf.len() {
            // Grow with the data that actually arrives, not with what a
            // header announces: a peer cannot make the daemon reserve a
            // large frame it never sends.
            return (total - buf.len()).clamp(64 * 1024, READ_CHUNK);
        }
    }
    READ_CHUNK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_add_up_and_the_one_passing_the_limit_is_refused() {
        let b = Budget::default();
        let mut one = Held::new(&b);
        let mut two = Held::new(&b);
        assert_eq!(one.set(600, 1000), Ok(()));
        assert_eq!(two.set(400, 1000), Ok(()));
        assert_eq!(two.set(401, 1000), Err(1001));
        assert_eq!((b.used(), two.bytes()), (1000, 400), "unchanged");
        // Shrinking is always allowed, even over a lowered limit.
        assert_eq!(one.set(500, 10), Ok(()));
        drop(one);
        assert_eq!(b.used(), 400);
        two.clear();
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn buffers_grow_by_doubling_up_to_the_frame_end_and_are_charged() {
        let b = Budget::default();
        let mut held = Held::new(&b);
        // The start of a 1 MB frame, kept as it is.
        let mut buf = keep(&[7u8; 100], &mut held, 1 << 20).unwrap();
        assert_eq!((buf.capacity(), b.used()), (100, 100));
        // Room for one read (64 KiB) more.
        make_room(&mut buf, 64 << 10, Some(1_000_000), &mut held, 1 << 20).unwrap();
        assert_eq!(buf.capacity(), 100 + (64 << 10));
        assert_eq!(b.used(), 100 + (64 << 10));
        assert_eq!(&buf[..], &[7u8; 100][..]);
        buf.resize(60_000, 1);
        // Room left for the next read: no new allocation.
        make_room(&mut buf, 64 << 10, Some(1_000_000), &mut held, 1 << 20).unwrap();
        assert_eq!(buf.capacity(), 100 + (64 << 10));
        // Full: doubled.
        buf.resize(100 + (64 << 10), 1);
        make_room(&mut buf, 64 << 10, Some(1_000_000), &mut held, 1 << 20).unwrap();
        assert_eq!(buf.capacity(), 2 * (100 + (64 << 10)));
        // Never doubled past the frame's end plus one read.
        buf.resize(990_000, 1);
        make_room(&mut buf, 64 << 10, Some(1_000_000), &mut held, 4 << 20).unwrap();
        assert_eq!(buf.capacity(), 990_000 + (64 << 10));
        assert_eq!(b.used(), 990_000 + (64 << 10));
        // Without a known end (seed packets): doubling, at least `want`.
        let mut other = Held::new(&b);
        let mut seed = keep(&[1u8; 5000], &mut other, 4 << 20).unwrap();
        make_room(&mut seed, 100, None, &mut other, 4 << 20).unwrap();
        assert_eq!(seed.capacity(), 10_000);
        seed.resize(10_000, 1);
        let e = make_room(&mut seed, 4 << 20, None, &mut other, 4 << 20).unwrap_err();
        assert!(e.contains("partialbytes (4194304 bytes)"), "{e}");
        assert_eq!(seed.capacity(), 10_000, "a refused buffer is not grown");
        assert_eq!(b.used(), 990_000 + (64 << 10) + 10_000);
        // A tight budget still takes the whole frame, without room past it.
        drop(other);
        let base = b.used();
        let mut small = Held::new(&b);
        let mut frame = keep(&[1u8; 950], &mut small, base + 1_000).unwrap();
        make_room(&mut frame, 100, Some(1_000), &mut small, base + 1_000).unwrap();
        assert_eq!(frame.capacity(), 1_000, "the frame alone");
        let mut third = Held::new(&b);
        let mut refused = keep(&[1u8; 950], &mut third, base + 1_999).unwrap();
        assert!(make_room(&mut refused, 100, Some(1_000), &mut third, base + 1_999).is_err());
    }
}
