//! The header a bridged message carries, and decoding what arrives.
//!
//! A daemon publishing to NATS adds one header, `Nc-Origin`, whose value
//! is five fields separated by single spaces, and a sixth, the word `lan`,
//! when the origin also sent the message to its LAN by multicast:
//!
//! ```text
//! Nc-Origin: <node> <client> <seq> <channel> <event>[ lan]
//! Nc-Origin: 00c0ffee00000001 7 42 ~my%20chan ~a%2Eb
//! Nc-Origin: 00c0ffee00000001 7 43 ~my%20chan ~a%2Eb lan
//! ```
//!
//! | field | value |
//! |---|---|
//! | node | origin node id, 16 hex digits (written lower-case) |
//! | client | origin client id on that node, decimal |
//! | seq | the client's message sequence number, decimal |
//! | channel | the exact channel name as its subject token |
//! | event | the exact event name as its subject token |
//! | `lan` (optional) | the origin's multicast link carried it too: a receiver that hears the origin on its LAN and takes that channel from the network has it already |
//!
//! The names are written as their subject tokens (see [`super::subject`]),
//! which never hold a space, CR, LF or any byte outside printable ASCII, so
//! the value splits unambiguously and no NATS client mangles it; as the
//! escaping is canonical, the names agree with the subject exactly when the
//! tokens are equal. One header instead of five costs the publishing NATS
//! client one map entry and one string per message instead of five.
//!
//! A message without `Nc-Origin` comes from a plain NATS client: its names
//! are taken from the subject alone ([`Inbound::Foreign`]). A value longer
//! than [`MAX_ORIGIN_LEN`], with fewer than five fields, a sixth other
//! than `lan` or a seventh, a field that does not parse, or names that disagree with the subject is refused
//! ([`InboundError`]): the bridge counts and logs it and drops the message.

use std::borrow::Cow;

use super::subject::{decode_token, encode_token, split_subject, SubjectError};

/// The header's name.
pub const ORIGIN: &str = "Nc-Origin";

/// The optional sixth field of `Nc-Origin`: the origin also sent the
/// message by multicast.
pub const LAN_FLAG: &str = "lan";

/// The first of the five headers daemons wrote before `Nc-Origin`: a
/// message carrying it and no `Nc-Origin` comes from an older daemon and
/// is refused (taken for a plain NATS client's, it would escape the loop
/// and duplicate checks).
pub const LEGACY_NODE: &str = "Nc-Node";

/// Longest `Nc-Origin` value accepted: the five fields with the longest
/// names netcluster allows (a 255-byte channel and a 1024-byte event,
/// each escaped to at most three bytes per byte) fit with room to spare.
pub const MAX_ORIGIN_LEN: usize = 4096;

/// Most bytes of a refused field quoted in an error (a hostile value may
/// be up to [`MAX_ORIGIN_LEN`] long; logs need not repeat it).
const QUOTE_MAX: usize = 40;

/// Who sent a bridged message and under which names. The names borrow
/// from the subject when it needs no unescaping (the common case): a
/// receiving daemon decodes every message, and owning them would cost two
/// allocations per message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// Origin node id.
    pub node: u64,
    /// Origin client id on that node.
    pub client: u64,
    /// The client's sequence number.
    pub seq: u64,
    /// Channel name.
    pub channel: Cow<'a, str>,
    /// Event name.
    pub event: Cow<'a, str>,
    /// The origin also sent it by multicast (the `lan` field).
    pub lan: bool,
}

impl Envelope<'_> {
    /// The `Nc-Origin` value for this message.
    pub fn origin(&self) -> String {
        origin_value(
            self.node,
            self.client,
            self.seq,
            &origin_names(&self.channel, &self.event, self.lan),
        )
    }
}

/// A message as it came from NATS (names borrowed from the subject where
/// possible, see [`Envelope`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound<'a> {
    /// Published by a netcluster daemon (it carries `Nc-Origin`).
    Bridged(Envelope<'a>),
    /// Published by any other NATS client: names from the subject only.
    Foreign {
        /// Channel name.
        channel: Cow<'a, str>,
        /// Event name.
        event: Cow<'a, str>,
    },
}

/// Why an incoming message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InboundError {
    /// The subject is not a netcluster subject.
    #[error(transparent)]
    Subject(#[from] SubjectError),
    /// The `Nc-Origin` value is longer than [`MAX_ORIGIN_LEN`].
    #[error("header Nc-Origin: {0} bytes, more than {MAX_ORIGIN_LEN}")]
    TooLong(usize),
    /// A field of `Nc-Origin` is missing or malformed.
    #[error("header Nc-Origin: field {field}: {why}")]
    Field {
        /// The field (`node`, `client`, `seq`, `channel`, `event`,
        /// `flag` for a sixth that is not `lan`, or `end` for a seventh).
        field: &'static str,
        /// What is wrong.
        why: String,
    },
    /// The header names another channel or event than the subject (as
    /// tokens, which are equal exactly when the names are).
    #[error("header Nc-Origin names {header_channel:?}/{header_event:?} but the subject says {subject_channel:?}/{subject_event:?}")]
    Mismatch {
        /// Channel token in the header.
        header_channel: String,
        /// Event token in the header.
        header_event: String,
        /// Channel token in the subject.
        subject_channel: String,
        /// Event token in the subject.
        subject_event: String,
    },
}

/// The fixed part of an `Nc-Origin` value (`<channel> <event>` as
/// tokens, then ` lan` when `lan`): the same for every message of a
/// (channel, event) pair under one configuration, so a publisher computes
/// it once.
pub fn origin_names(channel: &str, event: &str, lan: bool) -> String {
    let (c, e) = (encode_token(channel), encode_token(event));
    let mut s = String::with_capacity(c.len() + 1 + e.len() + 4);
    s.push_str(&c);
    s.push(' ');
    s.push_str(&e);
    if lan {
        s.push(' ');
        s.push_str(LAN_FLAG);
    }
    s
}

/// The `Nc-Origin` value of one message; `names` is [`origin_names`] of
/// its channel and event.
pub fn origin_value(node: u64, client: u64, seq: u64, names: &str) -> String {
    // The numbers are written into a buffer on the stack and copied once
    // (this runs for every message published).
    let mut buf = [0u8; 16 + 1 + 20 + 1 + 20 + 1];
    let mut n = put_hex16(&mut buf, node);
    for v in [client, seq] {
        buf[n] = b' ';
        n += 1;
        n += put_decimal(&mut buf[n..], v);
    }
    buf[n] = b' ';
    n += 1;
    let mut s = String::with_capacity(n + names.len());
    s.push_str(std::str::from_utf8(&buf[..n]).expect("hex and decimal digits are ASCII"));
    s.push_str(names);
    s
}

/// Writes `v` as 16 lower-case hex digits at the start of `out`; returns 16.
fn put_hex16(out: &mut [u8], v: u64) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in out[..16].iter_mut().enumerate() {
        *b = HEX[(v >> ((15 - i) * 4)) as usize & 0xf];
    }
    16
}

/// Writes `v` in decimal at the start of `out` (room for 20 digits);
/// returns the number of digits.
fn put_decimal(out: &mut [u8], mut v: u64) -> usize {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let len = digits.len() - i;
    out[..len].copy_from_slice(&digits[i..]);
    len
}

/// `v` quoted for an error, cut to [`QUOTE_MAX`] bytes.
fn quote(v: &str) -> String {
    if v.len() <= QUOTE_MAX {
        return format!("{v:?}");
    }
    let mut end = QUOTE_MAX;
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}… ({} bytes)", &v[..end], v.len())
}

fn field_error(field: &'static str, why: String) -> InboundError {
    InboundError::Field { field, why }
}

// The parsers below run for every message a daemon receives: one pass
// over the bytes each, no `str` pattern machinery.

fn parse_node(v: &str) -> Result<u64, InboundError> {
    let bad = || field_error("node", format!("{} is not 16 hex digits", quote(v)));
    if v.len() != 16 {
        return Err(bad());
    }
    let mut n = 0u64;
    for &b in v.as_bytes() {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return Err(bad()),
        };
        n = n << 4 | u64::from(d);
    }
    Ok(n)
}

fn parse_decimal(field: &'static str, v: &str) -> Result<u64, InboundError> {
    // Digits only: `u64::from_str` would also take a leading `+`.
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(field_error(
            field,
            format!("{} is not a decimal number", quote(v)),
        ));
    }
    let mut n = 0u64;
    for &b in v.as_bytes() {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or_else(|| field_error(field, format!("{} does not fit 64 bits", quote(v))))?;
    }
    Ok(n)
}

/// The fields of a value separated by single spaces, as `str::split(' ')`
/// yields them (an empty field between two spaces, a trailing empty one
/// after a final space).
struct Fields<'a> {
    rest: Option<&'a str>,
}

impl<'a> Iterator for Fields<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let r = self.rest?;
        match r.as_bytes().iter().position(|&b| b == b' ') {
            Some(i) => {
                // A space is one byte, so both sides are char boundaries.
                self.rest = Some(&r[i + 1..]);
                Some(&r[..i])
            }
            None => {
                self.rest = None;
                Some(r)
            }
        }
    }
}

/// Decodes a message that arrived on `subject` under `prefix`, with
/// `origin` the value of its (first) `Nc-Origin` header, if it has one.
pub fn decode<'a>(
    prefix: &str,
    subject: &'a str,
    origin: Option<&str>,
) -> Result<Inbound<'a>, InboundError> {
    let (c_tok, e_tok) = split_subject(prefix, subject)?;
    let channel = decode_token(c_tok)?;
    let event = decode_token(e_tok)?;
    let Some(v) = origin else {
        return Ok(Inbound::Foreign { channel, event });
    };
    if v.len() > MAX_ORIGIN_LEN {
        return Err(InboundError::TooLong(v.len()));
    }
    let mut fields = Fields { rest: Some(v) };
    let mut next = |field: &'static str| {
        fields
            .next()
            .ok_or_else(|| field_error(field, "missing (the value ends before it)".into()))
    };
    let node = parse_node(next("node")?)?;
    let client = parse_decimal("client", next("client")?)?;
    let seq = parse_decimal("seq", next("seq")?)?;
    let hc = next("channel")?;
    let he = next("event")?;
    let lan = match fields.next() {
        None => false,
        Some(LAN_FLAG) => true,
        Some(f) => {
            return Err(field_error(
                "flag",
                format!("{} is not {LAN_FLAG:?}", quote(f)),
            ))
        }
    };
    if let Some(extra) = fields.next() {
        return Err(field_error(
            "end",
            format!("more than six fields (then {})", quote(extra)),
        ));
    }
    if hc != c_tok || he != e_tok {
        // Say which is broken when a token is not even valid.
        for (field, t) in [("channel", hc), ("event", he)] {
            if let Err(e) = decode_token(t) {
                return Err(field_error(field, e.to_string()));
            }
        }
        return Err(InboundError::Mismatch {
            header_channel: hc.to_string(),
            header_event: he.to_string(),
            subject_channel: c_tok.to_string(),
            subject_event: e_tok.to_string(),
        });
    }
    Ok(Inbound::Bridged(Envelope {
        node,
        client,
        seq,
        channel,
        event,
        lan,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::subject::subject;
    use super::*;
    use proptest::prelude::*;

    fn env() -> Envelope<'static> {
        Envelope {
            node: 1,
            client: 2,
            seq: 3,
            channel: "A".into(),
            event: "x".into(),
            lan: false,
        }
    }

    #[test]
    fn bridged_round_trip() {
        let e = Envelope {
            node: 0xdead_beef_0000_0001,
            client: 7,
            seq: 42,
            channel: "a.b".into(),
            event: "line\nbreak".into(),
            lan: false,
        };
        let v = e.origin();
        assert_eq!(v, "deadbeef00000001 7 42 ~a%2Eb ~line%0Abreak");
        let s = subject("nc", &e.channel, &e.event);
        assert_eq!(decode("nc", &s, Some(&v)), Ok(Inbound::Bridged(e.clone())));
        // The LAN flag is a sixth field.
        let e = Envelope { lan: true, ..e };
        let v = e.origin();
        assert_eq!(v, "deadbeef00000001 7 42 ~a%2Eb ~line%0Abreak lan");
        assert_eq!(decode("nc", &s, Some(&v)), Ok(Inbound::Bridged(e)));
    }

    #[test]
    fn extremes_encode() {
        let e = Envelope {
            node: 0,
            client: 0,
            seq: u64::MAX,
            channel: "c".into(),
            event: "e".into(),
            lan: false,
        };
        assert_eq!(e.origin(), "0000000000000000 0 18446744073709551615 c e");
        let mut m = e.clone();
        m.node = u64::MAX;
        assert_eq!(
            decode("p", "p.c.e", Some(&m.origin())),
            Ok(Inbound::Bridged(m))
        );
    }

    #[test]
    fn foreign_without_header() {
        let got = decode("nc", "nc.A.~b%2Ec", None).unwrap();
        assert_eq!(
            got,
            Inbound::Foreign {
                channel: "A".into(),
                event: "b.c".into()
            }
        );
    }

    #[test]
    fn refuses_malformed_truncated_and_missing_fields() {
        let good = env().origin();
        assert_eq!(good, "0000000000000001 2 3 A x");
        let cases: &[(&str, &str)] = &[
            ("", "node"),
            (" ", "node"),
            ("1 2 3 A x", "node"),
            ("zzzzzzzzzzzzzzzz 2 3 A x", "node"),
            ("00000000000000001 2 3 A x", "node"),
            ("0000000000000001", "client"),
            ("0000000000000001 ", "client"),
            ("0000000000000001 -1 3 A x", "client"),
            ("0000000000000001 +2 3 A x", "client"),
            ("0000000000000001 2", "seq"),
            ("0000000000000001 2 x A x", "seq"),
            ("0000000000000001 2 18446744073709551616 A x", "seq"),
            ("0000000000000001 2 3", "channel"),
            ("0000000000000001 2 3 A", "event"),
            ("0000000000000001  2 3 A x", "client"),
            ("0000000000000001 2 3 A x ", "flag"),
            ("0000000000000001 2 3 A x y", "flag"),
            ("0000000000000001 2 3 A x LAN", "flag"),
            ("0000000000000001 2 3 A x lan ", "end"),
            ("0000000000000001 2 3 A x lan lan", "end"),
            ("0000000000000001 2 3 ~%41 x", "channel"),
            ("0000000000000001 2 3 A a\tb", "event"),
            ("0000000000000001\t2 3 A x", "node"),
            ("0000000000000001 2 3 A x\r\n", "event"),
        ];
        for &(v, field) in cases {
            match decode("nc", "nc.A.x", Some(v)) {
                Err(InboundError::Field { field: f, .. }) if f == field => {}
                other => panic!("{v:?}: expected a {field} error, got {other:?}"),
            }
        }
        // Every cut of a good value is refused (never a panic).
        for i in 0..good.len() {
            assert!(decode("nc", "nc.A.x", Some(&good[..i])).is_err(), "{i}");
        }
    }

    #[test]
    fn refuses_names_that_disagree_with_the_subject() {
        let v = env().origin();
        assert!(matches!(
            decode("nc", "nc.B.x", Some(&v)),
            Err(InboundError::Mismatch { .. })
        ));
        assert!(matches!(
            decode("nc", "nc.A.y", Some(&v)),
            Err(InboundError::Mismatch { .. })
        ));
        // A bad subject is refused before the header is looked at.
        assert!(matches!(
            decode("nc", "other.A.x", Some(&v)),
            Err(InboundError::Subject(_))
        ));
    }

    #[test]
    fn refuses_oversized_values_and_quotes_them_short() {
        let long = format!("0000000000000001 2 3 A {}", "x".repeat(MAX_ORIGIN_LEN));
        assert_eq!(
            decode("nc", "nc.A.x", Some(&long)),
            Err(InboundError::TooLong(long.len()))
        );
        // Within the limit, a long bad field is quoted cut short.
        let bad = format!("{} 2 3 A x", "é".repeat(1000));
        let e = decode("nc", "nc.A.x", Some(&bad)).unwrap_err().to_string();
        assert!(e.len() < 200, "{e}");
        // The longest names netcluster allows fit.
        let big = Envelope {
            node: u64::MAX,
            client: u64::MAX,
            seq: u64::MAX,
            channel: "\u{1}".repeat(crate::names::MAX_CHANNEL_LEN).into(),
            event: "\u{1}".repeat(crate::frame::MAX_EVENT_LEN).into(),
            lan: true,
        };
        let v = big.origin();
        assert!(v.len() <= MAX_ORIGIN_LEN, "{}", v.len());
        let s = subject("nc", &big.channel, &big.event);
        assert_eq!(decode("nc", &s, Some(&v)), Ok(Inbound::Bridged(big)));
    }

    #[test]
    fn plain_names_are_borrowed_from_the_subject() {
        // What a receiving daemon decodes for every message allocates no
        // names unless they were escaped.
        let v = env().origin();
        match decode("nc", "nc.A.x", Some(&v)).unwrap() {
            Inbound::Bridged(e) => {
                assert!(matches!(e.channel, Cow::Borrowed("A")), "{e:?}");
                assert!(matches!(e.event, Cow::Borrowed("x")), "{e:?}");
            }
            other => panic!("{other:?}"),
        }
        match decode("nc", "nc.A.~b%2Ec", None).unwrap() {
            Inbound::Foreign { channel, event } => {
                assert!(matches!(channel, Cow::Borrowed("A")));
                assert!(matches!(event, Cow::Owned(ref e) if e == "b.c"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn numbers_at_their_limits() {
        assert_eq!(parse_node("FfFfFfFfFfFfFfFf"), Ok(u64::MAX));
        assert_eq!(parse_node("0123456789abcdef"), Ok(0x0123_4567_89ab_cdef));
        assert!(parse_node("0123456789abcdeg").is_err());
        assert_eq!(parse_decimal("seq", "18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse_decimal("seq", "000000000000000000000042"), Ok(42));
        for v in [
            "18446744073709551616",
            "99999999999999999999",
            "184467440737095516150",
        ] {
            assert!(
                matches!(parse_decimal("seq", v), Err(InboundError::Field { ref why, .. }) if why.contains("64 bits")),
                "{v}"
            );
        }
    }

    proptest! {
        #[test]
        fn fields_split_like_str_split(v in "[a ]{0,12}") {
            let ours: Vec<&str> = Fields { rest: Some(&v) }.collect();
            let std: Vec<&str> = v.split(' ').collect();
            prop_assert_eq!(ours, std);
        }

        #[test]
        fn numbers_parse_like_std(n: u64, hex in "[0-9a-fA-F]{16}") {
            prop_assert_eq!(parse_decimal("seq", &n.to_string()), Ok(n));
            prop_assert_eq!(parse_node(&hex), Ok(u64::from_str_radix(&hex, 16).unwrap()));
        }

        #[test]
        fn any_names_round_trip(c in any::<String>(), ev in any::<String>(), node: u64, client: u64, seq: u64) {
            let e = Envelope { node, client, seq, channel: c.into(), event: ev.into(), lan: seq % 2 == 0 };
            let v = e.origin();
            prop_assert!(v.bytes().all(|b| (0x20..0x7f).contains(&b)), "{:?}", v);
            prop_assert_eq!(v.split(' ').count(), 5 + usize::from(e.lan));
            let s = subject("p", &e.channel, &e.event);
            prop_assert_eq!(decode("p", &s, Some(&v)), Ok(Inbound::Bridged(e)));
        }

        #[test]
        fn hostile_values_never_panic(v in "[0-9a-f ~%A-Z.\r\n\t+-]{0,80}", s in "[a-z.~%A-Z]{0,12}") {
            let subject = format!("nc.{s}");
            if let Ok(Inbound::Bridged(e)) = decode("nc", &subject, Some(&v)) {
                // Whatever is accepted means what it says.
                let again = decode("nc", &subject, Some(&e.origin()));
                prop_assert_eq!(again, Ok(Inbound::Bridged(e)));
            }
        }
    }
}
