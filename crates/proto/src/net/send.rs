//! The send side: turning messages into datagrams.
//!
//! This module owns the open batch (the DATA datagram being filled), the
//! decision to close it (full, or its first message has waited
//! `flush_delay`), fragmentation of messages that do not fit one datagram,
//! the numbering of datagrams and fragmented messages, the queue of closed
//! datagrams with its buffer pool, and pacing. Messages leave in the order
//! they were given: a fragmented message takes consecutive datagrams, the
//! first possibly shared with the messages before it, the last with those
//! after it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::varint;

use super::wire::{self, tag, Header, Heartbeat, Kind, HEADER_LEN};
use super::OutMessage;

/// Smallest record (tag and a zero payload length, every field implied):
/// an open batch with less room than this is closed at once.
const MIN_RECORD: usize = 2;
/// A fragment is started in the open batch's remaining room only if at
/// least this many data bytes fit; otherwise the batch is closed first.
const MIN_FRAGMENT_FILL: usize = 64;
/// Spare datagram buffers kept for reuse.
const POOL_MAX: usize = 64;

/// The fields of the last MSG record in the open batch, which the next
/// record may imply. Names are ranges into the batch buffer.
#[derive(Debug, Default)]
struct Prev {
    channel: Option<(usize, usize)>,
    event: Option<(usize, usize)>,
    client: Option<u64>,
    seq: Option<u64>,
}

/// Batching, fragmentation and the queue of datagrams to send.
#[derive(Debug)]
pub(crate) struct Sender {
    node: u64,
    mtu: usize,
    flush_delay: Duration,
    /// Last DATA sequence number given out (0: none yet).
    pub(crate) data_seq: u64,
    heartbeat_seq: u64,
    msg_id: u64,
    /// The open batch; empty, or a header's room followed by records.
    cur: Vec<u8>,
    cur_since: Option<Instant>,
    prev: Prev,
    /// Explicit head of a message being fragmented.
    head: Vec<u8>,
    ready: VecDeque<Vec<u8>>,
    pool: Vec<Vec<u8>>,
    pacer: Pacer,
}

impl Sender {
    pub(crate) fn new(node: u64, mtu: usize, flush_delay: Duration, pacer: Pacer) -> Self {
        Sender {
            node,
            mtu,
            flush_delay,
            data_seq: 0,
            heartbeat_seq: 0,
            msg_id: 0,
            cur: Vec::with_capacity(mtu),
            cur_since: None,
            prev: Prev::default(),
            head: Vec::new(),
            ready: VecDeque::new(),
            pool: Vec::new(),
            pacer,
        }
    }

    /// Closed datagrams waiting for `poll_transmit`.
    pub(crate) fn pending(&self) -> usize {
        self.ready.len()
    }

    /// When the open batch must be closed, if there is one.
    pub(crate) fn flush_at(&self) -> Option<Instant> {
        self.cur_since.map(|t| t + self.flush_delay)
    }

    /// When pacing next lets a queued datagram out, if it holds one back.
    pub(crate) fn pace_at(&self) -> Option<Instant> {
        let len = self.ready.front()?.len();
        self.pacer.ready_at(len)
    }

    /// Appends a message; returns true if it was fragmented.
    pub(crate) fn push(&mut self, now: Instant, m: &OutMessage<'_>) -> bool {
        let body = wire::message_body_len(m);
        if !self.cur.is_empty() {
            let (t, len) = self.implied(m, body);
            if self.cur.len() + len <= self.mtu {
                self.write_msg(t, m);
                return false;
            }
        }
        if HEADER_LEN + 1 + body <= self.mtu {
            self.close();
            self.open(now);
            self.write_msg(tag::MSG, m);
            return false;
        }
        self.fragment(now, m, body);
        true
    }

    /// The tag for `m` after the previous record, and the record's length.
    fn implied(&self, m: &OutMessage<'_>, body: usize) -> (u8, usize) {
        let mut t = tag::MSG;
        let mut len = 1 + body;
        let same = |r: Option<(usize, usize)>, s: &str| {
            r.is_some_and(|(a, b)| &self.cur[a..b] == s.as_bytes())
        };
        if same(self.prev.channel, m.channel) {
            t |= tag::SAME_CHANNEL;
            len -= wire::field_len(m.channel.len());
        }
        if same(self.prev.event, m.event) {
            t |= tag::SAME_EVENT;
            len -= wire::field_len(m.event.len());
        }
        if self.prev.client == Some(m.client) {
            t |= tag::SAME_CLIENT;
            len -= varint::len(m.client);
        }
        if self.prev.seq.and_then(|s| s.checked_add(1)) == Some(m.seq) {
            t |= tag::NEXT_SEQ;
            len -= varint::len(m.seq);
        }
        (t, len)
    }

    fn write_msg(&mut self, t: u8, m: &OutMessage<'_>) {
        let start = self.cur.len();
        wire::put_msg_record(&mut self.cur, t, m);
        if t & tag::SAME_CHANNEL == 0 {
            let a = start + 1 + varint::len(m.channel.len() as u64);
            self.prev.channel = Some((a, a + m.channel.len()));
        }
        if t & tag::SAME_EVENT == 0 {
            let mut a = start + 1 + varint::len(m.event.len() as u64);
            if t & tag::SAME_CHANNEL == 0 {
                a += wire::field_len(m.channel.len());
            }
            self.prev.event = Some((a, a + m.event.len()));
        }
        self.prev.client = Some(m.client);
        self.prev.seq = Some(m.seq);
        self.close_if_full();
    }

    /// Splits `m` (whose explicit body is `total` bytes) into fragments.
    fn fragment(&mut self, now: Instant, m: &OutMessage<'_>, total: usize) {
        self.head.clear();
        wire::put_message_head(&mut self.head, tag::MSG, m);
        debug_assert_eq!(self.head.len() + m.payload.len(), total);
        self.msg_id += 1;
        let id = self.msg_id;
        // An upper bound of a FRAG record's head: index and count are at
        // most `total`, offset below it, the data length below the mtu.
        let vt = varint::len(total as u64);
        let head_max = 1 + varint::len(id) + 4 * vt + varint::len(self.mtu as u64);
        let full = self.mtu - HEADER_LEN - head_max;
        let mut first = if self.cur.is_empty() {
            full
        } else {
            self.mtu.saturating_sub(self.cur.len() + head_max)
        };
        if first < MIN_FRAGMENT_FILL {
            self.close();
            first = full;
        }
        let count = 1 + (total - first).div_ceil(full);
        let mut offset = 0;
        for index in 0..count {
            if index > 0 {
                self.close();
            }
            if self.cur.is_empty() {
                self.open(now);
            }
            let cap = if index == 0 { first } else { full };
            let len = cap.min(total - offset);
            wire::put_frag_head(
                &mut self.cur,
                id,
                index as u64,
                count as u64,
                total as u64,
                offset as u64,
                len,
            );
            // The body is head ‖ payload; copy this fragment's part of each.
            let end = offset + len;
            let hl = self.head.len();
            if offset < hl {
                self.cur.extend_from_slice(&self.head[offset..end.min(hl)]);
            }
            if end > hl {
                self.cur
                    .extend_from_slice(&m.payload[offset.max(hl) - hl..end - hl]);
            }
            offset = end;
        }
        self.prev = Prev::default();
        self.close_if_full();
    }

    fn open(&mut self, now: Instant) {
        debug_assert!(self.cur.is_empty());
        self.cur.resize(HEADER_LEN, 0);
        self.cur_since = Some(now);
    }

    fn close_if_full(&mut self) {
        if self.mtu - self.cur.len() < MIN_RECORD {
            self.close();
        }
    }

    /// Closes the open batch, if any: numbers it and queues it.
    pub(crate) fn close(&mut self) {
        if self.cur.is_empty() {
            return;
        }
        self.data_seq += 1;
        let h = Header {
            kind: Kind::Data,
            flags: 0,
            key_id: 0,
            node: self.node,
            seq: self.data_seq,
        };
        wire::put_header(&mut self.cur, &h);
        let next = self.buffer();
        self.ready.push_back(std::mem::replace(&mut self.cur, next));
        self.cur_since = None;
        self.prev = Prev::default();
    }

    /// Closes the open batch if its delay has passed (or is zero).
    pub(crate) fn flush_due(&mut self, now: Instant) {
        if self.flush_at().is_some_and(|t| t <= now) {
            self.close();
        }
    }

    /// Queues a heartbeat behind the closed DATA datagrams, so its
    /// `last_seq` never announces a datagram that leaves after it.
    pub(crate) fn heartbeat(&mut self, hb: &Heartbeat<'_>) {
        self.heartbeat_seq += 1;
        let mut b = self.buffer();
        wire::encode_heartbeat(&mut b, self.node, self.heartbeat_seq, hb);
        self.ready.push_back(b);
    }

    /// Hands the next datagram out by swapping it with `buf`, whose old
    /// allocation is kept for reuse; `None` if nothing is queued or pacing
    /// holds it back.
    pub(crate) fn pop(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<usize> {
        let len = self.ready.front()?.len();
        if !self.pacer.take(now, len) {
            return None;
        }
        let mut d = self.ready.pop_front()?;
        std::mem::swap(buf, &mut d);
        d.clear();
        if self.pool.len() < POOL_MAX {
            self.pool.push(d);
        }
        Some(len)
    }

    fn buffer(&mut self) -> Vec<u8> {
        self.pool
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.mtu))
    }
}

/// A token bucket over bytes: `rate` bytes per second, up to `burst` saved.
#[derive(Debug)]
pub(crate) struct Pacer {
    rate: u64,
    burst: u64,
    tokens: u64,
    last: Instant,
}

impl Pacer {
    /// `rate == 0` disables pacing.
    pub(crate) fn new(rate: u64, burst: usize, now: Instant) -> Self {
        let burst = burst.max(1) as u64;
        Pacer {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last);
        let add = (dt.as_nanos() * self.rate as u128 / 1_000_000_000) as u64;
        if add > 0 {
            self.tokens = self.tokens.saturating_add(add).min(self.burst);
            // Advance by the time those tokens took, keeping the remainder.
            let used =
                Duration::from_nanos((add as u128 * 1_000_000_000 / self.rate as u128) as u64);
            self.last = if self.tokens == self.burst {
                now
            } else {
                self.last + used
            };
        }
    }

    /// Takes `len` bytes' worth if available. A datagram larger than the
    /// burst leaves when the bucket is full, so nothing is stuck forever.
    fn take(&mut self, now: Instant, len: usize) -> bool {
        if self.rate == 0 {
            return true;
        }
        self.refill(now);
        let need = (len as u64).min(self.burst);
        if self.tokens < need {
            return false;
        }
        self.tokens -= need;
        true
    }

    /// When `take(len)` will succeed, if not now.
    fn ready_at(&self, len: usize) -> Option<Instant> {
        if self.rate == 0 {
            return None;
        }
        let need = (len as u64).min(self.burst);
        let missing = need.saturating_sub(self.tokens);
        if missing == 0 {
            return None;
        }
        let ns = (missing as u128 * 1_000_000_000).div_ceil(self.rate as u128);
        Some(self.last + Duration::from_nanos(ns as u64))
    }
}
