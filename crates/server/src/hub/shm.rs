//! The hub's part of shared-memory payloads (Linux; the state is in
//! `crate::shm`): queuing a slot for a recipient that maps pools, with the
//! pool's descriptor sent to it first, and telling publishers which slots
//! are free again.

use std::os::fd::RawFd;

use netcluster_proto::frame::shm as wire;

use super::*;
use crate::shm::{pool_fd_frame, Freed, ShmMsg};

impl Hub {
    /// Queues `m` for `target` as a ShmDeliver, taking a hold on its slot.
    /// False when that cannot be done now (the caller queues a copy):
    /// `target` was not yet sent the pool's descriptor and its queue is
    /// not empty (the descriptor must arrive before the first frame that
    /// names its pool, and is written straight to the socket), the socket
    /// took nothing, or the pool has too many slots in flight.
    pub(super) fn queue_shm(
        &self,
        target: &Conn,
        m: &ShmMsg,
        h: &DeliverHeader<'_>,
        event: &str,
    ) -> bool {
        let shm = &target.shm;
        if !shm.knows(m.pool.id) {
            if !target.idle_writer() {
                return false;
            }
            let f = pool_fd_frame(&m.pool);
            let fd: RawFd = m.pool.raw_fd();
            match target.stream.try_write_with_fd(&f, fd) {
                Ok(n) if n > 0 => {
                    // The descriptor went with the first byte; the rest of
                    // the frame (rarely any) keeps its place in the queue.
                    if n < f.len() {
                        target.with_tail(|b| b.extend_from_slice(&f[n..]));
                    }
                    bump(&target.stats.bytes_out, n as u64);
                    shm.learnt(m.pool.id);
                }
                _ => return false,
            }
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
