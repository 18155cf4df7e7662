//! The receive side of one peer: putting its DATA datagrams back in order
//! and its fragments back together.
//!
//! This module owns the per-peer receive window (which sequence number is
//! due next, the datagrams held while an earlier one is missing, and when to
//! give up on a gap) and the reassembly of one fragmented message at a time.
//! Because datagrams are processed strictly in sequence order and a sender
//! puts the fragments of one message in consecutive records, a partial
//! message that is followed by any other record can never complete: it is
//! abandoned at once, so one partial per peer is all the memory needed.
//! Issue 7 will add NAKs where this window now only waits and gives up.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::wire;
use super::{ByteStr, InMessage};

/// A decoded record waiting to be applied in sequence order; owns slices of
/// the received datagram.
#[derive(Debug)]
pub(crate) enum Staged {
    /// A whole message.
    Msg(InMessage),
    /// A fragment.
    Frag(Piece),
}

/// A fragment, owning its data.
#[derive(Debug)]
pub(crate) struct Piece {
    pub(crate) msg_id: u64,
    pub(crate) index: u64,
    pub(crate) count: u64,
    pub(crate) total: u64,
    pub(crate) offset: u64,
    pub(crate) data: Bytes,
}

/// What to do with a DATA datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// It is the next one: apply it now.
    Now,
    /// It is ahead of a missing one: hold it.
    Hold,
    /// Already applied, given up on, or held: drop it.
    Duplicate,
}

/// A datagram held until the gap before it fills or is given up on.
#[derive(Debug)]
struct Held {
    arrived: Instant,
    items: Vec<Staged>,
}

/// The per-peer ordering window.
#[derive(Debug, Default)]
pub(crate) struct Window {
    /// The sequence number due next; `None` until the first datagram or
    /// heartbeat tells where this peer's stream is.
    next: Option<u64>,
    held: BTreeMap<u64, Held>,
}

impl Window {
    /// Starts the window after `last_seq` (from a first heartbeat) if it has
    /// not started yet: a late joiner does not wait for earlier datagrams.
    pub(crate) fn start_after(&mut self, last_seq: u64) {
        if self.next.is_none() {
            self.next = Some(last_seq.saturating_add(1));
        }
    }

    /// Classifies an arriving DATA datagram (changes nothing).
    pub(crate) fn admit(&self, seq: u64) -> Admit {
        let Some(next) = self.next else {
            return Admit::Now;
        };
        if seq < next || self.held.contains_key(&seq) {
            Admit::Duplicate
        } else if seq == next {
            Admit::Now
        } else {
            Admit::Hold
        }
    }

    /// Starts the window at `seq` if it has not started yet (the first
    /// datagram heard from a peer whose heartbeat was not heard yet).
    pub(crate) fn begin(&mut self, seq: u64) {
        self.next.get_or_insert(seq);
    }

    /// Records that the due datagram was applied.
    pub(crate) fn advance(&mut self) {
        if let Some(n) = &mut self.next {
            *n = n.saturating_add(1);
        }
    }

    /// Holds an early datagram's records.
    pub(crate) fn hold(&mut self, seq: u64, now: Instant, items: Vec<Staged>) {
        self.held.insert(
            seq,
            Held {
                arrived: now,
                items,
            },
        );
    }

    /// Number of held datagrams.
    pub(crate) fn held(&self) -> usize {
        self.held.len()
    }

    /// Takes the held datagram that is due next, if any, and advances.
    pub(crate) fn take_next(&mut self) -> Option<Vec<Staged>> {
        let n = self.next?;
        let h = self.held.remove(&n)?;
        self.advance();
        Some(h.items)
    }

    /// Gives up on the gap before the first held datagram: returns how many
    /// sequence numbers were skipped (0 if nothing is held).
    pub(crate) fn skip_gap(&mut self) -> u64 {
        let (Some(next), Some((&first, _))) = (self.next, self.held.first_key_value()) else {
            return 0;
        };
        self.next = Some(first);
        first - next
    }

    /// When the oldest held datagram has waited `timeout`.
    pub(crate) fn deadline(&self, timeout: Duration) -> Option<Instant> {
        self.held
            .values()
            .map(|h| h.arrived)
            .min()
            .map(|t| t + timeout)
    }
}

/// Limits a reassembly is checked against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Largest message body accepted (payload limit plus the largest head).
    pub(crate) max_total: u64,
    /// Memory a peer's partial message may use.
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
    /// The fragment contradicts the partial message (numbers differ, or
    /// all fragments came but the bytes do not add up); both dropped.
    Inconsistent,
}

/// A message being put back together.
#[derive(Debug)]
struct Partial {
    msg_id: u64,
    count: u64,
    total: u64,
    body: Vec<u8>,
    /// One bit per fragment index received.
    have: Vec<u64>,
    fragments: u64,
    bytes: u64,
    last: Instant,
}

impl Partial {
    fn memory(&self) -> usize {
        self.body.len() + self.have.len() * 8
    }
}

/// The reassembly of one peer.
#[derive(Debug, Default)]
pub(crate) struct Reassembly {
    partial: Option<Partial>,
    refused: Option<u64>,
}

impl Reassembly {
    /// Bytes held by the partial message.
    pub(crate) fn memory(&self) -> usize {
        self.partial.as_ref().map_or(0, Partial::memory)
    }

    /// The id of the partial message, if any.
    pub(crate) fn partial_id(&self) -> Option<u64> {
        self.partial.as_ref().map(|p| p.msg_id)
    }

    /// Drops the partial message; true if there was one.
    pub(crate) fn abandon(&mut self) -> bool {
        self.partial.take().is_some()
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
                q
            }
            None => {
                let words = p.count.div_ceil(64) as usize;
                let memory = (p.total as usize).saturating_add(words * 8);
                if p.total > lim.max_total || memory > lim.budget {
                    self.refused = Some(p.msg_id);
                    return FragOutcome::Oversized;
                }
                // Zeroed memory is mapped lazily by the allocator, so a
                // large announced total costs little until it is filled.
                self.partial.insert(Partial {
                    msg_id: p.msg_id,
                    count: p.count,
                    total: p.total,
                    body: vec![0; p.total as usize],
                    have: vec![0; words],
                    fragments: 0,
                    bytes: 0,
                    last: now,
                })
            }
        };
        let (w, bit) = ((p.index / 64) as usize, 1u64 << (p.index % 64));
        if part.have[w] & bit != 0 {
            return FragOutcome::Duplicate;
        }
        part.have[w] |= bit;
        part.fragments += 1;
        part.bytes += p.data.len() as u64;
        part.last = now;
        // The decoder checked offset + len <= total.
        let at = p.offset as usize;
        part.body[at..at + p.data.len()].copy_from_slice(&p.data);
        if part.fragments < part.count {
            return FragOutcome::Stored;
        }
        let done = self.partial.take().expect("partial present");
        if done.bytes != done.total {
            return FragOutcome::Inconsistent;
        }
        FragOutcome::Complete(Bytes::from(done.body))
    }
}

/// Turns a MSG record of `buf` (a datagram or a reassembled body, which it
/// borrows from) into a message that shares `buf`.
pub(crate) fn to_message(node: u64, buf: &Bytes, m: &wire::MsgRecord<'_>) -> InMessage {
    // The decoder validated the names as UTF-8.
    let text = |s: &str| ByteStr(buf.slice_ref(s.as_bytes()));
    InMessage {
        node,
        client: m.client,
        seq: m.seq,
        channel: text(m.channel),
        event: text(m.event),
        payload: buf.slice_ref(m.payload),
    }
}

/// Decodes a DATA body into `out`, whole or not at all: on error `out` is
/// left as it was.
pub(crate) fn stage(
    node: u64,
    buf: &Bytes,
    body: &[u8],
    out: &mut Vec<Staged>,
) -> Result<(), wire::WireError> {
    let start = out.len();
    for r in wire::RecordReader::new(body) {
        match r {
            Ok(wire::Record::Msg(m)) => out.push(Staged::Msg(to_message(node, buf, &m))),
            Ok(wire::Record::Frag(f)) => out.push(Staged::Frag(Piece {
                msg_id: f.msg_id,
                index: f.index,
                count: f.count,
                total: f.total,
                offset: f.offset,
                data: buf.slice_ref(f.data),
            })),
            Err(e) => {
                out.truncate(start);
                return Err(e);
            }
        }
    }
    if out.len() == start {
        return Err(wire::WireError::Empty);
    }
    Ok(())
}
