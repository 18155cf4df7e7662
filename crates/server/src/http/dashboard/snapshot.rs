//! The dashboard's snapshot: everything the page shows, as one JSON object,
//! built from the same records the control channel answers with
//! (`status()`, `showchannel()`'s clients, `showclient()`'s departed
//! records, `showpeers()`), so the page and the REPL never disagree.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::control::status;
use crate::hub::Hub;

/// How many departed clients a snapshot lists (newest first).
pub const SNAPSHOT_DEPARTED: usize = 20;
/// How many clients of one channel a snapshot lists (the slowest first,
/// by queued bytes); the channel's totals still count every client.
pub const SNAPSHOT_CLIENTS: usize = 100;

/// Builds the snapshot. One pass over the channels and clients, as a
/// `status()` plus `showchannel(name)` for every channel would be.
pub fn build(hub: &Hub) -> Value {
    let cfg = hub.config();
    let status = status(hub);
    let clients = hub.clients();
    let router = hub.router.borrow();
    let channels: Vec<Value> = cfg
        .channels
        .iter()
        .map(|ch| {
            let targets: Vec<&str> = router
                .channel(&ch.name)
                .map(|id| router.targets(id).collect())
                .unwrap_or_default();
            // Totals that never go down: departed clients' counters (kept
            // by the metrics code) plus the live ones'; the page's rates
            // are their differences.
            let mut totals = hub.ops.retired(&ch.name);
            let mut members: Vec<_> = clients
                .iter()
                .filter(|c| *c.channel == *ch.name)
                .inspect(|c| totals.add_conn(c))
                .collect();
            let count = members.len();
            if count > SNAPSHOT_CLIENTS {
                members.sort_by_key(|c| std::cmp::Reverse(c.out.borrow().len()));
                members.truncate(SNAPSHOT_CLIENTS);
                members.sort_by_key(|c| c.id);
            }
            let members: Vec<Value> = members.iter().map(|c| hub.client_json(c)).collect();
            json!({
                "name": ch.name,
                "propagatesto": targets,
                "propagatetochannels": ch.propagatetochannels.to_json(),
                "propagatetonet": ch.propagatetonet,
                "acceptfromnet": ch.acceptfromnet,
                "slowconsumer": ch.slowconsumer.as_str(),
                "clients_total": count,
                "totals": {
                    "messages_in": totals.msgs_in,
                    "messages_out": totals.msgs_out,
                    "dropped": totals.dropped,
                    "blocked": totals.blocked,
                },
                "clients": members,
            })
        })
        .collect();
    drop(router);
    let net = crate::net::driver(hub).map(|n| n.peers_json());
    let name = net
        .as_ref()
        .and_then(|n| n["name"].as_str().map(str::to_string))
        .or_else(|| cfg.nodename.clone())
        .unwrap_or_else(crate::iface::hostname);
    let now = SystemTime::now();
    let uptime = now.duration_since(hub.started).unwrap_or_default();
    json!({
        "t": now.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64,
        "node": {
            "name": name,
            "id": status["node"],
            "version": status["version"],
            "started": status["started"],
            "uptime_s": uptime.as_secs(),
            "config": status["config"],
            "socketdir": status["socketdir"],
            "queuebytes": cfg.queuebytes,
            "maxmessage": cfg.maxmessage,
        },
        "tail": cfg.http.as_ref().is_some_and(|h| h.tail),
        "channels": channels,
        "disconnects": status["disconnects"],
        "departed": hub.recent_departed(SNAPSHOT_DEPARTED),
        "gaps": hub.gaps.recent(),
        "net": net,
    })
}
