//! The peer table: what this node knows about each other node it hears.
//!
//! This module owns [`PeerInfo`] (the public row shown by `showpeers()`)
//! and the private per-peer state beside it: the receive window, the
//! reassembly, the replay windows and, until it is synced, the SYNC
//! requests outstanding for it. Peers are keyed by node id, which is random per daemon start,
//! so a restarted daemon is a new peer; the rule that retires the old entry
//! early lives in `sync`, where a peer comes up.

use std::net::SocketAddr;
use std::time::Instant;

use super::recv::{Reassembly, Window};
use super::wire::Kind;

/// What is known about one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Its node id (random per start).
    pub node: u64,
    /// Its announced name; empty until its first heartbeat.
    pub name: String,
    /// Source address of its last datagram.
    pub addr: SocketAddr,
    /// True once its first heartbeat arrived and its DATA position is
    /// known (see `synced`), and `PeerUp` was reported.
    pub up: bool,
    /// True once this node knows where its DATA stands (a SYNC reply, or
    /// its window remembered from before it was removed): until then
    /// nothing of it is delivered and nothing is sent on its behalf.
    pub synced: bool,
    /// When it was first heard.
    pub first_seen: Instant,
    /// When it was last heard (any valid datagram).
    pub last_seen: Instant,
    /// Valid datagrams received from it (duplicates included).
    pub datagrams_in: u64,
    /// Bytes of those datagrams.
    pub bytes_in: u64,
    /// Messages delivered from it.
    pub messages_in: u64,
    /// Payload bytes of those messages.
    pub payload_bytes_in: u64,
    /// Datagrams from it (by node id, or by source address when the header
    /// itself was unreadable) dropped as malformed or foreign.
    pub malformed: u64,
    /// DATA datagrams dropped as already seen.
    pub duplicates: u64,
    /// DATA sequence numbers given up on.
    pub lost: u64,
    /// Gaps reported (runs of DATA sequence numbers given up on).
    pub gaps: u64,
    /// HEARTBEAT, NAK and GONE datagrams from it seen before, dropped.
    pub replayed: u64,
    /// DATA datagrams dropped before it was synced.
    pub unsynced: u64,
    /// NAK datagrams this node sent asking it to retransmit.
    pub naks_out: u64,
    /// Fragmented messages refused for their size.
    pub oversized: u64,
    /// Fragmented messages abandoned incomplete.
    pub incomplete: u64,
    /// Bytes currently used to reassemble its messages.
    pub reassembly_bytes: usize,
    /// DATA datagrams held waiting for a missing one.
    pub held: usize,
    /// The highest DATA sequence number it announced in a heartbeat.
    pub announced_seq: u64,
    /// Its counters from its last heartbeat.
    pub reported: Reported,
}

/// A peer's own counters, as its last heartbeat reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reported {
    /// Milliseconds since it started.
    pub uptime_ms: u64,
    /// Messages it sent.
    pub messages_out: u64,
    /// Datagrams it sent.
    pub datagrams_out: u64,
    /// Bytes it sent.
    pub bytes_out: u64,
}

impl PeerInfo {
    pub(crate) fn new(node: u64, addr: SocketAddr, now: Instant) -> Self {
        PeerInfo {
            node,
            name: String::new(),
            addr,
            up: false,
            synced: false,
            first_seen: now,
            last_seen: now,
            datagrams_in: 0,
            bytes_in: 0,
            messages_in: 0,
            payload_bytes_in: 0,
            malformed: 0,
            duplicates: 0,
            lost: 0,
            gaps: 0,
            replayed: 0,
            unsynced: 0,
            naks_out: 0,
            oversized: 0,
            incomplete: 0,
            reassembly_bytes: 0,
            held: 0,
            announced_seq: 0,
            reported: Reported::default(),
        }
    }
}

/// A peer's row and its receive state.
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) info: PeerInfo,
    pub(crate) window: Window,
    pub(crate) reasm: Reassembly,
    /// A fresh node with this peer's name and address appeared: its id, and
    /// when this peer is retired unless heard from again.
    pub(crate) replaced_by: Option<(u64, Instant)>,
    /// Replay windows of its HEARTBEAT, NAK, GONE, ACK, SYNC and SYNC reply
    /// sequence numbers (its DATA datagrams are checked by the receive
    /// window).
    pub(crate) replay: [Replay; REPLAY_SLOTS],
    /// While not synced: the SYNC requests sent for it.
    pub(crate) sync: Option<Asking>,
    /// The next DATA sequence number last acknowledged to it.
    pub(crate) acked: u64,
    /// When an acknowledgement is due, if one is.
    pub(crate) ack_at: Option<Instant>,
    /// Receive memory last accounted for it (see `budget`).
    pub(crate) mem: usize,
}

/// What is remembered of a peer after it was removed, so that its old
/// datagrams replayed later are still recognised as seen.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tomb {
    pub(crate) next: Option<u64>,
    pub(crate) replay: [Replay; REPLAY_SLOTS],
}

/// Kinds with a replay window (all but DATA).
pub(crate) const REPLAY_SLOTS: usize = 6;

/// Most SYNC requests remembered per unsynced peer: a reply must echo one
/// of them.
pub(crate) const ASKED: usize = 4;

/// The SYNC requests outstanding for a peer that is not synced yet.
#[derive(Debug, Clone)]
pub(crate) struct Asking {
    /// The latest requests' seqs and when they were queued, newest last.
    pub(crate) asked: [Option<(u64, Instant)>; ASKED],
    /// When the next request is due.
    pub(crate) due: Instant,
    /// Requests sent so far (the retry interval doubles with each).
    pub(crate) tries: u32,
}

impl Asking {
    pub(crate) fn new(now: Instant) -> Self {
        Asking {
            asked: [None; ASKED],
            due: now,
            tries: 0,
        }
    }

    /// Records a request sent.
    pub(crate) fn sent(&mut self, seq: u64, now: Instant) {
        self.asked.rotate_left(1);
        self.asked[ASKED - 1] = Some((seq, now));
        self.tries += 1;
    }

    /// When the request a reply echoes was queued, if it is one of ours.
    pub(crate) fn asked_at(&self, seq: u64) -> Option<Instant> {
        self.asked
            .iter()
            .flatten()
            .find(|a| a.0 == seq)
            .map(|a| a.1)
    }
}

/// Bits of a replay window: how far behind the highest sequence number a
/// datagram may arrive and still be told apart from a repeat.
const REPLAY_BITS: u64 = 128;

/// A sliding replay window over one kind's sequence numbers: the highest
/// seen and one bit for each of the 127 before it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Replay {
    top: u64,
    seen: u128,
}

impl Replay {
    /// Records `seq`; false if it was seen before or is too old to tell.
    pub(crate) fn check(&mut self, seq: u64) -> bool {
        if seq > self.top || (self.top == 0 && self.seen == 0) {
            let shift = seq - self.top;
            self.seen = if shift >= REPLAY_BITS {
                0
            } else {
                self.seen << shift
            } | 1;
            self.top = seq;
            return true;
        }
        let back = self.top - seq;
        if back >= REPLAY_BITS || self.seen & (1 << back) != 0 {
            return false;
        }
        self.seen |= 1 << back;
        true
    }

    /// Whether `seq` is within the window (not older than it can tell).
    pub(crate) fn recent(&self, seq: u64) -> bool {
        seq.saturating_add(REPLAY_BITS) > self.top
    }

    /// The window of a removed peer: everything up to the highest seen
    /// counts as seen.
    fn closed(self) -> Replay {
        Replay {
            top: self.top,
            seen: u128::MAX,
        }
    }
}

/// Index of a kind's replay window.
pub(crate) fn replay_slot(kind: Kind) -> usize {
    match kind {
        Kind::Heartbeat | Kind::Data => 0,
        Kind::Nak => 1,
        Kind::Gone => 2,
        Kind::Ack => 3,
        Kind::Sync => 4,
        Kind::SyncReply => 5,
    }
}

impl Peer {
    pub(crate) fn new(node: u64, addr: SocketAddr, now: Instant) -> Self {
        Peer {
            info: PeerInfo::new(node, addr, now),
            window: Window::default(),
            reasm: Reassembly::default(),
            replaced_by: None,
            replay: Default::default(),
            sync: Some(Asking::new(now)),
            acked: 0,
            ack_at: None,
            mem: 0,
        }
    }

    /// A peer heard again after it was removed: its windows continue
    /// where they were.
    pub(crate) fn revive(node: u64, addr: SocketAddr, now: Instant, t: &Tomb) -> Self {
        let mut p = Peer::new(node, addr, now);
        if let Some(n) = t.next {
            p.window.start_after(n - 1);
            p.sync = None;
            p.info.synced = true;
        }
        p.replay = t.replay.map(Replay::closed);
        p
    }

    /// What to remember of it once removed.
    pub(crate) fn tomb(&self) -> Tomb {
        Tomb {
            next: self.window.next_due(),
            replay: self.replay,
        }
    }

    /// Whether its DATA position is known.
    pub(crate) fn synced(&self) -> bool {
        self.sync.is_none()
    }

    /// Copies the receive state's gauges into the public row.
    pub(crate) fn refresh(&mut self) {
        self.info.reassembly_bytes = self.reasm.memory();
        self.info.held = self.window.held();
    }
}
