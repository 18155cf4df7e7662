//! Reassembly of one peer's fragmented message.
//!
//! This module owns the partial message of one peer and the rule that its
//! memory follows the bytes actually received, never the size a fragment
//! announces: a stranger's single datagram announcing a 16 MiB message
//! costs what the datagram carried, not 16 MiB. Fragments are applied in
//! sequence order and a sender puts them in consecutive records, so each
//! one continues the body where the previous one stopped; anything else is
//! a repeat (ignored) or a contradiction (the partial is dropped).

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::Piece;

/// Limits a reassembly is checked against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Largest message body accepted (payload limit plus the largest head).
    pub(crate) max_total: u64,
    /// Receive memory of all peers together; a message announcing more can
    /// never be held and is refused at once.
    pub(crate) budget: usize,
}

/// What a fragment did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FragOutcome {
    /// Stored, message not complete yet.
    Stored,
    /// Already had it.
    Duplicate,
    /// The message is complete: its body.
    Complete(Bytes),
    /// The message was refused for its size (counted once per message;
    /// its further fragments are dropped silently).
    Oversized,
    /// Another fragment of a message already refused.
    Refused,
    /// A fragment after the first of a message whose start was lost (the
    /// first such fragment of a message; later ones are `Refused`).
    Orphan,
    /// The fragment contradicts the partial message (numbers differ, or
    /// all fragments came but the bytes do not add up); both dropped.
    Inconsistent,
}

/// The body grows by at least this much when it must grow (fewer copies
/// for a large message), never beyond the announced total.
const GROW_MIN: usize = 64 << 10;

/// A message being put back together.
#[derive(Debug)]
struct Partial {
    msg_id: u64,
    count: u64,
    total: u64,
    /// The fragments received so far, in order: its length is the offset
    /// the next fragment must have.
    body: Vec<u8>,
    fragments: u64,
    last: Instant,
}

/// The reassembly of one peer.
#[derive(Debug, Default)]
pub(crate) struct Reassembly {
    partial: Option<Partial>,
    refused: Option<u64>,
}

impl Reassembly {
    /// Bytes held by the partial message (its buffer's capacity).
    pub(crate) fn memory(&self) -> usize {
        self.partial.as_ref().map_or(0, |p| p.body.capacity())
    }

    /// The id of the partial message, if any.
    pub(crate) fn partial_id(&self) -> Option<u64> {
        self.partial.as_ref().map(|p| p.msg_id)
    }

    /// Drops the partial message; true if there was one.
    pub(crate) fn abandon(&mut self) -> bool {
        self.partial.take().is_some()
    }

    /// Drops the partial message because a gap interrupts it (or memory
    /// is short); its further fragments are then dropped silently. True if
    /// there was one.
    pub(crate) fn abandon_for_gap(&mut self) -> bool {
        match self.partial.take() {
            Some(p) => {
                self.refused = Some(p.msg_id);
                true
            }
            None => false,
        }
    }

    /// When the partial message expires.
    pub(crate) fn deadline(&self, timeout: Duration) -> Option<Instant> {
        self.partial.as_ref().map(|p| p.last + timeout)
    }

    /// Adds a fragment. The caller has abandoned any partial of another id.
    pub(crate) fn push(&mut self, p: Piece, now: Instant, lim: Limits) -> FragOutcome {
        if self.refused == Some(p.msg_id) {
            return FragOutcome::Refused;
        }
        if self.partial_id().is_some_and(|id| id != p.msg_id) {
            self.partial = None;
        }
        let part = match &mut self.partial {
            Some(q) => {
                if q.count != p.count || q.total != p.total {
                    self.partial = None;
                    return FragOutcome::Inconsistent;
                }
                if p.index < q.fragments {
                    return FragOutcome::Duplicate;
                }
                if p.index != q.fragments || p.offset != q.body.len() as u64 {
                    self.partial = None;
                    return FragOutcome::Inconsistent;
                }
                q
            }
            None if p.index != 0 => {
                // Fragments are applied in order, so a message's first
                // fragment comes first: without it, the start was lost.
                self.refused = Some(p.msg_id);
                return FragOutcome::Orphan;
            }
            None => {
                if p.total > lim.max_total || p.total > lim.budget as u64 {
                    self.refused = Some(p.msg_id);
                    return FragOutcome::Oversized;
                }
                if p.offset != 0 {
                    return FragOutcome::Inconsistent;
                }
                // Nothing is reserved for the announced total: memory
                // follows what arrives (see `grow`).
                self.partial.insert(Partial {
                    msg_id: p.msg_id,
                    count: p.count,
                    total: p.total,
                    body: Vec::new(),
                    fragments: 0,
                    last: now,
                })
            }
        };
        // The decoder checked offset + len <= total.
        grow(&mut part.body, p.data.len(), part.total as usize);
        part.body.extend_from_slice(&p.data);
        part.fragments += 1;
        part.last = now;
        if part.fragments < part.count {
            return FragOutcome::Stored;
        }
        let done = self.partial.take().expect("partial present");
        if done.body.len() as u64 != done.total {
            return FragOutcome::Inconsistent;
        }
        FragOutcome::Complete(Bytes::from(done.body))
    }
}

/// Makes room for `add` more bytes in `body`, whose final length is at most
/// `total`: by at least `GROW_MIN` or an eighth of what it holds, so that a
/// large message is copied a bounded number of times while its capacity
/// stays within an eighth (or 64 KiB) of the bytes received.
fn grow(body: &mut Vec<u8>, add: usize, total: usize) {
    let need = body.len() + add;
    if need <= body.capacity() {
        return;
    }
    let step = (body.capacity() / 8).max(GROW_MIN);
    let cap = need.max(body.capacity() + step).min(total).max(need);
    body.reserve_exact(cap - body.len());
}
