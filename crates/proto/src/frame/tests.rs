use super::*;
use bytes::BytesMut;
use proptest::prelude::*;

const MAX: usize = 1 << 20;

fn one(buf: &[u8]) -> Frame<'_> {
    let (f, n) = decode(buf, MAX).unwrap().expect("complete frame");
    assert_eq!(n, buf.len(), "consumed the whole frame");
    f
}

#[test]
fn hello_round_trip_and_first_byte_is_not_brace() {
    let mut b = BytesMut::new();
    encode_hello(&mut b, 4242, "sender");
    assert_ne!(b[0], b'{');
    assert_eq!(
        one(&b),
        Frame::Hello {
            version: VERSION,
            pid: 4242,
            name: "sender"
        }
    );
}

#[test]
fn every_frame_round_trips() {
    let mut b = BytesMut::new();
    encode_welcome(&mut b, 7, 9, 1000, "A");
    assert_eq!(
        one(&b),
        Frame::Welcome {
            version: VERSION,
            node: 7,
            client: 9,
            max_message: 1000,
            channel: "A"
        }
    );

    let mut b = BytesMut::new();
    encode_subscription(&mut b, true, 3, ["log", "*"]);
    match one(&b) {
        Frame::Subscribe { ack, events } => {
            assert_eq!(ack, 3);
            assert_eq!(events.iter().collect::<Vec<_>>(), vec!["log", "*"]);
        }
        f => panic!("{f:?}"),
    }
    let mut b = BytesMut::new();
    encode_subscription(&mut b, false, 0, ["log"]);
    assert!(matches!(one(&b), Frame::Unsubscribe { ack: 0, .. }));

    let mut b = BytesMut::new();
    encode_publish(&mut b, "log", b"\"hi\"");
    assert_eq!(
        one(&b),
        Frame::Publish {
            event: "log",
            payload: b"\"hi\""
        }
    );

    let mut b = BytesMut::new();
    encode_request(&mut b, 5, "nc-control-showconfig", b"null");
    assert_eq!(
        one(&b),
        Frame::Request {
            id: 5,
            event: "nc-control-showconfig",
            payload: b"null"
        }
    );

    let mut b = BytesMut::new();
    encode_ping(&mut b, true, 11);
    encode_ping(&mut b, false, 12);
    let (f, n) = decode(&b, MAX).unwrap().unwrap();
    assert_eq!(f, Frame::Ping(11));
    assert_eq!(one(&b[n..]), Frame::Pong(12));

    let mut b = BytesMut::new();
    encode_response(&mut b, 5, Status::Failed, b"{}");
    assert_eq!(
        one(&b),
        Frame::Response {
            id: 5,
            status: Status::Failed,
            payload: b"{}"
        }
    );

    let mut b = BytesMut::new();
    encode_error(&mut b, ErrorCode::TooLarge, 0, true, "too big");
    assert_eq!(
        one(&b),
        Frame::Error {
            code: ErrorCode::TooLarge,
            id: 0,
            fatal: true,
            message: "too big"
        }
    );

    let mut b = BytesMut::new();
    encode_ack(&mut b, 99);
    assert_eq!(one(&b), Frame::Ack(99));
}

#[test]
fn deliver_variants() {
    for node in [None, Some(u64::MAX)] {
        for channel in [None, Some("B")] {
            let h = DeliverHeader {
                node,
                client: 300,
                seq: 1 << 40,
                channel,
            };
            let mut b = BytesMut::new();
            encode_deliver(&mut b, &h, "ev", b"payload");
            assert_eq!(b.len(), h.encoded_len("ev") + 7);
            assert_eq!(
                one(&b),
                Frame::Deliver(Deliver {
                    node,
                    client: 300,
                    seq: 1 << 40,
                    channel,
                    event: "ev",
                    payload: b"payload"
                })
            );
        }
    }
}

#[test]
fn publish_written_in_place() {
    let mut b = BytesMut::new();
    let start = b.len();
    encode_publish_header(&mut b, "e", 0);
    b.extend_from_slice(b"[1,2,3]");
    patch_len(&mut b, start);
    assert_eq!(
        one(&b),
        Frame::Publish {
            event: "e",
            payload: b"[1,2,3]"
        }
    );
}

#[test]
fn publish_frames_of_every_short_length_are_exact_and_leave_earlier_bytes_alone() {
    // Every length around the short copies' thresholds (0..=40 for both
    // the name and the payload), appended after earlier content.
    for ev_len in 1..=40 {
        let ev: String = (0..ev_len)
            .map(|i| (b'a' + (i % 26) as u8) as char)
            .collect();
        for len in 0..=40usize {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let mut b = BytesMut::from(&b"keep"[..]);
            encode_publish(&mut b, &ev, &payload);
            assert_eq!(&b[..4], b"keep");
            let mut want = vec![kind::PUBLISH];
            want.extend_from_slice(&((2 + ev_len + len) as u32).to_le_bytes());
            want.extend_from_slice(&(ev_len as u16).to_le_bytes());
            want.extend_from_slice(ev.as_bytes());
            want.extend_from_slice(&payload);
            assert_eq!(&b[4..], &want[..], "event {ev_len} B, payload {len} B");
        }
    }
}

#[test]
fn incomplete_input_is_none() {
    let mut b = BytesMut::new();
    encode_publish(&mut b, "log", b"0123456789");
    for cut in 0..b.len() {
        assert_eq!(decode(&b[..cut], MAX).unwrap(), None, "cut at {cut}");
    }
}

#[test]
fn bad_input_is_a_clear_error() {
    assert_eq!(decode(b"{", MAX), Err(FrameError::UnknownType(b'{')));
    assert_eq!(
        decode(&[0x04, 0xff, 0xff, 0xff, 0x7f], MAX),
        Err(FrameError::TooLarge {
            len: 0x7fffffff,
            max: MAX
        })
    );
    // Publish whose event length runs past the body.
    let e = decode(&[0x04, 3, 0, 0, 0, 9, 0, b'x'], MAX).unwrap_err();
    assert_eq!(e.to_string(), "malformed publish frame: body too short");
    // Invalid UTF-8 event name.
    let e = decode(&[0x04, 3, 0, 0, 0, 1, 0, 0xff], MAX).unwrap_err();
    assert_eq!(
        e,
        FrameError::BadUtf8 {
            field: "event name"
        }
    );
    // Hello with a wrong magic.
    let mut b = BytesMut::new();
    encode_hello(&mut b, 1, "x");
    b[5] = b'X';
    assert_eq!(decode(&b, MAX), Err(FrameError::BadMagic));
    // Ping with trailing bytes.
    let e = decode(&[0x06, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], MAX).unwrap_err();
    assert!(matches!(
        e,
        FrameError::Malformed {
            what: "trailing bytes",
            ..
        }
    ));
}

#[test]
fn truncate_respects_char_boundaries() {
    assert_eq!(truncate_str("héllo", 2), "h");
    assert_eq!(truncate_str("héllo", 3), "hé");
    assert_eq!(truncate_str("abc", 10), "abc");
}

proptest! {
    #[test]
    fn decoder_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut rest = &data[..];
        while let Ok(Some((_, n))) = decode(rest, 4096) {
            rest = &rest[n..];
        }
    }

    #[test]
    fn deliver_round_trips(node in any::<Option<u64>>(), client in any::<u64>(), seq in any::<u64>(),
                           chan in proptest::option::of("[a-zA-Z0-9]{1,20}"), ev in "[a-z*]{1,40}",
                           payload in proptest::collection::vec(any::<u8>(), 0..300)) {
        let h = DeliverHeader { node, client, seq, channel: chan.as_deref() };
        let mut b = BytesMut::new();
        encode_deliver(&mut b, &h, &ev, &payload);
        let (f, n) = decode(&b, MAX).unwrap().unwrap();
        prop_assert_eq!(n, b.len());
        prop_assert_eq!(f, Frame::Deliver(Deliver { node, client, seq, channel: chan.as_deref(), event: &ev, payload: &payload }));
    }

    #[test]
    fn publish_round_trips(ev in "\\PC{1,30}", payload in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut b = BytesMut::new();
        encode_publish(&mut b, &ev, &payload);
        prop_assert_eq!(one(&b), Frame::Publish { event: &ev, payload: &payload });
    }
}
