//! Giving memory back after a flood: once the receive memory that other
//! nodes' traffic used (reassembly, held datagrams) is all freed again, the
//! allocator's free pages are handed back to the system, so that the
//! daemon's size falls back too (glibc keeps freed heap memory otherwise).

use super::NetDriver;

/// Receive memory above which, once it is all freed again, free heap pages
/// are returned to the system.
const TRIM_AFTER: usize = 4 << 20;

impl NetDriver {
    /// Once the receive memory other nodes used (a flood of fragments,
    /// say) is all freed, hands the allocator's free pages back to the
    /// system, so that the daemon's size falls back too: glibc keeps freed
    /// heap memory otherwise.
    pub(super) fn return_memory(&self) {
        let used = self.net.borrow().receive_memory();
        let high = self.recv_high.get().max(used);
        if used == 0 && high >= TRIM_AFTER {
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            // SAFETY: malloc_trim has no preconditions.
            unsafe {
                libc::malloc_trim(0);
            }
            self.recv_high.set(0);
        } else {
            self.recv_high.set(high);
        }
    }
}
