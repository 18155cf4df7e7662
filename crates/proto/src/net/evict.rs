//! Admission to a full peer table.
//!
//! This module owns what happens when a datagram comes from a node that is
//! not in the table and the table holds [`MAX_PEERS`] entries: peers that
//! are not up go first (those never named by a heartbeat before those that
//! were, the longest silent first), then up peers silent for more than two
//! heartbeat intervals (they missed a heartbeat). Several go at once (up to
//! [`EVICT_BATCH`], at most half of the candidates), so that a flood of
//! new node ids does not scan the table for every datagram. If no entry
//! can go, the datagram is dropped, counted (`peers_refused`) and reported
//! ([`DropReason::PeerTableFull`], rate-limited per source address); the
//! table is not scanned again for [`RESCAN`].

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::engine::Net;
use super::{DownReason, DropReason, MAX_PEERS};

/// Most peers evicted at once.
pub(crate) const EVICT_BATCH: usize = 64;
/// After a scan found nothing to evict, the next one waits this long.
pub(crate) const RESCAN: Duration = Duration::from_millis(50);

impl Net {
    /// Whether a datagram from `node` may be taken: it is known, there is
    /// room, or room was made. A refusal is counted and reported.
    pub(super) fn admit(&mut self, now: Instant, node: u64, from: SocketAddr) -> bool {
        if self.peers.contains_key(&node) || self.peers.len() < MAX_PEERS {
            return true;
        }
        if self.rescan_at.map_or(true, |t| now >= t) {
            if self.evict(now) > 0 {
                return true;
            }
            self.rescan_at = Some(now + RESCAN);
        }
        self.stats.peers_refused += 1;
        self.note_drop(now, from, Some(node), DropReason::PeerTableFull);
        false
    }

    /// Evicts the stalest entries; returns how many went.
    fn evict(&mut self, now: Instant) -> usize {
        let stale = self.cfg.heartbeat_interval * 2;
        let mut cand: Vec<(bool, bool, Instant, u64)> = self
            .peers
            .values()
            .filter(|p| !p.info.up || p.info.last_seen + stale < now)
            .map(|p| {
                (
                    p.info.up,
                    !p.info.name.is_empty(),
                    p.info.last_seen,
                    p.info.node,
                )
            })
            .collect();
        cand.sort_unstable();
        let n = EVICT_BATCH.min(cand.len().div_ceil(2));
        for &(_, _, _, node) in &cand[..n] {
            self.remove_peer(now, node, DownReason::Evicted);
            self.stats.peers_evicted += 1;
        }
        n
    }
}
