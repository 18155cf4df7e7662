//! The native local protocol: length-prefixed binary frames exchanged between
//! a client and `ncserver` over a channel's local socket.
//!
//! This module owns the byte layout (documented in `docs/PROTOCOL.md`), the
//! zero-copy decoder and the encoders. It does no I/O: the decoder borrows a
//! byte slice and returns `Ok(None)` when the slice holds no complete frame
//! yet, so any transport (Unix socket, named pipe, test buffer) can drive it.
//!
//! Every frame is `type: u8 | len: u32 LE | body[len]`. The first frame of a
//! native connection is always [`Frame::Hello`], whose type byte (`0x01`) can
//! never be `{`, which is how the server tells native clients from the seed's
//! JSON clients.

use crate::varint;

/// Magic bytes at the start of a Hello body.
pub const MAGIC: [u8; 4] = *b"NCLB";
/// The protocol version this crate speaks.
pub const VERSION: u16 = 1;
/// Bytes before a frame's body: type (1) and body length (4).
pub const HEADER_LEN: usize = 5;
/// Longest event name, in bytes.
pub const MAX_EVENT_LEN: usize = 1024;
/// Longest client name sent in Hello, in bytes.
pub const MAX_NAME_LEN: usize = 255;
/// Most event names in one Subscribe or Unsubscribe frame.
pub const MAX_SUBSCRIBE_NAMES: usize = 4096;
/// Body bytes a frame may need on top of its payload (event name, origin,
/// channel); added to the payload limit to get the frame limit.
pub const FRAME_OVERHEAD: usize = MAX_EVENT_LEN + 512;

/// The event name that subscribes to every event of a channel.
pub const WILDCARD: &str = "*";

/// Frame type bytes. Client-to-server types are below `0x80`.
#[allow(missing_docs)]
pub mod kind {
    pub const HELLO: u8 = 0x01;
    pub const SUBSCRIBE: u8 = 0x02;
    pub const UNSUBSCRIBE: u8 = 0x03;
    pub const PUBLISH: u8 = 0x04;
    pub const REQUEST: u8 = 0x05;
    pub const PING: u8 = 0x06;
    pub const PONG: u8 = 0x07;
    pub const WELCOME: u8 = 0x81;
    pub const DELIVER: u8 = 0x82;
    pub const RESPONSE: u8 = 0x83;
    pub const ERROR: u8 = 0x84;
    pub const ACK: u8 = 0x85;
}

/// Flags of a Deliver frame.
mod deliver_flags {
    /// The origin node id follows (absent: the message comes from this node).
    pub const REMOTE: u8 = 0x01;
    /// The origin channel name follows (absent: the recipient's own channel).
    pub const CHANNEL: u8 = 0x02;
}

/// Status byte of a Response frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The request succeeded; the payload is its JSON result.
    Ok,
    /// The request failed; the payload is a JSON object `{"error": "..."}`.
    Failed,
}

/// Error codes carried by Error frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// A frame could not be decoded.
    BadFrame,
    /// The client's protocol version is not supported.
    Version,
    /// A message or frame exceeded the configured size limit.
    TooLarge,
    /// A name was invalid (empty, too long, reserved).
    BadName,
    /// The request was understood but refused (control disabled, unknown command…).
    BadRequest,
    /// The client is not allowed on this channel.
    Denied,
    /// The client could not keep up and its queue limit was reached.
    SlowConsumer,
    /// The channel was removed by a configuration reload.
    ChannelRemoved,
    /// The server is stopping.
    Shutdown,
    /// A code this version does not know.
    Other(u16),
}

impl ErrorCode {
    /// The wire value.
    pub fn to_u16(self) -> u16 {
        match self {
            ErrorCode::BadFrame => 1,
            ErrorCode::Version => 2,
            ErrorCode::TooLarge => 3,
            ErrorCode::BadName => 4,
            ErrorCode::BadRequest => 5,
            ErrorCode::Denied => 6,
            ErrorCode::SlowConsumer => 7,
            ErrorCode::ChannelRemoved => 8,
            ErrorCode::Shutdown => 9,
            ErrorCode::Other(n) => n,
        }
    }

    /// Decodes a wire value.
    pub fn from_u16(n: u16) -> Self {
        match n {
            1 => ErrorCode::BadFrame,
            2 => ErrorCode::Version,
            3 => ErrorCode::TooLarge,
            4 => ErrorCode::BadName,
            5 => ErrorCode::BadRequest,
            6 => ErrorCode::Denied,
            7 => ErrorCode::SlowConsumer,
            8 => ErrorCode::ChannelRemoved,
            9 => ErrorCode::Shutdown,
            n => ErrorCode::Other(n),
        }
    }
}

/// A decoded frame, borrowing from the input buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Client → server, first frame: who is connecting.
    Hello {
        /// Highest protocol version the client speaks.
        version: u16,
        /// Process id, as reported by the client (informative).
        pid: u32,
        /// Free-form client name (informative).
        name: &'a str,
    },
    /// Client → server: start receiving these events (`*` = all).
    Subscribe {
        /// Non-zero: the server answers with `Ack(ack)` once applied.
        ack: u32,
        /// The event names.
        events: Names<'a>,
    },
    /// Client → server: stop receiving these events.
    Unsubscribe {
        /// Non-zero: the server answers with `Ack(ack)` once applied.
        ack: u32,
        /// The event names.
        events: Names<'a>,
    },
    /// Client → server: emit an event on the client's channel.
    Publish {
        /// Event name.
        event: &'a str,
        /// Opaque payload (JSON by default in the client library).
        payload: &'a [u8],
    },
    /// Client → server: a control request, answered by `Response(id)`.
    Request {
        /// Caller-chosen id echoed in the response.
        id: u32,
        /// Request name, e.g. `nc-control-showconfig`.
        event: &'a str,
        /// JSON argument.
        payload: &'a [u8],
    },
    /// Either direction: liveness probe; answered with `Pong(token)`.
    Ping(u64),
    /// Either direction: answer to `Ping`.
    Pong(u64),
    /// Server → client: handshake accepted.
    Welcome {
        /// Protocol version in use.
        version: u16,
        /// This daemon's node id for its current run.
        node: u64,
        /// The id the server gave this client.
        client: u64,
        /// Largest payload the server accepts, in bytes.
        max_message: u32,
        /// The channel the client is connected to.
        channel: &'a str,
    },
    /// Server → client: a message.
    Deliver(Deliver<'a>),
    /// Server → client: answer to `Request(id)`.
    Response {
        /// The request's id.
        id: u32,
        /// Success or failure.
        status: Status,
        /// JSON result or `{"error": …}`.
        payload: &'a [u8],
    },
    /// Server → client: something went wrong.
    Error {
        /// What kind of error.
        code: ErrorCode,
        /// The request or subscribe id it answers, 0 if none.
        id: u32,
        /// The server closes the connection after a fatal error.
        fatal: bool,
        /// Human-readable explanation.
        message: &'a str,
    },
    /// Server → client: a Subscribe/Unsubscribe with this ack id was applied.
    Ack(u32),
}

/// A delivered message, borrowing from the input buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deliver<'a> {
    /// Origin node id; `None` when the message comes from the recipient's own daemon.
    pub node: Option<u64>,
    /// Origin client id (unique per node run).
    pub client: u64,
    /// Per-origin sequence number, starting at 1.
    pub seq: u64,
    /// Origin channel; `None` when it is the recipient's own channel.
    pub channel: Option<&'a str>,
    /// Event name.
    pub event: &'a str,
    /// Payload bytes.
    pub payload: &'a [u8],
}

/// The event names of a Subscribe/Unsubscribe frame, validated at decode.
#[derive(Clone, PartialEq, Eq)]
pub struct Names<'a> {
    count: u16,
    bytes: &'a [u8],
}

impl std::fmt::Debug for Names<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> Names<'a> {
    /// Number of names.
    pub fn len(&self) -> usize {
        self.count as usize
    }
    /// True when there are no names.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    /// Iterates over the names.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + 'a {
        let mut rest = self.bytes;
        (0..self.count).map(move |_| {
            let len = u16::from_le_bytes([rest[0], rest[1]]) as usize;
            // Validated by the decoder: lengths fit and the bytes are UTF-8.
            let name = std::str::from_utf8(&rest[2..2 + len]).unwrap_or_default();
            rest = &rest[2 + len..];
            name
        })
    }
}

/// Why a frame could not be decoded. The connection cannot continue after
/// any of these: the stream position is lost.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The type byte is not a known frame type.
    #[error("unknown frame type 0x{0:02x}")]
    UnknownType(u8),
    /// The length prefix exceeds the limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Announced body length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The body is shorter or longer than its fields say.
    #[error("malformed {frame} frame: {what}")]
    Malformed {
        /// Frame type name.
        frame: &'static str,
        /// What was wrong.
        what: &'static str,
    },
    /// A text field is not valid UTF-8.
    #[error("{field} is not valid UTF-8")]
    BadUtf8 {
        /// Field name.
        field: &'static str,
    },
    /// A Hello frame did not start with the magic bytes.
    #[error("not a netcluster client (bad magic in hello)")]
    BadMagic,
}

/// A cursor over a frame body that turns short reads into `Malformed`.
struct Body<'a> {
    frame: &'static str,
    rest: &'a [u8],
}

impl<'a> Body<'a> {
    fn short(&self) -> FrameError {
        FrameError::Malformed {
            frame: self.frame,
            what: "body too short",
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.rest.len() < n {
            return Err(self.short());
        }
        let (a, b) = self.rest.split_at(n);
        self.rest = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, FrameError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, FrameError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, FrameError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
    fn varint(&mut self) -> Result<u64, FrameError> {
        // Client ids and sequence numbers below 2^21 take one to three
        // bytes: the common case, decoded without the loop (a sequence
        // number passes 127 after the 127th message of a client and 16383
        // after the 16383rd).
        if let [a, b, c, ..] = *self.rest {
            let (v, n) = if a < 0x80 {
                (u64::from(a), 1)
            } else if b < 0x80 {
                (u64::from(a & 0x7f) | u64::from(b) << 7, 2)
            } else if c < 0x80 {
                (
                    u64::from(a & 0x7f) | u64::from(b & 0x7f) << 7 | u64::from(c) << 14,
                    3,
                )
            } else {
                (0, 0)
            };
            if n > 0 {
                self.rest = &self.rest[n..];
                return Ok(v);
            }
        } else if let Some(&v) = self.rest.first() {
            if v < 0x80 {
                self.rest = &self.rest[1..];
                return Ok(u64::from(v));
            }
        }
        match varint::decode(self.rest) {
            Some((v, n)) => {
                self.rest = &self.rest[n..];
                Ok(v)
            }
            None => Err(FrameError::Malformed {
                frame: self.frame,
                what: "bad varint",
            }),
        }
    }
    fn str(&mut self, len: usize, field: &'static str) -> Result<&'a str, FrameError> {
        let b = self.take(len)?;
        std::str::from_utf8(b).map_err(|_| FrameError::BadUtf8 { field })
    }
    fn event(&mut self) -> Result<&'a str, FrameError> {
        let len = self.u16()? as usize;
        if len > MAX_EVENT_LEN {
            return Err(FrameError::Malformed {
                frame: self.frame,
                what: "event name too long",
            });
        }
        self.str(len, "event name")
    }
    fn end(self) -> Result<(), FrameError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Malformed {
                frame: self.frame,
                what: "trailing bytes",
            })
        }
    }
}

/// Decodes one frame from the start of `buf`.
///
/// Returns `Ok(None)` if `buf` does not yet hold a whole frame, or
/// `Ok(Some((frame, consumed)))`. `max_body` bounds the announced body length
/// so a hostile length prefix is refused before any memory is reserved.
pub fn decode(buf: &[u8], max_body: usize) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    if buf.len() < HEADER_LEN {
        // Reject an unknown type byte as early as possible.
        if let Some(&t) = buf.first() {
            frame_name(t)?;
        }
        return Ok(None);
    }
    let t = buf[0];
    let name = frame_name(t)?;
    let len = u32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len > max_body {
        return Err(FrameError::TooLarge { len, max: max_body });
    }
    let total = HEADER_LEN + len;
    if buf.len() < total {
        return Ok(None);
    }
    let mut b = Body {
        frame: name,
        rest: &buf[HEADER_LEN..total],
    };
    let frame = match t {
        kind::PUBLISH => {
            let event = b.event()?;
            Frame::Publish {
                event,
                payload: b.rest,
            }
        }
        kind::DELIVER => Frame::Deliver(decode_deliver(b)?),
        kind::HELLO => {
            if b.take(4)? != MAGIC {
                return Err(FrameError::BadMagic);
            }
            let version = b.u16()?;
            let _flags = b.u16()?;
            let pid = b.u32()?;
            let nlen = b.u8()? as usize;
            let name = b.str(nlen, "client name")?;
            b.end()?;
            Frame::Hello { version, pid, name }
        }
        kind::SUBSCRIBE | kind::UNSUBSCRIBE => {
            let ack = b.u32()?;
            let count = b.u16()?;
            if count as usize > MAX_SUBSCRIBE_NAMES {
                return Err(FrameError::Malformed {
                    frame: name,
                    what: "too many names",
                });
            }
            let bytes = b.rest;
            for _ in 0..count {
                b.event()?;
            }
            b.end()?;
            let events = Names { count, bytes };
            if t == kind::SUBSCRIBE {
                Frame::Subscribe { ack, events }
            } else {
                Frame::Unsubscribe { ack, events }
            }
        }
        kind::REQUEST => {
            let id = b.u32()?;
            let event = b.event()?;
            Frame::Request {
                id,
                event,
                payload: b.rest,
            }
        }
        kind::PING | kind::PONG => {
            let token = b.u64()?;
            b.end()?;
            if t == kind::PING {
                Frame::Ping(token)
            } else {
                Frame::Pong(token)
            }
        }
        kind::WELCOME => {
            let version = b.u16()?;
            let _flags = b.u16()?;
            let node = b.u64()?;
            let client = b.u64()?;
            let max_message = b.u32()?;
            let clen = b.u8()? as usize;
            let channel = b.str(clen, "channel name")?;
            b.end()?;
            Frame::Welcome {
                version,
                node,
                client,
                max_message,
                channel,
            }
        }
        kind::RESPONSE => {
            let id = b.u32()?;
            let status = match b.u8()? {
                0 => Status::Ok,
                1 => Status::Failed,
                _ => {
                    return Err(FrameError::Malformed {
                        frame: name,
                        what: "bad status",
                    })
                }
            };
            Frame::Response {
                id,
                status,
                payload: b.rest,
            }
        }
        kind::ERROR => {
            let code = ErrorCode::from_u16(b.u16()?);
            let id = b.u32()?;
            let fatal = b.u8()? & 1 == 1;
            let message = std::str::from_utf8(b.rest).map_err(|_| FrameError::BadUtf8 {
                field: "error message",
            })?;
            Frame::Error {
                code,
                id,
                fatal,
                message,
            }
        }
        kind::ACK => {
            let id = b.u32()?;
            b.end()?;
            Frame::Ack(id)
        }
        _ => unreachable!("frame_name accepted the type"),
    };
    Ok(Some((frame, total)))
}

fn decode_deliver(b: Body<'_>) -> Result<Deliver<'_>, FrameError> {
    decode_deliver_raw(b.rest)?.with_event(None)
}

fn frame_name(t: u8) -> Result<&'static str, FrameError> {
    Ok(match t {
        kind::HELLO => "hello",
        kind::SUBSCRIBE => "subscribe",
        kind::UNSUBSCRIBE => "unsubscribe",
        kind::PUBLISH => "publish",
        kind::REQUEST => "request",
        kind::PING => "ping",
        kind::PONG => "pong",
        kind::WELCOME => "welcome",
        kind::DELIVER => "deliver",
        kind::RESPONSE => "response",
        kind::ERROR => "error",
        kind::ACK => "ack",
        other => return Err(FrameError::UnknownType(other)),
    })
}

mod deliver;
mod encode;
pub mod shm;
pub use deliver::{decode_deliver_raw, RawDeliver};
pub use encode::*;

#[cfg(test)]
mod tests;
