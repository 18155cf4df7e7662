//! Receive memory of all peers together, and what gives way when it is
//! full.
//!
//! This module owns the one bound on what other nodes can make this node
//! hold: partial fragmented messages (their bytes received), held
//! out-of-order DATA datagrams and tracked missing sequence numbers, summed
//! over every peer and kept within `reassembly_bytes`. Without a key
//! anyone on the network can claim any number of node ids, so a per-peer
//! bound multiplies; this one does not. When a datagram takes the sum over
//! the bound, the state of other peers is released, those heard from least
//! recently first (a flood of fake ids is silent once sent; a real peer
//! sending a large message is heard all along), until the sum is an eighth
//! below the bound, so that a flood does not pay for a scan per datagram.
//! Only if that is not enough is the peer that caused it released too.
//! Releasing a peer gives up its missing datagrams (reported as gaps),
//! delivers what it held and drops its partial message.

use std::time::Instant;

use super::engine::Net;
use super::input::Sink;

impl Net {
    /// Bytes of receive memory in use, all peers together.
    pub fn receive_memory(&self) -> usize {
        self.recv_mem
    }

    /// Updates the sum after `node`'s state changed, and makes room if it
    /// is over the bound.
    pub(super) fn account(&mut self, now: Instant, node: u64) {
        let Some(p) = self.peers.get_mut(&node) else {
            return;
        };
        let m = p.reasm.memory() + p.window.memory();
        self.recv_mem = self.recv_mem.saturating_sub(p.mem) + m;
        p.mem = m;
        if self.recv_mem > self.cfg.reassembly_bytes {
            self.make_room(now, node);
        }
    }

    /// Recomputes the sum from every peer (after timers, which may free
    /// memory of any peer).
    pub(super) fn recount(&mut self) {
        let mut sum = 0;
        for p in self.peers.values_mut() {
            p.mem = p.reasm.memory() + p.window.memory();
            sum += p.mem;
        }
        self.recv_mem = sum;
    }

    /// A removed peer's memory leaves the sum.
    pub(super) fn unaccount(&mut self, mem: usize) {
        self.recv_mem = self.recv_mem.saturating_sub(mem);
    }

    /// Releases other peers, least recently heard first, until the sum is
    /// an eighth below the bound; then `keep` itself if still over it.
    fn make_room(&mut self, now: Instant, keep: u64) {
        let limit = self.cfg.reassembly_bytes;
        let target = limit - limit / 8;
        let mut victims: Vec<(Instant, u64)> = self
            .peers
            .values()
            .filter(|p| p.info.node != keep && p.mem > 0)
            .map(|p| (p.info.last_seen, p.info.node))
            .collect();
        victims.sort_unstable();
        for (_, node) in victims {
            if self.recv_mem <= target {
                break;
            }
            self.release(now, node);
        }
        if self.recv_mem > limit {
            self.release(now, keep);
        }
    }

    /// Gives up `node`'s missing datagrams, delivers what it held and
    /// drops its partial message.
    fn release(&mut self, now: Instant, node: u64) {
        let Some(peer) = self.peers.get_mut(&node) else {
            return;
        };
        let mut sink = Sink::new(
            &mut self.messages,
            &mut self.events,
            &mut self.stats,
            self.limits,
            self.cfg.max_message,
            now,
        );
        peer.window.give_up_all();
        sink.drain(peer);
        if peer.reasm.abandon_for_gap() {
            sink.incomplete(peer);
        }
        sink.stats.evicted += 1;
        peer.refresh();
        let m = peer.reasm.memory() + peer.window.memory();
        self.recv_mem = self.recv_mem.saturating_sub(peer.mem) + m;
        peer.mem = m;
    }
}
