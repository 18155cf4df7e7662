//! `ncclient emit` when the daemon goes away in the middle of a stream of
//! stdin lines: it must exit non-zero naming how many of the lines it sent
//! were not confirmed, and count as confirmed exactly what the daemon
//! confirmed. The daemon here is a stand-in that speaks the native protocol
//! and then dies as a killed daemon would: mid-stream, without answering.
#![cfg(unix)]

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::process::Stdio;

use bytes::{Buf, BytesMut};
use common::*;
use netcluster_proto::frame::{self, Frame};

/// The stand-in answers barriers until it has read this many messages.
const CRASH_AFTER: u64 = 1500;
const LINES: u64 = 5000;

/// Accepts one client, welcomes it, answers its Pings while fewer than
/// `CRASH_AFTER` messages came, then drops the connection unanswered.
/// Returns (messages confirmed by its last Pong, messages read).
fn stand_in(listener: UnixListener) -> (u64, u64) {
    let (mut s, _) = listener.accept().unwrap();
    let mut buf = BytesMut::new();
    let (mut read, mut confirmed) = (0u64, 0u64);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        while let Some((f, n)) = frame::decode(&buf, 1 << 20).unwrap() {
            let mut reply = BytesMut::new();
            match f {
                Frame::Hello { .. } => frame::encode_welcome(&mut reply, 7, 1, 1 << 20, "A"),
                Frame::Publish { .. } => read += 1,
                Frame::Ping(token) if read < CRASH_AFTER => {
                    confirmed = read;
                    frame::encode_ping(&mut reply, false, token);
                }
                // Killed: whatever came since the last answer is gone.
                Frame::Ping(_) => return (confirmed, read),
                other => panic!("unexpected {other:?}"),
            }
            buf.advance(n);
            s.write_all(&reply).unwrap();
        }
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "ncclient closed first");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn emit_names_the_lines_not_confirmed_when_the_daemon_dies() {
    let dir = tempfile::Builder::new()
        .prefix("nc")
        .tempdir_in("/tmp")
        .unwrap();
    let listener = UnixListener::bind(dir.path().join("netcluster-A")).unwrap();
    let daemon = std::thread::spawn(move || stand_in(listener));
    let mut child = ncclient_in(dir.path())
        .args(["emit", "A", "n"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        for i in 0..LINES {
            // ncclient stops reading once it failed.
            if writeln!(stdin, "{i}").is_err() {
                break;
            }
        }
    });
    let (confirmed, read) = daemon.join().unwrap();
    let o = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    let err = stderr(&o);
    assert_ne!(o.status.code(), Some(0), "{err}");
    // "X of the Y lines sent were not confirmed … (C confirmed)"
    let words: Vec<&str> = err.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| *w == "of")
        .unwrap_or_else(|| panic!("no count in {err:?}"));
    let num = |s: &str| -> u64 {
        s.trim_matches(|c: char| !c.is_ascii_digit())
            .parse()
            .unwrap_or_else(|_| panic!("{s:?} in {err:?}"))
    };
    let (unconfirmed, sent) = (num(words[at - 1]), num(words[at + 2]));
    assert!(err.contains("not confirmed by the daemon"), "{err}");
    assert!(err.contains(&format!("({confirmed} confirmed)")), "{err}");
    assert_eq!(sent - unconfirmed, confirmed, "{err}");
    assert!(
        unconfirmed > 0 && sent >= read,
        "{err}; the stand-in read {read}"
    );
    eprintln!(
        "stand-in confirmed {confirmed} and read {read}; ncclient: {}",
        err.trim()
    );
}
