//! The headers a bridged message carries, and decoding what arrives.
//!
//! A daemon publishing to NATS adds five headers:
//!
//! | header | value |
//! |---|---|
//! | `Nc-Node` | origin node id, 16 lower-case hex digits |
//! | `Nc-Client` | origin client id on that node, decimal |
//! | `Nc-Seq` | the client's message sequence number, decimal |
//! | `Nc-Channel` | the exact channel name |
//! | `Nc-Event` | the exact event name |
//!
//! A name is written as itself when it is non-empty printable ASCII
//! without leading or trailing space and does not start with `~`;
//! otherwise as its escaped subject token (see [`super::subject`]), so a
//! header value never holds CR, LF or bytes a NATS client might mangle.
//! A message without `Nc-Node` comes from a plain NATS client: its names
//! are taken from the subject alone ([`Inbound::Foreign`]).

use std::borrow::Cow;

use super::subject::{decode_token, encode_token, parse_subject, SubjectError};

/// Header: origin node id.
pub const NODE: &str = "Nc-Node";
/// Header: origin client id.
pub const CLIENT: &str = "Nc-Client";
/// Header: per-client sequence number.
pub const SEQ: &str = "Nc-Seq";
/// Header: channel name.
pub const CHANNEL: &str = "Nc-Channel";
/// Header: event name.
pub const EVENT: &str = "Nc-Event";

/// Who sent a bridged message and under which names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Origin node id.
    pub node: u64,
    /// Origin client id on that node.
    pub client: u64,
    /// The client's sequence number.
    pub seq: u64,
    /// Channel name.
    pub channel: String,
    /// Event name.
    pub event: String,
}

/// A message as it came from NATS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// Published by a netcluster daemon (it carries the headers).
    Bridged(Envelope),
    /// Published by any other NATS client: names from the subject only.
    Foreign {
        /// Channel name.
        channel: String,
        /// Event name.
        event: String,
    },
}

/// Why an incoming message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InboundError {
    /// The subject is not a netcluster subject.
    #[error(transparent)]
    Subject(#[from] SubjectError),
    /// A header is missing or malformed.
    #[error("header {header}: {why}")]
    Header {
        /// The header name.
        header: &'static str,
        /// What is wrong.
        why: String,
    },
    /// The headers name another channel or event than the subject.
    #[error("headers name {header_channel:?}/{header_event:?} but the subject says {subject_channel:?}/{subject_event:?}")]
    Mismatch {
        /// Channel in the header.
        header_channel: String,
        /// Event in the header.
        header_event: String,
        /// Channel in the subject.
        subject_channel: String,
        /// Event in the subject.
        subject_event: String,
    },
}

fn header_safe(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('~')
        && !name.starts_with(' ')
        && !name.ends_with(' ')
        && name.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// A name as a header value.
pub fn name_value(name: &str) -> Cow<'_, str> {
    if header_safe(name) {
        Cow::Borrowed(name)
    } else {
        encode_token(name)
    }
}

fn value_name(header: &'static str, v: &str) -> Result<String, InboundError> {
    if v.starts_with('~') {
        return decode_token(v)
            .map(Cow::into_owned)
            .map_err(|e| InboundError::Header {
                header,
                why: e.to_string(),
            });
    }
    if header_safe(v) {
        Ok(v.to_string())
    } else {
        Err(InboundError::Header {
            header,
            why: format!("{v:?} is not a valid name value"),
        })
    }
}

/// The headers for a message, as (name, value) pairs.
pub fn encode_headers(e: &Envelope) -> [(&'static str, String); 5] {
    [
        (NODE, format!("{:016x}", e.node)),
        (CLIENT, e.client.to_string()),
        (SEQ, e.seq.to_string()),
        (CHANNEL, name_value(&e.channel).into_owned()),
        (EVENT, name_value(&e.event).into_owned()),
    ]
}

/// Decodes a message that arrived on `subject` under `prefix`; `header`
/// looks up a header's (first) value.
pub fn decode<'h>(
    prefix: &str,
    subject: &str,
    header: impl Fn(&str) -> Option<&'h str>,
) -> Result<Inbound, InboundError> {
    let (channel, event) = parse_subject(prefix, subject)?;
    let Some(node) = header(NODE) else {
        return Ok(Inbound::Foreign {
            channel: channel.into_owned(),
            event: event.into_owned(),
        });
    };
    let node = parse_hex(node).ok_or_else(|| InboundError::Header {
        header: NODE,
        why: format!("{node:?} is not 16 hex digits"),
    })?;
    let number = |h: &'static str| -> Result<u64, InboundError> {
        let v = header(h).ok_or_else(|| InboundError::Header {
            header: h,
            why: "missing".into(),
        })?;
        v.parse::<u64>().map_err(|_| InboundError::Header {
            header: h,
            why: format!("{v:?} is not a decimal number"),
        })
    };
    let client = number(CLIENT)?;
    let seq = number(SEQ)?;
    let name = |h: &'static str| -> Result<String, InboundError> {
        let v = header(h).ok_or_else(|| InboundError::Header {
            header: h,
            why: "missing".into(),
        })?;
        value_name(h, v)
    };
    let hc = name(CHANNEL)?;
    let he = name(EVENT)?;
    if hc != channel || he != event {
        return Err(InboundError::Mismatch {
            header_channel: hc,
            header_event: he,
            subject_channel: channel.into_owned(),
            subject_event: event.into_owned(),
        });
    }
    Ok(Inbound::Bridged(Envelope {
        node,
        client,
        seq,
        channel: hc,
        event: he,
    }))
}

fn parse_hex(v: &str) -> Option<u64> {
    if v.len() != 16 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(v, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::super::subject::subject;
    use super::*;
    use proptest::prelude::*;

    fn lookup<'a>(hs: &'a [(&'static str, String)]) -> impl Fn(&str) -> Option<&'a str> {
        move |n| hs.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_str())
    }

    #[test]
    fn bridged_round_trip() {
        let e = Envelope {
            node: 0xdead_beef_0000_0001,
            client: 7,
            seq: 42,
            channel: "a.b".into(),
            event: "line\nbreak".into(),
        };
        let hs = encode_headers(&e);
        assert_eq!(hs[0].1, "deadbeef00000001");
        assert_eq!(hs[3].1, "a.b");
        assert_eq!(hs[4].1, "~line%0Abreak");
        let s = subject("nc", &e.channel, &e.event);
        assert_eq!(decode("nc", &s, lookup(&hs)), Ok(Inbound::Bridged(e)));
    }

    #[test]
    fn foreign_without_headers() {
        let got = decode("nc", "nc.A.~b%2Ec", |_| None).unwrap();
        assert_eq!(
            got,
            Inbound::Foreign {
                channel: "A".into(),
                event: "b.c".into()
            }
        );
    }

    #[test]
    fn refuses_bad_headers() {
        let e = Envelope {
            node: 1,
            client: 2,
            seq: 3,
            channel: "A".into(),
            event: "x".into(),
        };
        let good = encode_headers(&e);
        let cases: [(usize, &str); 6] = [
            (0, "1"),
            (0, "zzzzzzzzzzzzzzzz"),
            (1, "-1"),
            (2, "x"),
            (3, "B"),
            (4, "~%41"),
        ];
        for (i, v) in cases {
            let mut hs = good.clone();
            hs[i].1 = v.to_string();
            assert!(decode("nc", "nc.A.x", lookup(&hs)).is_err(), "{i} {v}");
        }
        let missing: Vec<_> = good.iter().filter(|(k, _)| *k != SEQ).cloned().collect();
        assert!(matches!(
            decode("nc", "nc.A.x", lookup(&missing)),
            Err(InboundError::Header { header: SEQ, .. })
        ));
    }

    proptest! {
        #[test]
        fn any_names_round_trip(c in any::<String>(), ev in any::<String>(), node: u64, client: u64, seq: u64) {
            let e = Envelope { node, client, seq, channel: c, event: ev };
            let hs = encode_headers(&e);
            for (_, v) in &hs {
                prop_assert!(!v.bytes().any(|b| b == b'\r' || b == b'\n'));
            }
            let s = subject("p", &e.channel, &e.event);
            prop_assert_eq!(decode("p", &s, lookup(&hs)), Ok(Inbound::Bridged(e)));
        }
    }
}
