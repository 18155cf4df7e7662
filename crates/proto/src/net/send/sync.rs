//! The sender's side of the SYNC handshake: queuing requests and replies
//! ahead of DATA. When to send them, and how often, is decided by the
//! engine (`net/sync.rs`); this only encodes and queues.

use super::super::wire::{self, Kind, SyncReply, SyncRequest};
use super::{Control, Sender};

impl Sender {
    /// Queues a SYNC request (header seq `seq`) asking `target` for its
    /// DATA position.
    pub(crate) fn sync_request(&mut self, seq: u64, target: u64) {
        let mut b = self.buffer();
        wire::encode_sync(&mut b, self.node, seq, &SyncRequest { target });
        self.control.push_back(Control::Sync(b, Kind::Sync));
    }

    /// Queues a SYNC reply (header seq `seq`) to `requester`'s request
    /// `request_seq`. Its last seq is the last DATA datagram handed out:
    /// control datagrams leave before any queued DATA, so every DATA
    /// datagram after that seq leaves after the reply.
    pub(crate) fn sync_reply(
        &mut self,
        seq: u64,
        requester: u64,
        request_seq: u64,
        uptime_ms: u64,
    ) {
        let r = SyncReply {
            requester,
            request_seq,
            last_seq: self.last_sent(),
            uptime_ms,
        };
        let mut b = self.buffer();
        wire::encode_sync_reply(&mut b, self.node, seq, &r);
        self.control.push_back(Control::Sync(b, Kind::SyncReply));
    }
}
