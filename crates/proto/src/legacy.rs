//! The seed's wire format, spoken by the original Node.js clients.
//!
//! Each packet is one UTF-8 JSON object followed by a NUL byte, with the
//! fields `emmiteruuid` (sic), `channel`, `broadcast`, `event` and `data`.
//! JSON text never holds a raw NUL, so the terminator is unambiguous. This
//! module splits a byte stream into packets (any split or coalescing of
//! reads works), parses a client's packet, and encodes packets for legacy
//! clients. It does no I/O.

use bytes::{BufMut, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::names::{self, NameError};

/// The byte that ends each packet.
pub const TERMINATOR: u8 = 0;
/// Event name of the error packets the daemon sends to legacy clients.
pub const ERROR_EVENT: &str = "nc-error";
/// The `emmiteruuid` of packets the daemon itself sends.
pub const DAEMON_ORIGIN: &str = "ncserver";

/// Why a legacy packet was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LegacyError {
    /// No terminator within the size limit.
    #[error("packet exceeds {max} bytes without a NUL terminator")]
    TooLarge {
        /// The limit.
        max: usize,
    },
    /// The packet is not valid JSON.
    #[error("packet is not valid JSON: {0}")]
    BadJson(String),
    /// The packet is JSON but not an object.
    #[error("packet is not a JSON object")]
    NotObject,
    /// `event` is missing or not a string.
    #[error("packet has no string \"event\" field")]
    NoEvent,
    /// The event name is not allowed.
    #[error(transparent)]
    BadEvent(#[from] NameError),
}

/// A packet received from a legacy client.
#[derive(Debug)]
pub struct Packet<'a> {
    /// Event name.
    pub event: std::borrow::Cow<'a, str>,
    /// The `data` value as JSON text (`null` when absent).
    pub data: &'a [u8],
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    event: Option<&'a RawValue>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

/// Finds the first complete packet in `buf`: `Ok(Some((packet, consumed)))`
/// where `packet` excludes the terminator and `consumed` includes it;
/// `Ok(None)` if more bytes are needed; an error if `max` bytes pass with no
/// terminator.
pub fn split(buf: &[u8], max: usize) -> Result<Option<(&[u8], usize)>, LegacyError> {
    match buf.iter().position(|&b| b == TERMINATOR) {
        Some(i) if i > max => Err(LegacyError::TooLarge { max }),
        Some(i) => Ok(Some((&buf[..i], i + 1))),
        None if buf.len() > max => Err(LegacyError::TooLarge { max }),
        None => Ok(None),
    }
}

/// True if the packet is only whitespace (tolerated and skipped).
pub fn is_blank(packet: &[u8]) -> bool {
    packet.iter().all(u8::is_ascii_whitespace)
}

/// Parses one packet (without its terminator).
pub fn parse(packet: &[u8]) -> Result<Packet<'_>, LegacyError> {
    match packet.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        _ if !is_json(packet) => {
            return Err(LegacyError::BadJson(
                serde_json::from_slice::<serde::de::IgnoredAny>(packet)
                    .unwrap_err()
                    .to_string(),
            ))
        }
        _ => return Err(LegacyError::NotObject),
    }
    let wire: Wire<'_> =
        serde_json::from_slice(packet).map_err(|e| LegacyError::BadJson(e.to_string()))?;
    let raw = wire.event.ok_or(LegacyError::NoEvent)?;
    let event: std::borrow::Cow<'_, str> =
        match serde_json::from_str::<std::borrow::Cow<'_, str>>(raw.get()) {
            Ok(e) => e,
            Err(_) => return Err(LegacyError::NoEvent),
        };
    names::check_event(&event)?;
    let data = wire.data.map_or(&b"null"[..], |d| d.get().as_bytes());
    Ok(Packet { event, data })
}

/// True if `payload` is one valid JSON value.
pub fn is_json(payload: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_ok()
}

/// Appends a packet for a legacy client. `data` is embedded as is when it is
/// valid JSON (`data_is_json`), else as a JSON string of its (lossy) text.
pub fn encode(
    out: &mut BytesMut,
    origin: &str,
    channel: &str,
    event: &str,
    data: &[u8],
    data_is_json: bool,
) {
    out.reserve(64 + origin.len() + channel.len() + event.len() + data.len());
    out.put_slice(b"{\"emmiteruuid\":");
    put_json_str(out, origin);
    out.put_slice(b",\"channel\":");
    put_json_str(out, channel);
    out.put_slice(b",\"broadcast\":false,\"event\":");
    put_json_str(out, event);
    out.put_slice(b",\"data\":");
    if data_is_json {
        out.put_slice(data);
    } else {
        put_json_str(out, &String::from_utf8_lossy(data));
    }
    out.put_slice(b"}\0");
}

/// Appends an `nc-error` packet telling a legacy client what went wrong.
pub fn encode_error(out: &mut BytesMut, channel: &str, message: &str) {
    let data = serde_json::json!({ "error": message }).to_string();
    encode(
        out,
        DAEMON_ORIGIN,
        channel,
        ERROR_EVENT,
        data.as_bytes(),
        true,
    );
}

fn put_json_str(out: &mut BytesMut, s: &str) {
    // Writing to a BytesMut cannot fail.
    let _ = serde_json::to_writer(out.writer(), s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_handles_partial_and_coalesced() {
        let stream = b"{\"event\":\"a\",\"data\":1}\0{\"event\":\"b\"}\0{\"ev";
        let (p, n) = split(stream, 1000).unwrap().unwrap();
        assert_eq!(p, b"{\"event\":\"a\",\"data\":1}");
        let (p2, n2) = split(&stream[n..], 1000).unwrap().unwrap();
        assert_eq!(parse(p2).unwrap().data, b"null");
        assert_eq!(split(&stream[n + n2..], 1000).unwrap(), None);
        assert_eq!(
            split(&[b'x'; 20], 10),
            Err(LegacyError::TooLarge { max: 10 })
        );
    }

    #[test]
    fn parse_takes_event_and_raw_data() {
        let p = parse(br#"{"emmiteruuid":"u","channel":"A","broadcast":false,"event":"log","data":{"a":[1,2]}}"#).unwrap();
        assert_eq!(p.event, "log");
        assert_eq!(p.data, br#"{"a":[1,2]}"#);
        let p = parse(br#"{"event":"caf\u00e9","data":"x"}"#).unwrap();
        assert_eq!(p.event, "café");
    }

    #[test]
    fn parse_errors_are_clear() {
        assert!(matches!(parse(b"{not json"), Err(LegacyError::BadJson(_))));
        assert_eq!(parse(br#"{"event":5}"#).unwrap_err(), LegacyError::NoEvent);
        assert_eq!(parse(br#"{"data":5}"#).unwrap_err(), LegacyError::NoEvent);
        assert!(matches!(
            parse(br#"{"event":""}"#),
            Err(LegacyError::BadEvent(_))
        ));
        assert_eq!(parse(b"[1,2]").unwrap_err(), LegacyError::NotObject);
    }

    #[test]
    fn encode_produces_parseable_packets() {
        let mut b = BytesMut::new();
        encode(&mut b, "node:1", "A", "ev\"x", b"[1,2]", true);
        encode(&mut b, "node:1", "A", "bin", b"\xffab", false);
        let (p, n) = split(&b, 1 << 20).unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_slice(p).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"emmiteruuid":"node:1","channel":"A","broadcast":false,"event":"ev\"x","data":[1,2]})
        );
        let (p, _) = split(&b[n..], 1 << 20).unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_slice(p).unwrap();
        assert_eq!(v["data"], serde_json::json!("\u{fffd}ab"));
        let mut e = BytesMut::new();
        encode_error(&mut e, "A", "bad");
        let v: serde_json::Value = serde_json::from_slice(&e[..e.len() - 1]).unwrap();
        assert_eq!(v["event"], "nc-error");
        assert_eq!(v["data"]["error"], "bad");
    }
}
