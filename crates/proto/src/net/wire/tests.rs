use super::*;
use crate::net::OutMessage;
use proptest::prelude::*;

fn header(kind: Kind, seq: u64) -> Vec<u8> {
    let mut b = vec![0; HEADER_LEN];
    put_header(
        &mut b,
        &Header {
            kind,
            flags: 0,
            key_id: 0,
            node: 0x1122_3344_5566_7788,
            seq,
        },
    );
    b
}

fn data(body: &[u8]) -> Vec<u8> {
    let mut b = header(Kind::Data, 1);
    b.extend_from_slice(body);
    b
}

fn msg<'a>(
    channel: &'a str,
    event: &'a str,
    payload: &'a [u8],
    client: u64,
    seq: u64,
) -> OutMessage<'a> {
    OutMessage {
        channel,
        event,
        payload,
        client,
        seq,
    }
}

fn records(d: &[u8]) -> Vec<Record<'_>> {
    match decode_datagram(d).expect("valid").body {
        Body::Data(r) => r.collect(),
        b => panic!("{b:?}"),
    }
}

fn err(d: &[u8]) -> WireError {
    decode_datagram(d).expect_err("must be refused")
}

#[test]
fn header_layout_is_fixed() {
    let b = header(Kind::Data, 0x0102);
    assert_eq!(&b[..4], b"NCDG");
    assert_eq!(b[4], VERSION);
    assert_eq!(b[5], 0, "flags");
    assert_eq!(b[6], kind::DATA);
    assert_eq!(b[7], 0, "key id");
    assert_eq!(&b[8..16], &0x1122_3344_5566_7788u64.to_le_bytes());
    assert_eq!(&b[16..24], &[2, 1, 0, 0, 0, 0, 0, 0]);
    let (h, body) = decode_header(&b).unwrap();
    assert!(body.is_empty());
    assert_eq!(
        (h.kind, h.node, h.seq),
        (Kind::Data, 0x1122_3344_5566_7788, 0x0102)
    );
}

#[test]
fn heartbeat_round_trips_and_ignores_later_fields() {
    let hb = Heartbeat {
        name: "host-a",
        last_seq: 42,
        uptime_ms: 1234,
        messages_out: 1 << 40,
        datagrams_out: 7,
        bytes_out: 9000,
    };
    let mut b = Vec::new();
    encode_heartbeat(&mut b, 5, 3, &hb);
    let d = decode_datagram(&b).unwrap();
    assert_eq!(d.header.kind, Kind::Heartbeat);
    assert_eq!((d.header.node, d.header.seq), (5, 3));
    assert!(matches!(d.body, Body::Heartbeat(h) if h == hb));
    b.extend_from_slice(&[1, 2, 3]);
    assert!(matches!(decode_datagram(&b).unwrap().body, Body::Heartbeat(h) if h == hb));
}

#[test]
fn heartbeat_name_is_cut_to_255_bytes() {
    let name = "é".repeat(200);
    let mut b = Vec::new();
    let hb = Heartbeat {
        name: &name,
        last_seq: 0,
        uptime_ms: 0,
        messages_out: 0,
        datagrams_out: 0,
        bytes_out: 0,
    };
    encode_heartbeat(&mut b, 5, 1, &hb);
    match decode_datagram(&b).unwrap().body {
        Body::Heartbeat(h) => assert_eq!(h.name, "é".repeat(127)),
        b => panic!("{b:?}"),
    }
}

#[test]
fn message_records_round_trip_with_implied_fields() {
    let mut b = header(Kind::Data, 9);
    put_msg_record(&mut b, tag::MSG, &msg("chan", "ev", b"one", 3, 10));
    let all = tag::SAME_CHANNEL | tag::SAME_EVENT | tag::SAME_CLIENT | tag::NEXT_SEQ;
    put_msg_record(&mut b, all, &msg("chan", "ev", b"two", 3, 11));
    put_msg_record(&mut b, tag::SAME_CHANNEL, &msg("chan", "other", b"", 4, 2));
    let r = records(&b);
    assert_eq!(
        r,
        vec![
            Record::Msg(MsgRecord {
                channel: "chan",
                event: "ev",
                client: 3,
                seq: 10,
                payload: b"one"
            }),
            Record::Msg(MsgRecord {
                channel: "chan",
                event: "ev",
                client: 3,
                seq: 11,
                payload: b"two"
            }),
            Record::Msg(MsgRecord {
                channel: "chan",
                event: "other",
                client: 4,
                seq: 2,
                payload: b""
            }),
        ]
    );
}

#[test]
fn small_message_overhead_is_small() {
    // 64-byte payload on channel "A", event "e": the first record of a
    // batch spells everything out, the next ones imply all but the payload.
    let p = [0u8; 64];
    let mut b = Vec::new();
    put_msg_record(&mut b, tag::MSG, &msg("A", "e", &p, 300, 70_000));
    assert!(b.len() - 64 <= 12, "first record overhead {}", b.len() - 64);
    b.clear();
    let all = tag::SAME_CHANNEL | tag::SAME_EVENT | tag::SAME_CLIENT | tag::NEXT_SEQ;
    put_msg_record(&mut b, all, &msg("A", "e", &p, 300, 70_001));
    assert_eq!(b.len() - 64, 2);
}

#[test]
fn fragment_and_message_body_round_trip() {
    let m = msg("big", "blob", b"0123456789", 1, 2);
    let mut body = Vec::new();
    put_message_head(&mut body, tag::MSG, &m);
    body.extend_from_slice(m.payload);
    assert_eq!(body.len(), message_body_len(&m));
    assert_eq!(
        decode_message(&body).unwrap(),
        MsgRecord {
            channel: "big",
            event: "blob",
            client: 1,
            seq: 2,
            payload: b"0123456789"
        }
    );
    let mut trailing = body.clone();
    trailing.push(0);
    assert_eq!(decode_message(&trailing), Err(WireError::Trailing(1)));

    let mut d = header(Kind::Data, 1);
    put_frag_head(&mut d, 77, 1, 2, body.len() as u64, 5, 4);
    d.extend_from_slice(&body[5..9]);
    put_msg_record(&mut d, tag::MSG, &m);
    let r = records(&d);
    assert_eq!(
        r[0],
        Record::Frag(FragRecord {
            msg_id: 77,
            index: 1,
            count: 2,
            total: body.len() as u64,
            offset: 5,
            data: &body[5..9]
        })
    );
    assert!(matches!(r[1], Record::Msg(_)));
}

#[test]
fn header_errors() {
    assert_eq!(err(b""), WireError::TooShort { len: 0 });
    assert_eq!(err(b"NCD"), WireError::TooShort { len: 3 });
    assert_eq!(err(b"NCDGxx"), WireError::TooShort { len: 6 });
    assert_eq!(err(b"GET / HTTP/1.1"), WireError::BadMagic);
    let good = data(&[0, 1, b'A', 1, b'e', 0, 1, 0]);
    assert!(decode_datagram(&good).is_ok());
    let with = |i: usize, v: u8| {
        let mut b = good.clone();
        b[i] = v;
        b
    };
    assert_eq!(err(&with(0, b'X')), WireError::BadMagic);
    assert_eq!(err(&with(4, 2)), WireError::BadVersion(2));
    assert_eq!(err(&with(5, 0x80)), WireError::ReservedFlags(0x80));
    // Sealed needs a key id, and a key id needs the flag.
    assert_eq!(err(&with(5, flags::SEALED)), WireError::BadKeyId(0));
    let mut sealed = data(&[0; TAG_LEN]);
    sealed[5] = flags::SEALED;
    sealed[7] = 9;
    assert!(matches!(
        decode_datagram(&sealed).unwrap().body,
        Body::Sealed(b) if b.len() == TAG_LEN
    ));
    sealed.truncate(HEADER_LEN + TAG_LEN - 1);
    assert_eq!(
        err(&sealed),
        WireError::Truncated {
            what: "authentication tag"
        }
    );
    // A NAK or GONE header over a DATA body: the body does not decode.
    assert!(decode_datagram(&with(6, kind::NAK)).is_err());
    assert!(decode_datagram(&with(6, kind::GONE)).is_ok());
    assert_eq!(err(&with(6, 0)), WireError::UnknownKind(0));
    assert_eq!(err(&with(6, 200)), WireError::UnknownKind(200));
    assert_eq!(err(&with(7, 1)), WireError::BadKeyId(1));
    assert_eq!(err(&with(16, 0)), WireError::ZeroSeq);
    assert_eq!(err(&data(&[])), WireError::Empty);
}

#[test]
fn record_errors() {
    let t = |what| WireError::Truncated { what };
    // tag, channel "A", event "e", client 0, seq 1, payload len 0.
    assert_eq!(err(&data(&[0, 1, b'A', 1, b'e', 0, 1])), t("payload"));
    assert_eq!(
        err(&data(&[0, 1, b'A', 1, b'e', 0, 1, 5, b'x'])),
        t("payload")
    );
    assert_eq!(err(&data(&[0, 5, b'A'])), t("channel"));
    assert_eq!(err(&data(&[0, 0x80])), t("channel"));
    let mut huge = vec![0, 1, b'A', 1, b'e'];
    huge.extend_from_slice(&[0xff; 10]);
    assert_eq!(err(&data(&huge)), WireError::BadVarint { what: "client" });
    // Absurd length: a payload of 2^62 bytes.
    let mut absurd = vec![0, 1, b'A', 1, b'e', 0, 1];
    crate::varint::put(&mut absurd, 1 << 62);
    assert_eq!(err(&data(&absurd)), t("payload"));

    let name = |what, why| WireError::BadName { what, why };
    assert_eq!(
        err(&data(&[0, 0, 1, b'e', 0, 1, 0])),
        name("channel", "empty")
    );
    let mut long = vec![0];
    crate::varint::put(&mut long, 256);
    long.extend_from_slice(&[b'a'; 256]);
    assert_eq!(err(&data(&long)), name("channel", "too long"));
    assert_eq!(
        err(&data(&[0, 1, b'A', 1, 0xff, 0, 1, 0])),
        name("event", "not UTF-8")
    );

    assert_eq!(err(&data(&[0x40])), WireError::BadTag(0x40));
    assert_eq!(err(&data(&[2])), WireError::BadTag(2));
    assert_eq!(err(&data(&[3])), WireError::BadTag(3));
    assert_eq!(
        err(&data(&[tag::FRAG | tag::SAME_CHANNEL])),
        WireError::BadTag(5)
    );
    assert_eq!(
        err(&data(&[tag::SAME_CHANNEL])),
        WireError::NoPrevious { what: "channel" }
    );
    assert_eq!(
        err(&data(&[tag::NEXT_SEQ, 1, b'A', 1, b'e', 0])),
        WireError::NoPrevious { what: "seq" }
    );
}

#[test]
fn fragment_errors() {
    let frag = |id, index, count, total, offset, data: &[u8]| {
        let mut b = header(Kind::Data, 1);
        put_frag_head(&mut b, id, index, count, total, offset, data.len());
        b.extend_from_slice(data);
        b
    };
    let bad = WireError::BadFragment;
    assert!(decode_datagram(&frag(1, 0, 2, 8, 0, b"abcd")).is_ok());
    assert_eq!(
        err(&frag(1, 2, 2, 8, 0, b"abcd")),
        bad("index not below count")
    );
    assert_eq!(
        err(&frag(1, 0, 0, 8, 0, b"abcd")),
        bad("index not below count")
    );
    assert_eq!(
        err(&frag(1, 0, 9, 8, 0, b"abcd")),
        bad("more fragments than bytes")
    );
    assert_eq!(err(&frag(1, 0, 2, 8, 0, b"")), bad("empty fragment"));
    assert_eq!(
        err(&frag(1, 1, 2, 8, 5, b"abcd")),
        bad("data runs past the total length")
    );
    assert_eq!(
        err(&frag(1, 1, 2, 8, u64::MAX, b"abcd")),
        bad("data runs past the total length")
    );
    // A message record after a fragment may not imply fields.
    let mut b = frag(1, 0, 2, 8, 0, b"abcd");
    b.extend_from_slice(&[tag::SAME_EVENT, 1, b'A']);
    assert_eq!(err(&b), WireError::NoPrevious { what: "event" });
}

#[test]
fn heartbeat_errors() {
    let hb = |body: &[u8]| {
        let mut b = header(Kind::Heartbeat, 1);
        b.extend_from_slice(body);
        b
    };
    let t = |what| WireError::Truncated { what };
    assert_eq!(err(&hb(&[])), t("node name"));
    assert_eq!(err(&hb(&[4, b'a'])), t("node name"));
    assert_eq!(err(&hb(&[1, b'a', 0, 0])), t("messages out"));
    assert_eq!(
        err(&hb(&[0, 0, 0, 0, 0, 0])),
        WireError::BadName {
            what: "node",
            why: "empty"
        }
    );
}

proptest! {
    #[test]
    fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_datagram(&bytes);
        let _ = decode_message(&bytes);
        // Behind a valid header, to reach the body decoders.
        for k in [Kind::Data, Kind::Heartbeat] {
            let mut b = header(k, 1);
            b.extend_from_slice(&bytes);
            if let Ok(Datagram { body: Body::Data(r), .. }) = decode_datagram(&b) {
                prop_assert!(r.count() > 0);
            }
        }
    }
}

#[test]
fn nak_round_trip_and_errors() {
    let ranges = [(1, 1), (3, 7), (100, 100), (u64::MAX - 5, u64::MAX - 1)];
    let mut b = Vec::new();
    encode_nak(&mut b, 0x11, 4, 0x22, &ranges);
    let d = decode_datagram(&b).unwrap();
    assert_eq!(d.header.kind, Kind::Nak);
    assert_eq!(d.header.seq, 4);
    let Body::Nak(n) = d.body else { panic!() };
    assert_eq!(n.target, 0x22);
    assert_eq!(n.ranges().collect::<Vec<_>>(), ranges);
    // Layout: target, count, then (distance, length - 1) pairs.
    assert_eq!(&b[HEADER_LEN..HEADER_LEN + 8], &0x22u64.to_le_bytes());
    assert_eq!(&b[HEADER_LEN + 8..HEADER_LEN + 13], &[4, 1, 0, 1, 4]);
    let nak = |body: &[u8]| {
        let mut b = header(Kind::Nak, 1);
        b.extend_from_slice(&7u64.to_le_bytes());
        b.extend_from_slice(body);
        decode_datagram(&b).map(|_| ())
    };
    assert!(nak(&[1, 5, 0]).is_ok());
    assert!(matches!(nak(&[0]), Err(WireError::BadNak(_))), "no ranges");
    assert!(matches!(nak(&[65]), Err(WireError::BadNak(_))), "too many");
    assert!(
        matches!(nak(&[1, 0, 0]), Err(WireError::BadNak(_))),
        "seq 0"
    );
    assert!(
        matches!(nak(&[2, 5, 0, 0, 0]), Err(WireError::BadNak(_))),
        "adjacent ranges must be merged"
    );
    assert!(matches!(nak(&[1, 5]), Err(WireError::Truncated { .. })));
    let mut over = vec![1, 2];
    over.extend_from_slice(&[0xff; 9]);
    over.push(0x01);
    over.push(0);
    assert!(nak(&over).is_err(), "overflow");
}

#[test]
fn gone_round_trip() {
    let mut b = Vec::new();
    let g = Gone {
        first_kept: 500,
        last_seq: 9000,
    };
    encode_gone(&mut b, 0x11, 2, &g);
    let Body::Gone(got) = decode_datagram(&b).unwrap().body else {
        panic!()
    };
    assert_eq!(got, g);
    assert!(decode_datagram(&b[..b.len() - 1]).is_err());
}
