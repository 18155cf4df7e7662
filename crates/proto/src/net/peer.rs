//! The peer table: what this node knows about each other node it hears.
//!
//! This module owns [`PeerInfo`] (the public row shown by `showpeers()`)
//! and the private per-peer state beside it: the receive window and the
//! reassembly. Peers are keyed by node id, which is random per daemon start,
//! so a restarted daemon is a new peer; the rule that retires the old entry
//! early lives in the engine, which sees the heartbeats.

use std::net::SocketAddr;
use std::time::Instant;

use super::recv::{Reassembly, Window};

/// What is known about one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Its node id (random per start).
    pub node: u64,
    /// Its announced name; empty until its first heartbeat.
    pub name: String,
    /// Source address of its last datagram.
    pub addr: SocketAddr,
    /// True once its first heartbeat arrived and `PeerUp` was reported.
    pub up: bool,
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
            first_seen: now,
            last_seen: now,
            datagrams_in: 0,
            bytes_in: 0,
            messages_in: 0,
            payload_bytes_in: 0,
            malformed: 0,
            duplicates: 0,
            lost: 0,
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
}

impl Peer {
    pub(crate) fn new(node: u64, addr: SocketAddr, now: Instant) -> Self {
        Peer {
            info: PeerInfo::new(node, addr, now),
            window: Window::default(),
            reasm: Reassembly::default(),
            replaced_by: None,
        }
    }

    /// Copies the receive state's gauges into the public row.
    pub(crate) fn refresh(&mut self) {
        self.info.reassembly_bytes = self.reasm.memory();
        self.info.held = self.window.held();
    }
}
