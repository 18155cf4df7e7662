//! What docs/PROTOCOL.md promises about the handshake, checked against the
//! real daemon over its socket: frames may follow the Hello at once, in the
//! same write, without waiting for the Welcome; the Hello's `version` is
//! the highest the client speaks, the daemon answers with the version in
//! use (1) and refuses 0.
#![cfg(unix)]

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use bytes::BytesMut;
use common::{Daemon, Got, Raw};
use netcluster_proto::frame::{self, ErrorCode, Frame};

const CONFIG: &str = r#"{ "channels": { "A": {} } }"#;

/// A Hello announcing `version` (encode_hello writes the current one).
fn hello(version: u16) -> BytesMut {
    let mut b = BytesMut::new();
    frame::encode_hello(&mut b, std::process::id(), "doc-test");
    // 5-byte header, 4-byte magic, then the version.
    b[9..11].copy_from_slice(&version.to_le_bytes());
    b
}

/// The first frame the daemon sends on `s`, decoded into an owned summary.
fn first_frame(s: &mut UnixStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Ok(Some((f, _))) = frame::decode(&buf, 1 << 20) {
            return match f {
                Frame::Welcome { version, .. } => format!("welcome v{version}"),
                Frame::Error {
                    code,
                    fatal,
                    message,
                    ..
                } => format!("error {code:?} fatal={fatal}: {message}"),
                other => format!("{other:?}"),
            };
        }
        let n = s.read(&mut chunk).expect("read from the daemon");
        assert!(n > 0, "closed before the first frame");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn frames_may_follow_the_hello_without_waiting_for_the_welcome() {
    let d = Daemon::start(CONFIG);
    let mut listener = d.raw("A", "listener");
    listener.subscribe(&["x"]);

    // Hello, Subscribe, Publish and Ping in one write.
    let mut b = hello(frame::VERSION);
    frame::encode_subscription(&mut b, true, 7, ["y"]);
    frame::encode_publish(&mut b, "x", b"\"early\"");
    frame::encode_ping(&mut b, true, 99);
    let mut eager = Raw::connect(&d.path("A"));
    eager.send(&b);
    let got: Vec<Got> = (0..3).map(|_| eager.next().expect("a frame")).collect();
    assert!(matches!(got[0], Got::Welcome { .. }), "{got:?}");
    assert!(matches!(got[1], Got::Ack(7)), "{got:?}");
    assert!(matches!(got[2], Got::Pong(99)), "{got:?}");
    match listener.next() {
        Some(Got::Deliver { event, payload, .. }) => {
            assert_eq!((event.as_str(), &payload[..]), ("x", &b"\"early\""[..]))
        }
        other => panic!("expected the early publish, got {other:?}"),
    }
}

#[test]
fn the_daemon_answers_with_version_1_and_refuses_version_0() {
    let d = Daemon::start(CONFIG);
    for (version, want) in [
        (1, "welcome v1".to_string()),
        // A newer client: the daemon answers with the version it speaks,
        // which the client then uses (or it disconnects).
        (7, "welcome v1".to_string()),
        (0, format!("error {:?} fatal=true", ErrorCode::Version)),
    ] {
        let mut s = UnixStream::connect(d.path("A")).unwrap();
        s.write_all(&hello(version)).unwrap();
        let got = first_frame(&mut s);
        assert!(got.starts_with(&want), "hello v{version}: {got}");
    }
}
