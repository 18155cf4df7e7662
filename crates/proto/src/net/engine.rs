//! [`Net`], the state machine a driver feeds with datagrams and time.
//!
//! This module owns the glue and the rules between the parts: validation of
//! what `send` accepts, authentication of what arrives (before anything
//! else looks at it), the life of peers (created on their first valid
//! datagram, up once named by a heartbeat and synced, down on silence,
//! restart or eviction, remembered for a while after), the heartbeat, SYNC
//! and NAK timers, answering NAKs, the counters, the reports of dropped
//! datagrams, and the single next deadline a driver arms its timer on. What
//! is done with a peer's authenticated datagrams is in `input`, the SYNC
//! handshake in `sync`, admission to a full peer table in `evict`.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::frame::{truncate_str, MAX_EVENT_LEN};
use crate::names::MAX_CHANNEL_LEN;

use super::droplog::DropLog;
use super::peer::{Peer, PeerInfo, Tomb};
use super::recv::{Limits, NakTiming, Staged};
use super::rng::XorShift;
use super::seal::{Key, Keyring};
use super::send::{Pacer, SendOpts, Sender};
use super::sync::Syncs;
use super::wire::{self, Heartbeat, Kind, WireError, MAX_NAK_RANGES, MAX_NODE_NAME};
use super::{
    earliest, Dest, DownReason, DropReason, InMessage, Incoming, NetConfig, NetEvent, NetStats,
    OutMessage, SendError, Transmit, MAX_MTU, MAX_REJECT_SOURCES, MIN_MTU,
};

/// Removed peers remembered (their replay windows), oldest forgotten first.
const MAX_TOMBS: usize = 4096;

/// The network state machine of one daemon run. See the [module](super)
/// docs for how to drive it.
#[derive(Debug)]
pub struct Net {
    pub(super) cfg: NetConfig,
    pub(super) started: Instant,
    pub(super) next_heartbeat: Instant,
    pub(super) sender: Sender,
    pub(super) peers: FxHashMap<u64, Peer>,
    pub(super) tombs: FxHashMap<u64, Tomb>,
    tomb_order: VecDeque<u64>,
    /// Messages and gaps in delivery order (see [`Net::poll_incoming`]).
    pub(super) messages: VecDeque<Incoming>,
    pub(super) events: VecDeque<NetEvent>,
    pub(super) stats: NetStats,
    /// Records of the datagram being decoded, reused between datagrams.
    pub(super) staging: Vec<Staged>,
    pub(super) limits: Limits,
    pub(super) timing: NakTiming,
    pub(super) rng: XorShift,
    keys: Keyring,
    /// Opened (decrypted) non-DATA datagrams, reused.
    open_buf: Vec<u8>,
    rejected_from: BTreeMap<SocketAddr, u64>,
    pub(super) syncs: Syncs,
    droplog: DropLog,
    /// No eviction scan before this (the last one found nothing).
    pub(super) rescan_at: Option<Instant>,
    /// Receive memory of all peers together (see `budget`).
    pub(super) recv_mem: usize,
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
        cfg.nak_rounds = cfg.nak_rounds.max(1);
        cfg.node_name = truncate_str(&cfg.node_name, MAX_NODE_NAME).to_owned();
        let limits = Limits {
            max_total: (cfg.max_message + wire::MAX_MSG_HEAD) as u64,
            budget: cfg.reassembly_bytes,
        };
        let pacer = Pacer::new(cfg.pace_rate, cfg.pace_burst, now);
        let opts = SendOpts {
            retransmit_bytes: cfg.retransmit_bytes,
            // Receivers that NAK the same datagram within their backoff get
            // one copy; a later NAK means that copy was lost too.
            holdoff: cfg.reorder_timeout + cfg.nak_backoff,
            tail_probe: cfg.tail_probe,
            flow_timeout: cfg.flow_timeout,
            retransmit_rate: cfg.retransmit_rate,
            retransmit_burst: cfg.retransmit_burst,
        };
        let timing = NakTiming {
            first: cfg.reorder_timeout,
            backoff: cfg.nak_backoff,
            interval: cfg.nak_interval,
            rounds: cfg.nak_rounds,
        };
        Net {
            sender: Sender::new(cfg.node_id, cfg.mtu, cfg.flush_delay, pacer, opts),
            keys: Keyring::new(cfg.key.as_ref()),
            rng: XorShift::new(cfg.seed),
            cfg,
            started: now,
            next_heartbeat: now,
            peers: FxHashMap::default(),
            tombs: FxHashMap::default(),
            tomb_order: VecDeque::new(),
            messages: VecDeque::new(),
            events: VecDeque::new(),
            stats: NetStats::default(),
            staging: Vec::new(),
            limits,
            timing,
            open_buf: Vec::new(),
            rejected_from: BTreeMap::new(),
            syncs: Syncs::new(now),
            droplog: DropLog::default(),
            rescan_at: None,
            recv_mem: 0,
        }
    }

    /// The configuration in force (after clamping).
    pub fn config(&self) -> &NetConfig {
        &self.cfg
    }

    /// Changes the key (a config reload): datagrams are sealed with `key`
    /// from now on (plain if `None`), and the previous key (or plain
    /// datagrams) is still accepted for `key_grace`. Setting the key in
    /// force again changes nothing.
    pub fn set_key(&mut self, now: Instant, key: Option<Key>) {
        self.keys.rotate(key.as_ref(), now + self.cfg.key_grace);
        self.cfg.key = key;
    }

    /// Changes the retransmit window's size (a config reload).
    pub fn set_retransmit_bytes(&mut self, bytes: usize) {
        self.cfg.retransmit_bytes = bytes;
        self.sender.set_retransmit_bytes(bytes);
    }

    /// Bytes of sent datagrams currently kept for retransmission.
    pub fn retransmit_window_bytes(&self) -> usize {
        self.sender.retransmit_bytes()
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
    /// A datagram that fails authentication changes nothing but counters:
    /// no peer is created or refreshed by it.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.stats.bytes_in += data.len() as u64;
        let h = match wire::decode_header(data) {
            Ok((h, _)) => h,
            Err(e) => return self.refuse_at(now, None, from, e),
        };
        if h.node == self.cfg.node_id {
            self.stats.own_ignored += 1;
            return;
        }
        let sealed = h.flags & wire::flags::SEALED != 0;
        if !sealed && !self.keys.accepts_plain(now) {
            return self.reject(now, from, WireError::NotSealed);
        }
        if h.kind == Kind::Data {
            let buf = if sealed {
                // Opened into its own buffer: the messages share it.
                let mut v = Vec::with_capacity(data.len());
                if let Err(e) = self.keys.open(now, data, &mut v) {
                    return self.reject(now, from, e);
                }
                bytes::Bytes::from(v)
            } else {
                bytes::Bytes::copy_from_slice(data)
            };
            if !self.admit(now, h.node, from) {
                return;
            }
            self.on_data(now, from, &h, buf);
            return self.account(now, h.node);
        }
        let mut buf = std::mem::take(&mut self.open_buf);
        let plain: &[u8] = if sealed {
            if let Err(e) = self.keys.open(now, data, &mut buf) {
                self.open_buf = buf;
                return self.reject(now, from, e);
            }
            &buf
        } else {
            data
        };
        if self.admit(now, h.node, from) {
            self.on_control(now, from, &h, plain);
        }
        self.open_buf = buf;
        self.account(now, h.node);
    }

    /// Counts a datagram that failed authentication, by source address.
    fn reject(&mut self, now: Instant, from: SocketAddr, e: WireError) {
        self.stats.rejected += 1;
        let n = self.rejected_from.len();
        match self.rejected_from.get_mut(&from) {
            Some(c) => *c += 1,
            None if n < MAX_REJECT_SOURCES => {
                self.rejected_from.insert(from, 1);
            }
            None => {}
        }
        self.note_drop(now, from, None, DropReason::from_wire(&e));
        self.stats.last_error = Some((from, e));
    }

    /// Passes a dropped datagram to the report table; queues the report
    /// if one is due.
    pub(super) fn note_drop(
        &mut self,
        now: Instant,
        from: SocketAddr,
        node: Option<u64>,
        reason: DropReason,
    ) {
        if let Some(e) = self.droplog.note(now, from, node, reason) {
            self.events.push_back(e);
        }
    }

    /// [`Net::refuse`], reported for the logs too.
    pub(super) fn refuse_at(
        &mut self,
        now: Instant,
        node: Option<u64>,
        from: SocketAddr,
        e: WireError,
    ) {
        self.note_drop(now, from, node, DropReason::from_wire(&e));
        self.refuse(node, from, e);
    }

    /// Datagrams that failed authentication, by source address (at most
    /// [`MAX_REJECT_SOURCES`] addresses; the totals count all).
    pub fn rejected_sources(&self) -> impl Iterator<Item = (SocketAddr, u64)> + '_ {
        self.rejected_from.iter().map(|(a, n)| (*a, *n))
    }

    /// Counts a dropped datagram against the peer it came from: by node id
    /// when the header was readable, else by source address.
    pub(super) fn refuse(&mut self, node: Option<u64>, from: SocketAddr, e: WireError) {
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

    /// Queues a heartbeat.
    fn heartbeat(&mut self, now: Instant) {
        let blocked = self.sender.blocked().is_some();
        let hb = Heartbeat {
            name: &self.cfg.node_name,
            // Held back by flow control, it leaves ahead of the DATA
            // waiting, so it announces only what was sent.
            last_seq: if blocked {
                self.sender.last_sent()
            } else {
                self.sender.data_seq
            },
            uptime_ms: now.saturating_duration_since(self.started).as_millis() as u64,
            messages_out: self.stats.messages_out,
            datagrams_out: self.stats.datagrams_out,
            bytes_out: self.stats.bytes_out,
        };
        if blocked {
            self.sender.heartbeat_now(&hb);
        } else {
            self.sender.heartbeat(&hb);
        }
        self.sender.probe_done();
        self.stats.heartbeats_out += 1;
    }

    /// Fires what is due at `now`: heartbeat (regular, or the probe after
    /// a burst), batch flush, NAK rounds, gaps given up on, reassembly
    /// expiry and peer timeouts. Calling it early is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Close a due batch first, so the heartbeat follows it and counts it.
        self.sender.flush_due(now);
        if now >= self.next_heartbeat {
            self.heartbeat(now);
            self.next_heartbeat = now + self.cfg.heartbeat_interval;
        } else if self.sender.probe_at().is_some_and(|t| t <= now) {
            self.heartbeat(now);
        }
        let mut gone = Vec::new();
        let mut naks = Vec::new();
        for peer in self.peers.values_mut() {
            super::sync::ask(
                peer,
                &mut self.syncs,
                &mut self.sender,
                &mut self.stats,
                now,
            );
            if peer.ack_at.is_some_and(|t| t <= now) {
                super::input::ack(&mut self.sender, peer);
            }
            let ranges = peer
                .window
                .due_naks(now, &self.timing, &mut self.rng, MAX_NAK_RANGES);
            if !ranges.is_empty() {
                peer.info.naks_out += 1;
                naks.push((peer.info.node, ranges));
            }
            let mut sink = super::input::Sink::new(
                &mut self.messages,
                &mut self.events,
                &mut self.stats,
                self.limits,
                self.cfg.max_message,
                now,
            );
            sink.drain(peer);
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
        for (node, ranges) in naks {
            self.sender.nak(node, &ranges);
        }
        for (node, reason) in gone {
            self.remove_peer(now, node, reason);
        }
        self.recount();
    }

    /// Counts a flow-control wait when DATA starts being held back.
    fn note_blocked(&mut self, was: bool) {
        if !was && self.sender.blocked().is_some() {
            self.stats.flow_waits += 1;
        }
    }

    /// Removes a peer, delivering what it had held (the rest reported as
    /// gaps), reporting it down and remembering its windows.
    pub(super) fn remove_peer(&mut self, now: Instant, node: u64, reason: DownReason) {
        let Some(mut peer) = self.peers.remove(&node) else {
            return;
        };
        self.sender.forget(node);
        self.unaccount(peer.mem);
        let mut sink = super::input::Sink::new(
            &mut self.messages,
            &mut self.events,
            &mut self.stats,
            self.limits,
            self.cfg.max_message,
            now,
        );
        peer.window.give_up_all();
        sink.drain(&mut peer);
        if peer.reasm.abandon() {
            sink.incomplete(&mut peer);
        }
        // A peer never synced has no position worth remembering (and a
        // flood of fake node ids must not push real peers' tombs out).
        // (It was never up either: up needs synced.)
        if !peer.synced() {
            return;
        }
        if self.tomb_order.len() >= MAX_TOMBS {
            if let Some(old) = self.tomb_order.pop_front() {
                self.tombs.remove(&old);
            }
        }
        self.tombs.insert(node, peer.tomb());
        self.tomb_order.push_back(node);
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
        t = earliest(t, self.sender.probe_at());
        t = earliest(t, self.sender.flow_at());
        for p in self.peers.values() {
            t = earliest(t, p.ack_at);
            t = earliest(t, p.sync.as_ref().map(|a| a.due));
            t = earliest(t, Some(p.info.last_seen + self.cfg.peer_timeout));
            t = earliest(t, p.replaced_by.map(|(_, t)| t));
            t = earliest(t, p.window.nak_deadline());
            t = earliest(t, p.reasm.deadline(self.cfg.reassembly_timeout));
        }
        t
    }

    /// Writes the next datagram to send into `buf` (cleared first), sealed
    /// when a key is set. Closes the open batch if its delay has passed or
    /// is zero. `None`: nothing to send now (pacing may hold datagrams
    /// until `poll_timeout`).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        buf.clear();
        self.sender.flush_due(now);
        let was = self.sender.blocked().is_some();
        let popped = self.sender.pop(now, buf, self.keys.sealer());
        self.note_blocked(was);
        let p = popped?;
        self.stats.datagrams_out += 1;
        self.stats.bytes_out += p.len as u64;
        match p.kind {
            Kind::Data if p.again => self.stats.retransmitted += 1,
            Kind::Nak => self.stats.naks_out += 1,
            Kind::Gone => self.stats.gone_out += 1,
            Kind::Ack => self.stats.acks_out += 1,
            _ => {}
        }
        Some(Transmit { dest: Dest::All })
    }

    /// The next received message, in order per sender. Gaps are skipped
    /// (they are reported by [`Net::poll_event`]); a driver that must
    /// place them among the messages uses [`Net::poll_incoming`] instead.
    pub fn poll_message(&mut self) -> Option<InMessage> {
        loop {
            match self.messages.pop_front()? {
                Incoming::Message(m) => return Some(m),
                Incoming::Gap { .. } => {}
            }
        }
    }

    /// The next received message or gap: each sender's messages in order,
    /// with each of its gaps exactly between the last message before the
    /// hole and the first after it.
    pub fn poll_incoming(&mut self) -> Option<Incoming> {
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

    /// Datagrams waiting to be sent (the open batch is not counted). A
    /// driver that cannot send stops calling `send` when this grows, so
    /// back-pressure reaches the local clients.
    pub fn pending_transmits(&self) -> usize {
        self.sender.pending()
    }

    /// Messages decoded and not yet taken by `poll_message`.
    pub fn pending_messages(&self) -> usize {
        self.messages.len()
    }
}
