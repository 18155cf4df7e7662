//! The SYNC handshake: how a node learns where another node's DATA stands
//! before it takes any of it, so that captured datagrams replayed into a
//! restarted (or newly joined) daemon deliver nothing and cause no NAK.
//!
//! This module owns the rules on both sides. A node heard for the first
//! time is *unsynced*: its DATA is dropped, no NAK or ACK is sent for it,
//! and SYNC requests naming it go out (at once, then after 100, 200, 400 …
//! ms up to [`SYNC_RETRY_MAX`]). The node named answers with a SYNC reply
//! echoing the requester's node id and the request's seq, and giving its
//! last DATA seq sent and its uptime. Node ids are random per start and
//! each request seq is used once, so a reply that echoes one of the last
//! requests is fresh: it was made after the request left. The requester
//! then starts that sender's window right after the announced seq, unless
//! the sender provably started after the requester itself (its uptime,
//! plus the time since the request was queued, plus a margin, is below the
//! requester's uptime): then nothing of it can predate the requester, and
//! it takes the sender's DATA from seq 1. Every limit on who may ask and
//! how often an answer leaves is here too: a request is padded to at
//! least the size of its reply, a requester gets at most one reply per
//! [`SYNC_REPLY_HOLDOFF`], and requests and replies each have a global
//! rate ([`SYNC_RATE`] per second).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use super::engine::Net;
use super::peer::Peer;
use super::send::{Pacer, Sender};
use super::wire::{SyncReply, SyncRequest};
use super::{NetEvent, NetStats};

/// Wait before the second SYNC request for a node; it doubles with each
/// further request…
pub const SYNC_RETRY: Duration = Duration::from_millis(100);
/// … up to this.
pub const SYNC_RETRY_MAX: Duration = Duration::from_secs(2);
/// SYNC requests sent and SYNC replies sent, each at most this many per
/// second over all peers (with a burst of as many).
pub const SYNC_RATE: u64 = 100;
/// A requester gets at most one reply per this long (at most 4 a second).
pub const SYNC_REPLY_HOLDOFF: Duration = Duration::from_millis(250);
/// Most requesters remembered for the holdoff; when full (and none is
/// older than the holdoff), further requests are not answered.
pub const MAX_SYNC_REQUESTERS: usize = 1024;
/// Added to a sender's uptime before comparing it with ours: uptimes are
/// whole milliseconds and two clocks never tick exactly together.
const SYNC_MARGIN_MS: u64 = 5;

/// The engine's SYNC state: its counters and rate limits.
#[derive(Debug)]
pub(crate) struct Syncs {
    /// Header seq of the last request, and of the last reply, sent.
    request_seq: u64,
    reply_seq: u64,
    requests: Pacer,
    replies: Pacer,
    /// When each recent requester was last answered.
    replied: FxHashMap<u64, Instant>,
}

impl Syncs {
    pub(crate) fn new(now: Instant) -> Self {
        Syncs {
            request_seq: 0,
            reply_seq: 0,
            requests: Pacer::new(SYNC_RATE, SYNC_RATE as usize, now),
            replies: Pacer::new(SYNC_RATE, SYNC_RATE as usize, now),
            replied: FxHashMap::default(),
        }
    }
}

/// Sends `peer`'s SYNC request if one is due and the global rate allows;
/// otherwise moves its due time to when the rate will allow.
pub(crate) fn ask(
    peer: &mut Peer,
    syncs: &mut Syncs,
    sender: &mut Sender,
    stats: &mut NetStats,
    now: Instant,
) {
    let Some(a) = peer.sync.as_mut() else {
        return;
    };
    if a.due > now {
        return;
    }
    if !syncs.requests.take(now, 1) {
        a.due = syncs
            .requests
            .ready_at(1)
            .unwrap_or(now)
            .max(now + Duration::from_millis(1));
        return;
    }
    syncs.request_seq += 1;
    a.sent(syncs.request_seq, now);
    let wait = SYNC_RETRY
        .saturating_mul(1 << (a.tries - 1).min(16))
        .min(SYNC_RETRY_MAX);
    a.due = now + wait;
    sender.sync_request(syncs.request_seq, peer.info.node);
    stats.syncs_out += 1;
}

impl Net {
    /// Sends the SYNC request of `node` now if it is due (a node just heard
    /// for the first time is asked at once).
    pub(super) fn ask_sync(&mut self, now: Instant, node: u64) {
        if let Some(p) = self.peers.get_mut(&node) {
            ask(p, &mut self.syncs, &mut self.sender, &mut self.stats, now);
        }
    }

    /// Answers a SYNC request from `requester` (header seq `seq`) if it
    /// names this node and the rate limits allow.
    pub(super) fn on_sync(&mut self, now: Instant, requester: u64, seq: u64, r: &SyncRequest) {
        if r.target != self.cfg.node_id {
            return;
        }
        let s = &mut self.syncs;
        if s.replied
            .get(&requester)
            .is_some_and(|&t| now < t + SYNC_REPLY_HOLDOFF)
        {
            self.stats.syncs_limited += 1;
            return;
        }
        if s.replied.len() >= MAX_SYNC_REQUESTERS && !s.replied.contains_key(&requester) {
            s.replied.retain(|_, t| now < *t + SYNC_REPLY_HOLDOFF);
            if s.replied.len() >= MAX_SYNC_REQUESTERS {
                self.stats.syncs_limited += 1;
                return;
            }
        }
        if !s.replies.take(now, 1) {
            self.stats.syncs_limited += 1;
            return;
        }
        s.replied.insert(requester, now);
        s.reply_seq += 1;
        let uptime = now.saturating_duration_since(self.started).as_millis() as u64;
        self.sender.sync_reply(s.reply_seq, requester, seq, uptime);
        self.stats.sync_replies_out += 1;
    }

    /// A SYNC reply from `node`: if it answers one of this node's recent
    /// requests for that node, the node's window starts (see the module
    /// docs) and it may come up.
    pub(super) fn on_sync_reply(&mut self, now: Instant, node: u64, r: &SyncReply) {
        if r.requester != self.cfg.node_id {
            return;
        }
        let Some(peer) = self.peers.get_mut(&node) else {
            return;
        };
        let Some(asked) = peer.sync.as_ref().and_then(|a| a.asked_at(r.request_seq)) else {
            return;
        };
        let ours = now.saturating_duration_since(self.started).as_millis() as u64;
        // The reply was made after the request was queued: the sender's
        // uptime now is at most its reported uptime plus that wait.
        let waited = now.saturating_duration_since(asked).as_millis() as u64 + 1;
        let after_us = r
            .uptime_ms
            .saturating_add(waited)
            .saturating_add(SYNC_MARGIN_MS)
            < ours;
        if after_us {
            peer.window.start_after(0);
            peer.window
                .learn(r.last_seq, now, &self.timing, &mut self.rng);
        } else {
            peer.window.start_after(r.last_seq);
        }
        peer.sync = None;
        peer.info.synced = true;
        self.stats.synced += 1;
        self.maybe_up(now, node);
    }

    /// Reports `node` up once it is both named (a heartbeat was heard) and
    /// synced. A freshly started node with the same name and address as a
    /// known one is probably that daemon restarted: the known entry is
    /// retired if it then misses its next heartbeat; if it is heard again,
    /// the two are distinct daemons sharing a name and an address, and
    /// both stay.
    pub(super) fn maybe_up(&mut self, now: Instant, node: u64) {
        let Some(peer) = self.peers.get_mut(&node) else {
            return;
        };
        if peer.info.up || !peer.synced() || peer.info.name.is_empty() {
            return;
        }
        peer.info.up = true;
        let (name, addr): (String, SocketAddr) = (peer.info.name.clone(), peer.info.addr);
        if u128::from(peer.info.reported.uptime_ms) < self.cfg.peer_timeout.as_millis() {
            let grace = self.cfg.heartbeat_interval + self.cfg.heartbeat_interval / 2;
            for p in self.peers.values_mut() {
                if p.info.node != node && p.info.up && p.info.name == name && p.info.addr == addr {
                    p.replaced_by = Some((node, now + grace));
                }
            }
        }
        self.events.push_back(NetEvent::PeerUp { node, name, addr });
    }
}
