//! Shared-memory payloads in the daemon (Linux): the pools clients
//! register, the per-slot reference counts, and what each connection holds.
//!
//! A publisher registers one pool per connection (a sealed memfd, checked by
//! `netcluster_local::shm::check_pool` and mapped read-only here). Each of
//! its ShmPublish descriptors is bounds-checked, then routed: recipients
//! that negotiated shared memory get a ShmDeliver (after the pool's
//! descriptor, sent once per recipient) and *hold* the slot until they
//! release it or disconnect; everyone else (legacy and non-shm clients, the
//! network links, the dashboard tap) gets a copy the daemon makes once from
//! its read-only mapping ([`ShmMsg::bytes`]). When a slot's last hold goes,
//! its publisher gets a ShmFree. Holds are counted per (pool, offset), so a
//! recipient can only release what it was given, and memory is bounded: a
//! pool has at most [`MAX_SLOTS`] distinct slots in flight (past that the
//! message is copied instead) and a connection at most [`MAX_PENDING_FDS`]
//! unclaimed descriptors.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::{HashMap, HashSet};
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use netcluster_local::shm::{check_pool, Mapping};
use netcluster_proto::frame::shm as wire;
use netcluster_proto::router::Slot;

/// Most distinct slots of one pool held by recipients at once; a publish
/// past it reaches everyone as a copy (so a hostile publisher cannot grow
/// the daemon's tables with tiny slots).
pub const MAX_SLOTS: usize = 64 * 1024;
/// Most descriptors a connection may have sent that no ShmPool frame
/// claimed yet; more is a protocol error.
pub const MAX_PENDING_FDS: usize = 4;

/// A registered pool.
#[derive(Debug)]
pub struct Pool {
    /// Its id in ShmDeliver/ShmRelease: the publisher's client id.
    pub id: u64,
    /// The publisher's slot and id (to find it for ShmFree; the slot may
    /// be reused by another client once it leaves, hence the id).
    pub owner: (Slot, u64),
    /// Its size in bytes.
    pub size: u64,
    fd: OwnedFd,
    map: Mapping,
    /// Holds per slot offset.
    refs: RefCell<HashMap<u64, u32>>,
}

impl Pool {
    /// Holds on the slot at `offset` now.
    pub fn holds(&self, offset: u64) -> u32 {
        self.refs.borrow().get(&offset).copied().unwrap_or(0)
    }

    /// The descriptor, to pass to recipients.
    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}

/// One published slot on its way through the hub.
#[derive(Debug)]
pub struct ShmMsg {
    /// Its pool.
    pub pool: Rc<Pool>,
    /// Where the payload starts (checked against the pool).
    pub offset: u64,
    /// Its length (checked).
    pub len: u32,
    copy: OnceCell<Bytes>,
}

impl ShmMsg {
    /// A slot already checked with `check_slot`.
    pub fn new(pool: Rc<Pool>, offset: u64, len: u32) -> Self {
        debug_assert!(wire::check_slot(pool.size, offset, len).is_ok());
        ShmMsg {
            pool,
            offset,
            len,
            copy: OnceCell::new(),
        }
    }

    /// The payload as bytes of its own, copied once from the mapping for
    /// all recipients that cannot map the pool.
    pub fn bytes(&self) -> &Bytes {
        self.copy.get_or_init(|| {
            Bytes::copy_from_slice(self.pool.map.slice(self.offset as usize, self.len as usize))
        })
    }
}

/// What one recipient holds of one pool.
#[derive(Debug)]
struct Held {
    pool: Rc<Pool>,
    slots: HashMap<u64, u32>,
}

/// A connection's shared-memory state (all empty unless it negotiated it).
#[derive(Debug, Default)]
pub struct ConnShm {
    /// The client set the Hello flag and the daemon accepted it.
    pub on: Cell<bool>,
    /// Descriptors received and not yet claimed by a ShmPool frame.
    pub fds: RefCell<Vec<OwnedFd>>,
    /// Its own pool, once registered.
    pub pool: RefCell<Option<Rc<Pool>>>,
    /// Pools whose descriptor it was sent.
    known: RefCell<HashSet<u64>>,
    holds: RefCell<HashMap<u64, Held>>,
    /// Slots it holds now (counting repeats).
    held: Cell<u64>,
}

/// A slot whose last hold went: its publisher gets a ShmFree.
pub type Freed = (Rc<Pool>, u64);

impl ConnShm {
    /// Registers the client's pool from the descriptor that came with its
    /// ShmPool frame. The error (for a non-fatal Error frame) says why.
    pub fn register(&self, owner: (Slot, u64), size: u64, max: usize) -> Result<(), String> {
        let fd = {
            let mut fds = self.fds.borrow_mut();
            if fds.is_empty() {
                return Err("shm pool frame came without a file descriptor".into());
            }
            fds.remove(0)
        };
        if self.pool.borrow().is_some() {
            return Err("a shm pool is already registered on this connection".into());
        }
        if max == 0 {
            return Err("shared-memory payloads are off (shmbytes is 0)".into());
        }
        check_pool(&fd, size, max as u64).map_err(|e| format!("shm pool refused: {e}"))?;
        let map = Mapping::map(&fd, size as usize, false)
            .map_err(|e| format!("shm pool refused: cannot map it: {e}"))?;
        *self.pool.borrow_mut() = Some(Rc::new(Pool {
            id: owner.1,
            owner,
            size,
            fd,
            map,
            refs: RefCell::new(HashMap::new()),
        }));
        Ok(())
    }

    /// Bytes of its own pool (0 without one), for `showclient`.
    pub fn pool_bytes(&self) -> u64 {
        self.pool.borrow().as_ref().map_or(0, |p| p.size)
    }

    /// Slots of its own pool held by recipients now.
    pub fn pool_slots_in_flight(&self) -> usize {
        self.pool
            .borrow()
            .as_ref()
            .map_or(0, |p| p.refs.borrow().len())
    }

    /// Slots of other clients' pools it holds now.
    pub fn holding(&self) -> u64 {
        self.held.get()
    }

    /// Whether it was sent `pool`'s descriptor.
    pub fn knows(&self, pool: u64) -> bool {
        self.known.borrow().contains(&pool)
    }

    /// Notes that `pool`'s descriptor went to it.
    pub fn learnt(&self, pool: u64) {
        self.known.borrow_mut().insert(pool);
    }

    /// Takes a hold on `m`'s slot for this recipient; false when the pool
    /// has too many slots in flight (the caller sends a copy instead).
    pub fn hold(&self, m: &ShmMsg) -> bool {
        let mut refs = m.pool.refs.borrow_mut();
        if refs.len() >= MAX_SLOTS && !refs.contains_key(&m.offset) {
            return false;
        }
        *refs.entry(m.offset).or_insert(0) += 1;
        let mut holds = self.holds.borrow_mut();
        let h = holds.entry(m.pool.id).or_insert_with(|| Held {
            pool: m.pool.clone(),
            slots: HashMap::new(),
        });
        *h.slots.entry(m.offset).or_insert(0) += 1;
        self.held.set(self.held.get() + 1);
        true
    }

    /// Releases one hold; `Ok(Some(_))` when it was the slot's last.
    pub fn release(&self, pool: u64, offset: u64) -> Result<Option<Freed>, String> {
        let mut holds = self.holds.borrow_mut();
        let Some(h) = holds.get_mut(&pool) else {
            return Err(format!(
                "shm release of pool {pool} offset {offset}, which this client does not hold"
            ));
        };
        let Some(n) = h.slots.get_mut(&offset) else {
            return Err(format!(
                "shm release of pool {pool} offset {offset}, which this client does not hold"
            ));
        };
        *n -= 1;
        if *n == 0 {
            h.slots.remove(&offset);
        }
        let p = h.pool.clone();
        if h.slots.is_empty() {
            holds.remove(&pool);
        }
        self.held.set(self.held.get() - 1);
        Ok(unref(&p, offset, 1).then_some((p, offset)))
    }

    /// Releases everything it holds (it is closing).
    pub fn release_all(&self) -> Vec<Freed> {
        let mut freed = Vec::new();
        for (_, h) in self.holds.borrow_mut().drain() {
            for (off, n) in h.slots {
                if unref(&h.pool, off, n) {
                    freed.push((h.pool.clone(), off));
                }
            }
        }
        self.held.set(0);
        *self.pool.borrow_mut() = None;
        self.fds.borrow_mut().clear();
        freed
    }
}

/// Drops `n` holds of `pool`'s slot at `offset`; true when none is left.
fn unref(pool: &Pool, offset: u64, n: u32) -> bool {
    let mut refs = pool.refs.borrow_mut();
    match refs.get_mut(&offset) {
        Some(c) if *c > n => {
            *c -= n;
            false
        }
        Some(_) => {
            refs.remove(&offset);
            true
        }
        None => false,
    }
}

/// The ShmPoolFd frame for `pool`.
pub fn pool_fd_frame(pool: &Pool) -> BytesMut {
    let mut b = BytesMut::new();
    wire::encode_pool_fd(&mut b, pool.id, pool.size);
    b
}
