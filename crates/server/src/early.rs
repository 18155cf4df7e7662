//! Early listeners: a connection is registered as a legacy listener the
//! moment it is accepted, before its dialect is known.
//!
//! The seed's clients that only listen never send a byte, so the daemon
//! can tell them from native clients only after a silence (the session's
//! `LEGACY_SILENCE`). Meanwhile they must already receive what is routed to
//! their channel, as the original daemon did, and show in `showchannel`.
//! So every accepted connection is at once a provisional legacy recipient
//! subscribed to every event, whose output is held (queued under the usual
//! `queuebytes` policy, not written) until the dialect is known: a legacy
//! client then gets it all, in order; a native Hello takes the record back
//! without a trace and the native client starts afresh.

use std::rc::Rc;

use netcluster_local::{LocalStream, PeerInfo};
use netcluster_proto::frame;

use crate::access;
use crate::conn::{Conn, ConnInit, Dialect};
use crate::hub::Hub;

/// Registers a just-accepted connection as a held legacy listener, unless
/// its channel is gone or the peer may not connect (the handshake then
/// refuses it as usual).
pub fn register(
    hub: &Hub,
    stream: &Rc<LocalStream>,
    peer: &PeerInfo,
    channel: &Rc<str>,
) -> Option<Rc<Conn>> {
    let channel_id = hub.router.borrow().channel(channel)?;
    let info = hub.channel_info(channel_id);
    access::check(channel, peer, &info.allow_uids, &info.allow_gids).ok()?;
    let (slot, id) = hub.reserve();
    let conn = Rc::new(Conn::new(ConnInit {
        slot,
        id,
        channel: channel.clone(),
        channel_id,
        name: "legacy".into(),
        hello_pid: 0,
        peer: *peer,
        dialect: Dialect::Legacy,
        stream: stream.clone(),
    }));
    conn.held.set(true);
    hub.register(conn.clone());
    // The seed's clients filter locally: they get every event.
    hub.router
        .borrow_mut()
        .subscribe(conn.slot, frame::WILDCARD);
    Some(conn)
}

/// The handshake ended: for a legacy client, the provisional record is the
/// connection, and what was held is written from now on; for a native one
/// (or none), the record is taken back.
pub fn settle(hub: &Hub, early: Option<Rc<Conn>>, dialect: Option<Dialect>) -> Option<Rc<Conn>> {
    let conn = early?;
    if dialect == Some(Dialect::Legacy) {
        conn.held.set(false);
        hub.touch(&conn);
        hub.flush_touched();
        return Some(conn);
    }
    // A record the daemon already closed (a slow consumer while held) was
    // detached and its slot freed by the close.
    if !conn.is_closed() {
        hub.forget_provisional(&conn);
        hub.release_slot(conn.slot);
    }
    None
}
