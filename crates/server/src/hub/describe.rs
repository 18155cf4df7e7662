//! How the hub describes a client: the record `showchannel`,
//! `showclient`, the departed-client list and the dashboard show.

use serde_json::{json, Value};

use super::{origin_string, Hub};
use crate::conn::{Conn, Dialect};
use crate::timefmt::rfc3339;

impl Hub {
    /// A client as `showchannel` and `showclient` describe it.
    pub fn client_json(&self, c: &Conn) -> Value {
        #[cfg_attr(not(target_os = "linux"), allow(unused_mut))]
        let mut v = json!({
            "id": c.id,
            "origin": origin_string(self.node_id, c.id),
            "name": c.name,
            "channel": &*c.channel,
            "protocol": match c.dialect { Dialect::Native => "native", Dialect::Legacy => "legacy" },
            "pid": c.peer.pid.map(i64::from).unwrap_or(c.hello_pid as i64),
            "uid": c.peer.uid,
            "gid": c.peer.gid,
            "connected": rfc3339(c.since),
            "messages_in": c.stats.msgs_in.get(),
            "messages_out": c.stats.msgs_out.get(),
            "bytes_in": c.stats.bytes_in.get(),
            "bytes_out": c.stats.bytes_out.get(),
            "queued_bytes": c.out.borrow().len(),
            "dropped": c.stats.dropped.get(),
            "blocked": c.stats.blocked.get(),
            "subscriptions": self.router.borrow().subscriptions(c.slot),
        });
        // Shared memory: its own pool (bounded by `shmbytes`) and what it
        // holds of others'.
        #[cfg(target_os = "linux")]
        {
            v["shm"] = json!({
                "enabled": c.shm.on.get(),
                "pool_bytes": c.shm.pool_bytes(),
                "slots_in_flight": c.shm.pool_slots_in_flight(),
                "holding": c.shm.holding(),
            });
        }
        v
    }
}
