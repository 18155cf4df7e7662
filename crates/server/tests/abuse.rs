//! Abuse through real sockets against the `ncserver` binary, bad input:
//! garbage, wrong hellos, absurd length prefixes, truncated frames,
//! invalid names, and a peer that never reads its replies (connections by
//! the thousand and clients killed mid-frame are in
//! `abuse_connections.rs`). Each bad peer gets a clear error frame (the
//! text is checked) or a clean close; a message stream running alongside
//! loses nothing, and a normal emit/listen works afterwards.
#![cfg(unix)]

mod common;

use std::io::Write;
use std::net::Shutdown;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use common::abuse::{connect, hello, run, MAX_BODY};
use common::{frames, read_to_close, since, Daemon, Got};
use netcluster_proto::frame::{self, kind, ErrorCode, MAGIC};
use serde_json::Value;

/// Sends `bytes` on a new connection to A and returns the frames the daemon
/// answered with before it closed the connection.
fn send_and_read(d: &Daemon, bytes: &[u8]) -> Vec<Got> {
    let mut s = connect(d, "A");
    // The daemon may close before reading everything; that is its right.
    let _ = s.write_all(bytes);
    let _ = s.shutdown(Shutdown::Write);
    let mut all = Vec::new();
    let _ = std::io::Read::read_to_end(&mut s, &mut all);
    frames(&all)
}

/// A hello with a chosen magic, version and body tail.
fn hello_with(magic: &[u8; 4], version: u16, name: &[u8], extra: &[u8]) -> Vec<u8> {
    let mut body = BytesMut::new();
    body.put_slice(magic);
    body.put_u16_le(version);
    body.put_u16_le(0);
    body.put_u32_le(1);
    body.put_u8(name.len() as u8);
    body.put_slice(name);
    body.put_slice(extra);
    raw_frame(kind::HELLO, &body)
}

fn raw_frame(t: u8, body: &[u8]) -> Vec<u8> {
    let mut b = vec![t];
    b.extend_from_slice(&(body.len() as u32).to_le_bytes());
    b.extend_from_slice(body);
    b
}

/// A Publish frame with raw event bytes (possibly not UTF-8).
fn publish_raw(event: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = (event.len() as u16).to_le_bytes().to_vec();
    body.extend_from_slice(event);
    body.extend_from_slice(payload);
    raw_frame(kind::PUBLISH, &body)
}

/// Asserts the answer is exactly one fatal error frame with this text.
#[track_caller]
fn assert_fatal(got: &[Got], code: ErrorCode, text: &str) {
    match got {
        [.., Got::Error {
            code: c,
            fatal: true,
            message,
            ..
        }] => {
            assert_eq!(*c, code, "{message}");
            assert_eq!(message, text);
        }
        other => panic!("expected a fatal error {text:?} last, got {other:?}"),
    }
    let errors = got.iter().filter(|g| g.error().is_some()).count();
    assert_eq!(errors, 1, "one error frame: {got:?}");
}

/// The text of the one legacy `nc-error` packet a peer got. A seed client
/// is a listener from the moment it is accepted, so the background
/// stream's messages may come around it (whole packets, nothing else).
fn legacy_error(reply: &str) -> String {
    let packets = legacy_packets(reply);
    let (errors, others): (Vec<&Value>, Vec<&Value>) =
        packets.iter().partition(|p| p["event"] == "nc-error");
    assert_eq!(errors.len(), 1, "one error packet: {reply:?}");
    assert!(others.iter().all(|p| p["event"] == "tick"), "{others:?}");
    errors[0]["data"]["error"].as_str().unwrap().to_string()
}

/// The whole packets a seed client got (panics on a partial one).
fn legacy_packets(reply: &str) -> Vec<Value> {
    let body = reply.strip_suffix('\0').unwrap_or_else(|| {
        assert!(reply.is_empty(), "a partial packet: {reply:?}");
        ""
    });
    body.split('\0')
        .filter(|p| !p.is_empty())
        .map(|p| serde_json::from_str(p).unwrap_or_else(|e| panic!("{e}: {p:?}")))
        .collect()
}

#[test]
fn garbage_gets_an_error_frame_and_a_close() {
    run("garbage", 60, |d, _ctl| {
        let cases: Vec<(Vec<u8>, ErrorCode, &str)> = vec![
            (
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
                ErrorCode::BadFrame,
                "unknown frame type 0x47; is this a netcluster client?",
            ),
            (
                (0..=255u8).rev().collect(),
                ErrorCode::BadFrame,
                "unknown frame type 0xff; is this a netcluster client?",
            ),
            (
                vec![0; 64],
                ErrorCode::BadFrame,
                "unknown frame type 0x00; is this a netcluster client?",
            ),
            (
                publish_raw(b"tick", b"1"),
                ErrorCode::BadFrame,
                "expected a hello frame first",
            ),
        ];
        for (bytes, code, text) in cases {
            assert_fatal(&send_and_read(d, &bytes), code, text);
        }
        // After a good hello: garbage, a server-only frame, a second hello.
        let mut welcome = BytesMut::new();
        frame::encode_welcome(&mut welcome, 1, 2, 3, "A");
        let after_hello: Vec<(Vec<u8>, &str)> = vec![
            (b"\xff\xfe garbage".to_vec(), "unknown frame type 0xff"),
            (
                welcome.to_vec(),
                "received a frame type that only the server sends",
            ),
            (hello().to_vec(), "hello sent twice"),
            (
                raw_frame(kind::PING, b"short"),
                "malformed ping frame: body too short",
            ),
        ];
        for (bytes, text) in after_hello {
            let mut b = hello();
            b.extend_from_slice(&bytes);
            let got = send_and_read(d, &b);
            assert!(matches!(got[0], Got::Welcome { .. }), "{got:?}");
            assert_fatal(&got[1..], ErrorCode::BadFrame, text);
        }
        // Garbage that starts like a seed client's JSON.
        let mut s = connect(d, "A");
        s.write_all(b"{this is not json}\0").unwrap();
        let err = legacy_error(&read_to_close(&mut s));
        assert!(
            err.starts_with("packet is not valid JSON: key must be a string"),
            "{err}"
        );
    });
}

#[test]
fn wrong_magic_or_version_in_hello_is_refused_with_the_reason() {
    run("wrong hello", 60, |d, _ctl| {
        assert_fatal(
            &send_and_read(d, &hello_with(b"NCLX", 1, b"x", b"")),
            ErrorCode::BadFrame,
            "not a netcluster client (bad magic in hello); is this a netcluster client?",
        );
        assert_fatal(
            &send_and_read(d, &hello_with(&MAGIC, 0, b"x", b"")),
            ErrorCode::Version,
            "protocol version 0 is not supported; this server speaks 1",
        );
        assert_fatal(
            &send_and_read(d, &hello_with(&MAGIC, 1, b"x", b"??")),
            ErrorCode::BadFrame,
            "malformed hello frame: trailing bytes; is this a netcluster client?",
        );
        assert_fatal(
            &send_and_read(d, &hello_with(&MAGIC, 1, b"\xc3\x28", b"")),
            ErrorCode::BadFrame,
            "client name is not valid UTF-8; is this a netcluster client?",
        );
        // A newer client is answered in this server's version.
        let got = send_and_read(d, &hello_with(&MAGIC, 7, b"future", b""));
        assert!(matches!(got[..], [Got::Welcome { .. }]), "{got:?}");
    });
}

#[test]
fn huge_length_prefixes_are_refused_before_any_memory_is_reserved() {
    run("huge prefix", 60, |d, _ctl| {
        let before = d.peak_rss();
        // Before the hello, the limit is that of a hello.
        assert_fatal(
            &send_and_read(d, &[kind::HELLO, 0xff, 0xff, 0xff, 0xff]),
            ErrorCode::BadFrame,
            "frame of 4294967295 bytes exceeds the limit of 4096 bytes; is this a netcluster client?",
        );
        // After it, maxmessage plus the frame overhead.
        for t in [kind::PUBLISH, kind::SUBSCRIBE, kind::REQUEST] {
            let mut b = hello();
            b.extend_from_slice(&[t, 0xff, 0xff, 0xff, 0x7f]);
            let got = send_and_read(d, &b);
            assert_fatal(
                &got[1..],
                ErrorCode::TooLarge,
                &format!(
                    "frame of 2147483647 bytes exceeds the limit of {MAX_BODY} bytes (maxmessage is 65536 bytes)"
                ),
            );
        }
        // A payload over maxmessage inside a frame the daemon accepts is
        // refused without closing the connection.
        let mut r = d.raw("A", "big");
        r.publish("tick", &vec![b'1'; 64 * 1024 + 1]);
        let got = r.ping();
        assert_eq!(
            got,
            vec![Got::Error {
                code: ErrorCode::TooLarge,
                id: 0,
                fatal: false,
                message: "message of 65537 bytes exceeds maxmessage (65536 bytes); it was not sent"
                    .into()
            }]
        );
        // A seed client that never ends its packet.
        let mut s = connect(d, "A");
        let _ = s.write_all(&[b'{'; MAX_BODY + 4096]);
        let err = legacy_error(&read_to_close(&mut s));
        assert_eq!(
            err,
            format!("packet exceeds {MAX_BODY} bytes without a NUL terminator")
        );
        let grew = d.peak_rss().saturating_sub(before);
        assert!(grew < 8 << 20, "peak RSS grew by {grew} bytes");
    });
}

#[test]
fn truncated_frames_then_close_end_cleanly_and_deliver_nothing() {
    run("truncated frames", 60, |d, _ctl| {
        let mut half = BytesMut::new();
        frame::encode_publish(&mut half, "tick", &[b'7'; 1000]);
        let half = &half[..half.len() / 2];

        // Half a hello, then the write side closed: told why, then closed.
        let h = hello();
        assert_fatal(
            &send_and_read(d, &h[..h.len() - 3]),
            ErrorCode::BadFrame,
            "closed before hello",
        );
        // Half a publish after a hello, write side closed: a clean close.
        let mut b = hello();
        b.extend_from_slice(half);
        let got = send_and_read(d, &b);
        assert!(matches!(got[..], [Got::Welcome { .. }]), "{got:?}");
        // The same, closing the whole socket at once.
        for cut in [1, 4, 5, 6, half.len()] {
            let mut s = connect(d, "A");
            let mut b = hello();
            b.extend_from_slice(&half[..cut]);
            s.write_all(&b).unwrap();
            drop(s);
        }
        // A seed client's packet cut in the middle.
        let mut s = connect(d, "A");
        s.write_all(br#"{"event":"tick","data":"#).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        // No error, nothing partial: at most the stream it listened to.
        let got = legacy_packets(&read_to_close(&mut s));
        assert!(got.iter().all(|p| p["event"] == "tick"), "{got:?}");
    });
}

#[test]
fn invalid_utf8_and_invalid_event_names_get_clear_errors() {
    run("invalid names", 60, |d, _ctl| {
        // Not UTF-8: the frame cannot be trusted, the connection ends.
        let mut sub = vec![0, 0, 0, 0, 1, 0, 2, 0];
        sub.extend_from_slice(b"\xff\xfe");
        let mut req = 9u32.to_le_bytes().to_vec();
        req.extend_from_slice(&[2, 0, 0xc0, 0xaf]);
        for bytes in [
            publish_raw(b"\xff\xfe", b"1"),
            publish_raw(b"ti\xe2\x82ck", b"1"),
            raw_frame(kind::SUBSCRIBE, &sub),
            raw_frame(kind::REQUEST, &req),
        ] {
            let mut b = hello();
            b.extend_from_slice(&bytes);
            let got = send_and_read(d, &b);
            assert_fatal(
                &got[1..],
                ErrorCode::BadFrame,
                "event name is not valid UTF-8",
            );
        }
        // UTF-8 but not a valid name: refused, the connection goes on.
        let mut r = d.raw("A", "names");
        r.publish("", b"1");
        r.publish("*", b"1");
        let mut b = BytesMut::new();
        frame::encode_subscription(&mut b, true, 77, [""]);
        r.send(&b);
        let got = r.ping();
        let texts: Vec<_> = got
            .iter()
            .map(|g| (g.error().unwrap(), g.clone()))
            .collect();
        assert_eq!(texts.len(), 3, "{got:?}");
        assert_eq!(texts[0].0, "event name is empty");
        assert_eq!(
            texts[1].0,
            "event name \"*\" is reserved: '*' subscribes to all events and cannot be emitted"
        );
        assert_eq!(texts[2].0, "event name is empty");
        assert!(
            matches!(
                texts[2].1,
                Got::Error {
                    id: 77,
                    fatal: false,
                    ..
                }
            ),
            "the subscribe's ack id: {:?}",
            texts[2].1
        );
        // Seed clients: invalid UTF-8 in the JSON, or an empty event name.
        let mut s = connect(d, "A");
        s.write_all(b"{\"event\":\"\xff\xfe\",\"data\":1}\0")
            .unwrap();
        let err = legacy_error(&read_to_close(&mut s));
        assert!(
            err.starts_with("packet is not valid JSON: invalid unicode code point"),
            "{err}"
        );
        // An empty name is refused alone (the seed forwarded such packets
        // and its clients never reconnect): the connection stays, until
        // the client closes its side.
        let mut s = connect(d, "A");
        s.write_all(b"{\"event\":\"\",\"data\":1}\0").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        assert_eq!(
            legacy_error(&read_to_close(&mut s)),
            "packet dropped: event name is empty"
        );
    });
}

#[test]
fn a_peer_that_never_reads_its_replies_cannot_grow_the_daemon() {
    run("unread replies", 90, |d, _ctl| {
        let before = d.peak_rss();
        // Control requests whose answers are much bigger than the requests,
        // and pings, from a peer that never reads.
        let mut s = connect(d, "control");
        let mut b = hello();
        let mut req = BytesMut::new();
        for id in 1..=2000u32 {
            frame::encode_request(&mut req, id, "nc-control-showconfig", b"null");
            frame::encode_ping(&mut req, true, u64::from(id));
        }
        b.extend_from_slice(&req);
        s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        let t = Instant::now();
        let mut requests = 0usize;
        // Each showconfig answer is over 300 bytes: 200 000 requests would
        // queue more than 60 MiB if the daemon kept reading.
        let answer = d
            .control()
            .request("nc-control-showconfig", &Value::Null)
            .unwrap();
        assert!(answer.to_string().len() > 300, "{answer}");
        let mut written = s.write_all(&b).is_ok();
        while written && requests < 200_000 && t.elapsed() < Duration::from_secs(30) {
            written = s.write_all(&req).is_ok();
            requests += 2000;
        }
        let grew = d.peak_rss().saturating_sub(before);
        assert!(
            !written && grew < 16 << 20,
            "the daemon kept reading requests whose answers were never read \
             (still reading: {written}); its peak RSS grew by {} MiB",
            grew >> 20
        );
        eprintln!(
            "unread replies: the daemon stopped reading after {requests} requests ({})",
            since(t)
        );
    });
}

#[test]
fn a_peer_cannot_grow_the_daemon_with_endless_subscriptions() {
    run("endless subscriptions", 90, |d, _ctl| {
        let before = d.peak_rss();
        let mut r = d.raw("B", "subscriber");
        let names = |f: u32| -> Vec<String> {
            (0..100)
                .map(|i| format!("{f:04}-{i:04}-{}", "x".repeat(490)))
                .collect()
        };
        let subscription = |subscribe: bool, ack: u32, names: &[String]| {
            let mut b = BytesMut::new();
            frame::encode_subscription(&mut b, subscribe, ack, names.iter().map(String::as_str));
            b
        };
        // Up to 1000 frames of 100 distinct 500-byte names (50 MB of names)
        // until the daemon refuses.
        let mut refused = None;
        for f in 0..1000u32 {
            r.send(&subscription(true, f + 1, &names(f)));
            match r.next() {
                Some(Got::Ack(a)) if a == f + 1 => {}
                Some(Got::Error {
                    code: ErrorCode::TooLarge,
                    id,
                    fatal: false,
                    message,
                }) if id == f + 1 => {
                    refused = Some((f, message));
                    break;
                }
                other => panic!("frame {f}: {other:?}"),
            }
        }
        let (f, message) = refused.expect("the daemon refused some subscriptions");
        assert_eq!(
            message,
            "too many subscriptions: this client's event names would pass 1048576 bytes; \
             unsubscribe from some first"
        );
        // About 1 MiB of names were taken: 100 names of 500 bytes a frame.
        assert_eq!(f, 20, "refused at frame {f}");
        let grew = d.peak_rss().saturating_sub(before);
        assert!(grew < 16 << 20, "peak RSS grew by {} MiB", grew >> 20);
        // The connection goes on; unsubscribing makes room again.
        r.send(&subscription(false, 0, &names(0)));
        r.send(&subscription(true, 5000, &names(5000)));
        assert_eq!(r.ping(), vec![Got::Ack(5000)]);
        eprintln!(
            "endless subscriptions: refused at frame {f}; peak RSS +{} MiB",
            grew >> 20
        );
    });
}
