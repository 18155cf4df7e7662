//! The connection's hooks for shared-memory payloads (Linux; the state
//! and the pools are in `crate::shm`): creating that state, registering a
//! pool on each new connection, and sending the releases of dropped
//! messages.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::sync::oneshot;

use super::{Shared, Stream};

/// The shared-memory state for `pool` (see `crate::shm`).
pub(super) fn shared_memory(pool: &Option<usize>) -> Option<Arc<crate::shm::Shm>> {
    pool.map(crate::shm::Shm::new)
}

/// A connection was made: registers this connection's pool with the
/// daemon (if it accepted shared memory), answered by an Ack.
pub(super) fn shm_connected(shared: &Arc<Shared>, stream: &Stream, on: bool) {
    let Some(shm) = &shared.shm else {
        return;
    };
    let ack = shared.next_id();
    let (tx, rx) = oneshot::channel();
    shared.pending().acks.insert(ack, tx);
    if shm.connected(stream, on, ack) {
        let shm = shm.clone();
        tokio::spawn(async move {
            shm.registered(rx.await.unwrap_or_else(|_| Err("connection lost".into())));
        });
    } else {
        shared.pending().acks.remove(&ack);
    }
}

impl Shared {
    /// Sends the slots released by dropped messages (called from the
    /// first drop of a batch, on any thread). Releases are small and
    /// always go, whatever `max_pending`; while offline they are dropped,
    /// as the holds went with the old connection.
    pub(crate) fn send_releases(&self) {
        let Some(shm) = &self.shm else {
            return;
        };
        let mut out = self.out();
        if out.closed.is_some() || out.offline.is_some() {
            shm.encode_releases(&mut BytesMut::new());
            return;
        }
        let was_empty = out.buf.is_empty();
        shm.encode_releases(&mut out.buf);
        let now_empty = out.buf.is_empty();
        drop(out);
        if was_empty && !now_empty {
            self.wake.notify_one();
        }
    }
}
