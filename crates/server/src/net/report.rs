//! Reports of datagrams the state machine dropped: a warn line per source
//! address at most once a minute (the state machine rate-limits them, see
//! `netcluster_proto::net::DROP_REPORT_INTERVAL`), naming the source and the
//! reason, and, when a node could not be admitted to the full peer table,
//! an `nc-gap` event to local clients: its messages are lost.

use std::net::SocketAddr;
use std::rc::Rc;

use netcluster_proto::net::DropReason;

use super::{NetDriver, GAP_CAUSE};
use crate::hub::Hub;

/// The `reason` of the `nc-gap` raised when a node is refused because the
/// peer table is full.
pub const TABLE_FULL_REASON: &str = "peer table full";

impl NetDriver {
    /// Logs one report of dropped datagrams (and announces a refused node).
    pub(super) fn report_drop(
        &self,
        hub: &Rc<Hub>,
        addr: SocketAddr,
        node: Option<u64>,
        reason: &DropReason,
        count: u64,
    ) {
        let node_hex = node.map(|n| format!("{n:016x}"));
        let what = if count == 1 {
            "a datagram".to_owned()
        } else {
            format!("{count} datagrams")
        };
        tracing::warn!(
            source = %addr,
            node = node_hex.as_deref().unwrap_or("-"),
            count,
            "dropped {what} from {addr}: {reason} (at most one line per source a minute)"
        );
        if *reason == DropReason::PeerTableFull {
            if let Some(node) = node {
                self.announce_refused(hub, node);
            }
        }
    }

    /// Tells local clients that `node`'s messages are lost because it could
    /// not be admitted: one `nc-gap` on every channel that accepts network
    /// messages, like a gap (see `announce_gap`).
    fn announce_refused(&self, hub: &Rc<Hub>, node: u64) {
        super::announce(
            hub,
            serde_json::json!({"cause": GAP_CAUSE, "node": format!("{node:016x}"), "reason": TABLE_FULL_REASON}),
        );
        hub.flush_touched();
    }
}
