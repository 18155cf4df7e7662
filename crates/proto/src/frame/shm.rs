//! The shared-memory frames of the native protocol: large payloads that
//! travel in a publisher's memfd pool while only a small descriptor crosses
//! the socket (layouts in `docs/PROTOCOL.md`, "Shared-memory payloads").
//!
//! These frames exist only on a connection whose Hello and Welcome both set
//! [`HELLO_SHM`] / [`WELCOME_SHM`]; they have their own type bytes and their
//! own decoder ([`decode_shm`]) so that [`super::decode`] and its `Frame`
//! stay as they are for everyone else. The pure bounds check of a
//! descriptor against its pool, [`check_slot`], lives here too so that the
//! daemon and the fuzz target run the very same code.

use bytes::{BufMut, BytesMut};

use super::{decode_deliver_raw, Body, DeliverHeader, FrameError, RawDeliver, HEADER_LEN};

/// Hello flag: the client can receive shared-memory deliveries (it reads
/// with `recvmsg`, so descriptors passed with `SCM_RIGHTS` are kept) and
/// may register a pool.
pub const HELLO_SHM: u16 = 0x0001;
/// Welcome flag: the daemon accepted [`HELLO_SHM`] for this connection.
pub const WELCOME_SHM: u16 = 0x0001;
/// Most entries in one ShmRelease or ShmFree frame.
pub const MAX_BATCH: usize = 1024;
/// Byte offset of the `flags` field in a whole Hello or Welcome frame:
/// after the header and, in a Hello, the magic and version; in a Welcome,
/// the version.
const HELLO_FLAGS_AT: usize = HEADER_LEN + 4 + 2;
const WELCOME_FLAGS_AT: usize = HEADER_LEN + 2;

/// Type bytes of the shared-memory frames.
#[allow(missing_docs)]
pub mod kind {
    pub const SHM_POOL: u8 = 0x08;
    pub const SHM_PUBLISH: u8 = 0x09;
    pub const SHM_RELEASE: u8 = 0x0a;
    pub const SHM_POOL_FD: u8 = 0x86;
    pub const SHM_DELIVER: u8 = 0x87;
    pub const SHM_FREE: u8 = 0x88;
}

/// True for the type bytes [`decode_shm`] decodes.
#[inline]
pub fn is_shm_kind(t: u8) -> bool {
    matches!(
        t,
        kind::SHM_POOL
            | kind::SHM_PUBLISH
            | kind::SHM_RELEASE
            | kind::SHM_POOL_FD
            | kind::SHM_DELIVER
            | kind::SHM_FREE
    )
}

/// A decoded shared-memory frame, borrowing from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShmFrame<'a> {
    /// C→S, sent with exactly one file descriptor (`SCM_RIGHTS`): the
    /// client's pool; answered by `Ack(ack)` or a non-fatal `Error(ack)`.
    Pool {
        /// Echoed in the answer.
        ack: u32,
        /// The pool's size as the client created it.
        size: u64,
    },
    /// C→S: publish the `len` bytes at `offset` of the client's pool.
    Publish {
        /// Start of the payload in the pool.
        offset: u64,
        /// Payload length.
        len: u32,
        /// Event name.
        event: &'a str,
    },
    /// C→S: the client is done with these slots (pool, offset).
    Release(Slots<'a>),
    /// S→C, sent with exactly one file descriptor: a pool later
    /// ShmDeliver frames refer to.
    PoolFd {
        /// The pool's id (its publisher's client id).
        pool: u64,
        /// Its size, as the daemon checked it.
        size: u64,
    },
    /// S→C: a message whose payload is `len` bytes at `offset` of `pool`.
    Deliver {
        /// Pool id.
        pool: u64,
        /// Start of the payload in the pool.
        offset: u64,
        /// Payload length.
        len: u32,
        /// Origin and event (its payload is empty).
        head: RawDeliver<'a>,
    },
    /// S→C: these slots (offsets) of the client's own pool are free again.
    Free(Slots<'a>),
}

/// The entries of a ShmRelease (`pool u64 · offset u64` each) or ShmFree
/// (`offset u64` each) frame, validated at decode.
#[derive(Clone, PartialEq, Eq)]
pub struct Slots<'a> {
    width: usize,
    bytes: &'a [u8],
}

impl std::fmt::Debug for Slots<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> Slots<'a> {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.bytes.len() / self.width
    }
    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
    /// `(pool, offset)` per entry; the pool is 0 in a ShmFree.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + 'a {
        let w = self.width;
        self.bytes.chunks_exact(w).map(move |c| {
            let u = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
            if w == 16 {
                (u(&c[..8]), u(&c[8..]))
            } else {
                (0, u(c))
            }
        })
    }
}

/// Why a descriptor does not fit its pool.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    /// An empty payload has no slot (publish it through the socket).
    #[error("shared-memory descriptor of 0 bytes")]
    Empty,
    /// `offset + len` passes the end of the pool (or overflows).
    #[error(
        "shared-memory descriptor out of bounds: offset {offset} + length {len} > pool size {size}"
    )]
    OutOfBounds {
        /// The descriptor's offset.
        offset: u64,
        /// Its length.
        len: u32,
        /// The pool's size.
        size: u64,
    },
}

/// Checks that `len` bytes at `offset` lie inside a pool of `size` bytes,
/// without overflow.
pub fn check_slot(size: u64, offset: u64, len: u32) -> Result<(), SlotError> {
    if len == 0 {
        return Err(SlotError::Empty);
    }
    match offset.checked_add(u64::from(len)) {
        Some(end) if end <= size => Ok(()),
        _ => Err(SlotError::OutOfBounds { offset, len, size }),
    }
}

fn frame_name(t: u8) -> &'static str {
    match t {
        kind::SHM_POOL => "shm pool",
        kind::SHM_PUBLISH => "shm publish",
        kind::SHM_RELEASE => "shm release",
        kind::SHM_POOL_FD => "shm pool fd",
        kind::SHM_DELIVER => "shm deliver",
        _ => "shm free",
    }
}

fn slots<'a>(b: &mut Body<'a>, width: usize) -> Result<Slots<'a>, FrameError> {
    let count = b.u16()? as usize;
    if count > MAX_BATCH {
        return Err(FrameError::Malformed {
            frame: b.frame,
            what: "too many slots",
        });
    }
    let bytes = b.take(count * width)?;
    Ok(Slots { width, bytes })
}

/// Decodes one shared-memory frame from the start of `buf` (whose type byte
/// [`is_shm_kind`]); `Ok(None)` when `buf` does not hold it whole yet.
pub fn decode_shm(
    buf: &[u8],
    max_body: usize,
) -> Result<Option<(ShmFrame<'_>, usize)>, FrameError> {
    let Some(&t) = buf.first() else {
        return Ok(None);
    };
    if !is_shm_kind(t) {
        return Err(FrameError::UnknownType(t));
    }
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = u32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len > max_body {
        return Err(FrameError::TooLarge { len, max: max_body });
    }
    let total = HEADER_LEN + len;
    if buf.len() < total {
        return Ok(None);
    }
    let mut b = Body {
        frame: frame_name(t),
        rest: &buf[HEADER_LEN..total],
    };
    let f = match t {
        kind::SHM_POOL => {
            let ack = b.u32()?;
            let size = b.u64()?;
            b.end()?;
            ShmFrame::Pool { ack, size }
        }
        kind::SHM_PUBLISH => {
            let offset = b.u64()?;
            let len = b.u32()?;
            let event = b.event()?;
            b.end()?;
            ShmFrame::Publish { offset, len, event }
        }
        kind::SHM_RELEASE => {
            let s = slots(&mut b, 16)?;
            b.end()?;
            ShmFrame::Release(s)
        }
        kind::SHM_POOL_FD => {
            let pool = b.u64()?;
            let size = b.u64()?;
            b.end()?;
            ShmFrame::PoolFd { pool, size }
        }
        kind::SHM_DELIVER => {
            let pool = b.u64()?;
            let offset = b.u64()?;
            let len = b.u32()?;
            let head = decode_deliver_raw(b.rest)?;
            if !head.payload.is_empty() {
                return Err(FrameError::Malformed {
                    frame: b.frame,
                    what: "trailing bytes",
                });
            }
            ShmFrame::Deliver {
                pool,
                offset,
                len,
                head,
            }
        }
        _ => {
            let s = slots(&mut b, 8)?;
            b.end()?;
            ShmFrame::Free(s)
        }
    };
    Ok(Some((f, total)))
}

/// The `flags` of a whole Hello frame at the start of `buf` (0 if short).
pub fn hello_flags(buf: &[u8]) -> u16 {
    read_u16(buf, HELLO_FLAGS_AT)
}

/// The `flags` of a whole Welcome frame at the start of `buf` (0 if short).
pub fn welcome_flags(buf: &[u8]) -> u16 {
    read_u16(buf, WELCOME_FLAGS_AT)
}

fn read_u16(buf: &[u8], at: usize) -> u16 {
    match buf.get(at..at + 2) {
        Some(b) => u16::from_le_bytes([b[0], b[1]]),
        None => 0,
    }
}

/// Sets the `flags` of the Hello or Welcome frame that starts at `start`
/// of `out` (just encoded by `encode_hello` / `encode_welcome`).
pub fn set_flags(out: &mut BytesMut, start: usize, flags: u16) {
    let at = start
        + if out[start] == super::kind::HELLO {
            HELLO_FLAGS_AT
        } else {
            WELCOME_FLAGS_AT
        };
    out[at..at + 2].copy_from_slice(&flags.to_le_bytes());
}

fn header(out: &mut BytesMut, t: u8, body: usize) {
    out.reserve(HEADER_LEN + body);
    out.put_u8(t);
    out.put_u32_le(body as u32);
}

/// Appends a ShmPool frame (send it with the pool's descriptor).
pub fn encode_pool(out: &mut BytesMut, ack: u32, size: u64) {
    header(out, kind::SHM_POOL, 12);
    out.put_u32_le(ack);
    out.put_u64_le(size);
}

/// Appends a ShmPublish frame. `event` must be at most `MAX_EVENT_LEN` bytes.
pub fn encode_publish(out: &mut BytesMut, offset: u64, len: u32, event: &str) {
    header(out, kind::SHM_PUBLISH, 8 + 4 + 2 + event.len());
    out.put_u64_le(offset);
    out.put_u32_le(len);
    out.put_u16_le(event.len() as u16);
    out.put_slice(event.as_bytes());
}

/// Appends a ShmRelease frame: at most [`MAX_BATCH`] `(pool, offset)`.
pub fn encode_release(out: &mut BytesMut, slots: &[(u64, u64)]) {
    debug_assert!(slots.len() <= MAX_BATCH);
    header(out, kind::SHM_RELEASE, 2 + 16 * slots.len());
    out.put_u16_le(slots.len() as u16);
    for (p, o) in slots {
        out.put_u64_le(*p);
        out.put_u64_le(*o);
    }
}

/// Appends a ShmPoolFd frame (send it with the pool's descriptor).
pub fn encode_pool_fd(out: &mut BytesMut, pool: u64, size: u64) {
    header(out, kind::SHM_POOL_FD, 16);
    out.put_u64_le(pool);
    out.put_u64_le(size);
}

/// Appends a ShmDeliver frame.
pub fn encode_deliver(
    out: &mut BytesMut,
    h: &DeliverHeader<'_>,
    event: &str,
    pool: u64,
    offset: u64,
    len: u32,
) {
    let head = h.encoded_len(event) - HEADER_LEN;
    header(out, kind::SHM_DELIVER, 20 + head);
    out.put_u64_le(pool);
    out.put_u64_le(offset);
    out.put_u32_le(len);
    // The same body layout as a Deliver's (decoded by the same code).
    let mut flags = 0;
    if h.node.is_some() {
        flags |= super::deliver_flags::REMOTE;
    }
    if h.channel.is_some() {
        flags |= super::deliver_flags::CHANNEL;
    }
    out.put_u8(flags);
    crate::varint::put(out, h.client);
    crate::varint::put(out, h.seq);
    if let Some(n) = h.node {
        out.put_u64_le(n);
    }
    if let Some(c) = h.channel {
        out.put_u8(c.len() as u8);
        out.put_slice(c.as_bytes());
    }
    out.put_u16_le(event.len() as u16);
    out.put_slice(event.as_bytes());
}

/// Appends a ShmFree frame: at most [`MAX_BATCH`] offsets.
pub fn encode_free(out: &mut BytesMut, offsets: &[u64]) {
    debug_assert!(offsets.len() <= MAX_BATCH);
    header(out, kind::SHM_FREE, 2 + 8 * offsets.len());
    out.put_u16_le(offsets.len() as u16);
    for o in offsets {
        out.put_u64_le(*o);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame;

    fn one(b: &[u8]) -> ShmFrame<'_> {
        let (f, n) = decode_shm(b, 1 << 20).unwrap().unwrap();
        assert_eq!(n, b.len());
        for cut in 0..b.len() {
            assert_eq!(decode_shm(&b[..cut], 1 << 20), Ok(None), "cut at {cut}");
        }
        f
    }

    #[test]
    fn round_trips() {
        let mut b = BytesMut::new();
        encode_pool(&mut b, 7, 1 << 24);
        assert_eq!(
            one(&b),
            ShmFrame::Pool {
                ack: 7,
                size: 1 << 24
            }
        );
        b.clear();
        encode_publish(&mut b, 4096, 65536, "big");
        assert_eq!(
            one(&b),
            ShmFrame::Publish {
                offset: 4096,
                len: 65536,
                event: "big"
            }
        );
        b.clear();
        encode_release(&mut b, &[(3, 0), (4, 8192)]);
        let ShmFrame::Release(s) = one(&b) else {
            panic!()
        };
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![(3, 0), (4, 8192)]);
        b.clear();
        encode_free(&mut b, &[0, 65536]);
        let ShmFrame::Free(s) = one(&b) else { panic!() };
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![(0, 0), (0, 65536)]);
        b.clear();
        encode_pool_fd(&mut b, 9, 1 << 20);
        assert_eq!(
            one(&b),
            ShmFrame::PoolFd {
                pool: 9,
                size: 1 << 20
            }
        );
        b.clear();
        let h = DeliverHeader {
            node: Some(5),
            client: 300,
            seq: 1 << 33,
            channel: Some("B"),
        };
        encode_deliver(&mut b, &h, "évent", 9, 128, 70000);
        let ShmFrame::Deliver {
            pool,
            offset,
            len,
            head,
        } = one(&b)
        else {
            panic!()
        };
        assert_eq!((pool, offset, len), (9, 128, 70000));
        assert_eq!(
            (head.node, head.client, head.seq, head.channel, head.event),
            (Some(5), 300, 1 << 33, Some("B"), "évent".as_bytes())
        );
    }

    #[test]
    fn refuses_bad_bodies() {
        let mut b = BytesMut::new();
        encode_pool(&mut b, 1, 2);
        b.put_u8(0);
        b[1] += 1;
        assert!(decode_shm(&b, 1 << 20).is_err(), "trailing byte");
        let mut b = BytesMut::new();
        header(&mut b, kind::SHM_RELEASE, 2);
        b.put_u16_le(MAX_BATCH as u16 + 1);
        assert!(decode_shm(&b, 1 << 20).is_err(), "too many");
        let mut b = BytesMut::new();
        header(&mut b, kind::SHM_RELEASE, 2 + 15);
        b.put_u16_le(1);
        b.put_slice(&[0; 15]);
        assert!(decode_shm(&b, 1 << 20).is_err(), "short entry");
        assert!(decode_shm(&[frame::kind::PUBLISH], 10).is_err());
        let mut b = BytesMut::new();
        encode_publish(&mut b, 0, 1, "x");
        assert!(matches!(
            decode_shm(&b, 4),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn slot_bounds() {
        assert_eq!(check_slot(100, 0, 100), Ok(()));
        assert!(check_slot(100, 1, 100).is_err());
        assert!(check_slot(100, 0, 0).is_err());
        assert!(check_slot(u64::MAX, u64::MAX, 1).is_err(), "overflow");
        assert!(check_slot(100, u64::MAX - 3, 10).is_err(), "wraps");
    }

    #[test]
    fn flags_of_hello_and_welcome() {
        let mut b = BytesMut::new();
        frame::encode_hello(&mut b, 1, "n");
        assert_eq!(hello_flags(&b), 0);
        set_flags(&mut b, 0, HELLO_SHM);
        assert_eq!(hello_flags(&b), HELLO_SHM);
        assert!(matches!(
            frame::decode(&b, 1000),
            Ok(Some((frame::Frame::Hello { .. }, _)))
        ));
        let mut w = BytesMut::new();
        frame::encode_welcome(&mut w, 1, 2, 3, "A");
        set_flags(&mut w, 0, WELCOME_SHM);
        assert_eq!(welcome_flags(&w), WELCOME_SHM);
        assert!(matches!(
            frame::decode(&w, 1000),
            Ok(Some((frame::Frame::Welcome { .. }, _)))
        ));
    }
}
