//! Benchmark payloads and the receiver's order and count check.
//!
//! Every payload starts with its sequence number (u64, little-endian) and
//! is filled up to its size with a fixed byte, so a subscriber can tell a
//! lost, duplicated, reordered or truncated message from a good one. The
//! check is the same for every broker.

use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes of the sequence number at the start of every payload.
pub const SEQ_LEN: usize = 8;
/// The byte filling a payload after its sequence number.
pub const FILL: u8 = b'x';

/// A payload of `size` bytes (at least [`SEQ_LEN`]) for sequence 0.
pub fn new(size: usize) -> Vec<u8> {
    assert!(size >= SEQ_LEN, "payloads carry an 8-byte sequence number");
    let mut p = vec![FILL; size];
    set_seq(&mut p, 0);
    p
}

/// Writes a whole payload for `seq` into `p` (at least [`SEQ_LEN`]
/// bytes): the sequence number, then the filler. Every byte is written,
/// whatever `p` held.
#[inline]
pub fn write(p: &mut [u8], seq: u64) {
    set_seq(p, seq);
    p[SEQ_LEN..].fill(FILL);
}

/// Writes `seq` into a payload made by [`new`].
#[inline]
pub fn set_seq(p: &mut [u8], seq: u64) {
    p[..SEQ_LEN].copy_from_slice(&seq.to_le_bytes());
}

/// The sequence number a payload carries, if it is long enough.
#[inline]
pub fn seq_of(p: &[u8]) -> Option<u64> {
    p.get(..SEQ_LEN)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
}

/// Checks that messages arrive in order, complete, `total` of them, each of
/// `size` bytes. Usable from a `Fn` handler: it is only ever called from one
/// task at a time, so plain loads and stores suffice (no lock, no
/// read-modify-write on the hot path).
#[derive(Debug)]
pub struct Checker {
    size: usize,
    total: u64,
    next: AtomicU64,
    /// The filler every payload must end with (compared with `memcmp`,
    /// which is vectorized; a byte loop here cost a third of a subscriber).
    fill: Vec<u8>,
}

/// Where a checked message leaves the count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// This was message number `n` (from 1); more are expected.
    More(u64),
    /// This was the last one.
    Done,
}

impl Checker {
    /// Expects sequences `0..total`, each payload `size` bytes.
    pub fn new(size: usize, total: u64) -> Self {
        Checker {
            size,
            total,
            next: AtomicU64::new(0),
            fill: vec![FILL; size.saturating_sub(SEQ_LEN)],
        }
    }

    /// Messages checked so far.
    pub fn received(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }

    /// Checks one payload; `Err` says what is wrong (lost, reordered,
    /// duplicated, bad size, or more than expected).
    #[inline]
    pub fn check(&self, p: &[u8]) -> Result<Progress, String> {
        let want = self.next.load(Ordering::Relaxed);
        if want >= self.total {
            return Err(format!(
                "message beyond the expected {} (seq {:?})",
                self.total,
                seq_of(p)
            ));
        }
        if p.len() != self.size {
            return Err(format!(
                "message {want}: payload of {} bytes, expected {}",
                p.len(),
                self.size
            ));
        }
        let got = seq_of(p).expect("size checked");
        if got != want {
            let what = if got > want {
                "lost"
            } else {
                "reordered or duplicated"
            };
            return Err(format!(
                "order broken ({what}): expected seq {want}, got {got}"
            ));
        }
        if p[SEQ_LEN..] != self.fill[..] {
            return Err(format!("message {want}: payload corrupted"));
        }
        self.next.store(want + 1, Ordering::Relaxed);
        Ok(if want + 1 == self.total {
            Progress::Done
        } else {
            Progress::More(want + 1)
        })
    }

    /// `Err` unless exactly `total` messages were checked.
    pub fn finish(&self) -> Result<(), String> {
        let n = self.received();
        if n == self.total {
            Ok(())
        } else {
            Err(format!("received {n} of {} messages", self.total))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(size: usize, seq: u64) -> Vec<u8> {
        let mut p = new(size);
        set_seq(&mut p, seq);
        p
    }

    #[test]
    fn write_makes_a_whole_payload() {
        let mut p = vec![0u8; 32];
        write(&mut p, 5);
        assert_eq!(p, msg(32, 5));
    }

    #[test]
    fn accepts_in_order_and_counts() {
        let c = Checker::new(16, 3);
        assert_eq!(c.check(&msg(16, 0)), Ok(Progress::More(1)));
        assert_eq!(c.check(&msg(16, 1)), Ok(Progress::More(2)));
        assert!(c.finish().is_err());
        assert_eq!(c.check(&msg(16, 2)), Ok(Progress::Done));
        c.finish().unwrap();
        assert!(c.check(&msg(16, 3)).unwrap_err().contains("beyond"));
    }

    #[test]
    fn rejects_loss_reorder_size_and_corruption() {
        let c = Checker::new(16, 10);
        c.check(&msg(16, 0)).unwrap();
        assert!(c.check(&msg(16, 2)).unwrap_err().contains("lost"));
        assert!(c.check(&msg(16, 0)).unwrap_err().contains("duplicated"));
        assert!(c.check(&msg(17, 1)).unwrap_err().contains("17 bytes"));
        let mut bad = msg(16, 1);
        bad[15] = b'y';
        assert!(c.check(&bad).unwrap_err().contains("corrupted"));
        assert_eq!(c.received(), 1);
    }
}
