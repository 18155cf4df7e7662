//! Decoding of Deliver frames, the one frame a client's read loop sees
//! millions of times. [`decode_deliver_raw`] leaves the event name's UTF-8
//! check to the caller, who usually compares it with the previous frame's
//! (runs of one event are the common case) and checks only names it has
//! not seen; [`super::decode`] checks every name.

use super::{deliver_flags, Body, Deliver, FrameError, MAX_EVENT_LEN};

/// A Deliver frame whose event name is not yet checked for UTF-8 (every
/// other field is checked: lengths, varints, the channel name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawDeliver<'a> {
    /// Origin node id; `None` when the message comes from the recipient's own daemon.
    pub node: Option<u64>,
    /// Origin client id.
    pub client: u64,
    /// Per-origin sequence number.
    pub seq: u64,
    /// Origin channel; `None` when it is the recipient's own channel.
    pub channel: Option<&'a str>,
    /// Event name, at most `MAX_EVENT_LEN` bytes, UTF-8 not checked.
    pub event: &'a [u8],
    /// Payload bytes.
    pub payload: &'a [u8],
}

impl<'a> RawDeliver<'a> {
    /// The frame with `event` as its event name: the caller has checked
    /// that `event` holds the same bytes as [`RawDeliver::event`] (or
    /// wants exactly those checked here, passing `None`).
    pub fn with_event(self, event: Option<&'a str>) -> Result<Deliver<'a>, FrameError> {
        let event = match event {
            Some(e) => {
                debug_assert_eq!(e.as_bytes(), self.event);
                e
            }
            None => std::str::from_utf8(self.event).map_err(|_| FrameError::BadUtf8 {
                field: "event name",
            })?,
        };
        Ok(Deliver {
            node: self.node,
            client: self.client,
            seq: self.seq,
            channel: self.channel,
            event,
            payload: self.payload,
        })
    }
}

/// Decodes the body of a Deliver frame (what follows its 5-byte header),
/// all of it, without checking the event name's UTF-8.
pub fn decode_deliver_raw(body: &[u8]) -> Result<RawDeliver<'_>, FrameError> {
    let mut b = Body {
        frame: "deliver",
        rest: body,
    };
    let flags = b.u8()?;
    let client = b.varint()?;
    let seq = b.varint()?;
    let node = if flags & deliver_flags::REMOTE != 0 {
        Some(b.u64()?)
    } else {
        None
    };
    let channel = if flags & deliver_flags::CHANNEL != 0 {
        let len = b.u8()? as usize;
        Some(b.str(len, "channel name")?)
    } else {
        None
    };
    let len = b.u16()? as usize;
    if len > MAX_EVENT_LEN {
        return Err(FrameError::Malformed {
            frame: b.frame,
            what: "event name too long",
        });
    }
    let event = b.take(len)?;
    Ok(RawDeliver {
        node,
        client,
        seq,
        channel,
        event,
        payload: b.rest,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{decode, encode_deliver, DeliverHeader, Frame, HEADER_LEN};
    use super::*;
    use bytes::BytesMut;

    fn frame(h: &DeliverHeader<'_>, event: &str, payload: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        encode_deliver(&mut b, h, event, payload);
        b
    }

    #[test]
    fn agrees_with_the_general_decoder() {
        for (node, client, seq, channel) in [
            (None, 3, 1, None),
            (Some(0x1122_3344_5566_7788), 300, 1 << 40, Some("B")),
            (None, 127, 128, Some("other")),
        ] {
            let h = DeliverHeader {
                node,
                client,
                seq,
                channel,
            };
            let b = frame(&h, "évent", b"payload");
            let Ok(Some((Frame::Deliver(d), n))) = decode(&b, 1 << 20) else {
                panic!("general decoder")
            };
            assert_eq!(n, b.len());
            let raw = decode_deliver_raw(&b[HEADER_LEN..]).unwrap();
            assert_eq!(raw.event, "évent".as_bytes());
            assert_eq!(raw.with_event(None).unwrap(), d);
            assert_eq!(raw.with_event(Some("évent")).unwrap(), d);
        }
    }

    #[test]
    fn varints_of_every_width_and_cut_ones() {
        // One to three bytes take the unrolled path, longer ones the loop.
        let edges = [
            0u64,
            127,
            128,
            16_383,
            16_384,
            (1 << 21) - 1,
            1 << 21,
            u64::MAX,
        ];
        for client in edges {
            for seq in edges {
                let h = DeliverHeader {
                    node: None,
                    client,
                    seq,
                    channel: None,
                };
                let b = frame(&h, "e", b"");
                let raw = decode_deliver_raw(&b[HEADER_LEN..]).unwrap();
                assert_eq!((raw.client, raw.seq), (client, seq));
                assert_eq!(raw.event, b"e");
                // Cut anywhere inside the header fields: an error, never a
                // wrong value.
                for cut in HEADER_LEN..b.len() - 1 {
                    assert!(
                        decode_deliver_raw(&b[HEADER_LEN..cut]).is_err(),
                        "client {client} seq {seq} cut at {cut}"
                    );
                }
            }
        }
    }

    #[test]
    fn checks_what_it_must() {
        let h = DeliverHeader {
            node: None,
            client: 1,
            seq: 1,
            channel: None,
        };
        let b = frame(&h, "ab", b"x");
        // Cut anywhere inside the fields: malformed, never a panic.
        for cut in HEADER_LEN..HEADER_LEN + 6 {
            assert!(decode_deliver_raw(&b[HEADER_LEN..cut]).is_err(), "{cut}");
        }
        // A bad event name passes the raw decode but not the check.
        let mut bad = b.clone();
        bad[HEADER_LEN + 5] = 0xff;
        let raw = decode_deliver_raw(&bad[HEADER_LEN..]).unwrap();
        assert!(matches!(
            raw.with_event(None),
            Err(FrameError::BadUtf8 { .. })
        ));
        // A multi-byte varint still decodes (the one-byte fast path aside).
        let h = DeliverHeader {
            node: None,
            client: 128,
            seq: u64::MAX,
            channel: None,
        };
        let b = frame(&h, "e", b"");
        let raw = decode_deliver_raw(&b[HEADER_LEN..]).unwrap();
        assert_eq!((raw.client, raw.seq), (128, u64::MAX));
    }
}
