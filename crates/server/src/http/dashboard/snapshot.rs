//! The dashboard's snapshot: everything the page shows, as one JSON object,
//! built from the same records the control channel answers with
//! (`status()`, `showchannel()`'s clients, `showclient()`'s departed
//! records, `showpeers()`), so the page and the REPL never disagree.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::control::{client_json, status};
use crate::hub::Hub;

/// How many departed clients a snapshot lists (newest first).
pub const SNAPSHOT_DEPARTED: usize = 20;

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
            let members: Vec<Value> = clients
                .iter()
                .filter(|c| *c.channel == *ch.name)
                .map(|c| client_json(hub, c))
                .collect();
            json!({
                "name": ch.name,
                "propagatesto": targets,
                "propagatetochannels": ch.propagatetochannels.to_json(),
                "propagatetonet": ch.propagatetonet,
                "acceptfromnet": ch.acceptfromnet,
                "slowconsumer": ch.slowconsumer.as_str(),
                "clients": members,
            })
        })
        .collect();
    drop(router);
    let net = hub.net.borrow().as_ref().map(|n| n.peers_json());
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
