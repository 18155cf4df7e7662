//! The send side: turning messages into datagrams.
//!
//! This module owns the open batch (the DATA datagram being filled), the
//! decision to close it (full, or its first message has waited
//! `flush_delay`), fragmentation of messages that do not fit one datagram,
//! the numbering of datagrams and fragmented messages, the queue of closed
//! datagrams with its buffer pool, the retransmit window that answers NAKs,
//! the queue of control datagrams (NAK, GONE), sealing on the way out, and
//! pacing. Messages leave in the order they were given: a fragmented
//! message takes consecutive datagrams, the first possibly shared with the
//! messages before it, the last with those after it. Datagrams are kept
//! plain until they leave, so a retransmission is sealed with the key in
//! force when it is sent.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::varint;

use super::seal::Sealer;
use super::wire::{self, kind, tag, Gone, Header, Heartbeat, Kind, HEADER_LEN, TAG_LEN};
use super::OutMessage;

/// Smallest record (tag and a zero payload length, every field implied):
/// an open batch with less room than this is closed at once.
const MIN_RECORD: usize = 2;
/// A fragment is started in the open batch's remaining room only if at
/// least this many data bytes fit; otherwise the batch is closed first.
const MIN_FRAGMENT_FILL: usize = 64;
/// Spare datagram buffers kept for reuse.
const POOL_MAX: usize = 64;
/// Flow control lets at least this many DATA datagrams ahead of the
/// slowest receiver, however small the retransmit window.
const MIN_AHEAD: usize = 16;

/// The fields of the last MSG record in the open batch, which the next
/// record may imply. Names are ranges into the batch buffer.
#[derive(Debug, Default)]
struct Prev {
    channel: Option<(usize, usize)>,
    event: Option<(usize, usize)>,
    client: Option<u64>,
    seq: Option<u64>,
}

/// A control datagram waiting to leave ahead of data.
#[derive(Debug)]
enum Control {
    /// An encoded NAK.
    Nak(Vec<u8>),
    /// An encoded ACK.
    Ack(Vec<u8>),
    /// An encoded heartbeat that must not wait behind held-back DATA.
    Heartbeat(Vec<u8>),
    /// A GONE, encoded when it leaves so it tells the window then.
    Gone,
    /// An encoded SYNC request or reply (see `sync.rs`).
    Sync(Vec<u8>, Kind),
}

/// What [`Sender::pop`] handed out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Popped {
    /// Bytes written.
    pub(crate) len: usize,
    /// The datagram's kind.
    pub(crate) kind: Kind,
    /// A DATA datagram sent again.
    pub(crate) again: bool,
}

/// Batching, fragmentation and the queues of datagrams to send.
#[derive(Debug)]
pub(crate) struct Sender {
    node: u64,
    /// Datagram budget for records: the mtu less room for a seal's tag.
    mtu: usize,
    flush_delay: Duration,
    /// Last DATA sequence number given out (0: none yet).
    pub(crate) data_seq: u64,
    heartbeat_seq: u64,
    nak_seq: u64,
    gone_seq: u64,
    msg_id: u64,
    /// The open batch; empty, or a header's room followed by records.
    cur: Vec<u8>,
    cur_since: Option<Instant>,
    prev: Prev,
    /// Explicit head of a message being fragmented.
    head: Vec<u8>,
    ready: VecDeque<Vec<u8>>,
    control: VecDeque<Control>,
    gone_queued: bool,
    /// Sequence numbers to send again, oldest NAKed first.
    resend: VecDeque<u64>,
    retx: Retx,
    /// A datagram sent again within this long is not sent again for
    /// another NAK (the receivers that NAKed together get one copy).
    holdoff: Duration,
    tail_probe: Duration,
    /// When a heartbeat should follow the last DATA datagram sent.
    probe_at: Option<Instant>,
    pool: Vec<Vec<u8>>,
    scratch: Vec<u8>,
    pacer: Pacer,
    /// Receivers' progress, for flow control.
    flow: Vec<Flow>,
    /// Retransmissions per requesting peer: a token bucket each.
    requesters: FxHashMap<u64, Pacer>,
    /// Their rate (bytes per second, 0 = no limit) and burst (bytes).
    retransmit_rate: (u64, usize),
    /// Most DATA datagrams sent ahead of the slowest live receiver; `None`
    /// without a retransmit window (then nothing could repair the loss
    /// flow control avoids, and nothing is held back).
    max_ahead: Option<u64>,
    flow_timeout: Duration,
    /// Since when DATA is held back by flow control.
    blocked: Option<Instant>,
    ack_seq: u64,
}

/// Sender settings besides batching.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SendOpts {
    pub(crate) retransmit_bytes: usize,
    pub(crate) holdoff: Duration,
    pub(crate) tail_probe: Duration,
    /// A receiver that has not acknowledged for this long no longer holds
    /// the sender back.
    pub(crate) flow_timeout: Duration,
    /// Retransmissions per requester: bytes per second (0 = no limit).
    pub(crate) retransmit_rate: u64,
    /// Retransmissions per requester: burst in bytes.
    pub(crate) retransmit_burst: usize,
}

impl Sender {
    pub(crate) fn new(
        node: u64,
        mtu: usize,
        flush_delay: Duration,
        pacer: Pacer,
        opts: SendOpts,
    ) -> Self {
        Sender {
            node,
            mtu: mtu - TAG_LEN,
            flush_delay,
            data_seq: 0,
            heartbeat_seq: 0,
            nak_seq: 0,
            gone_seq: 0,
            msg_id: 0,
            cur: Vec::with_capacity(mtu),
            cur_since: None,
            prev: Prev::default(),
            head: Vec::new(),
            ready: VecDeque::new(),
            control: VecDeque::new(),
            gone_queued: false,
            resend: VecDeque::new(),
            retx: Retx {
                kept: VecDeque::new(),
                next: 1,
                bytes: 0,
                limit: opts.retransmit_bytes,
            },
            holdoff: opts.holdoff,
            tail_probe: opts.tail_probe,
            probe_at: None,
            pool: Vec::new(),
            scratch: Vec::new(),
            pacer,
            flow: Vec::new(),
            requesters: FxHashMap::default(),
            retransmit_rate: (opts.retransmit_rate, opts.retransmit_burst),
            max_ahead: (opts.retransmit_bytes > 0)
                .then(|| (opts.retransmit_bytes / mtu).max(MIN_AHEAD) as u64),
            flow_timeout: opts.flow_timeout,
            blocked: None,
            ack_seq: 0,
        }
    }

    /// The last DATA sequence number sent (0: none).
    pub(crate) fn last_sent(&self) -> u64 {
        self.retx.next - 1
    }

    /// Queues an ACK telling `target` that every DATA datagram below
    /// `next` arrived.
    pub(crate) fn ack(&mut self, target: u64, next: u64) {
        self.ack_seq += 1;
        let mut b = self.buffer();
        wire::encode_ack(&mut b, self.node, self.ack_seq, &wire::Ack { target, next });
        self.control.push_back(Control::Ack(b));
    }

    /// Queues a heartbeat ahead of DATA (while flow control holds DATA
    /// back; its last seq must then be the last one sent).
    pub(crate) fn heartbeat_now(&mut self, hb: &Heartbeat<'_>) {
        self.heartbeat_seq += 1;
        let mut b = self.buffer();
        wire::encode_heartbeat(&mut b, self.node, self.heartbeat_seq, hb);
        self.control.push_back(Control::Heartbeat(b));
    }

    /// Datagrams waiting for `poll_transmit`: closed DATA, heartbeats,
    /// control datagrams and retransmissions.
    pub(crate) fn pending(&self) -> usize {
        self.ready.len() + self.control.len() + self.resend.len()
    }

    /// When a tail-probe heartbeat is due, if one is.
    pub(crate) fn probe_at(&self) -> Option<Instant> {
        self.probe_at
    }

    /// Forgets the pending tail probe (a heartbeat is being queued).
    pub(crate) fn probe_done(&mut self) {
        self.probe_at = None;
    }

    fn recycle(&mut self, mut d: Vec<u8>) {
        if self.pool.len() < POOL_MAX {
            d.clear();
            self.pool.push(d);
        }
    }

    /// When the open batch must be closed, if there is one.
    pub(crate) fn flush_at(&self) -> Option<Instant> {
        self.cur_since.map(|t| t + self.flush_delay)
    }

    /// When pacing next lets a queued datagram out, if it holds one back.
    pub(crate) fn pace_at(&self) -> Option<Instant> {
        let len = self.next_len()?;
        self.pacer.ready_at(len + TAG_LEN)
    }

    /// Length of the next datagram to leave (before sealing), if any.
    fn next_len(&self) -> Option<usize> {
        if let Some(c) = self.control.front() {
            return Some(match c {
                Control::Nak(b) | Control::Ack(b) | Control::Heartbeat(b) => b.len(),
                Control::Sync(b, _) => b.len(),
                Control::Gone => HEADER_LEN + 2 * crate::varint::MAX_LEN,
            });
        }
        let kept = self
            .resend
            .iter()
            .find_map(|&q| {
                let first = self.retx.first();
                (q >= first)
                    .then(|| self.retx.kept.get((q - first) as usize))
                    .flatten()
            })
            .map(|k| k.data.len());
        kept.or_else(|| self.ready.front().map(Vec::len))
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

    /// Writes the next datagram into `buf` (cleared first), sealed if a
    /// sealer is given: control datagrams first, then retransmissions, then
    /// DATA and heartbeats in order. `None` if nothing is queued or pacing
    /// holds it back.
    pub(crate) fn pop(
        &mut self,
        now: Instant,
        buf: &mut Vec<u8>,
        sealer: Option<&Sealer>,
    ) -> Option<Popped> {
        buf.clear();
        // Drop retransmissions whose datagram left the window meanwhile
        // (the receiver's next NAK gets a GONE).
        while let Some(&q) = self.resend.front() {
            if self.retx.get_mut(q).is_some() {
                break;
            }
            self.resend.pop_front();
        }
        let len = self.next_len()?;
        let tag = if sealer.is_some() { TAG_LEN } else { 0 };
        if !self.pacer.take(now, len + tag) {
            return None;
        }
        let emit = |src: &[u8], buf: &mut Vec<u8>| match sealer {
            Some(s) => s.seal(src, buf),
            None => buf.extend_from_slice(src),
        };
        if let Some(c) = self.control.pop_front() {
            let kind = match c {
                Control::Nak(b) => {
                    emit(&b, buf);
                    self.recycle(b);
                    Kind::Nak
                }
                Control::Ack(b) => {
                    emit(&b, buf);
                    self.recycle(b);
                    Kind::Ack
                }
                Control::Heartbeat(b) => {
                    emit(&b, buf);
                    self.recycle(b);
                    Kind::Heartbeat
                }
                Control::Sync(b, k) => {
                    emit(&b, buf);
                    self.recycle(b);
                    k
                }
                Control::Gone => {
                    self.gone_queued = false;
                    self.gone_seq += 1;
                    let g = Gone {
                        first_kept: self.retx.first(),
                        last_seq: self.retx.next - 1,
                    };
                    self.scratch.clear();
                    wire::encode_gone(&mut self.scratch, self.node, self.gone_seq, &g);
                    emit(&self.scratch, buf);
                    Kind::Gone
                }
            };
            return Some(Popped {
                len: buf.len(),
                kind,
                again: false,
            });
        }
        if let Some(q) = self.resend.pop_front() {
            let k = self.retx.get_mut(q).expect("checked above");
            k.queued = false;
            k.resent = Some(now);
            emit(&k.data, buf);
            return Some(Popped {
                len: buf.len(),
                kind: Kind::Data,
                again: true,
            });
        }
        let data_next = self.ready.front().is_some_and(|d| d[6] == kind::DATA);
        if data_next && self.flow_blocks(now, self.retx.next) {
            self.blocked.get_or_insert(now);
            // Heartbeats while held back make receivers acknowledge again.
            if self.probe_at.is_none() {
                self.probe_at = Some(now + self.tail_probe.max(Duration::from_millis(1)));
            }
            return None;
        }
        let d = self.ready.pop_front()?;
        emit(&d, buf);
        if d[6] == kind::DATA {
            self.blocked = None;
            if !self.tail_probe.is_zero() {
                self.probe_at = Some(now + self.tail_probe);
            }
            self.retx.next += 1;
            self.retx.bytes += d.len();
            self.retx.kept.push_back(Kept {
                data: d,
                resent: None,
                queued: false,
            });
            self.evict();
            return Some(Popped {
                len: buf.len(),
                kind: Kind::Data,
                again: false,
            });
        }
        self.recycle(d);
        Some(Popped {
            len: buf.len(),
            kind: Kind::Heartbeat,
            again: false,
        })
    }

    fn buffer(&mut self) -> Vec<u8> {
        self.pool
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.mtu))
    }
}

mod pacer;
mod reliable;
mod sync;
pub(crate) use pacer::Pacer;
use reliable::{Flow, Kept, Retx};
