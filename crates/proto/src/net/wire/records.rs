//! The records of a DATA datagram: whole messages (whose channel, event,
//! client and sequence number may be implied by the previous record) and
//! fragments, read one by one and each checked.

use super::*;

/// The validated records of a DATA datagram.
#[derive(Debug, Clone)]
pub struct Records<'a>(pub(super) RecordReader<'a>);

impl<'a> Iterator for Records<'a> {
    type Item = Record<'a>;
    fn next(&mut self) -> Option<Record<'a>> {
        // Validated by decode_datagram, so errors cannot happen here.
        self.0.next()?.ok()
    }
}

/// What the SAME_* flags of the next record may refer to.
#[derive(Debug, Clone, Copy, Default)]
struct Prev<'a> {
    channel: Option<&'a str>,
    event: Option<&'a str>,
    client: Option<u64>,
    seq: Option<u64>,
}

/// Reads the records of a DATA body one by one, each checked; stops after
/// the first error.
#[derive(Debug, Clone)]
pub struct RecordReader<'a> {
    r: Reader<'a>,
    prev: Prev<'a>,
}

impl<'a> RecordReader<'a> {
    /// Reads `body`, the bytes after the header of a DATA datagram.
    pub fn new(body: &'a [u8]) -> Self {
        RecordReader {
            r: Reader { rest: body },
            prev: Prev::default(),
        }
    }

    fn record(&mut self) -> Result<Record<'a>, WireError> {
        let t = self.r.take(1, "record tag")?[0];
        if t & tag::RESERVED != 0 {
            return Err(WireError::BadTag(t));
        }
        match t & tag::TYPE_MASK {
            tag::MSG => {
                let m = msg_fields(&mut self.r, t, &self.prev)?;
                self.prev = Prev {
                    channel: Some(m.channel),
                    event: Some(m.event),
                    client: Some(m.client),
                    seq: Some(m.seq),
                };
                Ok(Record::Msg(m))
            }
            tag::FRAG if t == tag::FRAG => {
                self.prev = Prev::default();
                Ok(Record::Frag(frag_fields(&mut self.r)?))
            }
            _ => Err(WireError::BadTag(t)),
        }
    }
}

impl<'a> Iterator for RecordReader<'a> {
    type Item = Result<Record<'a>, WireError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.r.rest.is_empty() {
            return None;
        }
        let r = self.record();
        if r.is_err() {
            self.r.rest = &[];
        }
        Some(r)
    }
}

fn msg_fields<'a>(r: &mut Reader<'a>, t: u8, prev: &Prev<'a>) -> Result<MsgRecord<'a>, WireError> {
    let channel = if t & tag::SAME_CHANNEL != 0 {
        prev.channel
            .ok_or(WireError::NoPrevious { what: "channel" })?
    } else {
        r.name("channel", MAX_CHANNEL_LEN)?
    };
    let event = if t & tag::SAME_EVENT != 0 {
        prev.event.ok_or(WireError::NoPrevious { what: "event" })?
    } else {
        r.name("event", MAX_EVENT_LEN)?
    };
    let client = if t & tag::SAME_CLIENT != 0 {
        prev.client
            .ok_or(WireError::NoPrevious { what: "client" })?
    } else {
        r.varint("client")?
    };
    let seq = if t & tag::NEXT_SEQ != 0 {
        prev.seq
            .ok_or(WireError::NoPrevious { what: "seq" })?
            .checked_add(1)
            .ok_or(WireError::BadVarint { what: "seq" })?
    } else {
        r.varint("seq")?
    };
    let payload = r.bytes("payload")?;
    Ok(MsgRecord {
        channel,
        event,
        client,
        seq,
        payload,
    })
}

fn frag_fields<'a>(r: &mut Reader<'a>) -> Result<FragRecord<'a>, WireError> {
    let msg_id = r.varint("fragment message id")?;
    let index = r.varint("fragment index")?;
    let count = r.varint("fragment count")?;
    let total = r.varint("fragment total")?;
    let offset = r.varint("fragment offset")?;
    let data = r.bytes("fragment data")?;
    if count == 0 || index >= count {
        return Err(WireError::BadFragment("index not below count"));
    }
    if count > total {
        return Err(WireError::BadFragment("more fragments than bytes"));
    }
    if data.is_empty() {
        return Err(WireError::BadFragment("empty fragment"));
    }
    match offset.checked_add(data.len() as u64) {
        Some(end) if end <= total => {}
        _ => return Err(WireError::BadFragment("data runs past the total length")),
    }
    Ok(FragRecord {
        msg_id,
        index,
        count,
        total,
        offset,
        data,
    })
}

/// Decodes a reassembled message body: a MSG record without its tag, all
/// fields explicit, ending exactly after the payload.
pub fn decode_message(body: &[u8]) -> Result<MsgRecord<'_>, WireError> {
    let mut r = Reader { rest: body };
    let m = msg_fields(&mut r, tag::MSG, &Prev::default())?;
    if !r.rest.is_empty() {
        return Err(WireError::Trailing(r.rest.len()));
    }
    Ok(m)
}
