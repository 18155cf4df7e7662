//! The sender's side of reliability: the retransmit window, answers to
//! NAKs, and flow control from the receivers' ACKs.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::*;
use crate::net::NAK_ANSWER_MAX;

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

/// One receiver's part in flow control.
#[derive(Debug)]
pub(super) struct Flow {
    node: u64,
    /// The next DATA seq it expects (its acknowledged progress).
    next: u64,
    /// Its `next` when it started using up its time: progress of half a
    /// window from here (or catching up with everything sent) gives the
    /// time back.
    mark: u64,
    /// Time it has held the sender back since `mark`, besides the
    /// current wait.
    spent: Duration,
    /// Since when it holds the sender back now, if it does.
    since: Option<Instant>,
    /// It used up `flow_timeout`: it no longer counts until it progresses.
    released: bool,
}

impl Sender {
    /// A receiver acknowledged every DATA datagram below `next`. Only
    /// progress counts: an ACK that repeats (or goes back) changes nothing,
    /// and one beyond what was sent counts as catching up.
    pub(crate) fn on_ack(&mut self, node: u64, next: u64, _now: Instant) {
        let sent = self.retx.next;
        let next = next.min(sent);
        let half = self.max_ahead.unwrap_or(0) / 2;
        let f = match self.flow.iter_mut().position(|f| f.node == node) {
            Some(i) => &mut self.flow[i],
            None => {
                self.flow.push(Flow {
                    node,
                    next,
                    mark: next,
                    spent: Duration::ZERO,
                    since: None,
                    released: false,
                });
                return;
            }
        };
        if next <= f.next {
            return;
        }
        f.next = next;
        if next >= sent || next >= f.mark.saturating_add(half.max(1)) {
            // Real progress: its time is given back.
            f.mark = next;
            f.spent = Duration::ZERO;
            f.since = None;
            f.released = false;
        }
    }

    /// Forgets a receiver (it went down).
    pub(crate) fn forget(&mut self, node: u64) {
        self.flow.retain(|f| f.node != node);
        self.requesters.remove(&node);
    }

    /// Whether DATA `seq` must wait for the slowest live receiver: it would
    /// push a datagram that receiver still needs out of the window. Each
    /// receiver may hold the sender back for `flow_timeout` in total until
    /// it progresses by half a window (or catches up); then it is released.
    pub(super) fn flow_blocks(&mut self, now: Instant, seq: u64) -> bool {
        let Some(max) = self.max_ahead else {
            return false;
        };
        let timeout = self.flow_timeout;
        let mut blocks = false;
        for f in self.flow.iter_mut().filter(|f| !f.released) {
            if seq < f.next.saturating_add(max) {
                if let Some(t) = f.since.take() {
                    f.spent += now.saturating_duration_since(t);
                }
                continue;
            }
            let t = *f.since.get_or_insert(now);
            if f.spent + now.saturating_duration_since(t) >= timeout {
                f.released = true;
                f.since = None;
                continue;
            }
            blocks = true;
        }
        blocks
    }

    /// Since when DATA is held back by flow control, if it is.
    pub(crate) fn blocked(&self) -> Option<Instant> {
        self.blocked
    }

    /// When a receiver holding DATA back stops counting, while it does.
    pub(crate) fn flow_at(&self) -> Option<Instant> {
        self.blocked?;
        self.flow
            .iter()
            .filter(|f| !f.released)
            .filter_map(|f| {
                let t = f.since?;
                Some(t + self.flow_timeout.saturating_sub(f.spent))
            })
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

    /// Answers a NAK from `requester` for `ranges`: queues each datagram
    /// still kept (unless it was sent within the hold-off or is queued
    /// already), at most [`NAK_ANSWER_MAX`] and within the requester's
    /// rate, and a GONE if some are no longer kept. Returns how many were
    /// queued and how many were not for those limits.
    pub(crate) fn on_nak(
        &mut self,
        now: Instant,
        requester: u64,
        ranges: impl Iterator<Item = (u64, u64)>,
    ) -> (u64, u64) {
        let first = self.retx.first();
        let last = self.retx.next - 1;
        let (rate, burst) = self.retransmit_rate;
        let bucket = self
            .requesters
            .entry(requester)
            .or_insert_with(|| Pacer::new(rate, burst, now));
        let mut gone = false;
        let mut queued = 0;
        let mut limited = 0u64;
        for (a, b) in ranges {
            let b = b.min(last);
            if a > b {
                continue;
            }
            if a < first {
                gone = true;
            }
            for q in a.max(first)..=b {
                let Some(k) = self.retx.get_mut(q) else {
                    break;
                };
                let recent = k
                    .resent
                    .is_some_and(|t| now.saturating_duration_since(t) < self.holdoff);
                if k.queued || recent {
                    continue;
                }
                if queued == NAK_ANSWER_MAX as u64 || !bucket.take(now, k.data.len() + TAG_LEN) {
                    limited = limited.saturating_add(b - q + 1);
                    break;
                }
                k.queued = true;
                self.resend.push_back(q);
                queued += 1;
            }
        }
        if gone && !self.gone_queued {
            self.gone_queued = true;
            self.control.push_back(Control::Gone);
        }
        (queued, limited)
    }
}
