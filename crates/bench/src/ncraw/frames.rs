//! The frames of the raw client, encoded and parsed by hand from
//! `docs/PROTOCOL.md`: `type u8 · body length u32 · body`, little-endian.
//! It builds `Hello`, `Subscribe` (with an ack id), `Publish` headers and
//! `Ping`/`Pong`; it parses `Welcome`, `Deliver`, `Ack`, `Pong`, `Ping`,
//! `Response` and `Error` in place, giving ranges into the receive buffer
//! rather than copies.

use std::ops::Range;

/// Largest frame body this client accepts (the daemon's own limit is
/// `maxmessage` + 1536; this only guards against a corrupt length).
pub const MAX_BODY: usize = 64 * 1024 * 1024;

const HEADER: usize = 5;
const T_HELLO: u8 = 0x01;
const T_SUBSCRIBE: u8 = 0x02;
const T_PUBLISH: u8 = 0x04;
const T_PING: u8 = 0x06;
const T_PONG: u8 = 0x07;
const T_WELCOME: u8 = 0x81;
const T_DELIVER: u8 = 0x82;
const T_RESPONSE: u8 = 0x83;
const T_ERROR: u8 = 0x84;
const T_ACK: u8 = 0x85;
/// Protocol version sent in Hello.
const VERSION: u16 = 1;
/// Deliver flag bits.
const F_REMOTE: u8 = 1;
const F_CHANNEL: u8 = 2;

/// One frame from the daemon. Ranges are relative to the parsed slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `Welcome`: the handshake's answer.
    Welcome {
        /// The daemon's node id.
        node: u64,
        /// Our client id.
        client: u64,
        /// Largest payload accepted.
        max_message: u32,
        /// The channel's name.
        channel: String,
    },
    /// `Deliver`: one message.
    Deliver {
        /// Origin client id.
        client: u64,
        /// Origin sequence number.
        seq: u64,
        /// The event name.
        event: Range<usize>,
        /// The payload.
        payload: Range<usize>,
    },
    /// `Ack` of a Subscribe.
    Ack(u32),
    /// `Pong`: answers our Ping.
    Pong(u64),
    /// `Ping` from the daemon: answered with Pong.
    Ping(u64),
    /// `Response` to a request (never sent by this client).
    Response,
    /// `Error`.
    Error {
        /// Error code.
        code: u16,
        /// The id it answers, or 0.
        id: u32,
        /// The daemon closes after it.
        fatal: bool,
        /// The text.
        message: String,
    },
}

/// Reads fields of a frame body, tracking the offset in the parsed slice.
struct Cur<'a> {
    b: &'a [u8],
    pos: usize,
    end: usize,
}

impl Cur<'_> {
    #[inline]
    fn take(&mut self, n: usize) -> Result<Range<usize>, String> {
        if self.end - self.pos < n {
            return Err(format!("frame body too short ({n} more bytes needed)"));
        }
        self.pos += n;
        Ok(self.pos - n..self.pos)
    }
    #[inline]
    fn u8(&mut self) -> Result<u8, String> {
        let r = self.take(1)?;
        Ok(self.b[r.start])
    }
    #[inline]
    fn le<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let r = self.take(N)?;
        Ok(self.b[r].try_into().expect("N bytes"))
    }
    #[inline]
    fn varint(&mut self) -> Result<u64, String> {
        let (mut v, mut shift, mut i) = (0u64, 0, self.pos);
        let end = self.end.min(self.pos + 10);
        while i < end {
            let c = self.b[i];
            i += 1;
            v |= u64::from(c & 0x7f) << shift;
            if c & 0x80 == 0 {
                self.pos = i;
                return Ok(v);
            }
            shift += 7;
        }
        Err(bad_varint())
    }
    #[inline]
    fn rest(&mut self) -> Range<usize> {
        let r = self.pos..self.end;
        self.pos = self.end;
        r
    }
    fn text(&self, r: Range<usize>) -> String {
        String::from_utf8_lossy(&self.b[r]).into_owned()
    }
}

#[cold]
fn bad_varint() -> String {
    "varint cut short or longer than 10 bytes".into()
}

/// Parses one frame at the start of `b`: `Ok(None)` when incomplete.
#[inline]
pub fn parse(b: &[u8]) -> Result<Option<(Op, usize)>, String> {
    if b.len() < HEADER {
        return Ok(None);
    }
    let len = u32::from_le_bytes([b[1], b[2], b[3], b[4]]) as usize;
    if len > MAX_BODY {
        return Err(format!("frame body of {len} bytes, over {MAX_BODY}"));
    }
    if b.len() < HEADER + len {
        return Ok(None);
    }
    let mut c = Cur {
        b,
        pos: HEADER,
        end: HEADER + len,
    };
    let op = match b[0] {
        T_DELIVER => {
            let flags = c.u8()?;
            let client = c.varint()?;
            let seq = c.varint()?;
            if flags & F_REMOTE != 0 {
                c.take(8)?;
            }
            if flags & F_CHANNEL != 0 {
                let n = c.u8()? as usize;
                c.take(n)?;
            }
            let n = u16::from_le_bytes(c.le()?) as usize;
            let event = c.take(n)?;
            Op::Deliver {
                client,
                seq,
                event,
                payload: c.rest(),
            }
        }
        T_PONG => Op::Pong(u64::from_le_bytes(c.le()?)),
        T_PING => Op::Ping(u64::from_le_bytes(c.le()?)),
        T_ACK => Op::Ack(u32::from_le_bytes(c.le()?)),
        T_RESPONSE => Op::Response,
        T_ERROR => {
            let code = u16::from_le_bytes(c.le()?);
            let id = u32::from_le_bytes(c.le()?);
            let fatal = c.u8()? & 1 != 0;
            let r = c.rest();
            Op::Error {
                code,
                id,
                fatal,
                message: c.text(r),
            }
        }
        T_WELCOME => {
            let _version = c.le::<2>()?;
            let _flags = c.le::<2>()?;
            let node = u64::from_le_bytes(c.le()?);
            let client = u64::from_le_bytes(c.le()?);
            let max_message = u32::from_le_bytes(c.le()?);
            let n = c.u8()? as usize;
            let r = c.take(n)?;
            Op::Welcome {
                node,
                client,
                max_message,
                channel: c.text(r),
            }
        }
        t => return Err(format!("unknown frame type 0x{t:02x}")),
    };
    Ok(Some((op, HEADER + len)))
}

fn header(out: &mut Vec<u8>, ty: u8, body_len: usize) {
    out.push(ty);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
}

/// The `Hello` frame.
pub fn hello(pid: u32, name: &str) -> Vec<u8> {
    let name = &name.as_bytes()[..name.len().min(255)];
    let mut b = Vec::new();
    header(&mut b, T_HELLO, 4 + 2 + 2 + 4 + 1 + name.len());
    b.extend_from_slice(b"NCLB");
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&pid.to_le_bytes());
    b.push(name.len() as u8);
    b.extend_from_slice(name);
    b
}

/// A `Subscribe` frame for one event, acknowledged with `ack`.
pub fn subscribe(ack: u32, event: &str) -> Vec<u8> {
    let mut b = Vec::new();
    header(&mut b, T_SUBSCRIBE, 4 + 2 + 2 + event.len());
    b.extend_from_slice(&ack.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&(event.len() as u16).to_le_bytes());
    b.extend_from_slice(event.as_bytes());
    b
}

/// Everything of a `Publish` frame before its payload of `size` bytes.
pub fn publish_header(event: &str, size: usize) -> Vec<u8> {
    let mut b = Vec::new();
    header(&mut b, T_PUBLISH, 2 + event.len() + size);
    b.extend_from_slice(&(event.len() as u16).to_le_bytes());
    b.extend_from_slice(event.as_bytes());
    b
}

pub(super) fn ping(pong: bool, token: u64) -> [u8; 13] {
    let mut b = [0u8; 13];
    b[0] = if pong { T_PONG } else { T_PING };
    b[1..5].copy_from_slice(&8u32.to_le_bytes());
    b[5..].copy_from_slice(&token.to_le_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Deliver frame built by hand from the document's layout.
    fn deliver(
        flags: u8,
        client: &[u8],
        seq: &[u8],
        extra: &[u8],
        event: &str,
        p: &[u8],
    ) -> Vec<u8> {
        let mut body = vec![flags];
        body.extend_from_slice(client);
        body.extend_from_slice(seq);
        body.extend_from_slice(extra);
        body.extend_from_slice(&(event.len() as u16).to_le_bytes());
        body.extend_from_slice(event.as_bytes());
        body.extend_from_slice(p);
        let mut b = vec![T_DELIVER];
        b.extend_from_slice(&(body.len() as u32).to_le_bytes());
        b.extend_from_slice(&body);
        b
    }

    #[test]
    fn parses_the_documented_16_byte_deliver() {
        // The document's example: 31 bytes for 16 B on event `bench`.
        let b = deliver(0, &[3], &[1], &[], "bench", &[7; 16]);
        assert_eq!(b.len(), 31);
        let (op, n) = parse(&b).unwrap().unwrap();
        assert_eq!(n, 31);
        let Op::Deliver {
            client,
            seq,
            event,
            payload,
        } = op
        else {
            panic!("{op:?}")
        };
        assert_eq!((client, seq), (3, 1));
        assert_eq!(&b[event], b"bench");
        assert_eq!(&b[payload], &[7; 16]);
    }

    #[test]
    fn parses_remote_and_channel_flags_and_long_varints() {
        let mut extra = 0x1122_3344_5566_7788u64.to_le_bytes().to_vec();
        extra.push(1);
        extra.push(b'B');
        // 300 = 0b1_0010_1100 → 0xac 0x02.
        let b = deliver(
            F_REMOTE | F_CHANNEL,
            &[0xac, 0x02],
            &[5],
            &extra,
            "e",
            b"xy",
        );
        let (op, _) = parse(&b).unwrap().unwrap();
        let Op::Deliver {
            client,
            seq,
            event,
            payload,
        } = op
        else {
            panic!()
        };
        assert_eq!((client, seq), (300, 5));
        assert_eq!((&b[event], &b[payload]), (&b"e"[..], &b"xy"[..]));
    }

    #[test]
    fn incomplete_short_and_unknown_frames() {
        let b = deliver(0, &[1], &[1], &[], "bench", b"abc");
        for cut in 0..b.len() {
            assert_eq!(parse(&b[..cut]).unwrap(), None, "cut at {cut}");
        }
        // A body too short for its fields.
        assert!(parse(&[T_ACK, 2, 0, 0, 0, 1, 2]).is_err());
        assert!(parse(&[0x99, 0, 0, 0, 0]).is_err());
        let mut huge = vec![T_DELIVER];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse(&huge).is_err());
    }

    #[test]
    fn encodes_client_frames() {
        let h = hello(7, "x");
        assert_eq!(h[0], T_HELLO);
        assert_eq!(
            u32::from_le_bytes(h[1..5].try_into().unwrap()) as usize,
            h.len() - 5
        );
        assert_eq!(&h[5..9], b"NCLB");
        let s = subscribe(9, "ping");
        assert_eq!(s.len(), 5 + 4 + 2 + 2 + 4);
        let p = publish_header("bench", 16);
        assert_eq!(u32::from_le_bytes(p[1..5].try_into().unwrap()), 2 + 5 + 16);
        assert_eq!(parse(&ping(true, 42)).unwrap(), Some((Op::Pong(42), 13)));
    }
}
