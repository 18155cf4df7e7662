//! Frames that never complete: a local client that sends the start of a
//! frame (or of a seed packet) and then nothing gets an error naming
//! `frametimeoutms` once that time has passed, and is closed, so its bytes
//! are freed; the bytes all partial frames hold together are bounded by
//! `partialbytes`, and the client whose frame would pass it is the one
//! refused. Meanwhile a normal publisher and listener lose nothing, and a
//! client idle between frames is never timed out.
#![cfg(unix)]

mod common;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::abuse::{wait_clients, Background};
use common::{bounded, read_to_close, Daemon, Got, Raw};
use netcluster_proto::frame::{self, ErrorCode};
use netcluster_testkit::wait_until;

/// Payload of the big message each partial frame starts: close to the
/// default `maxmessage` (16 MiB).
const PAYLOAD: usize = 15 << 20;

/// A whole publish frame of a `PAYLOAD`-byte message named `big`.
fn big_frame() -> Vec<u8> {
    let mut b = BytesMut::new();
    frame::encode_publish(&mut b, "big", &vec![b'z'; PAYLOAD]);
    b.to_vec()
}

/// Reads until the daemon closes; returns the fatal error it sent.
fn fatal_error(r: &mut Raw) -> (ErrorCode, String) {
    let mut error = None;
    loop {
        match r.try_next() {
            Ok(Some(Got::Error {
                code,
                fatal: true,
                message,
                ..
            })) => error = Some((code, message)),
            Ok(Some(other)) => panic!("unexpected {other:?}"),
            Ok(None) => break,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading the error: {e} (so far {error:?})"),
        }
    }
    error.expect("an error frame before the close")
}

/// Waits until the daemon has read `sent` bytes from client `id` of
/// channel A (true), or has closed it (false).
fn settle(ctl: &mut Raw, id: u64, sent: usize) -> bool {
    let mut held = false;
    wait_until(30, "the daemon to take or refuse a partial frame", || {
        let rec = ctl.show_client("A", id).expect("client record");
        if rec.get("disconnected").is_some() {
            return true;
        }
        held = rec["bytes_in"].as_u64().unwrap() >= sent as u64;
        held
    });
    held
}

#[test]
fn partial_frames_time_out_with_an_error_and_their_memory_is_freed() {
    bounded(240, "partial frames time out", || {
        let d = Daemon::start(
            r#"{
              "frametimeoutms": 8000,
              "partialbytes": "1GiB",
              "channels": { "A": {}, "B": {} }
            }"#,
        );
        let mut ctl = d.control();
        let background = Background::start(&d);
        // Idle between frames, from before the attack to after it.
        let mut idle = d.raw("B", "idle");
        idle.publish("nobody", b"1");
        assert_eq!(idle.ping(), vec![]);
        std::thread::sleep(Duration::from_millis(500));
        let baseline = d.rss();

        let big = big_frame();
        let part = &big[..8 << 20];
        let t0 = Instant::now();
        let mut attackers: Vec<(Raw, Instant)> = (0..30)
            .map(|i| {
                let mut r = d.raw("A", &format!("partial-{i}"));
                let sent = Instant::now();
                r.send(part);
                assert!(settle(&mut ctl, r.client, part.len()), "attacker {i} held");
                (r, sent)
            })
            .collect();
        // The seed format has no length: an unterminated packet.
        // On B: a seed client gets every message of its channel, and the
        // background stream on A would fill its queue while it is not read.
        let mut seed = UnixStream::connect(d.path("B")).unwrap();
        seed.write_all(b"{\"event\":\"x\",\"data\":\"").unwrap();
        seed.write_all(&vec![b'y'; 1 << 20]).unwrap();
        let seed_sent = Instant::now();
        let wrote = t0.elapsed();
        let during = d.rss();

        for (i, (r, sent)) in attackers.iter_mut().enumerate() {
            let (code, msg) = fatal_error(r);
            let waited = sent.elapsed();
            assert_eq!(code, ErrorCode::BadFrame, "{msg}");
            assert!(
                msg.contains("frametimeoutms") && msg.contains("8000 ms"),
                "attacker {i}: {msg}"
            );
            assert!(
                waited >= Duration::from_millis(7900),
                "attacker {i} closed after {waited:?}, before the timeout"
            );
        }
        let reply = read_to_close(&mut seed);
        assert!(
            reply.contains("\"nc-error\"") && reply.contains("frametimeoutms"),
            "seed client: {reply}"
        );
        assert!(seed_sent.elapsed() >= Duration::from_millis(7900));

        // Left: control, the background pair and the idle client.
        wait_clients(&mut ctl, 4);
        // Freed memory may take a moment to leave the process.
        let mut after = d.rss();
        for _ in 0..50 {
            if after < baseline + (24 << 20) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            after = d.rss();
        }
        eprintln!(
            "30 partial frames of 8 MiB and a 1 MiB seed packet, written in {wrote:?}: \
             daemon RSS baseline {} MiB, during {} MiB, after {} MiB",
            baseline >> 20,
            during >> 20,
            after >> 20
        );
        assert!(
            during > baseline + (200 << 20),
            "the partial frames were held: {} -> {} MiB",
            baseline >> 20,
            during >> 20
        );
        assert!(
            after < baseline + (24 << 20),
            "RSS stayed at {} MiB after the partial frames were dropped (baseline {} MiB)",
            after >> 20,
            baseline >> 20
        );
        // Idle far longer than the timeout, yet served.
        assert_eq!(idle.ping(), vec![]);
        idle.publish("nobody", b"2");
        assert_eq!(idle.ping(), vec![]);
        background.finish();
    });
}

#[test]
fn partialbytes_bounds_all_partial_frames_together_and_refuses_the_one_passing_it() {
    bounded(120, "partialbytes budget", || {
        let d = Daemon::start(
            r#"{
              "frametimeoutms": 60000,
              "partialbytes": "40MiB",
              // Room for a whole big message to the listener.
              "queuebytes": "32MiB",
              "channels": { "A": {} }
            }"#,
        );
        let mut ctl = d.control();
        let mut listener = d.raw("A", "listener");
        listener.subscribe(&["big", "still"]);
        let big = big_frame();
        let (part, rest) = big.split_at(12 << 20);
        let mut held = Vec::new();
        let mut refused = None;
        for i in 0..10 {
            let mut r = d.raw("A", &format!("partial-{i}"));
            // Cut short by the daemon if refused.
            let _ = r.s.write_all(part);
            let kept = settle(&mut ctl, r.client, part.len());
            // Someone else is served all along.
            let mut other = d.raw("A", "other");
            other.publish("still", b"1");
            assert_eq!(other.ping(), vec![]);
            match listener.next() {
                Some(Got::Deliver { event, .. }) => assert_eq!(event, "still"),
                g => panic!("listener got {g:?}"),
            }
            if kept {
                held.push(r);
            } else {
                refused = Some((i, fatal_error(&mut r)));
                break;
            }
        }
        let (i, (code, msg)) = refused.expect("some partial frame passed the budget");
        eprintln!("partial frame {i} (0-based) refused: {msg}");
        assert!(
            (2..=3).contains(&i),
            "40 MiB hold two or three unfinished frames of 12-15 MiB, not {i}"
        );
        assert_eq!(code, ErrorCode::TooLarge);
        assert!(
            msg.contains("partialbytes") && msg.contains("41943040 bytes"),
            "{msg}"
        );
        // Those held are unharmed: each completes its message, delivered.
        for r in &mut held {
            r.send(rest);
            assert_eq!(r.ping(), vec![]);
            match listener.next() {
                Some(Got::Deliver { event, payload, .. }) => {
                    assert_eq!(event, "big");
                    assert_eq!(payload.len(), PAYLOAD);
                }
                g => panic!("listener got {g:?}"),
            }
        }
        // The budget was given back: as many partial frames are held again.
        for n in 0..held.len() {
            let mut again = d.raw("A", "again");
            again.send(part);
            assert!(settle(&mut ctl, again.client, part.len()), "again {n}");
            held.push(again);
        }
        d.log();
    });
}

/// The attack of issue 11 at the defaults: 30 local connections each send
/// 16 MiB − 1 bytes of a 16 MiB frame, then nothing. Before, that pinned
/// about 500 MB for ever; now `partialbytes` (64 MiB) holds three or four,
/// the others are refused at once, and the three are closed after
/// `frametimeoutms` (10 s), their memory given back.
#[test]
fn thirty_almost_whole_frames_at_the_defaults_stay_within_partialbytes() {
    bounded(180, "issue 11 partial frames at the defaults", || {
        let d = Daemon::start(r#"{ "channels": { "A": {} } }"#);
        let mut ctl = d.control();
        std::thread::sleep(Duration::from_millis(300));
        let baseline = d.rss();
        let mut b = BytesMut::new();
        frame::encode_publish(&mut b, "big", &vec![b'z'; (16 << 20) - 64]);
        let almost = &b[..b.len() - 1];
        let t0 = Instant::now();
        let mut held = Vec::new();
        let mut refused = 0;
        for i in 0..30 {
            let mut r = d.raw("A", &format!("partial-{i}"));
            // Cut short by the daemon if refused.
            let _ = r.s.write_all(almost);
            if settle(&mut ctl, r.client, almost.len()) {
                held.push(r);
            } else {
                let (code, msg) = fatal_error(&mut r);
                assert_eq!(code, ErrorCode::TooLarge, "{msg}");
                assert!(msg.contains("partialbytes (67108864 bytes)"), "{msg}");
                refused += 1;
            }
        }
        let during = d.rss();
        let peak = d.peak_rss();
        let partial = ctl
            .request("nc-control-status", &serde_json::Value::Null)
            .unwrap()["partial_bytes"]
            .as_u64()
            .unwrap();
        for r in &mut held {
            let (code, msg) = fatal_error(r);
            assert_eq!(code, ErrorCode::BadFrame, "{msg}");
            assert!(msg.contains("frametimeoutms (10000 ms)"), "{msg}");
        }
        wait_clients(&mut ctl, 1);
        let after = d.rss();
        let left = ctl
            .request("nc-control-status", &serde_json::Value::Null)
            .unwrap()["partial_bytes"]
            .as_u64()
            .unwrap();
        eprintln!(
            "30 frames of 16 MiB - 1 byte at the defaults: {} held, {refused} refused; \
             partial_bytes {partial} then {left}; daemon RSS baseline {} MiB, with those \
             held {} MiB, peak {} MiB, after the timeout {} MiB ({:?} in all)",
            held.len(),
            baseline >> 20,
            during >> 20,
            peak >> 20,
            after >> 20,
            t0.elapsed()
        );
        // Three or four frames of almost 16 MiB fit in 64 MiB, by how
        // close to it they come.
        assert!((3..=4).contains(&held.len()), "{} held", held.len());
        assert_eq!(refused, 30 - held.len());
        assert!(partial <= 64 << 20, "{partial}");
        assert_eq!(left, 0);
        assert!(
            peak < baseline + (100 << 20),
            "peak RSS {} MiB over a baseline of {} MiB",
            peak >> 20,
            baseline >> 20
        );
        assert!(
            after < baseline + (16 << 20),
            "RSS {} MiB after the timeout, baseline {} MiB",
            after >> 20,
            baseline >> 20
        );
    });
}
