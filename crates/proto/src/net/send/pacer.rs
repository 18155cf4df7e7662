//! Pacing: a token bucket over bytes that holds datagrams back when the
//! configured send rate is reached.

use std::time::{Duration, Instant};

/// A token bucket over bytes: `rate` bytes per second, up to `burst` saved.
#[derive(Debug)]
pub(crate) struct Pacer {
    rate: u64,
    burst: u64,
    tokens: u64,
    last: Instant,
}

impl Pacer {
    /// `rate == 0` disables pacing.
    pub(crate) fn new(rate: u64, burst: usize, now: Instant) -> Self {
        let burst = burst.max(1) as u64;
        Pacer {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last);
        let add = (dt.as_nanos() * self.rate as u128 / 1_000_000_000) as u64;
        if add > 0 {
            self.tokens = self.tokens.saturating_add(add).min(self.burst);
            // Advance by the time those tokens took, keeping the remainder.
            let used =
                Duration::from_nanos((add as u128 * 1_000_000_000 / self.rate as u128) as u64);
            self.last = if self.tokens == self.burst {
                now
            } else {
                self.last + used
            };
        }
    }

    /// Takes `len` bytes' worth if available. A datagram larger than the
    /// burst leaves when the bucket is full, so nothing is stuck forever.
    pub(crate) fn take(&mut self, now: Instant, len: usize) -> bool {
        if self.rate == 0 {
            return true;
        }
        self.refill(now);
        let need = (len as u64).min(self.burst);
        if self.tokens < need {
            return false;
        }
        self.tokens -= need;
        true
    }

    /// When `take(len)` will succeed, if not now.
    pub(crate) fn ready_at(&self, len: usize) -> Option<Instant> {
        if self.rate == 0 {
            return None;
        }
        let need = (len as u64).min(self.burst);
        let missing = need.saturating_sub(self.tokens);
        if missing == 0 {
            return None;
        }
        let ns = (missing as u128 * 1_000_000_000).div_ceil(self.rate as u128);
        Some(self.last + Duration::from_nanos(ns as u64))
    }
}
