//! What the engine does with an authenticated datagram from a peer.
//!
//! This module owns the per-kind rules on the receive side: DATA goes
//! through the peer's window (applied in order, held, or dropped as a
//! duplicate, gaps learned and NAKed), or is dropped while the peer is not
//! synced (see `sync`); a HEARTBEAT names the peer and announces its last
//! DATA sequence number (tail loss); SYNC requests and replies go to
//! `sync`; a NAK is answered if it asks this node, and otherwise suppresses this
//! node's own NAK for the same datagrams; a GONE gives up on what the
//! sender no longer has. It also owns [`Sink`], which applies records in
//! order, reassembles, and reports gaps.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use rustc_hash::FxHashMap;

use super::engine::Net;
use super::peer::{replay_slot, Peer, Reported, Tomb};
use super::recv::{self, Admit, FragOutcome, Limits, Staged, Step};
use super::wire::{self, Header, Heartbeat, Kind, WireError, HEADER_LEN};
use super::{DropReason, InMessage, Incoming, NetEvent, NetStats};

impl Net {
    /// A DATA datagram; `buf` is the plain datagram (header and records).
    pub(super) fn on_data(&mut self, now: Instant, from: SocketAddr, h: &Header, buf: Bytes) {
        let dup = self
            .peers
            .get(&h.node)
            .is_some_and(|p| p.synced() && p.window.admit(h.seq) == Admit::Duplicate);
        if !dup {
            if let Err(e) = recv::stage(h.node, &buf, &buf[HEADER_LEN..], &mut self.staging) {
                return self.refuse_at(now, Some(h.node), from, e);
            }
        }
        self.stats.datagrams_in += 1;
        let peer = entry(&mut self.peers, &mut self.tombs, h.node, from, now);
        seen(peer, now, from, buf.len());
        if !peer.synced() {
            // Where this node's stream stands is not known yet: this may be
            // a replay of its history, so nothing of it is taken, nothing
            // asked (the SYNC reply says where to start).
            self.staging.clear();
            peer.info.unsynced += 1;
            self.stats.unsynced += 1;
            return self.ask_sync(now, h.node);
        }
        let mut sink = Sink::new(
            &mut self.messages,
            &mut self.events,
            &mut self.stats,
            self.limits,
            self.cfg.max_message,
            now,
        );
        match peer.window.admit(h.seq) {
            Admit::Duplicate => {
                self.staging.clear();
                peer.info.duplicates += 1;
                sink.stats.duplicates += 1;
            }
            Admit::Now => {
                peer.window.begin(h.seq);
                sink.apply(peer, self.staging.drain(..));
                peer.window.advance(h.seq);
                sink.drain(peer);
            }
            Admit::Hold => {
                let items = std::mem::take(&mut self.staging);
                peer.window
                    .hold(h.seq, items, now, &self.timing, &mut self.rng);
                if peer.window.held() > self.cfg.max_held {
                    peer.window.give_up_oldest_gap();
                }
                sink.drain(peer);
            }
        }
        schedule_ack(&mut self.sender, peer, now);
        peer.refresh();
    }

    /// A HEARTBEAT, NAK, GONE, ACK or SYNC datagram; `data` is the plain
    /// datagram.
    pub(super) fn on_control(&mut self, now: Instant, from: SocketAddr, h: &Header, data: &[u8]) {
        let body = &data[HEADER_LEN..];
        let decoded = match h.kind {
            Kind::Heartbeat => wire::decode_heartbeat(body).map(Control::Heartbeat),
            Kind::Nak => wire::decode_nak(body).map(Control::Nak),
            Kind::Gone => wire::decode_gone(body).map(Control::Gone),
            Kind::Ack => wire::decode_ack(body).map(Control::Ack),
            Kind::Sync => wire::decode_sync(body).map(Control::Sync),
            Kind::SyncReply => wire::decode_sync_reply(body).map(Control::SyncReply),
            Kind::Data => unreachable!("DATA is handled by on_data"),
        };
        let c = match decoded {
            Ok(c) => c,
            Err(e) => return self.refuse_at(now, Some(h.node), from, e),
        };
        let peer = entry(&mut self.peers, &mut self.tombs, h.node, from, now);
        let window = &mut peer.replay[replay_slot(h.kind)];
        let recent = window.recent(h.seq);
        if !window.check(h.seq) {
            // Seen before: a replay, or the network duplicated it. A recent
            // repeat from the peer's own address is what a duplicating
            // network (or multicast and unicast together) does: counted,
            // not reported.
            peer.info.replayed += 1;
            self.stats.replayed += 1;
            if !recent || from != peer.info.addr {
                self.note_drop(now, from, Some(h.node), DropReason::Replayed);
            }
            return;
        }
        self.stats.datagrams_in += 1;
        seen(peer, now, from, data.len());
        let new = peer.sync.as_ref().is_some_and(|a| a.tries == 0);
        // Without a key anyone can send a NAK or an ACK under any node id:
        // only nodes that announced themselves count (see `budget` and
        // the sender's limits for what they can still cause).
        let heard = peer.info.up;
        if !heard && matches!(c, Control::Nak(_) | Control::Ack(_)) {
            self.stats.unheard_ignored += 1;
            if new {
                self.ask_sync(now, h.node);
            }
            return;
        }
        match c {
            Control::Heartbeat(hb) => self.on_heartbeat(now, h, &hb),
            Control::Sync(r) => self.on_sync(now, h.node, h.seq, &r),
            Control::SyncReply(r) => self.on_sync_reply(now, h.node, &r),
            Control::Nak(nak) => {
                // Answered only for a requester known to be live in this
                // run (synced): a NAK of a gone node replayed triggers no
                // retransmission.
                let live = self.peers.get(&h.node).is_some_and(|p| p.synced());
                if nak.target == self.cfg.node_id && live {
                    self.stats.naks_in += 1;
                    let (_, limited) = self.sender.on_nak(now, h.node, nak.ranges());
                    self.stats.retransmits_limited += limited;
                } else if let Some(t) = self.peers.get_mut(&nak.target) {
                    // Another receiver asked for what we may miss too.
                    self.stats.naks_suppressed +=
                        t.window
                            .suppress(now, nak.ranges(), &self.timing, &mut self.rng);
                }
            }
            Control::Ack(a) => {
                if a.target == self.cfg.node_id {
                    self.sender.on_ack(h.node, a.next, now);
                }
            }
            Control::Gone(g) => {
                let peer = self.peers.get_mut(&h.node).expect("created above");
                // Only what was known missing before this announcement is
                // given up: later datagrams may still be on their way.
                peer.window.give_up_known_below(g.first_kept);
                peer.window
                    .learn(g.last_seq, now, &self.timing, &mut self.rng);
                let mut sink = Sink::new(
                    &mut self.messages,
                    &mut self.events,
                    &mut self.stats,
                    self.limits,
                    self.cfg.max_message,
                    now,
                );
                sink.drain(peer);
                peer.refresh();
            }
        }
        if new {
            self.ask_sync(now, h.node);
        }
    }

    fn on_heartbeat(&mut self, now: Instant, h: &Header, hb: &Heartbeat<'_>) {
        let peer = self.peers.get_mut(&h.node).expect("created by on_control");
        // Tail loss: the heartbeat says which DATA datagrams were sent (a
        // window not started yet, before the SYNC reply, learns nothing).
        peer.window
            .learn(hb.last_seq, now, &self.timing, &mut self.rng);
        peer.info.announced_seq = peer.info.announced_seq.max(hb.last_seq);
        // Once DATA flowed, every heartbeat is answered with where this
        // node is, so a sender held back by flow control (which then sends
        // heartbeats often) hears it even if an ACK was lost.
        if peer.acked > 0 || peer.ack_at.is_some() {
            ack(&mut self.sender, peer);
        }
        peer.info.reported = Reported {
            uptime_ms: hb.uptime_ms,
            messages_out: hb.messages_out,
            datagrams_out: hb.datagrams_out,
            bytes_out: hb.bytes_out,
        };
        if peer.info.name != hb.name {
            peer.info.name = hb.name.to_owned();
        }
        self.maybe_up(now, h.node);
        // A node counts the NAKs and ACKs only of nodes it has heard a
        // heartbeat from. One started after our last heartbeat hears ours
        // soon, not a heartbeat interval later (at most a tenth of one
        // after the last).
        let interval = self.cfg.heartbeat_interval;
        let last = self
            .next_heartbeat
            .checked_sub(interval)
            .unwrap_or(self.next_heartbeat);
        let since = now.saturating_duration_since(last);
        if u128::from(hb.uptime_ms) < since.as_millis() {
            let soon = now.max(last + interval / 10);
            self.next_heartbeat = self.next_heartbeat.min(soon);
        }
    }
}

/// The peer `node`, created (or revived from its tomb) if new.
fn entry<'a>(
    peers: &'a mut FxHashMap<u64, Peer>,
    tombs: &mut FxHashMap<u64, Tomb>,
    node: u64,
    from: SocketAddr,
    now: Instant,
) -> &'a mut Peer {
    peers
        .entry(node)
        .or_insert_with(|| match tombs.remove(&node) {
            Some(t) => Peer::revive(node, from, now, &t),
            None => Peer::new(node, from, now),
        })
}

/// A decoded control body.
enum Control<'a> {
    Heartbeat(Heartbeat<'a>),
    Nak(wire::Nak<'a>),
    Gone(wire::Gone),
    Ack(wire::Ack),
    Sync(wire::SyncRequest),
    SyncReply(wire::SyncReply),
}

/// A receiver acknowledges a sender after this many DATA datagrams …
const ACK_EVERY: u64 = 64;
/// … or this long after the first one it has not acknowledged yet.
const ACK_DELAY: std::time::Duration = std::time::Duration::from_millis(1);

/// Queues an ACK of `peer`'s DATA received so far.
pub(super) fn ack(sender: &mut super::send::Sender, peer: &mut Peer) {
    if let Some(next) = peer.window.next_due() {
        sender.ack(peer.info.node, next);
        peer.acked = next;
    }
    peer.ack_at = None;
}

/// Acknowledges `peer` now if it is far enough ahead of the last ACK, or
/// schedules an ACK shortly.
fn schedule_ack(sender: &mut super::send::Sender, peer: &mut Peer, now: Instant) {
    let Some(next) = peer.window.next_due() else {
        return;
    };
    if next >= peer.acked + ACK_EVERY {
        ack(sender, peer);
    } else if next > peer.acked && peer.ack_at.is_none() {
        peer.ack_at = Some(now + ACK_DELAY);
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

/// Where decoded messages, events and counters go while a peer is borrowed.
pub(super) struct Sink<'a> {
    messages: &'a mut VecDeque<Incoming>,
    events: &'a mut VecDeque<NetEvent>,
    pub(super) stats: &'a mut NetStats,
    limits: Limits,
    max_message: usize,
    now: Instant,
}

impl<'a> Sink<'a> {
    pub(super) fn new(
        messages: &'a mut VecDeque<Incoming>,
        events: &'a mut VecDeque<NetEvent>,
        stats: &'a mut NetStats,
        limits: Limits,
        max_message: usize,
        now: Instant,
    ) -> Self {
        Sink {
            messages,
            events,
            stats,
            limits,
            max_message,
            now,
        }
    }

    /// Applies in-order records of `peer`.
    pub(super) fn apply(&mut self, peer: &mut Peer, items: impl Iterator<Item = Staged>) {
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
                        FragOutcome::Orphan => self.incomplete(peer),
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
        self.messages.push_back(Incoming::Message(m));
    }

    pub(super) fn incomplete(&mut self, peer: &mut Peer) {
        peer.info.incomplete += 1;
        self.stats.incomplete += 1;
    }

    fn bad_message(&mut self, peer: &mut Peer, e: WireError) {
        peer.info.malformed += 1;
        self.stats.malformed += 1;
        self.stats.last_error = Some((peer.info.addr, e));
    }

    /// Delivers what has become due in `peer`'s window: held datagrams in
    /// order, and gaps given up on, reported as such. A message in
    /// fragments across a gap is dropped whole.
    pub(super) fn drain(&mut self, peer: &mut Peer) {
        while let Some(step) = peer.window.take_next() {
            match step {
                Step::Apply(items) => self.apply(peer, items.into_iter()),
                Step::Lost(first, last) => {
                    if peer.reasm.abandon_for_gap() {
                        self.incomplete(peer);
                    }
                    let n = last - first + 1;
                    peer.info.lost += n;
                    peer.info.gaps += 1;
                    self.stats.lost += n;
                    self.stats.gaps += 1;
                    self.events.push_back(NetEvent::Gap {
                        node: peer.info.node,
                        first,
                        last,
                    });
                    self.messages.push_back(Incoming::Gap {
                        node: peer.info.node,
                        first,
                        last,
                    });
                }
            }
        }
    }
}
