//! Reports of dropped datagrams, rate-limited per source address, for the
//! driver to log.
//!
//! This module owns the decision of when a refused datagram deserves a log
//! line: the first one from a source address is reported at once (as a
//! [`NetEvent::Dropped`](super::NetEvent::Dropped)), later ones from the
//! same address are counted and reported together with the next one that
//! arrives at least [`DROP_REPORT_INTERVAL`] after the last report. At most
//! [`MAX_DROP_SOURCES`] addresses are tracked; when the table is full of
//! addresses reported within the interval, further addresses share one
//! entry (reported with the address of the datagram that triggers it), so
//! a flood from spoofed addresses yields at most `MAX_DROP_SOURCES + 1`
//! reports per interval.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use super::{NetEvent, WireError};

/// Least time between two reports for one source address.
pub const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(60);
/// Most source addresses tracked for reports.
pub const MAX_DROP_SOURCES: usize = 256;

/// Why a datagram was dropped, as reported in [`NetEvent::Dropped`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// Sealed with a key this node does not have (another key id), or it
    /// failed authentication (another key with the same id, or altered).
    AnotherKey,
    /// Sealed, and this node has no key.
    NoKey,
    /// Not sealed, and this node requires a key.
    NotSealed,
    /// Not a netcluster datagram (bad magic).
    Foreign,
    /// A netcluster datagram of another version.
    Version(u8),
    /// A netcluster datagram that is malformed.
    Malformed(WireError),
    /// A HEARTBEAT, NAK, GONE, ACK or SYNC datagram seen before, older
    /// than the replay window or from another address than its node's.
    Replayed,
    /// From a node that could not be admitted: the peer table is full of
    /// peers that are up.
    PeerTableFull,
}

impl DropReason {
    /// The reason for a decoding or authentication error.
    pub fn from_wire(e: &WireError) -> Self {
        match e {
            WireError::BadMagic => DropReason::Foreign,
            WireError::BadVersion(v) => DropReason::Version(*v),
            WireError::UnknownKey(_) | WireError::Unauthentic => DropReason::AnotherKey,
            WireError::Sealed => DropReason::NoKey,
            WireError::NotSealed => DropReason::NotSealed,
            e => DropReason::Malformed(e.clone()),
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::AnotherKey => {
                f.write_str("sealed with another key (or altered): check the key on both hosts")
            }
            DropReason::NoKey => f.write_str("sealed, but this node has no key"),
            DropReason::NotSealed => f.write_str("not sealed, but this node requires a key"),
            DropReason::Foreign => f.write_str("not a netcluster datagram"),
            DropReason::Version(v) => write!(f, "netcluster datagram of unsupported version {v}"),
            DropReason::Malformed(e) => write!(f, "malformed: {e}"),
            DropReason::Replayed => f.write_str("replayed (seen before)"),
            DropReason::PeerTableFull => f.write_str("peer table full"),
        }
    }
}

/// One tracked source.
#[derive(Debug, Clone, Copy)]
struct Source {
    /// `None` until the first report.
    reported: Option<Instant>,
    /// Dropped since the last report.
    pending: u64,
}

/// The per-source report table.
#[derive(Debug, Default)]
pub(crate) struct DropLog {
    sources: FxHashMap<SocketAddr, Source>,
    /// Addresses that found the table full.
    others: Option<Source>,
    /// When the table was last pruned (at most once per second).
    pruned: Option<Instant>,
}

impl DropLog {
    /// Counts a dropped datagram; returns the report to make, if one is due.
    pub(crate) fn note(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        node: Option<u64>,
        reason: DropReason,
    ) -> Option<NetEvent> {
        if !self.sources.contains_key(&addr)
            && self.sources.len() >= MAX_DROP_SOURCES
            && self
                .pruned
                .map_or(true, |t| now >= t + Duration::from_secs(1))
        {
            self.pruned = Some(now);
            self.sources
                .retain(|_, s| s.reported.is_some_and(|t| now < t + DROP_REPORT_INTERVAL));
        }
        let slot = if self.sources.len() < MAX_DROP_SOURCES || self.sources.contains_key(&addr) {
            self.sources.entry(addr).or_insert(Source {
                reported: None,
                pending: 0,
            })
        } else {
            self.others.get_or_insert(Source {
                reported: None,
                pending: 0,
            })
        };
        slot.pending += 1;
        if slot
            .reported
            .is_some_and(|t| now < t + DROP_REPORT_INTERVAL)
        {
            return None;
        }
        let count = std::mem::take(&mut slot.pending);
        slot.reported = Some(now);
        Some(NetEvent::Dropped {
            addr,
            node,
            reason,
            count,
        })
    }
}
