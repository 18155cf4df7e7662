//! A small deterministic random generator.
//!
//! The state machines need randomness only to spread NAK timers between
//! receivers (so one NAK goes out first and suppresses the others); the
//! simulator needs it to pick losses and delays. Both take a seed from
//! their caller, so the sans-IO core reads no OS entropy and every test run
//! is reproducible.

/// xorshift64*: tiny, fast, and good enough to pick losses and delays.
#[derive(Debug, Clone)]
pub(crate) struct XorShift(u64);

impl XorShift {
    pub(crate) fn new(seed: u64) -> Self {
        // The state must never be zero.
        XorShift((seed ^ 0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `0..n` (n > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// Uniform in `0..=d`, at nanosecond resolution.
    pub(crate) fn up_to(&mut self, d: std::time::Duration) -> std::time::Duration {
        let n = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        std::time::Duration::from_nanos(self.below(n.saturating_add(1).max(1)))
    }
    /// True with probability `p`.
    #[cfg(test)]
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}
