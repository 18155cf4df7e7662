//! A loaned slot of the publisher's own pool, filled in place by the
//! application and then emitted as a descriptor (the public face is
//! `crate::Loan`). The loan owns the slot exclusively from the allocator
//! until it is emitted (the slot then belongs to the daemon until its
//! ShmFree) or dropped (the slot goes back to the allocator). It keeps the
//! pool's mapping alive, so a loan that outlives its pool (a reconnect
//! replaced it) stays valid memory and is emitted with its payload copied
//! (see [`Shm::is_current`]).

use std::sync::Arc;

use netcluster_local::shm::Mapping;

use super::Shm;

/// See the module docs.
pub struct SlotLoan {
    shm: Arc<Shm>,
    map: Arc<Mapping>,
    /// The connection generation the slot was taken in.
    gen: u64,
    offset: u64,
    len: usize,
    /// Still ours: given back on drop (false once handed to the daemon).
    armed: bool,
}

impl SlotLoan {
    pub(super) fn new(shm: Arc<Shm>, map: Arc<Mapping>, gen: u64, offset: u64, len: usize) -> Self {
        SlotLoan {
            shm,
            map,
            gen,
            offset,
            len,
            armed: true,
        }
    }

    /// The payload written so far.
    pub fn bytes(&self) -> &[u8] {
        self.map.slice(self.offset as usize, self.len)
    }

    /// The payload, writable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: the publisher's own writable mapping (only `Shm::lend`
        // makes loans, from its pool), and the allocator gave this slot to
        // this loan alone: no other slice of it exists while `&mut self`
        // is held (the daemon and subscribers see it only after `emit`,
        // which consumes the loan, and cannot write it at all: the pool is
        // sealed against new writable mappings).
        unsafe { self.map.slice_mut(self.offset as usize, self.len) }
    }

    /// Its state, for the emit.
    pub fn shm(&self) -> &Arc<Shm> {
        &self.shm
    }

    /// The generation the slot was taken in and its offset.
    pub fn slot(&self) -> (u64, u64) {
        (self.gen, self.offset)
    }

    /// The slot went to the daemon in a ShmPublish: it is no longer ours
    /// to give back (its ShmFree does that).
    pub fn handed_over(mut self) {
        self.armed = false;
    }
}

impl Drop for SlotLoan {
    fn drop(&mut self) {
        if self.armed {
            self.shm.unput_in(&self.map, self.offset);
        }
    }
}
