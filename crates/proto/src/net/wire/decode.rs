//! Decoders of the datagram layout described in the parent module: the
//! header, a whole datagram (header and body by kind), and the NAK, ACK,
//! GONE and HEARTBEAT bodies, with the cursor the records and SYNC decoders
//! share. They borrow the input, never panic and never allocate; every
//! malformed input is a [`WireError`] naming what was wrong.

use super::*;

/// A cursor that turns short reads into errors.
#[derive(Debug, Clone)]
pub(super) struct Reader<'a> {
    pub(super) rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if self.rest.len() < n {
            return Err(WireError::Truncated { what });
        }
        let (a, b) = self.rest.split_at(n);
        self.rest = b;
        Ok(a)
    }
    pub(super) fn varint(&mut self, what: &'static str) -> Result<u64, WireError> {
        match varint::decode(self.rest) {
            Some((v, n)) => {
                self.rest = &self.rest[n..];
                Ok(v)
            }
            None if self.rest.len() < varint::MAX_LEN
                && self.rest.iter().all(|b| b & 0x80 != 0) =>
            {
                Err(WireError::Truncated { what })
            }
            None => Err(WireError::BadVarint { what }),
        }
    }
    /// A varint length, then that many bytes.
    pub(super) fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], WireError> {
        let len = self.varint(what)?;
        let len = usize::try_from(len).map_err(|_| WireError::Truncated { what })?;
        self.take(len, what)
    }
    pub(super) fn name(&mut self, what: &'static str, max: usize) -> Result<&'a str, WireError> {
        let b = self.bytes(what)?;
        check_name(b, what, max)
    }
}

fn check_name<'a>(b: &'a [u8], what: &'static str, max: usize) -> Result<&'a str, WireError> {
    if b.is_empty() {
        return Err(WireError::BadName { what, why: "empty" });
    }
    if b.len() > max {
        return Err(WireError::BadName {
            what,
            why: "too long",
        });
    }
    std::str::from_utf8(b).map_err(|_| WireError::BadName {
        what,
        why: "not UTF-8",
    })
}

/// Decodes and checks the header; returns it with the body bytes.
pub fn decode_header(data: &[u8]) -> Result<(Header, &[u8]), WireError> {
    if data.len() < HEADER_LEN {
        // A short datagram that does not even start like ours is foreign.
        if !MAGIC.starts_with(&data[..data.len().min(MAGIC.len())]) {
            return Err(WireError::BadMagic);
        }
        return Err(WireError::TooShort { len: data.len() });
    }
    let (h, body) = data.split_at(HEADER_LEN);
    if h[0..4] != MAGIC {
        return Err(WireError::BadMagic);
    }
    if h[4] != VERSION {
        return Err(WireError::BadVersion(h[4]));
    }
    let fl = h[5];
    if fl & flags::RESERVED != 0 {
        return Err(WireError::ReservedFlags(fl & flags::RESERVED));
    }
    let kind = match h[6] {
        kind::DATA => Kind::Data,
        kind::HEARTBEAT => Kind::Heartbeat,
        kind::NAK => Kind::Nak,
        kind::GONE => Kind::Gone,
        kind::ACK => Kind::Ack,
        kind::SYNC => Kind::Sync,
        kind::SYNC_REPLY => Kind::SyncReply,
        k => return Err(WireError::UnknownKind(k)),
    };
    let sealed = fl & flags::SEALED != 0;
    // A sealed datagram names its key (1..=255); a plain one has none.
    if sealed == (h[7] == 0) {
        return Err(WireError::BadKeyId(h[7]));
    }
    if sealed && body.len() < TAG_LEN {
        return Err(WireError::Truncated {
            what: "authentication tag",
        });
    }
    let node = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
    let seq = u64::from_le_bytes(h[16..24].try_into().expect("8 bytes"));
    if kind == Kind::Data && seq == 0 {
        return Err(WireError::ZeroSeq);
    }
    Ok((
        Header {
            kind,
            flags: fl,
            key_id: h[7],
            node,
            seq,
        },
        body,
    ))
}

/// Decodes a whole datagram, checking every record, so that a datagram is
/// either accepted whole or refused whole.
pub fn decode_datagram(data: &[u8]) -> Result<Datagram<'_>, WireError> {
    let (header, body) = decode_header(data)?;
    if header.flags & flags::SEALED != 0 {
        return Ok(Datagram {
            header,
            body: Body::Sealed(body),
        });
    }
    let body = match header.kind {
        Kind::Data => {
            let mut n = 0usize;
            for r in RecordReader::new(body) {
                r?;
                n += 1;
            }
            if n == 0 {
                return Err(WireError::Empty);
            }
            Body::Data(Records(RecordReader::new(body)))
        }
        Kind::Heartbeat => Body::Heartbeat(decode_heartbeat(body)?),
        Kind::Nak => Body::Nak(decode_nak(body)?),
        Kind::Gone => Body::Gone(decode_gone(body)?),
        Kind::Ack => Body::Ack(decode_ack(body)?),
        Kind::Sync => Body::Sync(decode_sync(body)?),
        Kind::SyncReply => Body::SyncReply(decode_sync_reply(body)?),
    };
    Ok(Datagram { header, body })
}

/// Decodes a NAK body, checking every range. Bytes after the ranges are
/// ignored, so a later version may append fields.
pub fn decode_nak(body: &[u8]) -> Result<Nak<'_>, WireError> {
    let mut r = Reader { rest: body };
    let target = u64::from_le_bytes(r.take(8, "nak target")?.try_into().expect("8 bytes"));
    let count = r.varint("nak count")?;
    if count == 0 || count > MAX_NAK_RANGES as u64 {
        return Err(WireError::BadNak("range count out of 1..=64"));
    }
    let ranges = r.rest;
    let mut it = NakRanges {
        r: Reader { rest: ranges },
        left: count as usize,
        prev: 0,
    };
    for _ in 0..count {
        it.read()?;
    }
    Ok(Nak {
        target,
        count: count as usize,
        ranges,
    })
}

/// Decodes an ACK body. Bytes after the known fields are ignored.
pub fn decode_ack(body: &[u8]) -> Result<Ack, WireError> {
    let mut r = Reader { rest: body };
    let target = u64::from_le_bytes(r.take(8, "ack target")?.try_into().expect("8 bytes"));
    Ok(Ack {
        target,
        next: r.varint("ack next")?,
    })
}

/// Decodes a GONE body. Bytes after the known fields are ignored.
pub fn decode_gone(body: &[u8]) -> Result<Gone, WireError> {
    let mut r = Reader { rest: body };
    Ok(Gone {
        first_kept: r.varint("first kept")?,
        last_seq: r.varint("last sequence")?,
    })
}

/// Decodes a HEARTBEAT body. Bytes after the known fields are ignored, so a
/// later version may append counters.
pub fn decode_heartbeat(body: &[u8]) -> Result<Heartbeat<'_>, WireError> {
    let mut r = Reader { rest: body };
    let len = r.take(1, "node name")?[0] as usize;
    let name = check_name(r.take(len, "node name")?, "node", MAX_NODE_NAME)?;
    Ok(Heartbeat {
        name,
        last_seq: r.varint("last sequence")?,
        uptime_ms: r.varint("uptime")?,
        messages_out: r.varint("messages out")?,
        datagrams_out: r.varint("datagrams out")?,
        bytes_out: r.varint("bytes out")?,
    })
}
