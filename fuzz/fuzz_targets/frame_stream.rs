//! Fuzzes the native frame decoder as the daemon and the client drive it:
//! a byte stream decoded frame after frame.
//!
//! The input is decoded whole, then again fed in chunks whose sizes come
//! from the input itself (as reads would split it); both must give the same
//! frames and end the same way. Every decoded frame is encoded again with
//! its encoder and must decode to the same frame. Nothing may panic.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use netcluster_proto::frame::{self, DeliverHeader, Frame, MAX_NAME_LEN, VERSION};

/// A small limit, so the too-large path is reached with small inputs.
const MAX_BODY: usize = 4096;

/// How a stream ended: an error, or the length of an incomplete rest.
#[derive(Debug, PartialEq)]
enum End {
    Error(String),
    Incomplete(usize),
}

fn decode_whole(data: &[u8]) -> (Vec<String>, End) {
    let mut frames = Vec::new();
    let mut rest = data;
    loop {
        match frame::decode(rest, MAX_BODY) {
            Ok(Some((f, n))) => {
                check_reencode(&f);
                frames.push(format!("{f:?}"));
                rest = &rest[n..];
            }
            Ok(None) => return (frames, End::Incomplete(rest.len())),
            Err(e) => return (frames, End::Error(e.to_string())),
        }
    }
}

fn decode_chunked(data: &[u8]) -> (Vec<String>, End) {
    let mut frames = Vec::new();
    let mut buf = Vec::new();
    let mut pos = 0;
    let mut k = 0usize;
    while pos < data.len() {
        // Chunk sizes 1..=64 taken from the data, so the fuzzer steers them.
        let size = 1 + (data[k % data.len()] as usize % 64);
        k += 1;
        let end = (pos + size).min(data.len());
        buf.extend_from_slice(&data[pos..end]);
        pos = end;
        loop {
            match frame::decode(&buf, MAX_BODY) {
                Ok(Some((f, n))) => {
                    frames.push(format!("{f:?}"));
                    buf.drain(..n);
                }
                Ok(None) => break,
                Err(e) => return (frames, End::Error(e.to_string())),
            }
        }
    }
    (frames, End::Incomplete(buf.len()))
}

/// Encodes a decoded frame again and checks it decodes to the same frame.
fn check_reencode(f: &Frame<'_>) {
    let mut b = BytesMut::new();
    match f {
        Frame::Hello { pid, name, .. } => {
            if name.len() > MAX_NAME_LEN {
                return;
            }
            frame::encode_hello(&mut b, *pid, name);
        }
        Frame::Subscribe { ack, events } | Frame::Unsubscribe { ack, events } => {
            let names: Vec<&str> = events.iter().collect();
            let subscribe = matches!(f, Frame::Subscribe { .. });
            frame::encode_subscription(&mut b, subscribe, *ack, names.iter().copied());
        }
        Frame::Publish { event, payload } => frame::encode_publish(&mut b, event, payload),
        Frame::Request { id, event, payload } => frame::encode_request(&mut b, *id, event, payload),
        Frame::Ping(t) => frame::encode_ping(&mut b, true, *t),
        Frame::Pong(t) => frame::encode_ping(&mut b, false, *t),
        Frame::Welcome {
            node,
            client,
            max_message,
            channel,
            ..
        } => frame::encode_welcome(&mut b, *node, *client, *max_message, channel),
        Frame::Deliver(d) => {
            let h = DeliverHeader {
                node: d.node,
                client: d.client,
                seq: d.seq,
                channel: d.channel,
            };
            frame::encode_deliver(&mut b, &h, d.event, d.payload);
        }
        Frame::Response {
            id,
            status,
            payload,
        } => frame::encode_response(&mut b, *id, *status, payload),
        Frame::Error {
            code,
            id,
            fatal,
            message,
        } => {
            if message.len() > 4096 {
                return;
            }
            frame::encode_error(&mut b, *code, *id, *fatal, message);
        }
        Frame::Ack(id) => frame::encode_ack(&mut b, *id),
    }
    let (again, n) = frame::decode(&b, usize::MAX)
        .expect("an encoded frame decodes")
        .expect("an encoded frame is complete");
    assert_eq!(n, b.len(), "the whole encoded frame is used");
    match (f, &again) {
        // The encoder writes this crate's version; the rest must match.
        (
            Frame::Hello { pid, name, .. },
            Frame::Hello {
                version,
                pid: p2,
                name: n2,
            },
        ) => {
            assert_eq!((*version, pid, name), (VERSION, p2, n2));
        }
        (
            Frame::Welcome {
                node,
                client,
                max_message,
                channel,
                ..
            },
            Frame::Welcome {
                version,
                node: n2,
                client: c2,
                max_message: m2,
                channel: ch2,
            },
        ) => {
            assert_eq!(
                (*version, node, client, max_message, channel),
                (VERSION, n2, c2, m2, ch2)
            );
        }
        _ => assert_eq!(f, &again),
    }
}

fuzz_target!(|data: &[u8]| {
    let whole = decode_whole(data);
    let chunked = decode_chunked(data);
    assert_eq!(whole, chunked, "chunked decoding differs from whole");
});
