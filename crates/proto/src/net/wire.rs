//! Byte layout of network datagrams: the fixed header, the records of a DATA
//! datagram, the HEARTBEAT, NAK, GONE, ACK and SYNC bodies; their encoders and their
//! decoders (in `encode`, `decode`, `records` and `sync`). Sealing (the AEAD
//! around the body) lives in `seal`.
//!
//! This module owns every byte that crosses the network (documented in
//! `docs/NET-DATAGRAMS.md`) and nothing else: no state, no time. The
//! decoders borrow the input, never panic and never allocate, so they can be
//! fed arbitrary bytes (see the `net_datagram` fuzz target). Multi-byte
//! fixed fields are little-endian like the local frames; counts and lengths
//! are LEB128 varints so small messages stay small.

use crate::frame::MAX_EVENT_LEN;
use crate::names::MAX_CHANNEL_LEN;
use crate::varint;

/// First bytes of every datagram.
pub const MAGIC: [u8; 4] = *b"NCDG";
/// The datagram version this crate speaks.
pub const VERSION: u8 = 1;
/// Bytes of the fixed header.
pub const HEADER_LEN: usize = 24;
/// Bytes of the AEAD tag that a sealed datagram ends with. The sender
/// always leaves this much room under the `mtu`, sealed or not, so a key
/// set by a reload never pushes a datagram over the budget.
pub const TAG_LEN: usize = 16;
/// Most ranges in one NAK.
pub const MAX_NAK_RANGES: usize = 64;
/// Longest node name in a heartbeat (one-byte length).
pub const MAX_NODE_NAME: usize = 255;
/// Most bytes a message record's head can take besides the payload:
/// channel and event with their lengths, client, seq and payload length.
pub const MAX_MSG_HEAD: usize = 2 + MAX_CHANNEL_LEN + 2 + MAX_EVENT_LEN + 3 * varint::MAX_LEN;

/// Header flag bits.
pub mod flags {
    /// The body is AEAD ciphertext followed by a [`TAG_LEN`](super::TAG_LEN)-byte tag.
    pub const SEALED: u8 = 0x01;
    /// Bits a version-1 sender must leave clear.
    pub const RESERVED: u8 = !SEALED;
}

/// Header kind bytes.
pub mod kind {
    /// A batch of message records and/or fragments.
    pub const DATA: u8 = 1;
    /// Liveness, name and counters.
    pub const HEARTBEAT: u8 = 2;
    /// Negative acknowledgement: DATA sequence numbers a receiver misses.
    pub const NAK: u8 = 3;
    /// A sender's answer that DATA datagrams are no longer available.
    pub const GONE: u8 = 4;
    /// A receiver's progress: the next DATA sequence number it expects.
    pub const ACK: u8 = 5;
    /// A receiver that has no state for a sender asks for its position.
    pub const SYNC: u8 = 6;
    /// A sender's answer to a SYNC: its DATA position and uptime.
    pub const SYNC_REPLY: u8 = 7;
}

/// Record tag bits of a DATA body.
pub mod tag {
    /// Mask of the record type.
    pub const TYPE_MASK: u8 = 0x03;
    /// A whole message.
    pub const MSG: u8 = 0;
    /// A fragment of a message.
    pub const FRAG: u8 = 1;
    /// Channel omitted: the previous record's.
    pub const SAME_CHANNEL: u8 = 0x04;
    /// Event omitted: the previous record's.
    pub const SAME_EVENT: u8 = 0x08;
    /// Client omitted: the previous record's.
    pub const SAME_CLIENT: u8 = 0x10;
    /// Sequence omitted: the previous record's plus one.
    pub const NEXT_SEQ: u8 = 0x20;
    /// Bits that must be clear.
    pub const RESERVED: u8 = 0xc0;
}

/// What a datagram is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Messages.
    Data,
    /// A heartbeat.
    Heartbeat,
    /// A negative acknowledgement.
    Nak,
    /// Data no longer available.
    Gone,
    /// A receiver's progress.
    Ack,
    /// A request for a sender's position.
    Sync,
    /// A sender's position, answering a SYNC.
    SyncReply,
}

impl Kind {
    /// The wire byte.
    pub fn to_u8(self) -> u8 {
        match self {
            Kind::Data => kind::DATA,
            Kind::Heartbeat => kind::HEARTBEAT,
            Kind::Nak => kind::NAK,
            Kind::Gone => kind::GONE,
            Kind::Ack => kind::ACK,
            Kind::Sync => kind::SYNC,
            Kind::SyncReply => kind::SYNC_REPLY,
        }
    }
}

/// The fixed header of every datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// What the body holds.
    pub kind: Kind,
    /// Flag bits (see [`flags`]).
    pub flags: u8,
    /// Key id of a sealed datagram; 0 when not sealed.
    pub key_id: u8,
    /// Sender's node id.
    pub node: u64,
    /// Per-sender, per-kind counter starting at 1. For DATA it is the data
    /// sequence number that orders, deduplicates and (later) NAKs.
    pub seq: u64,
}

/// A decoded datagram, borrowing the input.
#[derive(Debug, Clone)]
pub struct Datagram<'a> {
    /// The header.
    pub header: Header,
    /// The body.
    pub body: Body<'a>,
}

/// A decoded body.
#[derive(Debug, Clone)]
pub enum Body<'a> {
    /// The records of a DATA datagram (already validated).
    Data(Records<'a>),
    /// A heartbeat.
    Heartbeat(Heartbeat<'a>),
    /// A NAK.
    Nak(Nak<'a>),
    /// A GONE announcement.
    Gone(Gone),
    /// An ACK.
    Ack(Ack),
    /// A SYNC request.
    Sync(SyncRequest),
    /// A SYNC reply.
    SyncReply(SyncReply),
    /// A sealed body (ciphertext and tag), not decoded without the key.
    Sealed(&'a [u8]),
}

/// A NAK body: the DATA datagrams of `target` that the sender misses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nak<'a> {
    /// The node asked to retransmit.
    pub target: u64,
    count: usize,
    ranges: &'a [u8],
}

impl<'a> Nak<'a> {
    /// The missing ranges `(first, last)`, inclusive, ascending and
    /// disjoint (validated by the decoder).
    pub fn ranges(&self) -> NakRanges<'a> {
        NakRanges {
            r: Reader { rest: self.ranges },
            left: self.count,
            prev: 0,
        }
    }
}

/// Iterator over the ranges of a [`Nak`].
#[derive(Debug, Clone)]
pub struct NakRanges<'a> {
    r: Reader<'a>,
    left: usize,
    prev: u64,
}

impl NakRanges<'_> {
    fn read(&mut self) -> Result<(u64, u64), WireError> {
        // Each range is its distance from the previous range's end (or
        // from 0), then its length minus one: small numbers stay small.
        let gap = self.r.varint("nak range")?;
        let span = self.r.varint("nak range")?;
        let first = self
            .prev
            .checked_add(gap)
            .filter(|&f| f > self.prev)
            .ok_or(WireError::BadNak("ranges must ascend from 1"))?;
        let last = first
            .checked_add(span)
            .ok_or(WireError::BadNak("range overflows"))?;
        self.prev = last
            .checked_add(1)
            .ok_or(WireError::BadNak("range overflows"))?;
        Ok((first, last))
    }
}

impl Iterator for NakRanges<'_> {
    type Item = (u64, u64);
    fn next(&mut self) -> Option<(u64, u64)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // Validated by decode_nak, so errors cannot happen here.
        self.read().ok()
    }
}

/// An ACK body: how far a receiver has got in one sender's DATA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// The sender whose DATA this is about.
    pub target: u64,
    /// The next DATA sequence number the receiver expects: every one below
    /// has been applied or given up on.
    pub next: u64,
}

/// A GONE body: the sender's retransmit window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone {
    /// The oldest DATA sequence number it can still retransmit; every one
    /// below is gone.
    pub first_kept: u64,
    /// The last DATA sequence number it has sent.
    pub last_seq: u64,
}

/// A HEARTBEAT body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat<'a> {
    /// The sender's name.
    pub name: &'a str,
    /// The last DATA sequence number it has sent, 0 if none.
    pub last_seq: u64,
    /// Milliseconds since it started.
    pub uptime_ms: u64,
    /// Messages it has sent.
    pub messages_out: u64,
    /// Datagrams it has sent.
    pub datagrams_out: u64,
    /// Bytes it has sent.
    pub bytes_out: u64,
}

/// One record of a DATA body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    /// A whole message.
    Msg(MsgRecord<'a>),
    /// A piece of a larger message.
    Frag(FragRecord<'a>),
}

/// A whole message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsgRecord<'a> {
    /// Channel name.
    pub channel: &'a str,
    /// Event name.
    pub event: &'a str,
    /// Origin client.
    pub client: u64,
    /// Per-origin sequence number.
    pub seq: u64,
    /// Payload.
    pub payload: &'a [u8],
}

/// A fragment: bytes `offset..offset + data.len()` of a message body (the
/// message encoded as a MSG record without its tag) of `total` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragRecord<'a> {
    /// Per-sender id of the fragmented message.
    pub msg_id: u64,
    /// Index of this fragment, `< count`.
    pub index: u64,
    /// Number of fragments.
    pub count: u64,
    /// Length of the whole message body.
    pub total: u64,
    /// Where `data` goes in the message body.
    pub offset: u64,
    /// The bytes.
    pub data: &'a [u8],
}

/// Why a datagram was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Shorter than the fixed header.
    #[error("datagram of {len} bytes is shorter than the {HEADER_LEN}-byte header")]
    TooShort {
        /// Its length.
        len: usize,
    },
    /// Does not start with the magic bytes: not netcluster's.
    #[error("not a netcluster datagram (bad magic)")]
    BadMagic,
    /// Another version of the protocol.
    #[error("datagram version {0} is not supported (this node speaks {VERSION})")]
    BadVersion(u8),
    /// Flag bits this version does not know are set.
    #[error("reserved header flags 0x{0:02x} are set")]
    ReservedFlags(u8),
    /// The datagram is sealed and this node has no key.
    #[error("sealed datagram, but this node has no key")]
    Sealed,
    /// The datagram is not sealed and this node requires a key.
    #[error("datagram not sealed, but this node requires a key")]
    NotSealed,
    /// Sealed with a key this node does not have.
    #[error("sealed with an unknown key (id {0})")]
    UnknownKey(u8),
    /// The authentication tag does not match: wrong key or altered bytes.
    #[error("authentication failed (wrong key or altered datagram)")]
    Unauthentic,
    /// A NAK body is inconsistent.
    #[error("bad NAK: {0}")]
    BadNak(&'static str),
    /// A SYNC or SYNC reply body is inconsistent.
    #[error("bad SYNC: {0}")]
    BadSync(&'static str),
    /// A key id is set on a datagram that is not sealed.
    #[error("key id {0} on a datagram that is not sealed")]
    BadKeyId(u8),
    /// A kind byte with no meaning.
    #[error("unknown datagram kind {0}")]
    UnknownKind(u8),
    /// A DATA datagram with sequence number 0.
    #[error("DATA datagram with sequence number 0")]
    ZeroSeq,
    /// A DATA datagram without records.
    #[error("DATA datagram without records")]
    Empty,
    /// A field runs past the end of the datagram.
    #[error("truncated {what}")]
    Truncated {
        /// The field.
        what: &'static str,
    },
    /// A varint is unterminated or overflows.
    #[error("bad varint in {what}")]
    BadVarint {
        /// The field.
        what: &'static str,
    },
    /// A name is empty, too long or not UTF-8.
    #[error("bad {what} name: {why}")]
    BadName {
        /// "channel", "event" or "node".
        what: &'static str,
        /// What is wrong.
        why: &'static str,
    },
    /// A record tag has a reserved type or bits set.
    #[error("bad record tag 0x{0:02x}")]
    BadTag(u8),
    /// A record refers to a previous record that does not exist.
    #[error("record reuses the previous {what}, but there is no previous message record")]
    NoPrevious {
        /// The field.
        what: &'static str,
    },
    /// A fragment's numbers are inconsistent.
    #[error("bad fragment: {0}")]
    BadFragment(&'static str),
    /// Bytes left after a message body that must end.
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
}

mod decode;
use decode::Reader;
pub use decode::{
    decode_ack, decode_datagram, decode_gone, decode_header, decode_heartbeat, decode_nak,
};

mod records;
pub use records::*;

mod encode;
pub use encode::*;

mod sync;
pub use sync::*;

#[cfg(test)]
mod tests;
