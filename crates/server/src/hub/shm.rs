//! The hub's part of shared-memory payloads (Linux; the state is in
//! `crate::shm`): queuing a slot for a recipient that maps pools, with the
//! pool's descriptor sent to it first, and telling publishers which slots
//! are free again.

use netcluster_proto::frame::shm as wire;

use super::*;
use crate::shm::{pool_fd_frame, Freed, ShmMsg};

impl Hub {
    /// Sends `pool`'s descriptor to `target` now if it may take it (it
    /// maps pools, does not have this one, and nothing is queued for it).
    fn offer(&self, target: &Rc<Conn>, pool: &crate::shm::Pool) -> bool {
        if !target.shm.on.get() || target.shm.knows(pool.id) || !target.idle_writer() {
            return target.shm.knows(pool.id);
        }
        let f = pool_fd_frame(pool);
        match target.stream.try_write_with_fd(&f, pool.raw_fd()) {
            Ok(n) if n > 0 => {
                if n < f.len() {
                    target.with_tail(|b| b.extend_from_slice(&f[n..]));
                    self.touch(target);
                }
                bump(&target.stats.bytes_out, n as u64);
                target.shm.learnt(pool.id);
                true
            }
            _ => false,
        }
    }

    /// A pool was registered: its descriptor goes at once to the clients
    /// of its channel that map pools and have nothing queued (later, a
    /// busy queue could keep it from them: the descriptor must precede
    /// the first frame that names the pool).
    pub(crate) fn offer_pool(&self, owner: &Conn) {
        let Some(pool) = owner.shm.pool.borrow().clone() else {
            return;
        };
        let clients = self.clients.borrow();
        for c in clients.iter().flatten() {
            if c.id != owner.id && c.channel_id == owner.channel_id {
                self.offer(c, &pool);
            }
        }
    }

    /// A client that maps pools joined: it gets the pools of its channel
    /// now, while its queue is empty.
    pub(crate) fn offer_pools_to(&self, target: &Rc<Conn>) {
        if !target.shm.on.get() {
            return;
        }
        let pools: Vec<_> = self
            .clients
            .borrow()
            .iter()
            .flatten()
            .filter(|c| c.id != target.id && c.channel_id == target.channel_id)
            .filter_map(|c| c.shm.pool.borrow().clone())
            .collect();
        for p in pools {
            self.offer(target, &p);
        }
    }

    /// Queues `m` for `target` as a ShmDeliver, taking a hold on its slot.
    /// False when that cannot be done now (the caller queues a copy):
    /// `target` was not yet sent the pool's descriptor and its queue is
    /// not empty (the descriptor must arrive before the first frame that
    /// names its pool, and is written straight to the socket), the socket
    /// took nothing, or the pool has too many slots in flight.
    pub(super) fn queue_shm(
        &self,
        target: &Rc<Conn>,
        m: &ShmMsg,
        h: &DeliverHeader<'_>,
        event: &str,
    ) -> bool {
        let shm = &target.shm;
        // The descriptor goes with the frame's first byte; the rest of the
        // frame (rarely any) keeps its place in the queue.
        if !self.offer(target, &m.pool) {
            return false;
        }
        if !shm.hold(m) {
            return false;
        }
        let mut q = target.out.borrow_mut();
        wire::encode_deliver(q.tail(), h, event, m.pool.id, m.offset, m.len);
        q.seal();
        true
    }

    /// Queues `m` for `target` as an ordinary Deliver, the payload copied
    /// once from the pool and shared by every such recipient.
    pub(super) fn queue_shm_copy(
        &self,
        target: &Conn,
        m: &ShmMsg,
        h: &DeliverHeader<'_>,
        event: &str,
    ) {
        let mut head = BytesMut::new();
        frame::encode_deliver_header(&mut head, h, event, m.len as usize);
        target
            .out
            .borrow_mut()
            .push_shared(&head, m.bytes().clone());
    }

    /// Tells each publisher which of its slots lost their last hold.
    pub(crate) fn send_frees(&self, freed: Vec<Freed>) {
        if freed.is_empty() {
            return;
        }
        let clients = self.clients.borrow();
        let mut offsets = Vec::new();
        let mut i = 0;
        while i < freed.len() {
            let pool = &freed[i].0;
            offsets.clear();
            while i < freed.len()
                && Rc::ptr_eq(&freed[i].0, pool)
                && offsets.len() < wire::MAX_BATCH
            {
                offsets.push(freed[i].1);
                i += 1;
            }
            let (slot, id) = pool.owner;
            // A publisher that left has no use for the news.
            if let Some(owner) = clients.get(slot as usize).and_then(Option::as_ref) {
                if owner.id == id && !owner.is_closed() {
                    owner.with_tail(|b| wire::encode_free(b, &offsets));
                    self.touch(owner);
                }
            }
        }
    }
}
