//! The SYNC request and reply bodies (kinds 6 and 7): how a receiver that
//! has no state for a sender learns where that sender's DATA stands now.
//!
//! A request is padded so that the reply it can cause is never larger
//! than the request itself: a spoofed request cannot make a node send more
//! bytes than it received.

use crate::varint;

use super::encode::put_plain_header;
use super::{Kind, Reader, WireError};

/// Bytes of a SYNC request body: the target's node id and zero padding up
/// to the largest reply body (8 + 3 varints of at most 10 bytes).
pub const SYNC_REQUEST_BODY: usize = 8 + 3 * varint::MAX_LEN;

/// A SYNC request: the sender `target` is asked for its DATA position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncRequest {
    /// The node asked.
    pub target: u64,
}

/// A SYNC reply: where the replying node's DATA stands, for one requester.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncReply {
    /// The requester's node id, echoed.
    pub requester: u64,
    /// The header seq of the request answered, echoed: together with the
    /// requester's node id (random per start) it proves the reply was made
    /// after that request.
    pub request_seq: u64,
    /// The last DATA sequence number sent before this reply (0: none); every
    /// DATA datagram after it leaves after the reply.
    pub last_seq: u64,
    /// Milliseconds since the replying node started.
    pub uptime_ms: u64,
}

/// Decodes a SYNC request body: the target, then padding that must make
/// the body at least [`SYNC_REQUEST_BODY`] bytes (its content is ignored).
pub fn decode_sync(body: &[u8]) -> Result<SyncRequest, WireError> {
    if body.len() < SYNC_REQUEST_BODY {
        return Err(WireError::BadSync("request shorter than the largest reply"));
    }
    let mut r = Reader { rest: body };
    let target = u64::from_le_bytes(r.take(8, "sync target")?.try_into().expect("8 bytes"));
    Ok(SyncRequest { target })
}

/// Decodes a SYNC reply body. Bytes after the known fields are ignored.
pub fn decode_sync_reply(body: &[u8]) -> Result<SyncReply, WireError> {
    let mut r = Reader { rest: body };
    let requester = u64::from_le_bytes(r.take(8, "sync requester")?.try_into().expect("8 bytes"));
    Ok(SyncReply {
        requester,
        request_seq: r.varint("sync request seq")?,
        last_seq: r.varint("last sequence")?,
        uptime_ms: r.varint("uptime")?,
    })
}

/// Appends a whole SYNC request datagram (padded body).
pub fn encode_sync(out: &mut Vec<u8>, node: u64, seq: u64, req: &SyncRequest) {
    put_plain_header(out, Kind::Sync, node, seq);
    out.extend_from_slice(&req.target.to_le_bytes());
    out.resize(out.len() + SYNC_REQUEST_BODY - 8, 0);
}

/// Appends a whole SYNC reply datagram.
pub fn encode_sync_reply(out: &mut Vec<u8>, node: u64, seq: u64, r: &SyncReply) {
    put_plain_header(out, Kind::SyncReply, node, seq);
    out.extend_from_slice(&r.requester.to_le_bytes());
    for v in [r.request_seq, r.last_seq, r.uptime_ms] {
        varint::put(out, v);
    }
}
