//! Large payloads over shared memory, the client's side (Linux; see
//! `docs/SHM.md`). Opted into with `ClientBuilder::shared_memory(bytes)`.
//!
//! Per connection the client creates a fresh sealed memfd pool and
//! registers it (a pool is never carried over to the next connection: a
//! recipient of the old one may still be reading its slots). An
//! `emit_bytes` of at least [`SHM_MIN`] bytes copies the payload into a
//! free slot and sends a descriptor; when the pool is full it waits up to
//! [`SLOT_WAIT`] for a slot (the pool is the publisher's flow control),
//! then sends the payload through the socket as before (also while the
//! pool is not yet registered); after such a wait ran out, emits use the
//! socket at once until a slot is freed (recipients that hold the pool
//! cost the publisher one wait, not one per message). A loan
//! (`Client::loan`, [`Shm::lend`]) takes a slot the same way and lets the
//! application fill it in place ([`SlotLoan`]), so nothing is copied at
//! all. Received pools are mapped read-only and a delivered message's
//! payload is a view into the mapping ([`bytes::Bytes::from_owner`]): no
//! copy; when the last clone of it is dropped, the slot is released to the
//! daemon. This module knows nothing of the connection: the connection
//! calls it and gives it a wake-up to send releases.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use netcluster_local::shm::{create_pool, Mapping};
use netcluster_local::LocalStream;
use netcluster_proto::frame::shm::{self as wire, ShmFrame};
use netcluster_proto::frame::{self, HEADER_LEN};

mod alloc;
mod loan;
use alloc::Alloc;
pub use loan::SlotLoan;

/// Payloads at least this big go through shared memory when it is on.
/// Below it the socket is as fast: the descriptor, the release and the
/// free cost three small frames, about what copying 16 KiB costs twice.
pub const SHM_MIN: usize = 16 * 1024;

/// How long an emit waits for a free slot of a full pool before it sends
/// the payload through the socket instead: long enough for a subscriber
/// that keeps up to release one (the pool is its flow control), short
/// enough that one that holds its messages costs little.
pub const SLOT_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// Why no slot was taken (see [`Shm::put_waiting`], [`Shm::lend`]).
pub enum Put {
    /// Nowhere: the pool is full now (a ShmFree may come).
    Full,
    /// Nowhere yet: the pool's registration is not answered yet.
    Pending,
    /// Nowhere: it goes through the socket (too small, no pool).
    Socket,
}

/// The publisher's pool on the current connection.
struct Pool {
    /// Shared with the loans of its slots: a loan taken before a reconnect
    /// retired the pool keeps it mapped until it is emitted or dropped.
    map: Arc<Mapping>,
    alloc: Alloc,
    /// The daemon acknowledged it.
    ready: bool,
}

/// Per-connection state.
#[derive(Default)]
struct Conn {
    /// Counts connections; releases of an older one are dropped.
    gen: u64,
    /// The daemon accepted shared memory on this connection.
    on: bool,
    pool: Option<Pool>,
    /// Descriptors received, waiting for their ShmPoolFd frame.
    fds: Vec<OwnedFd>,
    /// Pools mapped from ShmPoolFd frames.
    maps: HashMap<u64, Arc<Mapping>>,
}

/// Slots to release: (connection generation, pool, offset).
#[derive(Default)]
struct Releases {
    list: Vec<(u64, u64, u64)>,
}

/// See the module docs.
pub struct Shm {
    /// Size of the pool created per connection (0: receive only).
    pool_bytes: usize,
    conn: Mutex<Conn>,
    releases: Mutex<Releases>,
    /// Called when the first release of a batch is queued: the connection
    /// sends them (set once the connection exists).
    wake: Mutex<Option<Arc<dyn Fn() + Send + Sync>>>,
    /// Notified when slots of its own pool are freed.
    pub freed: tokio::sync::Notify,
    /// A wait for a slot of the full pool ran out and no slot was freed
    /// since: recipients hold the pool (a subscriber that keeps its
    /// messages, or a stalled one), so emits use the socket at once
    /// instead of waiting [`SLOT_WAIT`] each.
    starved: std::sync::atomic::AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the reader does with a shared-memory frame.
pub enum Handled<'a> {
    /// Nothing more.
    Done,
    /// A message: its origin and event, and its payload (a view into the
    /// pool, released when dropped).
    Deliver(netcluster_proto::frame::RawDeliver<'a>, Bytes),
}

/// A payload in a mapped pool; releases its slot when dropped.
struct View {
    map: Arc<Mapping>,
    offset: usize,
    len: usize,
    slot: (u64, u64, u64),
    shm: Arc<Shm>,
}

impl AsRef<[u8]> for View {
    fn as_ref(&self) -> &[u8] {
        self.map.slice(self.offset, self.len)
    }
}

impl Drop for View {
    fn drop(&mut self) {
        self.shm.release(self.slot);
    }
}

impl Shm {
    /// A client that creates pools of `pool_bytes` (0: it only receives).
    pub fn new(pool_bytes: usize) -> Arc<Shm> {
        Arc::new(Shm {
            pool_bytes,
            conn: Mutex::new(Conn::default()),
            releases: Mutex::new(Releases::default()),
            wake: Mutex::new(None),
            freed: tokio::sync::Notify::new(),
            starved: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Sets the connection's wake-up for releases.
    pub fn set_wake(&self, f: Arc<dyn Fn() + Send + Sync>) {
        *lock(&self.wake) = Some(f);
    }

    /// A new connection was made; `on` is the Welcome's answer. Creates
    /// and registers this connection's pool (the ShmPool frame is written
    /// straight to the fresh socket, before anything else is sent on it),
    /// acknowledged with `ack`. Returns whether a pool was sent.
    pub fn connected(&self, stream: &LocalStream, on: bool, ack: u32) -> bool {
        let mut c = lock(&self.conn);
        c.gen += 1;
        c.on = on;
        self.starved.store(false, Ordering::Relaxed);
        c.pool = None;
        c.fds.clear();
        c.maps.clear();
        lock(&self.releases).list.clear();
        if !on || self.pool_bytes == 0 {
            return false;
        }
        let (fd, map) = match create_pool(self.pool_bytes) {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("shared memory off: cannot create a pool: {e}");
                return false;
            }
        };
        let mut b = BytesMut::new();
        wire::encode_pool(&mut b, ack, self.pool_bytes as u64);
        match stream.try_write_with_fd(&b, fd.as_raw_fd()) {
            Ok(n) if n == b.len() => {}
            r => {
                tracing::warn!("shared memory off: cannot pass the pool: {r:?}");
                return false;
            }
        }
        c.pool = Some(Pool {
            map: Arc::new(map),
            alloc: Alloc::new(self.pool_bytes as u64),
            ready: false,
        });
        true
    }

    /// The daemon answered the pool's registration.
    pub fn registered(&self, ok: Result<(), String>) {
        let mut c = lock(&self.conn);
        match ok {
            Ok(()) => {
                if let Some(p) = &mut c.pool {
                    p.ready = true;
                }
            }
            Err(e) => {
                tracing::warn!("the daemon refused the shared-memory pool: {e}");
                c.pool = None;
            }
        }
        drop(c);
        self.freed.notify_waiters();
    }

    /// Whether reads must keep passed descriptors.
    pub fn on(&self) -> bool {
        lock(&self.conn).on
    }

    /// Takes a free slot of `len` bytes and calls `fill` with the pool's
    /// mapping and the slot's offset, under the lock; `Ok((generation,
    /// offset, fill's result))`, or where the payload must go instead.
    fn take<R>(
        &self,
        len: usize,
        fill: impl FnOnce(&Arc<Mapping>, u64) -> R,
    ) -> Result<(u64, u64, R), Put> {
        if len < SHM_MIN || len > u32::MAX as usize {
            return Err(Put::Socket);
        }
        let mut c = lock(&self.conn);
        let gen = c.gen;
        let Some(p) = c.pool.as_mut() else {
            return Err(Put::Socket);
        };
        if !p.ready {
            return Err(Put::Pending);
        }
        match p.alloc.alloc(len as u64) {
            Some(off) => Ok((gen, off, fill(&p.map, off))),
            None => Err(Put::Full),
        }
    }

    /// Waits up to [`SLOT_WAIT`] for `attempt` to get a slot of a full
    /// pool (or for the pool's registration); `None`: use the socket.
    async fn waiting<R>(&self, mut attempt: impl FnMut() -> Result<R, Put>) -> Option<R> {
        // The fast path (a free slot) reads no clock and registers no
        // waiter: 4 % of a 64 KiB publisher went to `clock_gettime` and
        // the `Notify` here.
        match attempt() {
            Ok(r) => return Some(r),
            Err(Put::Socket) => return None,
            Err(Put::Full) if self.starved.load(Ordering::Relaxed) => return None,
            Err(Put::Full | Put::Pending) => {}
        }
        let deadline = tokio::time::Instant::now() + SLOT_WAIT;
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let full = match attempt() {
                Ok(r) => return Some(r),
                Err(Put::Socket) => return None,
                Err(Put::Full) => true,
                Err(Put::Pending) => false,
            };
            if full && self.starved.load(Ordering::Relaxed) {
                return None;
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                if full {
                    self.starved.store(true, Ordering::Relaxed);
                }
                return None;
            }
        }
    }

    /// Copies `payload` into a free slot, waiting up to [`SLOT_WAIT`] for one of a full
    /// pool (or for the pool's registration); `None`: send it through the
    /// socket; else the connection generation and the slot's offset.
    pub async fn put_waiting(&self, payload: &[u8]) -> Option<(u64, u64)> {
        self.waiting(|| self.take(payload.len(), |map, off| map.write(off as usize, payload)))
            .await
            .map(|(gen, off, ())| (gen, off))
    }

    /// A slot of `len` bytes to fill in place (see [`SlotLoan`]), waiting
    /// as [`Shm::put_waiting`] does; `None`: the caller uses a heap buffer.
    pub async fn lend(self: &Arc<Self>, len: usize) -> Option<SlotLoan> {
        self.waiting(|| self.take(len, |map, _| map.clone()))
            .await
            .map(|(gen, off, map)| SlotLoan::new(self.clone(), map, gen, off, len))
    }

    /// Before a new connection replaces the pool: rewrites the
    /// shared-memory publishes still queued in `buf` (emitted before or
    /// during the break) as ordinary publishes carrying their payload,
    /// copied from the old pool while it is still mapped. A ShmPublish
    /// names no pool (the daemon resolves it against the connection's),
    /// so sent as it is on the new connection it would deliver whatever
    /// the new pool holds at that offset. `buf` starts on a whole frame;
    /// the caller holds the output buffer's lock.
    pub fn inline_queued(&self, buf: &mut BytesMut) {
        let mut c = lock(&self.conn);
        // Slots given from now on belong to a retired pool (see
        // `is_current`): their emits carry the payload instead.
        c.gen += 1;
        let Some(pool) = &c.pool else {
            return;
        };
        let data: &[u8] = buf;
        let frames = || {
            let mut off = 0;
            std::iter::from_fn(move || {
                let h = data.get(off..off + HEADER_LEN)?;
                let len = u32::from_le_bytes([h[1], h[2], h[3], h[4]]) as usize;
                let f = &data[off..(off + HEADER_LEN + len).min(data.len())];
                off += HEADER_LEN + len;
                Some(f)
            })
        };
        if !frames().any(|f| f[0] == wire::kind::SHM_PUBLISH) {
            return;
        }
        let mut out = BytesMut::with_capacity(data.len());
        for f in frames() {
            if f[0] == wire::kind::SHM_PUBLISH {
                if let Ok(Some((ShmFrame::Publish { offset, len, event }, _))) =
                    wire::decode_shm(f, usize::MAX)
                {
                    if wire::check_slot(pool.map.len() as u64, offset, len).is_ok() {
                        let payload = pool.map.slice(offset as usize, len as usize);
                        frame::encode_publish(&mut out, event, payload);
                        continue;
                    }
                }
            }
            out.extend_from_slice(f);
        }
        drop(c);
        *buf = out;
    }

    /// Whether a slot [`Shm::put_waiting`] or [`Shm::lend`] gave in connection generation `gen`
    /// may still be named by a ShmPublish (its pool is still the one the
    /// daemon knows for this client). Called under the output buffer's
    /// lock, as [`Shm::inline_queued`] is, so no descriptor of an old pool
    /// is appended after that rewrote the queue.
    pub fn is_current(&self, gen: u64) -> bool {
        lock(&self.conn).gen == gen
    }

    /// Takes back a slot [`Shm::put_waiting`] gave that was not sent after all.
    pub fn unput(&self, offset: u64) {
        if let Some(p) = &mut lock(&self.conn).pool {
            p.alloc.free(offset);
        }
    }

    /// Takes back a slot of the pool mapped at `map` that was not sent:
    /// nothing if a reconnect retired that pool meanwhile (its allocator
    /// went with it; the new pool's offsets are not this slot's).
    pub fn unput_in(&self, map: &Arc<Mapping>, offset: u64) {
        if let Some(p) = &mut lock(&self.conn).pool {
            if Arc::ptr_eq(&p.map, map) {
                p.alloc.free(offset);
            }
        }
    }

    /// Slots of its own pool in flight now (0 without a pool).
    pub fn in_flight(&self) -> usize {
        lock(&self.conn)
            .pool
            .as_ref()
            .map_or(0, |p| p.alloc.in_use())
    }

    /// Keeps descriptors that came with the bytes just read.
    pub fn add_fds(&self, fds: &mut Vec<OwnedFd>) {
        if !fds.is_empty() {
            lock(&self.conn).fds.append(fds);
        }
    }

    /// Handles a shared-memory frame from the daemon.
    pub fn handle<'a>(self: &Arc<Self>, f: ShmFrame<'a>) -> Result<Handled<'a>, String> {
        let mut c = lock(&self.conn);
        match f {
            ShmFrame::PoolFd { pool, size } => {
                if c.fds.is_empty() {
                    return Err("a pool descriptor frame came without its descriptor".into());
                }
                let fd = c.fds.remove(0);
                let map = Mapping::map(&fd, size as usize, false)
                    .map_err(|e| format!("cannot map pool {pool}: {e}"))?;
                c.maps.insert(pool, Arc::new(map));
                Ok(Handled::Done)
            }
            ShmFrame::Deliver {
                pool,
                offset,
                len,
                head,
            } => {
                let Some(map) = c.maps.get(&pool).cloned() else {
                    return Err(format!("a message in pool {pool}, which was never sent"));
                };
                wire::check_slot(map.len() as u64, offset, len).map_err(|e| e.to_string())?;
                let view = View {
                    map,
                    offset: offset as usize,
                    len: len as usize,
                    slot: (c.gen, pool, offset),
                    shm: self.clone(),
                };
                drop(c);
                Ok(Handled::Deliver(head, Bytes::from_owner(view)))
            }
            ShmFrame::Free(slots) => {
                if let Some(p) = &mut c.pool {
                    for (_, off) in slots.iter() {
                        p.alloc.free(off);
                    }
                }
                drop(c);
                self.starved.store(false, Ordering::Relaxed);
                self.freed.notify_waiters();
                Ok(Handled::Done)
            }
            _ => Err("the daemon sent a frame only clients send".into()),
        }
    }

    /// A view was dropped: queue its release and wake the connection for
    /// the first of a batch.
    fn release(&self, slot: (u64, u64, u64)) {
        let first = {
            let mut r = lock(&self.releases);
            r.list.push(slot);
            r.list.len() == 1
        };
        if first {
            let wake = lock(&self.wake).clone();
            if let Some(w) = wake {
                w();
            }
        }
    }

    /// Encodes the queued releases of the current connection into `out`
    /// (older connections' are dropped: their holds went with them).
    pub fn encode_releases(&self, out: &mut BytesMut) {
        let gen = lock(&self.conn).gen;
        let list = std::mem::take(&mut lock(&self.releases).list);
        let slots: Vec<(u64, u64)> = list
            .into_iter()
            .filter(|s| s.0 == gen)
            .map(|s| (s.1, s.2))
            .collect();
        for chunk in slots.chunks(wire::MAX_BATCH) {
            wire::encode_release(out, chunk);
        }
    }
}
