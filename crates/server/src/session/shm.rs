//! The session's part of shared-memory payloads (Linux): the frames a
//! client sends about its pool (ShmPool, ShmPublish, ShmRelease). Every
//! refusal is a non-fatal Error naming what was wrong, sent to this client
//! only; a frame that cannot be decoded closes it, like any bad frame.

use std::rc::Rc;

use netcluster_proto::frame::shm::{self as wire, ShmFrame};
use netcluster_proto::frame::ErrorCode;

use super::{publish, replied};
use crate::conn::Conn;
use crate::hub::{Flow, Hub, Payload};
use crate::shm::ShmMsg;

/// Handles the shared-memory frame at the start of `buf`: `Ok(None)` when
/// it is not whole yet, else the flow and the bytes it took.
pub(super) fn handle(
    hub: &Rc<Hub>,
    conn: &Rc<Conn>,
    buf: &[u8],
    max_body: usize,
) -> Result<Option<(Flow, usize)>, String> {
    let (f, n) = match wire::decode_shm(buf, max_body) {
        Ok(Some(x)) => x,
        Ok(None) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    if !conn.shm.on.get() {
        return Err("shared-memory frame on a connection that did not negotiate it".into());
    }
    let refuse = |code: ErrorCode, id: u32, msg: &str| {
        conn.queue_error(code, id, false, msg);
        replied(hub, conn)
    };
    let flow = match f {
        ShmFrame::Pool { ack, size } => {
            let max = hub.config().shmbytes;
            match conn.shm.register((conn.slot, conn.id), size, max) {
                Ok(()) => {
                    hub.offer_pool(conn);
                    conn.with_tail(|b| netcluster_proto::frame::encode_ack(b, ack));
                    replied(hub, conn)
                }
                Err(msg) => refuse(ErrorCode::BadRequest, ack, &msg),
            }
        }
        ShmFrame::Publish { offset, len, event } => {
            let pool = conn.shm.pool.borrow().clone();
            let Some(pool) = pool else {
                return Ok(Some((
                    refuse(
                        ErrorCode::BadRequest,
                        0,
                        "shm publish without a registered pool",
                    ),
                    n,
                )));
            };
            if let Err(e) = wire::check_slot(pool.size, offset, len) {
                return Ok(Some((refuse(ErrorCode::BadRequest, 0, &e.to_string()), n)));
            }
            let m = ShmMsg::new(pool.clone(), offset, len);
            let flow = publish(hub, conn, event, Payload::Pool(&m));
            // Nobody holds it (all got copies, or none subscribed, or it
            // was refused): the publisher may reuse it at once.
            if pool.holds(offset) == 0 {
                conn.with_tail(|b| wire::encode_free(b, &[offset]));
                hub.touch(conn);
            }
            flow
        }
        ShmFrame::Release(slots) => {
            let mut freed = Vec::new();
            let mut bad = None;
            for (pool, offset) in slots.iter() {
                match conn.shm.release(pool, offset) {
                    Ok(Some(f)) => freed.push(f),
                    Ok(None) => {}
                    Err(msg) => bad = Some(msg),
                }
            }
            hub.send_frees(freed);
            match bad {
                Some(msg) => refuse(ErrorCode::BadRequest, 0, &msg),
                None => Flow::Continue,
            }
        }
        ShmFrame::PoolFd { .. } | ShmFrame::Deliver { .. } | ShmFrame::Free(_) => {
            return Err("received a frame type that only the server sends".into())
        }
    };
    Ok(Some((flow, n)))
}
