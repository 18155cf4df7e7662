//! `showpeers()`: the peer table and the totals of the network driver, as
//! JSON for the control channel.

use std::time::Instant;

use serde_json::{json, Value};

use super::NetDriver;
use crate::timefmt::rfc3339;

impl NetDriver {
    fn wall(&self, t: Instant) -> String {
        let (i0, s0) = self.started;
        let wall = if t >= i0 {
            s0 + (t - i0)
        } else {
            s0 - (i0 - t)
        };
        rfc3339(wall)
    }

    /// The peer table and totals, for `showpeers()`.
    pub fn peers_json(&self) -> Value {
        let net = self.net.borrow();
        let peers: Vec<Value> = net
            .peers()
            .map(|p| {
                json!({
                    "name": p.name,
                    "node": format!("{:016x}", p.node),
                    "addr": p.addr.to_string(),
                    "up": p.up,
                    "synced": p.synced,
                    "first_seen": self.wall(p.first_seen),
                    "last_seen": self.wall(p.last_seen),
                    "datagrams_in": p.datagrams_in,
                    "bytes_in": p.bytes_in,
                    "messages_in": p.messages_in,
                    "payload_bytes_in": p.payload_bytes_in,
                    "malformed": p.malformed,
                    "duplicates": p.duplicates,
                    "lost": p.lost,
                    "gaps": p.gaps,
                    "replayed": p.replayed,
                    "unsynced": p.unsynced,
                    "naks_out": p.naks_out,
                    "held": p.held,
                    "oversized": p.oversized,
                    "incomplete": p.incomplete,
                    "reported": {
                        "datagrams_out": p.reported.datagrams_out,
                        "messages_out": p.reported.messages_out,
                    },
                })
            })
            .collect();
        let s = net.stats();
        let totals = json!({
            "datagrams_out": s.datagrams_out,
            "bytes_out": s.bytes_out,
            "messages_out": s.messages_out,
            "heartbeats_out": s.heartbeats_out,
            "datagrams_in": s.datagrams_in,
            "bytes_in": s.bytes_in,
            "messages_in": s.messages_in,
            "malformed": s.malformed,
            "foreign": s.foreign,
            "duplicates": s.duplicates,
            "lost": s.lost,
            "gaps": s.gaps,
            "rejected": s.rejected,
            "replayed": s.replayed,
            "unsynced": s.unsynced,
            "syncs_out": s.syncs_out,
            "sync_replies_out": s.sync_replies_out,
            "syncs_limited": s.syncs_limited,
            "synced": s.synced,
            "peers_refused": s.peers_refused,
            "peers_evicted": s.peers_evicted,
            "naks_out": s.naks_out,
            "naks_in": s.naks_in,
            "naks_suppressed": s.naks_suppressed,
            "retransmitted": s.retransmitted,
            "gone_out": s.gone_out,
            "acks_out": s.acks_out,
            "flow_waits": s.flow_waits,
            "retransmit_window_bytes": net.retransmit_window_bytes(),
            "retransmits_limited": s.retransmits_limited,
            "unheard_ignored": s.unheard_ignored,
            "evicted": s.evicted,
            "oversized": s.oversized,
            "incomplete": s.incomplete,
            "receive_memory_bytes": net.receive_memory(),
            "send_errors": self.send_errors.get(),
            "unknown_channel": self.unknown_channel.get(),
            "refused_by_acceptfromnet": self.refused.get(),
        });
        json!({
            "node": format!("{:016x}", net.config().node_id),
            "name": self.name,
            "group": self.group.to_string(),
            "unicast_peers": self.peers.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "sealed": net.config().key.is_some(),
            "rejected_by_source": net
                .rejected_sources()
                .map(|(a, n)| (a.to_string(), Value::from(n)))
                .collect::<serde_json::Map<String, Value>>(),
            "peers": peers,
            "totals": totals,
        })
    }
}
