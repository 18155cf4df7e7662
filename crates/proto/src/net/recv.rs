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
//! The window also tracks which datagrams are missing and when each is due
//! for a NAK; the engine sends the NAKs and feeds back GONE answers.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::rng::XorShift;
use super::wire;
use super::{ByteStr, InMessage, MAX_TRACKED, NAK_ANSWER_MAX};

mod reasm;
pub(crate) use reasm::{FragOutcome, Limits, Reassembly};

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

/// A missing DATA datagram and its NAK schedule.
#[derive(Debug, Clone, Copy)]
struct Miss {
    /// NAK rounds so far (ours and those heard from other receivers).
    rounds: u32,
    /// When the next NAK round is due.
    due: Instant,
    /// Given up on: skipped when delivery reaches it.
    lost: bool,
}

/// What delivery does next, from [`Window::take_next`].
#[derive(Debug)]
pub(crate) enum Step {
    /// Apply this datagram's records.
    Apply(Vec<Staged>),
    /// These sequence numbers are lost (inclusive range).
    Lost(u64, u64),
}

/// NAK timing, from the config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NakTiming {
    pub(crate) first: Duration,
    pub(crate) backoff: Duration,
    pub(crate) interval: Duration,
    pub(crate) rounds: u32,
}

/// Missing entries looked at per NAK: the rest wait for the next NAK, so
/// that a stranger announcing a far sequence number costs a bounded scan.
const NAK_SCAN_MAX: usize = 4096;
/// Shortest wait before a NAK round goes on after a bounded scan.
const NAK_MIN_SPACING: Duration = Duration::from_micros(500);

/// The wait between NAK rounds doubles each round up to this many times
/// `nak_interval`, so that a sender stalled for a moment (a busy machine)
/// is not given up on after a hundred milliseconds.
const NAK_BACKOFF_CAP: u32 = 20;

impl NakTiming {
    /// Wait after round `rounds` (1, 2, …): `interval` doubled per round,
    /// capped, plus up to a quarter at random.
    fn after(&self, rounds: u32, rng: &mut XorShift) -> Duration {
        let factor = 1u32
            .checked_shl(rounds.saturating_sub(1))
            .unwrap_or(u32::MAX)
            .min(NAK_BACKOFF_CAP);
        let d = self.interval * factor;
        d + rng.up_to(d / 4)
    }
}

/// The per-peer ordering and repair window.
///
/// Every sequence number from `next` to `known` is either held (arrived
/// early) or missing (with a NAK schedule); nothing beyond `known` is
/// expected yet. Sequence numbers below `floor` that are not held are given
/// up on. Delivery takes held datagrams in order and skips given-up runs,
/// reporting them as lost.
#[derive(Debug, Default)]
pub(crate) struct Window {
    /// The sequence number due next; `None` until the first datagram or
    /// heartbeat tells where this peer's stream is.
    next: Option<u64>,
    /// Highest sequence number known to exist (0: none).
    known: u64,
    held: BTreeMap<u64, Vec<Staged>>,
    missing: BTreeMap<u64, Miss>,
    floor: u64,
    /// No missing datagram is due before this (a lower bound: it may be
    /// early after a missing one arrived, which only costs a scan).
    nak_due: Option<Instant>,
    /// Memory of the held datagrams (see [`held_cost`]).
    held_bytes: usize,
    /// Where the next NAK round's scan resumes (0: at the floor), and the
    /// earliest due time seen since the scan last started at the floor.
    cursor: u64,
    pass_earliest: Option<Instant>,
    /// When a NAK could not ask for everything due (a sender answers at
    /// most [`NAK_ANSWER_MAX`] per NAK): the next one goes out as soon as
    /// an answer arrives, or after `nak_interval` if none does, so a
    /// stranger that never answers does not draw a stream of NAKs.
    more: Option<Instant>,
}

/// Memory accounted for each sequence number tracked as missing (a map
/// entry and its NAK schedule), so that a stranger announcing a far seq
/// pays for the tracking it causes.
pub(crate) const MISS_COST: usize = 64;

/// Memory accounted for a held datagram: its records (each pins a slice of
/// the datagram's buffer and takes a decoded record's room) and the map
/// entry. A datagram of many tiny records costs far more decoded than on
/// the wire, which this counts.
fn held_cost(items: &[Staged]) -> usize {
    let per = std::mem::size_of::<Staged>() + 16;
    super::wire::HEADER_LEN
        + MISS_COST
        + items
            .iter()
            .map(|i| match i {
                Staged::Msg(m) => per + m.payload.len() + m.channel.len() + m.event.len(),
                Staged::Frag(p) => per + p.data.len(),
            })
            .sum::<usize>()
}

impl Window {
    /// Starts the window after `last_seq` (from a first heartbeat) if it has
    /// not started yet: a late joiner does not wait for earlier datagrams.
    pub(crate) fn start_after(&mut self, last_seq: u64) {
        if self.next.is_none() {
            self.next = Some(last_seq.saturating_add(1));
            self.known = last_seq;
        }
    }

    /// The sequence number due next, if started.
    pub(crate) fn next_due(&self) -> Option<u64> {
        self.next
    }

    /// Classifies an arriving DATA datagram (changes nothing).
    pub(crate) fn admit(&self, seq: u64) -> Admit {
        let Some(next) = self.next else {
            return Admit::Now;
        };
        if seq < next || seq < self.floor || self.held.contains_key(&seq) {
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
        if self.next.is_none() {
            self.next = Some(seq);
            self.known = seq.saturating_sub(1);
        }
    }

    /// Records that the due datagram (`seq`, admitted `Now`) was applied.
    pub(crate) fn advance(&mut self, seq: u64) {
        self.arrived(seq);
        self.known = self.known.max(seq);
        self.next = Some(seq.saturating_add(1));
    }

    /// Learns that every sequence number up to `upto` exists: those not
    /// seen yet become missing, first NAKed after `t.first` plus a random
    /// part of `t.backoff`. Far ahead of `next`, the oldest are given up.
    pub(crate) fn learn(&mut self, upto: u64, now: Instant, t: &NakTiming, rng: &mut XorShift) {
        let Some(next) = self.next else {
            return;
        };
        if upto <= self.known {
            return;
        }
        if upto - next >= MAX_TRACKED {
            self.give_up_below(upto - MAX_TRACKED + 1);
        }
        let from = (self.known + 1).max(self.floor);
        for q in from..=upto {
            let due = now + t.first + rng.up_to(t.backoff);
            self.missing.insert(
                q,
                Miss {
                    rounds: 0,
                    due,
                    lost: false,
                },
            );
            self.nak_due = Some(self.nak_due.map_or(due, |d| d.min(due)));
        }
        self.known = upto;
    }

    /// Holds an early datagram's records.
    pub(crate) fn hold(
        &mut self,
        seq: u64,
        items: Vec<Staged>,
        now: Instant,
        t: &NakTiming,
        rng: &mut XorShift,
    ) {
        self.learn(seq, now, t, rng);
        self.arrived(seq);
        self.held_bytes += held_cost(&items);
        self.held.insert(seq, items);
    }

    /// A missing datagram arrived: if it had been NAKed and more is due,
    /// the next NAK goes out now.
    fn arrived(&mut self, seq: u64) {
        let nakked = self.missing.remove(&seq).is_some_and(|m| m.rounds > 0);
        if let Some(t) = self.more.filter(|_| nakked) {
            self.nak_due = Some(t);
        }
    }

    /// Number of held datagrams.
    pub(crate) fn held(&self) -> usize {
        self.held.len()
    }

    /// Memory this window holds: held datagrams and tracked missing ones.
    pub(crate) fn memory(&self) -> usize {
        self.held_bytes + self.missing.len() * MISS_COST
    }

    /// The next step of in-order delivery, if any can be taken.
    pub(crate) fn take_next(&mut self) -> Option<Step> {
        let n = self.next?;
        if let Some(items) = self.held.remove(&n) {
            self.held_bytes -= held_cost(&items);
            self.advance(n);
            return Some(Step::Apply(items));
        }
        let end = if n < self.floor {
            // Everything below the floor that is not held is lost.
            let limit = self
                .held
                .keys()
                .next()
                .map_or(self.floor, |&h| h.min(self.floor));
            limit - 1
        } else if self.missing.get(&n).is_some_and(|m| m.lost) {
            let mut e = n;
            while self.missing.get(&(e + 1)).is_some_and(|m| m.lost) {
                e += 1;
            }
            e
        } else {
            return None;
        };
        let keys: Vec<u64> = self.missing.range(n..=end).map(|(&k, _)| k).collect();
        for k in keys {
            self.missing.remove(&k);
        }
        self.known = self.known.max(end);
        self.next = Some(end + 1);
        Some(Step::Lost(n, end))
    }

    /// Gives up on everything below `f` that has not arrived.
    pub(crate) fn give_up_below(&mut self, f: u64) {
        if self.next.is_some_and(|n| n < f) {
            self.floor = self.floor.max(f);
        }
    }

    /// Gives up on what is known missing below `f` (the sender no longer
    /// has it); sequence numbers not known yet are left alone, since they
    /// may still be on their way.
    pub(crate) fn give_up_known_below(&mut self, f: u64) {
        self.give_up_below(f.min(self.known.saturating_add(1)));
    }

    /// Gives up on the gap before the first held datagram (the receiver
    /// holds too many).
    pub(crate) fn give_up_oldest_gap(&mut self) {
        if let Some(&first) = self.held.keys().next() {
            self.give_up_below(first);
        }
    }

    /// Gives up on everything not yet arrived (the peer is gone).
    pub(crate) fn give_up_all(&mut self) {
        self.give_up_below(self.known.saturating_add(1));
    }

    /// When the next NAK round may be due.
    pub(crate) fn nak_deadline(&self) -> Option<Instant> {
        self.nak_due
    }

    /// Takes the NAK round due at `now`: the missing sequence numbers due
    /// (as ascending, non-adjacent ranges, at most `max_ranges`); those
    /// past their last round are given up on instead.
    pub(crate) fn due_naks(
        &mut self,
        now: Instant,
        t: &NakTiming,
        rng: &mut XorShift,
        max_ranges: usize,
    ) -> Vec<(u64, u64)> {
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        if !matches!(self.nak_due, Some(d) if d <= now) {
            return ranges;
        }
        let mut asked = 0;
        let mut stop = None;
        let floor = self.floor;
        let start = self.cursor.max(floor);
        let mut earliest = self.pass_earliest;
        for (scanned, (&q, m)) in self.missing.range_mut(start..).enumerate() {
            if scanned == NAK_SCAN_MAX {
                stop = Some((q, false));
                break;
            }
            if m.lost {
                continue;
            }
            if m.due <= now {
                if m.rounds >= t.rounds {
                    m.lost = true;
                    continue;
                }
                let extends = ranges.last().is_some_and(|r| r.1 + 1 == q);
                if asked == NAK_ANSWER_MAX || (!extends && ranges.len() == max_ranges) {
                    stop = Some((q, true));
                    break;
                }
                if extends {
                    ranges.last_mut().expect("checked").1 = q;
                } else {
                    ranges.push((q, q));
                }
                asked += 1;
                m.rounds += 1;
                m.due = now + t.after(m.rounds, rng);
            }
            earliest = Some(earliest.map_or(m.due, |e| e.min(m.due)));
        }
        match stop {
            // More is due than one NAK asks for: the rest after an answer.
            Some((q, true)) => {
                self.cursor = q;
                self.pass_earliest = earliest;
                self.more = Some(now);
                self.nak_due = Some(now + t.interval.max(NAK_MIN_SPACING));
            }
            // Scanned enough for one call: go on shortly.
            Some((q, false)) => {
                self.cursor = q;
                self.pass_earliest = earliest;
                self.nak_due = Some(now + NAK_MIN_SPACING);
            }
            None => {
                self.cursor = 0;
                self.pass_earliest = None;
                self.more = None;
                self.nak_due = earliest;
            }
        }
        ranges
    }

    /// Another receiver NAKed these ranges of this peer: the missing ones
    /// among them count a round, as if this receiver had sent the NAK.
    /// Returns how many rounds this spared.
    pub(crate) fn suppress(
        &mut self,
        now: Instant,
        ranges: impl Iterator<Item = (u64, u64)>,
        t: &NakTiming,
        rng: &mut XorShift,
    ) -> u64 {
        let mut spared = 0;
        // A NAK gets at most NAK_ANSWER_MAX datagrams sent again, so only
        // that many count as asked for.
        let mut counted = 0u64;
        for (a, b) in ranges {
            let room = NAK_ANSWER_MAX as u64 - counted;
            if room == 0 {
                break;
            }
            let b = b.min(a.saturating_add(room - 1));
            counted += b - a + 1;
            let a = a.max(self.floor);
            if a > b {
                continue;
            }
            for (_, m) in self.missing.range_mut(a..=b) {
                if m.lost || m.rounds >= t.rounds {
                    continue;
                }
                m.rounds += 1;
                m.due = m.due.max(now + t.after(m.rounds, rng));
                spared += 1;
            }
        }
        spared
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
