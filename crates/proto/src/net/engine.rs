//! [`Net`], the state machine a driver feeds with datagrams and time.
//!
//! This module owns the glue and the rules between the parts: validation of
//! what `send` accepts, the life of peers (created on their first valid
//! datagram, up on their first heartbeat, down on silence or restart), the
//! heartbeat timer, applying decoded records in order, the counters, and the
//! single next deadline a driver arms its timer on.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustc_hash::FxHashMap;

use crate::frame::{truncate_str, MAX_EVENT_LEN};
use crate::names::MAX_CHANNEL_LEN;

use super::peer::{Peer, PeerInfo, Reported};
use super::recv::{self, Admit, FragOutcome, Limits, Staged};
use super::send::{Pacer, Sender};
use super::wire::{self, Header, Heartbeat, Kind, WireError, HEADER_LEN, MAX_NODE_NAME};
use super::{
    earliest, Dest, DownReason, InMessage, NetConfig, NetEvent, NetStats, OutMessage, SendError,
    Transmit, MAX_HELD_DATAGRAMS, MAX_MTU, MAX_PEERS, MIN_MTU,
};

/// The network state machine of one daemon run. See the [module](super)
/// docs for how to drive it.
#[derive(Debug)]
pub struct Net {
    cfg: NetConfig,
    started: Instant,
    next_heartbeat: Instant,
    sender: Sender,
    peers: FxHashMap<u64, Peer>,
    messages: VecDeque<InMessage>,
    events: VecDeque<NetEvent>,
    stats: NetStats,
    /// Records of the datagram being decoded, reused between datagrams.
    staging: Vec<Staged>,
    limits: Limits,
}

/// Where decoded messages and counters go while a peer is borrowed.
struct Sink<'a> {
    messages: &'a mut VecDeque<InMessage>,
    stats: &'a mut NetStats,
    limits: Limits,
    max_message: usize,
    now: Instant,
}

impl Net {
    /// A state machine for `cfg`, started at `now`. Out-of-range values are
    /// clamped (see [`NetConfig::check`]). The first heartbeat is due at once.
    pub fn new(mut cfg: NetConfig, now: Instant) -> Self {
        cfg.mtu = cfg.mtu.clamp(MIN_MTU, MAX_MTU);
        cfg.heartbeat_interval = cfg.heartbeat_interval.max(Duration::from_millis(1));
        cfg.peer_timeout = cfg
            .peer_timeout
            .max(cfg.heartbeat_interval + Duration::from_millis(1));
        cfg.node_name = truncate_str(&cfg.node_name, MAX_NODE_NAME).to_owned();
        let limits = Limits {
            max_total: (cfg.max_message + wire::MAX_MSG_HEAD) as u64,
            budget: cfg.reassembly_bytes,
        };
        let pacer = Pacer::new(cfg.pace_rate, cfg.pace_burst, now);
        Net {
            sender: Sender::new(cfg.node_id, cfg.mtu, cfg.flush_delay, pacer),
            cfg,
            started: now,
            next_heartbeat: now,
            peers: FxHashMap::default(),
            messages: VecDeque::new(),
            events: VecDeque::new(),
            stats: NetStats::default(),
            staging: Vec::new(),
            limits,
        }
    }

    /// The configuration in force (after clamping).
    pub fn config(&self) -> &NetConfig {
        &self.cfg
    }

    /// Queues a message for the network: into the open batch, or into
    /// fragments if it does not fit one datagram.
    pub fn send(&mut self, now: Instant, m: &OutMessage<'_>) -> Result<(), SendError> {
        for (what, len, max) in [
            ("channel", m.channel.len(), MAX_CHANNEL_LEN),
            ("event", m.event.len(), MAX_EVENT_LEN),
        ] {
            if len == 0 || len > max {
                return Err(SendError::BadName { what, len, max });
            }
        }
        if m.payload.len() > self.cfg.max_message {
            return Err(SendError::TooLarge {
                len: m.payload.len(),
                max: self.cfg.max_message,
            });
        }
        let fragmented = self.sender.push(now, m);
        self.stats.messages_out += 1;
        self.stats.fragmented_out += fragmented as u64;
        Ok(())
    }

    /// Takes in one received datagram. Never fails: what is not valid is
    /// dropped and counted (see [`NetStats`] and [`PeerInfo::malformed`]).
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.stats.bytes_in += data.len() as u64;
        let (h, body) = match wire::decode_header(data) {
            Ok(v) => v,
            Err(e) => return self.refuse(None, from, e),
        };
        if h.node == self.cfg.node_id {
            self.stats.own_ignored += 1;
            return;
        }
        if !self.peers.contains_key(&h.node) && self.peers.len() >= MAX_PEERS {
            self.stats.peers_refused += 1;
            return;
        }
        match h.kind {
            Kind::Heartbeat => match wire::decode_heartbeat(body) {
                Ok(hb) => self.on_heartbeat(now, from, &h, &hb, data.len()),
                Err(e) => self.refuse(Some(h.node), from, e),
            },
            Kind::Data => self.on_data(now, from, &h, data),
        }
    }

    fn on_data(&mut self, now: Instant, from: SocketAddr, h: &Header, data: &[u8]) {
        let admit = self
            .peers
            .get(&h.node)
            .map_or(Admit::Now, |p| p.window.admit(h.seq));
        if admit != Admit::Duplicate {
            // One copy per datagram; every message shares it.
            let buf = Bytes::copy_from_slice(data);
            if let Err(e) = recv::stage(h.node, &buf, &buf[HEADER_LEN..], &mut self.staging) {
                return self.refuse(Some(h.node), from, e);
            }
        }
        self.stats.datagrams_in += 1;
        let peer = self
            .peers
            .entry(h.node)
            .or_insert_with(|| Peer::new(h.node, from, now));
        seen(peer, now, from, data.len());
        let mut sink = Sink {
            messages: &mut self.messages,
            stats: &mut self.stats,
            limits: self.limits,
            max_message: self.cfg.max_message,
            now,
        };
        match admit {
            Admit::Duplicate => {
                peer.info.duplicates += 1;
                sink.stats.duplicates += 1;
            }
            Admit::Now => {
                peer.window.begin(h.seq);
                sink.apply(peer, self.staging.drain(..));
                peer.window.advance();
                sink.drain_held(peer);
            }
            Admit::Hold => {
                peer.window
                    .hold(h.seq, now, std::mem::take(&mut self.staging));
                if peer.window.held() > MAX_HELD_DATAGRAMS {
                    sink.skip_gap(peer);
                }
            }
        }
        peer.refresh();
    }

    fn on_heartbeat(
        &mut self,
        now: Instant,
        from: SocketAddr,
        h: &Header,
        hb: &Heartbeat<'_>,
        len: usize,
    ) {
        self.stats.datagrams_in += 1;
        let peer = self
            .peers
            .entry(h.node)
            .or_insert_with(|| Peer::new(h.node, from, now));
        seen(peer, now, from, len);
        peer.window.start_after(hb.last_seq);
        peer.info.announced_seq = peer.info.announced_seq.max(hb.last_seq);
        peer.info.reported = Reported {
            uptime_ms: hb.uptime_ms,
            messages_out: hb.messages_out,
            datagrams_out: hb.datagrams_out,
            bytes_out: hb.bytes_out,
        };
        if peer.info.up {
            if peer.info.name != hb.name {
                peer.info.name = hb.name.to_owned();
            }
            return;
        }
        peer.info.up = true;
        peer.info.name = hb.name.to_owned();
        // A freshly started node with the same name and address is probably
        // the old run restarted. The old entry is retired if it then misses
        // its next heartbeat; if it is heard again, the two are distinct
        // daemons sharing a name and an address, and both stay.
        if u128::from(hb.uptime_ms) < self.cfg.peer_timeout.as_millis() {
            let grace = self.cfg.heartbeat_interval + self.cfg.heartbeat_interval / 2;
            for p in self.peers.values_mut() {
                if p.info.node != h.node
                    && p.info.up
                    && p.info.name == hb.name
                    && p.info.addr == from
                {
                    p.replaced_by = Some((h.node, now + grace));
                }
            }
        }
        self.events.push_back(NetEvent::PeerUp {
            node: h.node,
            name: hb.name.to_owned(),
            addr: from,
        });
    }

    /// Counts a dropped datagram against the peer it came from: by node id
    /// when the header was readable, else by source address.
    fn refuse(&mut self, node: Option<u64>, from: SocketAddr, e: WireError) {
        if matches!(e, WireError::BadMagic | WireError::BadVersion(_)) {
            self.stats.foreign += 1;
        } else {
            self.stats.malformed += 1;
        }
        let peer = match node.filter(|n| self.peers.contains_key(n)) {
            Some(n) => self.peers.get_mut(&n),
            None => self
                .peers
                .values_mut()
                .filter(|p| p.info.addr == from)
                .max_by_key(|p| p.info.last_seen),
        };
        if let Some(p) = peer {
            p.info.malformed += 1;
        }
        self.stats.last_error = Some((from, e));
    }

    /// Fires what is due at `now`: heartbeat, batch flush, gap give-ups,
    /// reassembly expiry and peer timeouts. Calling it early is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Close a due batch first, so the heartbeat follows it and counts it.
        self.sender.flush_due(now);
        if now >= self.next_heartbeat {
            let hb = Heartbeat {
                name: &self.cfg.node_name,
                last_seq: self.sender.data_seq,
                uptime_ms: now.saturating_duration_since(self.started).as_millis() as u64,
                messages_out: self.stats.messages_out,
                datagrams_out: self.stats.datagrams_out,
                bytes_out: self.stats.bytes_out,
            };
            self.sender.heartbeat(&hb);
            self.stats.heartbeats_out += 1;
            self.next_heartbeat = now + self.cfg.heartbeat_interval;
        }
        let mut sink = Sink {
            messages: &mut self.messages,
            stats: &mut self.stats,
            limits: self.limits,
            max_message: self.cfg.max_message,
            now,
        };
        let mut gone = Vec::new();
        for peer in self.peers.values_mut() {
            while peer
                .window
                .deadline(self.cfg.reorder_timeout)
                .is_some_and(|t| t <= now)
            {
                sink.skip_gap(peer);
            }
            if peer
                .reasm
                .deadline(self.cfg.reassembly_timeout)
                .is_some_and(|t| t <= now)
            {
                peer.reasm.abandon();
                sink.incomplete(peer);
            }
            if let Some((new_node, _)) = peer.replaced_by.filter(|&(_, t)| t <= now) {
                gone.push((peer.info.node, DownReason::Restarted { new_node }));
            } else if peer.info.last_seen + self.cfg.peer_timeout <= now {
                gone.push((peer.info.node, DownReason::Timeout));
            }
            peer.refresh();
        }
        for (node, reason) in gone {
            self.remove_peer(now, node, reason);
        }
    }

    /// Removes a peer, delivering what it had held and reporting it down.
    fn remove_peer(&mut self, now: Instant, node: u64, reason: DownReason) {
        let Some(mut peer) = self.peers.remove(&node) else {
            return;
        };
        let mut sink = Sink {
            messages: &mut self.messages,
            stats: &mut self.stats,
            limits: self.limits,
            max_message: self.cfg.max_message,
            now,
        };
        while peer.window.held() > 0 {
            sink.skip_gap(&mut peer);
        }
        if peer.reasm.abandon() {
            sink.incomplete(&mut peer);
        }
        if peer.info.up {
            self.events.push_back(NetEvent::PeerDown {
                node,
                name: peer.info.name,
                reason,
            });
        }
    }

    /// The next instant at which [`Net::handle_timeout`] has work (always
    /// some: the next heartbeat). May be in the past.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = Some(self.next_heartbeat);
        t = earliest(t, self.sender.flush_at());
        t = earliest(t, self.sender.pace_at());
        for p in self.peers.values() {
            t = earliest(t, Some(p.info.last_seen + self.cfg.peer_timeout));
            t = earliest(t, p.replaced_by.map(|(_, t)| t));
            t = earliest(t, p.window.deadline(self.cfg.reorder_timeout));
            t = earliest(t, p.reasm.deadline(self.cfg.reassembly_timeout));
        }
        t
    }

    /// Writes the next datagram to send into `buf` (cleared first; its
    /// allocation may be swapped for one of ours, so keep reusing it).
    /// Closes the open batch if its delay has passed or is zero. `None`:
    /// nothing to send now (pacing may hold datagrams until `poll_timeout`).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        buf.clear();
        self.sender.flush_due(now);
        let len = self.sender.pop(now, buf)?;
        self.stats.datagrams_out += 1;
        self.stats.bytes_out += len as u64;
        Some(Transmit { dest: Dest::All })
    }

    /// The next received message, in order per sender.
    pub fn poll_message(&mut self) -> Option<InMessage> {
        self.messages.pop_front()
    }

    /// The next peer event.
    pub fn poll_event(&mut self) -> Option<NetEvent> {
        self.events.pop_front()
    }

    /// The peer table, in no particular order.
    pub fn peers(&self) -> impl Iterator<Item = &PeerInfo> {
        self.peers.values().map(|p| &p.info)
    }

    /// This node's totals.
    pub fn stats(&self) -> &NetStats {
        &self.stats
    }

    /// Datagrams closed and waiting to be sent (the open batch is not
    /// counted). A driver that cannot send stops calling `send` when this
    /// grows, so back-pressure reaches the local clients.
    pub fn pending_transmits(&self) -> usize {
        self.sender.pending()
    }

    /// Messages decoded and not yet taken by `poll_message`.
    pub fn pending_messages(&self) -> usize {
        self.messages.len()
    }
}

/// Updates a peer's row for a valid datagram of `len` bytes.
fn seen(peer: &mut Peer, now: Instant, from: SocketAddr, len: usize) {
    peer.replaced_by = None;
    peer.info.last_seen = now;
    peer.info.addr = from;
    peer.info.datagrams_in += 1;
    peer.info.bytes_in += len as u64;
}

impl Sink<'_> {
    /// Applies in-order records of `peer`.
    fn apply(&mut self, peer: &mut Peer, items: impl Iterator<Item = Staged>) {
        for item in items {
            match item {
                Staged::Msg(m) => {
                    if peer.reasm.abandon() {
                        self.incomplete(peer);
                    }
                    self.deliver(peer, m);
                }
                Staged::Frag(piece) => {
                    if peer.reasm.partial_id().is_some_and(|id| id != piece.msg_id) {
                        peer.reasm.abandon();
                        self.incomplete(peer);
                    }
                    match peer.reasm.push(piece, self.now, self.limits) {
                        FragOutcome::Stored | FragOutcome::Duplicate | FragOutcome::Refused => {}
                        FragOutcome::Complete(body) => match wire::decode_message(&body) {
                            Ok(m) => {
                                let m = recv::to_message(peer.info.node, &body, &m);
                                self.deliver(peer, m);
                            }
                            Err(e) => self.bad_message(peer, e),
                        },
                        FragOutcome::Oversized => {
                            peer.info.oversized += 1;
                            self.stats.oversized += 1;
                        }
                        FragOutcome::Inconsistent => self
                            .bad_message(peer, WireError::BadFragment("fragments do not add up")),
                    }
                }
            }
        }
    }

    fn deliver(&mut self, peer: &mut Peer, m: InMessage) {
        if m.payload.len() > self.max_message {
            peer.info.oversized += 1;
            self.stats.oversized += 1;
            return;
        }
        peer.info.messages_in += 1;
        peer.info.payload_bytes_in += m.payload.len() as u64;
        self.stats.messages_in += 1;
        self.messages.push_back(m);
    }

    fn incomplete(&mut self, peer: &mut Peer) {
        peer.info.incomplete += 1;
        self.stats.incomplete += 1;
    }

    fn bad_message(&mut self, peer: &mut Peer, e: WireError) {
        peer.info.malformed += 1;
        self.stats.malformed += 1;
        self.stats.last_error = Some((peer.info.addr, e));
    }

    /// Applies held datagrams that have become due.
    fn drain_held(&mut self, peer: &mut Peer) {
        while let Some(items) = peer.window.take_next() {
            self.apply(peer, items.into_iter());
        }
    }

    /// Gives up on the oldest gap and applies what follows it.
    fn skip_gap(&mut self, peer: &mut Peer) {
        let lost = peer.window.skip_gap();
        peer.info.lost += lost;
        self.stats.lost += lost;
        self.drain_held(peer);
    }
}
