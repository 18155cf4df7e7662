//! Encoders of the datagram layout described in the parent module: the
//! header, HEARTBEAT, NAK and GONE bodies and DATA records. They append to a `Vec<u8>`
//! and never fail; checking limits is the caller's job (the engine refuses
//! what cannot be encoded before it gets here).

use bytes::BufMut;

use crate::varint;

use super::{
    tag, Ack, Gone, Header, Heartbeat, Kind, HEADER_LEN, MAGIC, MAX_NAK_RANGES, MAX_NODE_NAME,
    VERSION,
};
use crate::net::OutMessage;

/// Writes a header into the first [`HEADER_LEN`] bytes of `out`.
pub fn put_header(out: &mut [u8], h: &Header) {
    let out = &mut out[..HEADER_LEN];
    out[0..4].copy_from_slice(&MAGIC);
    out[4] = VERSION;
    out[5] = h.flags;
    out[6] = h.kind.to_u8();
    out[7] = h.key_id;
    out[8..16].copy_from_slice(&h.node.to_le_bytes());
    out[16..24].copy_from_slice(&h.seq.to_le_bytes());
}

/// Appends a plain header of `kind`.
pub(super) fn put_plain_header(out: &mut Vec<u8>, kind: Kind, node: u64, seq: u64) {
    let start = out.len();
    out.resize(start + HEADER_LEN, 0);
    put_header(
        &mut out[start..],
        &Header {
            kind,
            flags: 0,
            key_id: 0,
            node,
            seq,
        },
    );
}

/// Appends a whole NAK datagram asking `target` for `ranges` (inclusive,
/// ascending, disjoint and not adjacent, first ≥ 1; at most
/// [`MAX_NAK_RANGES`] are written).
pub fn encode_nak(out: &mut Vec<u8>, node: u64, seq: u64, target: u64, ranges: &[(u64, u64)]) {
    let ranges = &ranges[..ranges.len().min(MAX_NAK_RANGES)];
    put_plain_header(out, Kind::Nak, node, seq);
    out.extend_from_slice(&target.to_le_bytes());
    varint::put(out, ranges.len() as u64);
    let mut prev = 0u64;
    for &(first, last) in ranges {
        debug_assert!(first > prev && last >= first);
        varint::put(out, first - prev);
        varint::put(out, last - first);
        prev = last + 1;
    }
}

/// Appends a whole ACK datagram.
pub fn encode_ack(out: &mut Vec<u8>, node: u64, seq: u64, a: &Ack) {
    put_plain_header(out, Kind::Ack, node, seq);
    out.extend_from_slice(&a.target.to_le_bytes());
    varint::put(out, a.next);
}

/// Appends a whole GONE datagram.
pub fn encode_gone(out: &mut Vec<u8>, node: u64, seq: u64, g: &Gone) {
    put_plain_header(out, Kind::Gone, node, seq);
    varint::put(out, g.first_kept);
    varint::put(out, g.last_seq);
}

/// Appends a whole HEARTBEAT datagram. The name is cut to [`MAX_NODE_NAME`].
pub fn encode_heartbeat(out: &mut Vec<u8>, node: u64, seq: u64, hb: &Heartbeat<'_>) {
    put_plain_header(out, Kind::Heartbeat, node, seq);
    let name = crate::frame::truncate_str(hb.name, MAX_NODE_NAME);
    out.put_u8(name.len() as u8);
    out.put_slice(name.as_bytes());
    for v in [
        hb.last_seq,
        hb.uptime_ms,
        hb.messages_out,
        hb.datagrams_out,
        hb.bytes_out,
    ] {
        varint::put(out, v);
    }
}

/// Bytes of a varint-length-prefixed field.
#[inline]
pub(crate) fn field_len(len: usize) -> usize {
    varint::len(len as u64) + len
}

/// Length of a message body with every field explicit (no tag).
#[inline]
pub fn message_body_len(m: &OutMessage<'_>) -> usize {
    field_len(m.channel.len())
        + field_len(m.event.len())
        + varint::len(m.client)
        + varint::len(m.seq)
        + field_len(m.payload.len())
}

/// Appends a message body's fields up to and including the payload length
/// (everything but the payload bytes), with the fields not implied by `t`'s
/// SAME_*/NEXT_SEQ bits.
#[inline]
pub fn put_message_head(out: &mut Vec<u8>, t: u8, m: &OutMessage<'_>) {
    if t & tag::SAME_CHANNEL == 0 {
        varint::put(out, m.channel.len() as u64);
        out.extend_from_slice(m.channel.as_bytes());
    }
    if t & tag::SAME_EVENT == 0 {
        varint::put(out, m.event.len() as u64);
        out.extend_from_slice(m.event.as_bytes());
    }
    if t & tag::SAME_CLIENT == 0 {
        varint::put(out, m.client);
    }
    if t & tag::NEXT_SEQ == 0 {
        varint::put(out, m.seq);
    }
    varint::put(out, m.payload.len() as u64);
}

/// Appends a whole MSG record (tag `t`, then the fields it does not imply).
#[inline]
pub fn put_msg_record(out: &mut Vec<u8>, t: u8, m: &OutMessage<'_>) {
    out.push(t);
    put_message_head(out, t, m);
    out.extend_from_slice(m.payload);
}

/// Appends a FRAG record's tag and numbers, up to the data length; the
/// caller appends `len` data bytes next.
#[inline]
pub fn put_frag_head(
    out: &mut Vec<u8>,
    msg_id: u64,
    index: u64,
    count: u64,
    total: u64,
    offset: u64,
    len: usize,
) {
    out.push(tag::FRAG);
    for v in [msg_id, index, count, total, offset, len as u64] {
        varint::put(out, v);
    }
}
