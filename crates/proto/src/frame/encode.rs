//! Encoders of the native frames: each appends one whole frame (or a
//! frame's head, for payloads written in place or shared) to a buffer.
//! The byte layouts are described in the parent module and in
//! `docs/PROTOCOL.md`.

use bytes::{BufMut, BytesMut};

use super::*;
use crate::varint;

#[inline]
fn header(out: &mut BytesMut, t: u8, body_len: usize) {
    debug_assert!(body_len <= u32::MAX as usize);
    out.put_u8(t);
    out.put_u32_le(body_len as u32);
}

#[inline]
fn put_event(out: &mut BytesMut, event: &str) {
    debug_assert!(event.len() <= MAX_EVENT_LEN);
    out.put_u16_le(event.len() as u16);
    out.put_slice(event.as_bytes());
}

/// Appends a Hello frame. `name` is cut to [`MAX_NAME_LEN`] bytes.
pub fn encode_hello(out: &mut BytesMut, pid: u32, name: &str) {
    let name = truncate_str(name, MAX_NAME_LEN);
    header(out, kind::HELLO, 4 + 2 + 2 + 4 + 1 + name.len());
    out.put_slice(&MAGIC);
    out.put_u16_le(VERSION);
    out.put_u16_le(0);
    out.put_u32_le(pid);
    out.put_u8(name.len() as u8);
    out.put_slice(name.as_bytes());
}

/// Appends a Welcome frame.
pub fn encode_welcome(out: &mut BytesMut, node: u64, client: u64, max_message: u32, channel: &str) {
    let channel = truncate_str(channel, 255);
    header(out, kind::WELCOME, 2 + 2 + 8 + 8 + 4 + 1 + channel.len());
    out.put_u16_le(VERSION);
    out.put_u16_le(0);
    out.put_u64_le(node);
    out.put_u64_le(client);
    out.put_u32_le(max_message);
    out.put_u8(channel.len() as u8);
    out.put_slice(channel.as_bytes());
}

/// Appends a Subscribe (`subscribe == true`) or Unsubscribe frame.
/// Names must each be at most [`MAX_EVENT_LEN`] bytes.
pub fn encode_subscription<'n>(
    out: &mut BytesMut,
    subscribe: bool,
    ack: u32,
    names: impl IntoIterator<Item = &'n str> + Clone,
) {
    let (count, bytes) = names
        .clone()
        .into_iter()
        .fold((0usize, 0usize), |(c, b), n| (c + 1, b + 2 + n.len()));
    let t = if subscribe {
        kind::SUBSCRIBE
    } else {
        kind::UNSUBSCRIBE
    };
    header(out, t, 4 + 2 + bytes);
    out.put_u32_le(ack);
    out.put_u16_le(count as u16);
    for n in names {
        put_event(out, n);
    }
}

/// Appends a Publish frame.
// Inlined into the client's emit: a call here cost more (saving and
// restoring registers around three copies) than the work.
#[inline(always)]
pub fn encode_publish(out: &mut BytesMut, event: &str, payload: &[u8]) {
    debug_assert!(event.len() <= MAX_EVENT_LEN);
    let body = 2 + event.len() + payload.len();
    assert!(body <= u32::MAX as usize, "publish frame too large");
    let total = HEADER_LEN + body;
    // One capacity check for the whole frame, then plain copies into the
    // reserved bytes: this is the client's hottest path, and each
    // `extend_from_slice` checks capacity and moves the length again
    // (with slice bounds checks, a third of a small emit's instructions).
    out.reserve(total);
    let mut fixed = [0u8; HEADER_LEN + 2];
    fixed[0] = kind::PUBLISH;
    fixed[1..HEADER_LEN].copy_from_slice(&(body as u32).to_le_bytes());
    fixed[HEADER_LEN..].copy_from_slice(&(event.len() as u16).to_le_bytes());
    let len = out.len();
    let dst = out.spare_capacity_mut().as_mut_ptr().cast::<u8>();
    // SAFETY: `reserve` made room for `total` bytes after `len`, and the
    // three copies fill exactly those bytes (7 + event + payload = total)
    // from slices that cannot overlap the buffer we hold `&mut` to; so
    // the new length covers initialized bytes only.
    unsafe {
        std::ptr::copy_nonoverlapping(fixed.as_ptr(), dst, fixed.len());
        let name = dst.add(fixed.len());
        copy_short(event.as_ptr(), name, event.len());
        let data = name.add(event.len());
        copy_short(payload.as_ptr(), data, payload.len());
        out.set_len(len + total);
    }
}

/// Copies `n` bytes from `src` to `dst` like `copy_nonoverlapping`, but up
/// to 32 bytes (event names, small payloads) with two overlapping loads
/// and stores inline instead of a call to `memcpy`, which cost about 13
/// instructions per copy in a small emit.
///
/// # Safety
/// As `std::ptr::copy_nonoverlapping(src, dst, n)`.
#[inline(always)]
unsafe fn copy_short(src: *const u8, dst: *mut u8, n: usize) {
    use std::ptr::{read_unaligned as rd, write_unaligned as wr};
    // SAFETY: each access below stays within the first `n` bytes of `src`
    // and `dst` (the second of each pair ends exactly at `n`), which the
    // caller guarantees are valid and disjoint.
    unsafe {
        if n > 32 {
            std::ptr::copy_nonoverlapping(src, dst, n);
        } else if n >= 16 {
            let (a, b) = (rd(src.cast::<u128>()), rd(src.add(n - 16).cast::<u128>()));
            wr(dst.cast::<u128>(), a);
            wr(dst.add(n - 16).cast::<u128>(), b);
        } else if n >= 8 {
            let (a, b) = (rd(src.cast::<u64>()), rd(src.add(n - 8).cast::<u64>()));
            wr(dst.cast::<u64>(), a);
            wr(dst.add(n - 8).cast::<u64>(), b);
        } else if n >= 4 {
            let (a, b) = (rd(src.cast::<u32>()), rd(src.add(n - 4).cast::<u32>()));
            wr(dst.cast::<u32>(), a);
            wr(dst.add(n - 4).cast::<u32>(), b);
        } else if n > 0 {
            // 1 to 3 bytes: first, middle and last cover them all.
            *dst = *src;
            *dst.add(n / 2) = *src.add(n / 2);
            *dst.add(n - 1) = *src.add(n - 1);
        }
    }
}

/// Appends a Publish frame's header and event; the caller appends exactly
/// `payload_len` payload bytes next (lets a serializer write in place).
#[inline]
pub fn encode_publish_header(out: &mut BytesMut, event: &str, payload_len: usize) {
    debug_assert!(event.len() <= MAX_EVENT_LEN);
    let body = 2 + event.len() + payload_len;
    debug_assert!(body <= u32::MAX as usize);
    out.reserve(HEADER_LEN + body);
    // The fixed part in one copy: emits are the client's hottest path, and
    // each `put_*` on a BytesMut checks and advances on its own.
    let mut head = [0u8; HEADER_LEN + 2];
    head[0] = kind::PUBLISH;
    head[1..HEADER_LEN].copy_from_slice(&(body as u32).to_le_bytes());
    head[HEADER_LEN..].copy_from_slice(&(event.len() as u16).to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(event.as_bytes());
}

/// Rewrites the body length of a frame that starts at `start` in `out` and
/// runs to the end of `out` (used after writing a payload in place).
pub fn patch_len(out: &mut BytesMut, start: usize) {
    let body = out.len() - start - HEADER_LEN;
    out[start + 1..start + HEADER_LEN].copy_from_slice(&(body as u32).to_le_bytes());
}

/// Appends a Request frame.
pub fn encode_request(out: &mut BytesMut, id: u32, event: &str, payload: &[u8]) {
    header(out, kind::REQUEST, 4 + 2 + event.len() + payload.len());
    out.put_u32_le(id);
    put_event(out, event);
    out.put_slice(payload);
}

/// Appends a Ping (`ping == true`) or Pong frame.
pub fn encode_ping(out: &mut BytesMut, ping: bool, token: u64) {
    header(out, if ping { kind::PING } else { kind::PONG }, 8);
    out.put_u64_le(token);
}

/// The origin and addressing of a message being delivered.
#[derive(Debug, Clone, Copy)]
pub struct DeliverHeader<'a> {
    /// Origin node; `None` if it is the recipient's own daemon.
    pub node: Option<u64>,
    /// Origin client id.
    pub client: u64,
    /// Per-origin sequence number.
    pub seq: u64,
    /// Origin channel if it differs from the recipient's channel.
    pub channel: Option<&'a str>,
}

impl DeliverHeader<'_> {
    /// Bytes this header and `event` take in a Deliver frame, frame header included.
    #[inline]
    pub fn encoded_len(&self, event: &str) -> usize {
        HEADER_LEN
            + 1
            + varint::len(self.client)
            + varint::len(self.seq)
            + if self.node.is_some() { 8 } else { 0 }
            + self.channel.map_or(0, |c| 1 + c.len())
            + 2
            + event.len()
    }
}

/// Appends a Deliver frame's header and event name for a payload of
/// `payload_len` bytes; the caller appends the payload itself (possibly as a
/// separate shared buffer, for zero-copy fan-out of large messages).
#[inline]
pub fn encode_deliver_header(
    out: &mut BytesMut,
    h: &DeliverHeader<'_>,
    event: &str,
    payload_len: usize,
) {
    let head = h.encoded_len(event);
    out.reserve(head);
    header(out, kind::DELIVER, head - HEADER_LEN + payload_len);
    let mut flags = 0;
    if h.node.is_some() {
        flags |= deliver_flags::REMOTE;
    }
    if h.channel.is_some() {
        flags |= deliver_flags::CHANNEL;
    }
    out.put_u8(flags);
    varint::put(out, h.client);
    varint::put(out, h.seq);
    if let Some(n) = h.node {
        out.put_u64_le(n);
    }
    if let Some(c) = h.channel {
        out.put_u8(c.len() as u8);
        out.put_slice(c.as_bytes());
    }
    put_event(out, event);
}

/// Appends a whole Deliver frame.
#[inline]
pub fn encode_deliver(out: &mut BytesMut, h: &DeliverHeader<'_>, event: &str, payload: &[u8]) {
    out.reserve(h.encoded_len(event) + payload.len());
    encode_deliver_header(out, h, event, payload.len());
    out.put_slice(payload);
}

/// Appends a Response frame.
pub fn encode_response(out: &mut BytesMut, id: u32, status: Status, payload: &[u8]) {
    header(out, kind::RESPONSE, 4 + 1 + payload.len());
    out.put_u32_le(id);
    out.put_u8(match status {
        Status::Ok => 0,
        Status::Failed => 1,
    });
    out.put_slice(payload);
}

/// Appends an Error frame. The message is cut to 4 KiB.
pub fn encode_error(out: &mut BytesMut, code: ErrorCode, id: u32, fatal: bool, message: &str) {
    let message = truncate_str(message, 4096);
    header(out, kind::ERROR, 2 + 4 + 1 + message.len());
    out.put_u16_le(code.to_u16());
    out.put_u32_le(id);
    out.put_u8(fatal as u8);
    out.put_slice(message.as_bytes());
}

/// Appends an Ack frame.
pub fn encode_ack(out: &mut BytesMut, id: u32) {
    header(out, kind::ACK, 4);
    out.put_u32_le(id);
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn truncate_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
