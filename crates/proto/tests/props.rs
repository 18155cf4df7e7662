//! Property tests of the local wire formats, run by `cargo test`:
//!
//! - every native frame kind survives encode → decode, alone and in a
//!   stream of mixed frames (subscribe name lists, requests, errors, …);
//! - seed-format packets survive encode → split → parse;
//! - bytes fed to the decoders in arbitrary chunks, as reads split them,
//!   give the same result as the same bytes fed whole, for valid streams,
//!   garbage and mixtures of both.
//!
//! `src/frame/tests.rs` holds the unit tests and the first properties
//! (deliver and publish round trips, no panic on any input).

use bytes::BytesMut;
use netcluster_proto::frame::{self, DeliverHeader, ErrorCode, Frame, Status, HEADER_LEN};
use netcluster_proto::legacy;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::Value;

const MAX: usize = 1 << 20;

/// An event name as frames carry it: any UTF-8 up to the length limit
/// (which names are allowed is the server's business, not the decoder's).
fn event() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,30}",
        Just("*".to_string()),
        "[a-z]{1,8}(-[a-z]{1,8}){0,3}",
        // Up to the limit, in multi-byte characters.
        (1usize..=frame::MAX_EVENT_LEN / 4).prop_map(|n| "é".repeat(n)),
    ]
}

/// An event name a client may emit (what `legacy::parse` accepts).
fn emittable() -> impl Strategy<Value = String> {
    event().prop_filter("an emittable event name", |e| {
        netcluster_proto::names::check_event(e).is_ok()
    })
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..200)
}

fn status() -> impl Strategy<Value = Status> {
    prop_oneof![Just(Status::Ok), Just(Status::Failed)]
}

/// A frame of any kind, as its owned parts.
#[derive(Debug, Clone)]
enum Spec {
    Hello(u32, String),
    Subscribe(bool, u32, Vec<String>),
    Publish(String, Vec<u8>),
    Request(u32, String, Vec<u8>),
    Ping(bool, u64),
    Welcome(u64, u64, u32, String),
    Deliver(Option<u64>, u64, u64, Option<String>, String, Vec<u8>),
    Response(u32, Status, Vec<u8>),
    Error(u16, u32, bool, String),
    Ack(u32),
}

fn spec() -> impl Strategy<Value = Spec> {
    prop_oneof![
        (any::<u32>(), "\\PC{0,60}").prop_map(|(p, n)| Spec::Hello(p, n)),
        (any::<bool>(), any::<u32>(), vec(event(), 0..12))
            .prop_map(|(s, a, n)| Spec::Subscribe(s, a, n)),
        (event(), payload()).prop_map(|(e, p)| Spec::Publish(e, p)),
        (any::<u32>(), event(), payload()).prop_map(|(i, e, p)| Spec::Request(i, e, p)),
        (any::<bool>(), any::<u64>()).prop_map(|(p, t)| Spec::Ping(p, t)),
        (any::<u64>(), any::<u64>(), any::<u32>(), "\\PC{1,40}")
            .prop_map(|(n, c, m, ch)| Spec::Welcome(n, c, m, ch)),
        (
            any::<Option<u64>>(),
            any::<u64>(),
            any::<u64>(),
            proptest::option::of("\\PC{1,40}"),
            event(),
            payload()
        )
            .prop_map(|(n, c, s, ch, e, p)| Spec::Deliver(n, c, s, ch, e, p)),
        (any::<u32>(), status(), payload()).prop_map(|(i, s, p)| Spec::Response(i, s, p)),
        (any::<u16>(), any::<u32>(), any::<bool>(), "\\PC{0,100}")
            .prop_map(|(c, i, f, m)| Spec::Error(c, i, f, m)),
        any::<u32>().prop_map(Spec::Ack),
    ]
}

fn encode(s: &Spec, out: &mut BytesMut) {
    match s {
        Spec::Hello(pid, name) => frame::encode_hello(out, *pid, name),
        Spec::Subscribe(sub, ack, names) => {
            frame::encode_subscription(out, *sub, *ack, names.iter().map(String::as_str))
        }
        Spec::Publish(e, p) => frame::encode_publish(out, e, p),
        Spec::Request(i, e, p) => frame::encode_request(out, *i, e, p),
        Spec::Ping(ping, t) => frame::encode_ping(out, *ping, *t),
        Spec::Welcome(n, c, m, ch) => frame::encode_welcome(out, *n, *c, *m, ch),
        Spec::Deliver(node, client, seq, ch, e, p) => {
            let h = DeliverHeader {
                node: *node,
                client: *client,
                seq: *seq,
                channel: ch.as_deref(),
            };
            frame::encode_deliver(out, &h, e, p);
        }
        Spec::Response(i, s, p) => frame::encode_response(out, *i, *s, p),
        Spec::Error(c, i, f, m) => frame::encode_error(out, ErrorCode::from_u16(*c), *i, *f, m),
        Spec::Ack(i) => frame::encode_ack(out, *i),
    }
}

/// Checks that a decoded frame is the one `s` describes.
fn assert_is(f: &Frame<'_>, s: &Spec) -> Result<(), TestCaseError> {
    match (f, s) {
        (Frame::Hello { version, pid, name }, Spec::Hello(p, n)) => {
            prop_assert_eq!(*version, frame::VERSION);
            prop_assert_eq!(pid, p);
            prop_assert_eq!(*name, frame::truncate_str(n, frame::MAX_NAME_LEN));
        }
        (Frame::Subscribe { ack, events }, Spec::Subscribe(true, a, names))
        | (Frame::Unsubscribe { ack, events }, Spec::Subscribe(false, a, names)) => {
            prop_assert_eq!(ack, a);
            prop_assert_eq!(events.len(), names.len());
            prop_assert_eq!(events.iter().collect::<Vec<_>>(), names.clone());
        }
        (Frame::Publish { event, payload }, Spec::Publish(e, p)) => {
            prop_assert_eq!(event, e);
            prop_assert_eq!(payload, p);
        }
        (Frame::Request { id, event, payload }, Spec::Request(i, e, p)) => {
            prop_assert_eq!((*id, *event, *payload), (*i, e.as_str(), p.as_slice()));
        }
        (Frame::Ping(t), Spec::Ping(true, u)) | (Frame::Pong(t), Spec::Ping(false, u)) => {
            prop_assert_eq!(t, u)
        }
        (
            Frame::Welcome {
                version,
                node,
                client,
                max_message,
                channel,
            },
            Spec::Welcome(n, c, m, ch),
        ) => {
            prop_assert_eq!(*version, frame::VERSION);
            prop_assert_eq!((node, client, max_message), (n, c, m));
            prop_assert_eq!(*channel, frame::truncate_str(ch, 255));
        }
        (Frame::Deliver(d), Spec::Deliver(n, c, s, ch, e, p)) => {
            prop_assert_eq!((&d.node, &d.client, &d.seq), (n, c, s));
            prop_assert_eq!(d.channel, ch.as_deref());
            prop_assert_eq!((d.event, d.payload), (e.as_str(), p.as_slice()));
        }
        (
            Frame::Response {
                id,
                status,
                payload,
            },
            Spec::Response(i, s, p),
        ) => {
            prop_assert_eq!((*id, *status, *payload), (*i, *s, p.as_slice()));
        }
        (
            Frame::Error {
                code,
                id,
                fatal,
                message,
            },
            Spec::Error(c, i, f, m),
        ) => {
            prop_assert_eq!(code.to_u16(), *c);
            prop_assert_eq!((id, fatal), (i, f));
            prop_assert_eq!(*message, frame::truncate_str(m, 4096));
        }
        (Frame::Ack(a), Spec::Ack(b)) => prop_assert_eq!(a, b),
        (f, s) => prop_assert!(false, "decoded {:?} from {:?}", f, s),
    }
    Ok(())
}

/// How decoding a stream ended.
#[derive(Debug, PartialEq)]
enum End {
    Error(String),
    /// Bytes left over that do not make a whole frame or packet yet.
    Incomplete(usize),
}

fn frames_whole(data: &[u8]) -> (Vec<String>, End) {
    let mut out = Vec::new();
    let mut rest = data;
    loop {
        match frame::decode(rest, 4096) {
            Ok(Some((f, n))) => {
                out.push(format!("{f:?}"));
                rest = &rest[n..];
            }
            Ok(None) => return (out, End::Incomplete(rest.len())),
            Err(e) => return (out, End::Error(e.to_string())),
        }
    }
}

/// Feeds `data` in chunks of the given sizes (cycled) into a buffer, and
/// decodes what is complete after each chunk, as a reader does.
fn frames_chunked(data: &[u8], sizes: &[usize]) -> (Vec<String>, End) {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    for chunk in chunks(data, sizes) {
        buf.extend_from_slice(chunk);
        loop {
            match frame::decode(&buf, 4096) {
                Ok(Some((f, n))) => {
                    out.push(format!("{f:?}"));
                    buf.drain(..n);
                }
                Ok(None) => break,
                Err(e) => return (out, End::Error(e.to_string())),
            }
        }
    }
    (out, End::Incomplete(buf.len()))
}

fn chunks<'a>(data: &'a [u8], sizes: &'a [usize]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut pos = 0;
    let mut k = 0;
    std::iter::from_fn(move || {
        if pos >= data.len() {
            return None;
        }
        let n = sizes[k % sizes.len()].max(1);
        k += 1;
        let end = (pos + n).min(data.len());
        let c = &data[pos..end];
        pos = end;
        Some(c)
    })
}

type Packets = Vec<Result<(String, Vec<u8>), String>>;

fn parse_into(packet: &[u8], out: &mut Packets) {
    if legacy::is_blank(packet) {
        return;
    }
    out.push(
        legacy::parse(packet)
            .map(|p| (p.event.into_owned(), p.data.to_vec()))
            .map_err(|e| e.to_string()),
    );
}

fn legacy_whole(data: &[u8]) -> (Packets, End) {
    let mut out = Vec::new();
    let mut rest = data;
    loop {
        match legacy::split(rest, 4096) {
            Ok(Some((p, n))) => {
                parse_into(p, &mut out);
                rest = &rest[n..];
            }
            Ok(None) => return (out, End::Incomplete(rest.len())),
            Err(e) => return (out, End::Error(e.to_string())),
        }
    }
}

fn legacy_chunked(data: &[u8], sizes: &[usize]) -> (Packets, End) {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    for chunk in chunks(data, sizes) {
        buf.extend_from_slice(chunk);
        loop {
            match legacy::split(&buf, 4096) {
                Ok(Some((p, n))) => {
                    parse_into(p, &mut out);
                    buf.drain(..n);
                }
                Ok(None) => break,
                Err(e) => return (out, End::Error(e.to_string())),
            }
        }
    }
    (out, End::Incomplete(buf.len()))
}

/// A JSON value of any shape, a few levels deep.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,20}".prop_map(Value::from),
        // Control characters and quotes, which JSON must escape.
        vec(0u8..0x7f, 0..10).prop_map(|b| Value::from(String::from_utf8(b).unwrap())),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::from),
            btree_map("\\PC{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Pieces of a byte stream: whole valid frames or packets, and garbage.
fn pieces(valid: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    vec(
        prop_oneof![
            3 => valid,
            1 => vec(any::<u8>(), 0..40),
        ],
        0..12,
    )
    .prop_map(|v| v.concat())
}

fn encoded_frame() -> impl Strategy<Value = Vec<u8>> {
    spec().prop_map(|s| {
        let mut b = BytesMut::new();
        encode(&s, &mut b);
        b.to_vec()
    })
}

fn encoded_packet() -> impl Strategy<Value = Vec<u8>> {
    (emittable(), json(), any::<bool>()).prop_map(|(e, d, blank)| {
        let mut b = BytesMut::new();
        if blank {
            b.extend_from_slice(b" \n\0");
        }
        legacy::encode(&mut b, "origin", "A", &e, d.to_string().as_bytes(), true);
        b.to_vec()
    })
}

fn sizes() -> impl Strategy<Value = Vec<usize>> {
    vec(1usize..80, 1..20)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_frame_kind_round_trips(s in spec()) {
        let mut b = BytesMut::new();
        encode(&s, &mut b);
        let (f, n) = frame::decode(&b, MAX).unwrap().expect("a whole frame");
        prop_assert_eq!(n, b.len());
        assert_is(&f, &s)?;
        // Any shorter prefix is incomplete, never an error.
        for cut in [0, 1, HEADER_LEN - 1, HEADER_LEN, b.len() - 1] {
            prop_assert_eq!(frame::decode(&b[..cut.min(b.len() - 1)], MAX).unwrap(), None);
        }
    }

    #[test]
    fn a_stream_of_frames_decodes_in_order(specs in vec(spec(), 0..20)) {
        let mut b = BytesMut::new();
        for s in &specs {
            encode(s, &mut b);
        }
        let mut rest = &b[..];
        for s in &specs {
            let (f, n) = frame::decode(rest, MAX).unwrap().expect("a whole frame");
            assert_is(&f, s)?;
            rest = &rest[n..];
        }
        prop_assert!(rest.is_empty());
    }

    #[test]
    fn error_codes_round_trip(n in any::<u16>()) {
        prop_assert_eq!(ErrorCode::from_u16(n).to_u16(), n);
    }

    #[test]
    fn legacy_packets_round_trip(origin in "\\PC{0,20}", channel in "\\PC{1,20}",
                                 e in emittable(), data in json()) {
        let text = serde_json::to_vec(&data).unwrap();
        let mut b = BytesMut::new();
        legacy::encode(&mut b, &origin, &channel, &e, &text, legacy::is_json(&text));
        let (p, n) = legacy::split(&b, MAX).unwrap().expect("a whole packet");
        prop_assert_eq!(n, b.len());
        // The whole packet is JSON with the seed's fields.
        let v: Value = serde_json::from_slice(p).unwrap();
        prop_assert_eq!(&v["emmiteruuid"], &Value::from(origin));
        prop_assert_eq!(&v["channel"], &Value::from(channel));
        prop_assert_eq!(&v["broadcast"], &Value::from(false));
        let got = legacy::parse(p).unwrap();
        prop_assert_eq!(&got.event, &e);
        prop_assert_eq!(got.data, &text[..]);
    }

    #[test]
    fn legacy_non_json_data_arrives_as_a_string(data in vec(any::<u8>(), 0..100)) {
        prop_assume!(!legacy::is_json(&data));
        let mut b = BytesMut::new();
        legacy::encode(&mut b, "o", "A", "raw", &data, false);
        let (p, _) = legacy::split(&b, MAX).unwrap().unwrap();
        let got = legacy::parse(p).unwrap();
        let s: String = serde_json::from_slice(got.data).unwrap();
        prop_assert_eq!(s, String::from_utf8_lossy(&data));
    }

    #[test]
    fn frames_in_any_chunks_decode_as_whole(data in pieces(encoded_frame()), sizes in sizes()) {
        prop_assert_eq!(frames_chunked(&data, &sizes), frames_whole(&data));
    }

    #[test]
    fn garbage_in_any_chunks_decodes_as_whole(data in vec(any::<u8>(), 0..600), sizes in sizes()) {
        prop_assert_eq!(frames_chunked(&data, &sizes), frames_whole(&data));
        prop_assert_eq!(legacy_chunked(&data, &sizes), legacy_whole(&data));
    }

    #[test]
    fn legacy_packets_in_any_chunks_split_as_whole(data in pieces(encoded_packet()), sizes in sizes()) {
        let (whole, end) = legacy_whole(&data);
        prop_assert_eq!(legacy_chunked(&data, &sizes), (whole, end));
    }
}
