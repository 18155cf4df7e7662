//! The sender's side of reliability: the retransmit window, answers to
//! NAKs, and flow control from the receivers' ACKs.

use std::collections::VecDeque;
use std::time::Instant;

use super::*;

/// A DATA datagram kept for retransmission.
#[derive(Debug)]
pub(super) struct Kept {
    /// The plain datagram.
    pub(super) data: Vec<u8>,
    /// When it was last sent again, if it was.
    pub(super) resent: Option<Instant>,
    /// Waiting in the resend queue.
    pub(super) queued: bool,
}

/// The retransmit window: the most recent DATA datagrams sent, up to
/// `limit` bytes, consecutive and ending with the last one sent.
#[derive(Debug)]
pub(super) struct Retx {
    pub(super) kept: VecDeque<Kept>,
    /// The sequence number after the last DATA datagram sent.
    pub(super) next: u64,
    pub(super) bytes: usize,
    pub(super) limit: usize,
}

impl Retx {
    /// Sequence number of the oldest datagram kept (`next` if none).
    pub(super) fn first(&self) -> u64 {
        self.next - self.kept.len() as u64
    }

    pub(super) fn get_mut(&mut self, seq: u64) -> Option<&mut Kept> {
        let first = self.first();
        if seq < first {
            return None;
        }
        self.kept.get_mut((seq - first) as usize)
    }
}

impl Sender {
    /// A receiver acknowledged every DATA datagram below `next`.
    pub(crate) fn on_ack(&mut self, node: u64, next: u64, now: Instant) {
        match self.flow.iter_mut().find(|f| f.0 == node) {
            // Only progress counts: a receiver that answers but does not
            // get further stops holding the sender back after the timeout.
            Some(f) if next > f.1 => {
                f.1 = next;
                f.2 = now;
            }
            Some(_) => {}
            None => self.flow.push((node, next, now)),
        }
    }

    /// Forgets a receiver (it went down).
    pub(crate) fn forget(&mut self, node: u64) {
        self.flow.retain(|f| f.0 != node);
    }

    /// Whether DATA `seq` must wait for the slowest live receiver: it would
    /// push a datagram that receiver still needs out of the window.
    pub(super) fn flow_blocks(&self, now: Instant, seq: u64) -> bool {
        let Some(max) = self.max_ahead else {
            return false;
        };
        self.flow
            .iter()
            .filter(|f| now < f.2 + self.flow_timeout)
            .any(|f| seq >= f.1.saturating_add(max))
    }

    /// Since when DATA is held back by flow control, if it is.
    pub(crate) fn blocked(&self) -> Option<Instant> {
        self.blocked
    }

    /// When a receiver holding DATA back stops counting, while it does.
    pub(crate) fn flow_at(&self) -> Option<Instant> {
        self.blocked?;
        let max = self.max_ahead?;
        self.flow
            .iter()
            .filter(|f| self.retx.next >= f.1.saturating_add(max))
            .map(|f| f.2 + self.flow_timeout)
            .min()
    }

    /// Changes the retransmit window's size, dropping the oldest
    /// datagrams if it shrinks.
    pub(crate) fn set_retransmit_bytes(&mut self, limit: usize) {
        self.retx.limit = limit;
        self.evict();
    }

    /// Bytes of datagrams in the retransmit window.
    pub(crate) fn retransmit_bytes(&self) -> usize {
        self.retx.bytes
    }

    pub(super) fn evict(&mut self) {
        while self.retx.bytes > self.retx.limit {
            let Some(k) = self.retx.kept.pop_front() else {
                break;
            };
            self.retx.bytes -= k.data.len();
            self.recycle(k.data);
        }
    }

    /// Queues a NAK asking `target` for `ranges`.
    pub(crate) fn nak(&mut self, target: u64, ranges: &[(u64, u64)]) {
        self.nak_seq += 1;
        let mut b = self.buffer();
        wire::encode_nak(&mut b, self.node, self.nak_seq, target, ranges);
        self.control.push_back(Control::Nak(b));
    }

    /// Answers a NAK for `ranges`: queues each datagram still kept (unless
    /// it was sent within the hold-off or is queued already), and a GONE
    /// if some are no longer kept. Returns how many were queued.
    pub(crate) fn on_nak(&mut self, now: Instant, ranges: impl Iterator<Item = (u64, u64)>) -> u64 {
        let first = self.retx.first();
        let last = self.retx.next - 1;
        let mut gone = false;
        let mut queued = 0;
        for (a, b) in ranges {
            let b = b.min(last);
            if a > b {
                continue;
            }
            if a < first {
                gone = true;
            }
            for q in a.max(first)..=b {
                let holdoff = self.holdoff;
                let Some(k) = self.retx.get_mut(q) else {
                    break;
                };
                let recent = k
                    .resent
                    .is_some_and(|t| now.saturating_duration_since(t) < holdoff);
                if !k.queued && !recent {
                    k.queued = true;
                    self.resend.push_back(q);
                    queued += 1;
                }
            }
        }
        if gone && !self.gone_queued {
            self.gone_queued = true;
            self.control.push_back(Control::Gone);
        }
        queued
    }
}
