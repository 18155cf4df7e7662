//! The network state machine: netcluster's messages between daemons over
//! UDP multicast (and unicast peers), without the UDP.
//!
//! This module owns what one daemon says to and hears from the others:
//! datagram layout ([`wire`]), sealing with a pre-shared key ([`seal`]),
//! batching and fragmentation of outgoing messages, in-order reassembly of
//! incoming ones, reliability (NAKs, retransmission from a bounded window,
//! visible gaps), the peer table and the heartbeat and timeout timers. It follows quinn-proto's sans-IO shape:
//! inputs are [`Net::send`], [`Net::handle_datagram`] and
//! [`Net::handle_timeout`], each given the current time; outputs are pulled
//! with [`Net::poll_transmit`], [`Net::poll_message`], [`Net::poll_event`]
//! and [`Net::poll_timeout`]. The byte layout is described in
//! `docs/NET-DATAGRAMS.md`.
//!
//! A driver loops: feed every received datagram to `handle_datagram`; when
//! the instant from `poll_timeout` passes, call `handle_timeout`; after any
//! input, drain `poll_transmit` (sending each datagram to the group and the
//! unicast peers), `poll_message` and `poll_event`, then re-arm one timer at
//! `poll_timeout`.

mod budget;
mod droplog;
mod engine;
mod evict;
mod input;
mod peer;
mod recv;
mod rng;
pub mod seal;
mod send;
mod sync;
pub mod wire;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

pub use droplog::{DropReason, DROP_REPORT_INTERVAL, MAX_DROP_SOURCES};
pub use engine::Net;
pub use peer::PeerInfo;
pub use seal::{Key, KeyError};
pub use sync::{MAX_SYNC_REQUESTERS, SYNC_RATE, SYNC_REPLY_HOLDOFF, SYNC_RETRY, SYNC_RETRY_MAX};
pub use wire::WireError;

/// Default datagram budget: 1400 bytes of UDP payload. With 40 bytes of IPv6
/// and 8 of UDP header that is 1448 bytes on the link, under Ethernet's 1500
/// with room for a tunnel or PPPoE header, so no IP fragmentation occurs.
pub const DEFAULT_MTU: usize = 1400;
/// Smallest accepted `mtu`: a header, a fragment record's head and some data.
pub const MIN_MTU: usize = 256;
/// Largest accepted `mtu`: the largest UDP payload over IPv4.
pub const MAX_MTU: usize = 65_507;
/// Default largest message payload (16 MiB).
pub const DEFAULT_MAX_MESSAGE: usize = 16 << 20;
/// Default receive memory of all peers together (32 MiB): partial
/// fragmented messages, held out-of-order datagrams and tracked missing
/// ones. Twice the default `max_message`, so one largest message fits
/// beside other traffic, and small enough that a flood from strangers keeps
/// the daemon well within 64 MiB of its idle size.
pub const DEFAULT_REASSEMBLY_BYTES: usize = 32 << 20;
/// Most DATA datagrams one NAK can make a sender send again. A NAK is at
/// least 35 bytes (24 of header, 8 of target, 3 of one range), a DATA
/// datagram at most `mtu` bytes, so at the default `mtu` one NAK yields at
/// most 4 × 1400 = 5600 bytes plus a GONE (about 45 bytes): at most 161
/// times its own size. Receivers ask for at most this many per NAK.
pub const NAK_ANSWER_MAX: usize = 4;
/// Default rate of retransmissions per requesting peer (bytes per second).
pub const DEFAULT_RETRANSMIT_RATE: u64 = 16 << 20;
/// Default burst of retransmissions per requesting peer (bytes).
pub const DEFAULT_RETRANSMIT_BURST: usize = 1 << 20;
/// Most peers tracked at once, so spoofed node ids cannot grow the table
/// without bound. When it is full, a new node evicts peers that are not up
/// (never named by a heartbeat first, then the longest silent), then up
/// peers silent for more than two heartbeat intervals; if none can go, the
/// new node's datagrams are dropped and reported
/// ([`DropReason::PeerTableFull`]).
pub const MAX_PEERS: usize = 1024;
/// Default of [`NetConfig::max_held`].
pub const DEFAULT_MAX_HELD: usize = 8192;
/// Default retransmit window (8 MiB of datagrams).
pub const DEFAULT_RETRANSMIT_BYTES: usize = 8 << 20;
/// Default time an old key is still accepted after a key change.
pub const DEFAULT_KEY_GRACE: Duration = Duration::from_secs(10);
/// Most DATA sequence numbers a receiver tracks ahead of the next one due;
/// a datagram or announcement further ahead makes it give up on the
/// oldest ones at once (a peer heard again after a long partition).
pub const MAX_TRACKED: u64 = 1 << 16;
/// Most source addresses whose rejected datagrams are counted one by one
/// (the totals count all).
pub const MAX_REJECT_SOURCES: usize = 256;

/// Settings of a [`Net`]. Build with [`NetConfig::new`] and adjust fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// This daemon run's node id: random per start, so it doubles as the
    /// epoch. Datagrams carrying it are our own and are ignored.
    pub node_id: u64,
    /// Human name announced in heartbeats (cut to 255 bytes).
    pub node_name: String,
    /// Largest datagram, in bytes of UDP payload, headers included.
    /// Clamped to [`MIN_MTU`]..=[`MAX_MTU`].
    pub mtu: usize,
    /// Largest message payload accepted by [`Net::send`] and reassembled
    /// from peers.
    pub max_message: usize,
    /// How long the first message of a batch may wait for others.
    /// Zero: every [`Net::poll_transmit`] flushes the open batch.
    pub flush_delay: Duration,
    /// Time between two heartbeats.
    pub heartbeat_interval: Duration,
    /// Silence after which a peer is declared down.
    pub peer_timeout: Duration,
    /// A partially reassembled message with no new fragment for this long
    /// is dropped.
    pub reassembly_timeout: Duration,
    /// Receive memory of all peers together: partial messages (their
    /// bytes received, never their announced size), held out-of-order
    /// datagrams and tracked missing ones. When a datagram takes it over,
    /// the state of the peers heard from least recently is released first
    /// (counted in [`NetStats::evicted`]). A message announcing more is
    /// refused and counted.
    pub reassembly_bytes: usize,
    /// How long a missing DATA datagram is waited for before it is NAKed
    /// for the first time (a reordered datagram usually arrives meanwhile).
    pub reorder_timeout: Duration,
    /// Plus a random part up to this, different per receiver, so that one
    /// receiver's NAK usually goes out first and the others, hearing it,
    /// do not send theirs.
    pub nak_backoff: Duration,
    /// Wait after the first NAK round (ours or one heard from another
    /// receiver) before asking again; it doubles every round, up to 20
    /// times this, and a random part up to a quarter is added.
    pub nak_interval: Duration,
    /// NAK rounds per missing datagram before the receiver gives up on it
    /// and reports the gap.
    pub nak_rounds: u32,
    /// Most DATA datagrams held per peer while an earlier one is missing;
    /// one more makes the receiver give up on the oldest gap at once.
    pub max_held: usize,
    /// Bytes of recently sent DATA datagrams kept to answer NAKs; 0 keeps
    /// none (every NAK is answered "gone").
    pub retransmit_bytes: usize,
    /// Flow control: a receiver holds the sender back for at most this
    /// long in total until it has caught up with everything sent; then it
    /// no longer counts (it will see a gap instead). ACKs without progress
    /// do not renew it.
    pub flow_timeout: Duration,
    /// Retransmissions per requesting peer, in bytes per second (a token
    /// bucket); 0 = no limit.
    pub retransmit_rate: u64,
    /// Retransmissions a requesting peer may get at once (the bucket's
    /// size), in bytes.
    pub retransmit_burst: usize,
    /// After the last DATA datagram of a burst, a heartbeat follows after
    /// this long, so receivers notice tail loss without waiting for the
    /// next regular heartbeat. Zero: no such heartbeat.
    pub tail_probe: Duration,
    /// The pre-shared key sealing every datagram; `None`: plain datagrams.
    pub key: Option<Key>,
    /// After a key change ([`Net::set_key`]), how long the old key (or
    /// plain datagrams) is still accepted.
    pub key_grace: Duration,
    /// Seed of the random NAK timers (give each node a different one).
    pub seed: u64,
    /// Pacing: bytes per second that `poll_transmit` lets out, 0 = no limit.
    pub pace_rate: u64,
    /// Pacing: bytes that may leave at once after an idle period.
    pub pace_burst: usize,
}

impl NetConfig {
    /// A configuration with the defaults for everything but identity.
    pub fn new(node_id: u64, node_name: impl Into<String>) -> Self {
        let heartbeat_interval = Duration::from_secs(1);
        NetConfig {
            node_id,
            node_name: node_name.into(),
            mtu: DEFAULT_MTU,
            max_message: DEFAULT_MAX_MESSAGE,
            flush_delay: Duration::from_micros(200),
            heartbeat_interval,
            peer_timeout: heartbeat_interval * 3 + Duration::from_millis(500),
            reassembly_timeout: Duration::from_secs(5),
            reassembly_bytes: DEFAULT_REASSEMBLY_BYTES,
            reorder_timeout: Duration::from_millis(1),
            nak_backoff: Duration::from_millis(3),
            nak_interval: Duration::from_millis(10),
            nak_rounds: 12,
            max_held: DEFAULT_MAX_HELD,
            retransmit_bytes: DEFAULT_RETRANSMIT_BYTES,
            tail_probe: Duration::from_millis(5),
            flow_timeout: Duration::from_secs(1),
            retransmit_rate: DEFAULT_RETRANSMIT_RATE,
            retransmit_burst: DEFAULT_RETRANSMIT_BURST,
            key: None,
            key_grace: DEFAULT_KEY_GRACE,
            seed: node_id,
            pace_rate: 0,
            pace_burst: 256 << 10,
        }
    }

    /// Checks the values a user may have set, for a config loader to report.
    /// [`Net::new`] accepts any value and clamps what it must.
    pub fn check(&self) -> Result<(), NetConfigError> {
        if !(MIN_MTU..=MAX_MTU).contains(&self.mtu) {
            return Err(NetConfigError::Mtu {
                mtu: self.mtu,
                min: MIN_MTU,
                max: MAX_MTU,
            });
        }
        if self.heartbeat_interval.is_zero() {
            return Err(NetConfigError::ZeroHeartbeat);
        }
        if self.peer_timeout <= self.heartbeat_interval {
            return Err(NetConfigError::PeerTimeout);
        }
        if self.nak_rounds == 0 {
            return Err(NetConfigError::NakRounds);
        }
        if self.reassembly_bytes < self.max_message {
            return Err(NetConfigError::ReassemblyBytes {
                reassembly_bytes: self.reassembly_bytes,
                max_message: self.max_message,
            });
        }
        Ok(())
    }
}

/// Why [`NetConfig::check`] refused a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetConfigError {
    /// `mtu` is out of range.
    #[error("mtu {mtu} is out of range {min}..={max}")]
    Mtu {
        /// The value given.
        mtu: usize,
        /// Smallest accepted.
        min: usize,
        /// Largest accepted.
        max: usize,
    },
    /// The heartbeat interval is zero.
    #[error("the heartbeat interval must not be zero")]
    ZeroHeartbeat,
    /// The peer timeout would declare live peers down between heartbeats.
    #[error("the peer timeout must be longer than the heartbeat interval")]
    PeerTimeout,
    /// No NAK round is allowed.
    #[error("nak_rounds must be at least 1")]
    NakRounds,
    /// Receive memory cannot hold one largest message.
    #[error("reassembly memory ({reassembly_bytes} bytes) is smaller than the largest message ({max_message} bytes)")]
    ReassemblyBytes {
        /// Receive memory of all peers together.
        reassembly_bytes: usize,
        /// Largest message.
        max_message: usize,
    },
}

/// A message to send to the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutMessage<'a> {
    /// Channel name (1..=255 bytes).
    pub channel: &'a str,
    /// Event name (1..=1024 bytes).
    pub event: &'a str,
    /// Payload bytes.
    pub payload: &'a [u8],
    /// Origin client id on this node.
    pub client: u64,
    /// Per-origin sequence number.
    pub seq: u64,
}

/// Why [`Net::send`] refused a message. Nothing was queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The payload exceeds `max_message`.
    #[error("message of {len} bytes exceeds the network limit of {max} bytes")]
    TooLarge {
        /// Payload length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The channel or event name is empty or too long for the wire.
    #[error("{what} name of {len} bytes is not allowed on the network (1..={max} bytes)")]
    BadName {
        /// "channel" or "event".
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// A message received from another node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InMessage {
    /// Origin node id.
    pub node: u64,
    /// Origin client id on that node.
    pub client: u64,
    /// Per-origin sequence number.
    pub seq: u64,
    /// Channel the message was emitted on.
    pub channel: ByteStr,
    /// Event name.
    pub event: ByteStr,
    /// Payload; shares the received datagram's buffer when it fitted one.
    pub payload: Bytes,
}

/// What [`Net::poll_incoming`] yields: the messages of each sender in
/// order, with its gaps in their place among them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A message from another node.
    Message(InMessage),
    /// DATA datagrams of `node` were given up on (the same gap is also
    /// reported as [`NetEvent::Gap`]): every message of `node` yielded
    /// before it was sent before the hole, every one after it after.
    Gap {
        /// The sending node.
        node: u64,
        /// First missing DATA sequence number.
        first: u64,
        /// Last missing DATA sequence number (inclusive).
        last: u64,
    },
}

/// Something that happened to a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetEvent {
    /// A node was heard for the first time (reported with its first
    /// heartbeat, which carries its name).
    PeerUp {
        /// Its node id.
        node: u64,
        /// Its announced name.
        name: String,
        /// Where its datagrams come from.
        addr: SocketAddr,
    },
    /// Datagrams were dropped (rate-limited: the first from a source
    /// address at once, then at most one report per
    /// [`DROP_REPORT_INTERVAL`] per address, see `droplog`). For a log
    /// line; a [`DropReason::PeerTableFull`] also means a node's messages
    /// are lost.
    Dropped {
        /// Where the datagrams came from.
        addr: SocketAddr,
        /// The node id they claimed, when the header could be read and it
        /// matters (peer table full, replayed).
        node: Option<u64>,
        /// Why the last of them was dropped.
        reason: DropReason,
        /// Datagrams from that address dropped since its last report.
        count: u64,
    },
    /// A node is gone; it was removed from the peer table. Only nodes that
    /// were reported up are reported down.
    PeerDown {
        /// Its node id.
        node: u64,
        /// Its announced name.
        name: String,
        /// Why it is considered gone.
        reason: DownReason,
    },
    /// DATA datagrams of a node were given up on: the sender no longer
    /// had them, NAKs went unanswered, or the receiver could hold no more
    /// behind them. The messages they carried are lost; no part of them
    /// was delivered. Reported when delivery reaches the gap, so it sits
    /// in order between the messages before and after it.
    Gap {
        /// The sending node.
        node: u64,
        /// First missing DATA sequence number.
        first: u64,
        /// Last missing DATA sequence number (inclusive).
        last: u64,
    },
}

/// Why a peer was declared down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DownReason {
    /// Nothing was heard from it for `peer_timeout`.
    Timeout,
    /// A freshly started node with the same name and address appeared,
    /// and this one then missed its next heartbeat.
    Restarted {
        /// The new node id.
        new_node: u64,
    },
    /// The peer table was full and it was the stalest entry.
    Evicted,
}

/// Where a datagram from [`Net::poll_transmit`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Dest {
    /// The multicast group and every configured unicast peer.
    All,
    /// One address (not used by this version's state machine, which
    /// multicasts NAKs so that receivers suppress each other's, and
    /// retransmissions so that one repairs every receiver that missed it).
    To(SocketAddr),
}

/// A datagram to send; its bytes are in the buffer given to `poll_transmit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub dest: Dest,
}

/// Totals of this node, since [`Net::new`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Datagrams handed out by `poll_transmit`.
    pub datagrams_out: u64,
    /// Bytes of those datagrams.
    pub bytes_out: u64,
    /// Messages accepted by `send`.
    pub messages_out: u64,
    /// Messages that were fragmented.
    pub fragmented_out: u64,
    /// Heartbeats queued.
    pub heartbeats_out: u64,
    /// Datagrams received from peers and decoded.
    pub datagrams_in: u64,
    /// Bytes of all datagrams given to `handle_datagram`.
    pub bytes_in: u64,
    /// Messages delivered to `poll_message`.
    pub messages_in: u64,
    /// Our own datagrams, ignored (multicast loopback, same group twice).
    pub own_ignored: u64,
    /// Datagrams that are not netcluster's (bad magic) or of another
    /// version, dropped.
    pub foreign: u64,
    /// Datagrams that claim to be ours but are malformed, dropped.
    pub malformed: u64,
    /// DATA datagrams already delivered or given up on, dropped.
    pub duplicates: u64,
    /// DATA sequence numbers never received (gaps given up on).
    pub lost: u64,
    /// Gaps reported ([`NetEvent::Gap`]).
    pub gaps: u64,
    /// Datagrams that failed authentication (wrong or no key, altered
    /// bytes, or plain while a key is required), dropped.
    pub rejected: u64,
    /// HEARTBEAT, NAK and GONE datagrams seen before (replays), dropped.
    /// Repeated DATA datagrams count as `duplicates`.
    pub replayed: u64,
    /// NAK datagrams sent.
    pub naks_out: u64,
    /// NAK datagrams received asking this node.
    pub naks_in: u64,
    /// NAK rounds not sent because another receiver's NAK was heard first.
    pub naks_suppressed: u64,
    /// DATA datagrams sent again after a NAK.
    pub retransmitted: u64,
    /// GONE datagrams sent.
    pub gone_out: u64,
    /// ACK datagrams sent.
    pub acks_out: u64,
    /// Times DATA was held back until the slowest receiver caught up.
    pub flow_waits: u64,
    /// Fragmented messages refused: larger than `max_message` or than
    /// `reassembly_bytes`.
    pub oversized: u64,
    /// Fragmented messages abandoned incomplete (a fragment is missing,
    /// timed out, or the peer went down).
    pub incomplete: u64,
    /// Datagrams dropped because the peer table was full of peers that
    /// are up.
    pub peers_refused: u64,
    /// Peers removed to make room for a new node.
    pub peers_evicted: u64,
    /// DATA datagrams dropped because their sender was not synced yet
    /// (its position unknown: they may be replays of its history).
    pub unsynced: u64,
    /// SYNC requests sent.
    pub syncs_out: u64,
    /// SYNC replies sent.
    pub sync_replies_out: u64,
    /// SYNC requests not answered because of the rate limits.
    pub syncs_limited: u64,
    /// Peers synced by a SYNC reply.
    pub synced: u64,
    /// Times receive memory (`reassembly_bytes`) was full and a peer's
    /// partial message, held datagrams and missing ones were released.
    pub evicted: u64,
    /// NAKed datagrams not sent again: more than [`NAK_ANSWER_MAX`] in one
    /// NAK, or over the requester's `retransmit_rate`.
    pub retransmits_limited: u64,
    /// NAK and ACK datagrams ignored because their sender had not sent a
    /// heartbeat yet.
    pub unheard_ignored: u64,
    /// The last dropped datagram's source and reason, for logs.
    pub last_error: Option<(SocketAddr, WireError)>,
}

/// A UTF-8 string sharing a received datagram's buffer.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ByteStr(Bytes);

impl ByteStr {
    /// Wraps bytes already known to be UTF-8; `None` if they are not.
    pub fn from_utf8(b: Bytes) -> Option<Self> {
        std::str::from_utf8(&b).ok()?;
        Some(ByteStr(b))
    }
    /// A static string.
    pub const fn from_static(s: &'static str) -> Self {
        ByteStr(Bytes::from_static(s.as_bytes()))
    }
    /// The text.
    pub fn as_str(&self) -> &str {
        // Valid by construction; the fallback is unreachable.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
    /// The underlying bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
}

impl std::ops::Deref for ByteStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for ByteStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ByteStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for ByteStr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ByteStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The earlier of two optional instants.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}
