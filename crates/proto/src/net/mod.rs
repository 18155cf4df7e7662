//! The network state machine: netcluster's messages between daemons over
//! UDP multicast (and unicast peers), without the UDP.
//!
//! This module owns what one daemon says to and hears from the others:
//! datagram layout ([`wire`]), batching and fragmentation of outgoing
//! messages, in-order reassembly of incoming ones, the peer table and the
//! heartbeat and timeout timers. It follows quinn-proto's sans-IO shape:
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

mod engine;
mod peer;
mod recv;
mod send;
pub mod wire;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

pub use engine::Net;
pub use peer::PeerInfo;
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
/// Default per-peer reassembly memory (64 MiB).
pub const DEFAULT_REASSEMBLY_BYTES: usize = 64 << 20;
/// Most peers tracked at once; datagrams from further node ids are dropped,
/// so spoofed node ids cannot grow the table without bound.
pub const MAX_PEERS: usize = 1024;
/// Most out-of-order datagrams held per peer while waiting for a gap to
/// fill; one more makes the receiver give up on the oldest gap at once.
pub const MAX_HELD_DATAGRAMS: usize = 256;

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
    /// Reassembly memory per peer; a message whose fragments announce more
    /// is dropped and counted.
    pub reassembly_bytes: usize,
    /// How long a datagram that arrived ahead of a missing one is held
    /// before the receiver gives up on the gap (and counts it lost).
    pub reorder_timeout: Duration,
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
            reorder_timeout: Duration::from_millis(50),
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
    /// Reassembly memory cannot hold one largest message.
    #[error("reassembly memory ({reassembly_bytes} bytes) is smaller than the largest message ({max_message} bytes)")]
    ReassemblyBytes {
        /// Per-peer reassembly memory.
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
}

/// Where a datagram from [`Net::poll_transmit`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Dest {
    /// The multicast group and every configured unicast peer.
    All,
    /// One address (reserved for NAKs and retransmissions).
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
    /// Fragmented messages refused: larger than `max_message` or than
    /// `reassembly_bytes`.
    pub oversized: u64,
    /// Fragmented messages abandoned incomplete (a fragment is missing,
    /// timed out, or the peer went down).
    pub incomplete: u64,
    /// Datagrams dropped because the peer table was full.
    pub peers_refused: u64,
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
