//! Randomness without a dependency: per-start node ids and the seeds that
//! spread timers between daemons.

/// A random 64-bit value from the standard library's randomly seeded
/// hasher (no extra dependency), mixed with the time and pid.
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    h.finish()
}
