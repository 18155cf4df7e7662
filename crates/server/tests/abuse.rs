//! Abuse through real sockets against the `ncserver` binary: garbage,
//! wrong hellos, absurd length prefixes, truncated frames, invalid names,
//! a peer that never reads its replies, a thousand idle connections, a
//! client killed mid-frame, and ten thousand connections opening and
//! closing. Each bad peer gets a clear error frame (the text is checked) or
//! a clean close; a message stream running alongside loses nothing, and a
//! normal emit/listen works afterwards.
#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use common::{bounded, frames, read_to_close, since, Daemon, Got, Raw};
use netcluster_proto::frame::{self, kind, ErrorCode, MAGIC};
use serde_json::{json, Value};

/// `maxmessage` and `queuebytes` of the daemon under test: small, so the
/// limits are quick to reach.
const CONFIG: &str = r#"{
  "maxmessage": "64KiB",
  "queuebytes": "1MiB",
  "channels": { "A": {}, "B": {} }
}"#;
/// The frame limit the daemon applies: maxmessage + 1536 bytes.
const MAX_BODY: usize = 64 * 1024 + frame::FRAME_OVERHEAD;

/// A publisher and a listener on channel A that run during an abuse: the
/// listener (subscribed to everything) must see exactly the publisher's
/// numbered ticks, in order, and nothing else.
struct Background {
    stop: Arc<AtomicBool>,
    threads: Option<(JoinHandle<u64>, JoinHandle<u64>)>,
}

impl Background {
    fn start(d: &Daemon) -> Background {
        let dir = d.dir().to_path_buf();
        let listen = netcluster::blocking::Client::builder("A")
            .with(|b| b.socket_dir(&dir).name("background-listener"))
            .connect()
            .unwrap();
        let mut sub = listen.subscribe("*").unwrap();
        let listener = std::thread::spawn(move || {
            let _c = listen;
            let mut n = 0u64;
            loop {
                let m = sub
                    .recv_timeout(Duration::from_secs(30))
                    .unwrap_or_else(|| panic!("background: tick {n} never came"));
                match m.event() {
                    "tick" => {
                        assert_eq!(m.json::<u64>().unwrap(), n, "background: order");
                        n += 1;
                    }
                    "end" => {
                        assert_eq!(m.json::<u64>().unwrap(), n, "background: count");
                        return n;
                    }
                    other => panic!("background: unexpected event {other:?}: {m:?}"),
                }
            }
        });
        let stop = Arc::new(AtomicBool::new(false));
        let publisher = {
            let stop = stop.clone();
            let c = netcluster::blocking::Client::builder("A")
                .with(|b| b.socket_dir(&dir).name("background-publisher").echo(false))
                .connect()
                .unwrap();
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    c.emit("tick", &i).unwrap();
                    i += 1;
                    if i % 50 == 0 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                c.emit("end", &i).unwrap();
                c.flush().unwrap();
                i
            })
        };
        Background {
            stop,
            threads: Some((publisher, listener)),
        }
    }

    /// Stops the stream and checks nothing was lost; returns its length.
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let (publisher, listener) = self.threads.take().unwrap();
        let sent = publisher.join().unwrap();
        let got = listener.join().unwrap();
        assert_eq!(sent, got);
        assert!(sent > 0, "the stream ran");
        sent
    }
}

impl Drop for Background {
    /// A failed test leaves no publisher running against a dead daemon.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A normal emit/listen between two new clients works.
fn check_normal(d: &Daemon) {
    let dir = d.dir();
    let rx = netcluster::blocking::Client::builder("B")
        .with(|b| b.socket_dir(dir))
        .connect()
        .unwrap();
    let mut sub = rx.subscribe("check").unwrap();
    let tx = netcluster::blocking::Client::builder("B")
        .with(|b| b.socket_dir(dir))
        .connect()
        .unwrap();
    tx.emit("check", &json!({"ok": true})).unwrap();
    let m = sub
        .recv_timeout(Duration::from_secs(10))
        .expect("a normal message after the abuse");
    assert_eq!(m.json::<Value>().unwrap(), json!({"ok": true}));
}

/// Waits until the daemon counts `n` clients (closes are asynchronous).
fn wait_clients(ctl: &mut Raw, n: u64) {
    let t = Instant::now();
    loop {
        let c = ctl.client_count();
        if c == n {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the daemon still counts {c} clients, expected {n}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs one abuse: a fresh daemon, the background stream, `abuse`, then
/// checks that the stream lost nothing, normal clients work, and only the
/// clients of the test remain.
fn run(what: &'static str, secs: u64, abuse: impl FnOnce(&mut Daemon, &mut Raw) + Send + 'static) {
    bounded(secs, what, move || {
        let t = Instant::now();
        let mut d = Daemon::start(CONFIG);
        let mut ctl = d.control();
        let bg = Background::start(&d);
        abuse(&mut d, &mut ctl);
        d.assert_alive();
        let n = bg.finish();
        check_normal(&d);
        wait_clients(&mut ctl, 1);
        eprintln!(
            "{what}: stream of {n} messages intact, daemon VmHWM {:.1} MiB, {}",
            d.peak_rss() as f64 / (1 << 20) as f64,
            since(t)
        );
    });
}

fn connect(d: &Daemon, channel: &str) -> UnixStream {
    let s = UnixStream::connect(d.path(channel)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

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

fn hello() -> BytesMut {
    let mut b = BytesMut::new();
    frame::encode_hello(&mut b, 1, "abuser");
    b
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

/// The legacy `nc-error` packet text a peer got.
fn legacy_error(reply: &str) -> String {
    let packet = reply.trim_end_matches('\0');
    let v: Value = serde_json::from_str(packet).unwrap_or_else(|e| panic!("{e}: {reply:?}"));
    assert_eq!(v["event"], "nc-error", "{v}");
    v["data"]["error"].as_str().unwrap().to_string()
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
        assert_eq!(read_to_close(&mut s), "");
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
        let mut s = connect(d, "A");
        s.write_all(b"{\"event\":\"\",\"data\":1}\0").unwrap();
        assert_eq!(legacy_error(&read_to_close(&mut s)), "event name is empty");
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

/// Raises this process's soft limit of open files to `want` (or the hard
/// limit); daemons started afterwards inherit it. Returns the new limit.
fn raise_nofile(want: u64) -> u64 {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut l: libc::rlimit = std::mem::zeroed();
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut l), 0);
        if (l.rlim_cur as u64) < want {
            l.rlim_cur = (want as libc::rlim_t).min(l.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &l), 0);
        }
        l.rlim_cur as u64
    }
}

#[test]
fn a_thousand_idle_connections_cost_little_and_go_away_cleanly() {
    // 1000 here, 1000 in the daemon, and some to spare for parallel tests.
    let limit = raise_nofile(4096);
    assert!(
        limit >= 2500,
        "RLIMIT_NOFILE is {limit}; this test needs 2500"
    );
    run("1000 idle connections", 90, |d, ctl| {
        // The control client, the background publisher and listener.
        wait_clients(ctl, 3);
        let (rss, fds) = (d.rss(), d.fds());
        // Half say hello and then nothing; half never send a byte (the
        // daemon takes those for seed clients that only listen).
        let mut native: Vec<Raw> = (0..500).map(|i| d.raw("A", &format!("idle-{i}"))).collect();
        let silent: Vec<UnixStream> = (0..500).map(|_| connect(d, "B")).collect();
        wait_clients(ctl, 1003);
        let grew = d.rss().saturating_sub(rss);
        eprintln!(
            "1000 idle connections: daemon RSS +{} KiB ({} B per connection), {} more fds",
            grew >> 10,
            grew / 1000,
            d.fds() - fds
        );
        assert!(
            grew < 1000 * 32 * 1024,
            "{grew} bytes for 1000 idle connections"
        );
        // They are still served.
        for r in native.iter_mut().step_by(50) {
            assert_eq!(r.ping(), vec![]);
        }
        drop(native);
        drop(silent);
        wait_clients(ctl, 3);
        let t = Instant::now();
        while d.fds() > fds {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "the daemon holds {} descriptors, {fds} before",
                d.fds()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    });
}

/// Set in the environment of the child process that
/// `a_client_killed_mid_frame_harms_nobody` starts: the socket directory.
const CHILD_ENV: &str = "NC_ABUSE_CHILD_SOCKET_DIR";
/// What the child prints once its connections are in place.
const READY: &str = "child-ready";

/// Not a test on its own: the child process of
/// `a_client_killed_mid_frame_harms_nobody` (this test binary run again
/// with `CHILD_ENV` set). It opens connections, writes half a frame on
/// each, says "ready" and waits to be killed.
#[test]
fn child_process_that_writes_half_frames() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = Path::new(&dir);
    let path = dir.join("netcluster-A");
    let mut publish = BytesMut::new();
    frame::encode_publish(&mut publish, "tick", &[b'9'; 4000]);
    // A subscriber in the middle of a publish.
    let mut sub = Raw::connect(&path);
    sub.hello("killed-mid-publish");
    sub.subscribe(&["quiet"]);
    sub.send(&publish[..publish.len() / 2]);
    // In the middle of its hello.
    let mut h = UnixStream::connect(&path).unwrap();
    h.write_all(&hello()[..9]).unwrap();
    // A seed client in the middle of a packet (on B: a seed client gets
    // every message of its channel, and this one would not read the
    // background stream on A).
    let mut l = UnixStream::connect(dir.join("netcluster-B")).unwrap();
    l.write_all(br#"{"event":"tick","data":[1,2,"#).unwrap();
    // On a line of its own: libtest may have printed part of a line.
    println!("\n{READY}");
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(60));
    drop((sub, h, l));
}

#[test]
fn a_client_killed_mid_frame_harms_nobody() {
    run("kill -9 mid-frame", 60, |d, ctl| {
        for round in 0..3 {
            let mut child = Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "child_process_that_writes_half_frames",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, d.dir())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut out = BufReader::new(child.stdout.take().unwrap());
            let mut line = String::new();
            while line.trim() != READY {
                line.clear();
                let n = out.read_line(&mut line).unwrap();
                assert!(n > 0, "the child ended before it was ready");
            }
            // The subscriber and the seed client are registered (the one
            // in the middle of its hello is not).
            wait_clients(ctl, 5);
            child.kill().unwrap(); // SIGKILL
            let st = child.wait().unwrap();
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(st.signal(), Some(libc::SIGKILL), "round {round}");
            wait_clients(ctl, 3);
        }
        // The daemon saw each connection end in the middle of a message.
        let ends = d.log().matches("closed mid-message").count();
        assert_eq!(ends, 3 * 2, "{}", d.log());
    });
}

#[test]
fn ten_thousand_connections_opening_and_closing_leak_nothing() {
    run("churn of 10000 connections", 120, |d, ctl| {
        wait_clients(ctl, 3);
        let (fds, rss) = (d.fds(), d.rss());
        let t = Instant::now();
        let threads: Vec<_> = (0..4)
            .map(|k| {
                let a = d.path("A");
                let b = d.path("B");
                std::thread::spawn(move || {
                    let mut half = BytesMut::new();
                    frame::encode_publish(&mut half, "tick", &[b'5'; 100]);
                    for i in 0..2500 {
                        match (i + k) % 6 {
                            // Connect and go.
                            0 => drop(UnixStream::connect(&a).unwrap()),
                            // Hello, then go.
                            1 => drop({
                                let mut r = Raw::connect(&a);
                                r.hello("churn");
                                r
                            }),
                            // Subscribe, then go (A carries the stream).
                            2 => {
                                let mut r = Raw::connect(&a);
                                r.hello("churn");
                                r.subscribe(&["tick", "other"]);
                            }
                            // Publish on B, then go.
                            3 => {
                                let mut r = Raw::connect(&b);
                                r.hello("churn");
                                r.publish("churn", b"1");
                            }
                            // Half a frame, then go.
                            4 => {
                                let mut r = Raw::connect(&a);
                                r.hello("churn");
                                r.send(&half[..50]);
                            }
                            // A seed client's packet on B, then go.
                            _ => {
                                let mut s = UnixStream::connect(&b).unwrap();
                                s.write_all(b"{\"event\":\"churn\",\"data\":1}\0").unwrap();
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let took = since(t);
        wait_clients(ctl, 3);
        let t = Instant::now();
        while d.fds() > fds {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "the daemon holds {} descriptors, {fds} before",
                d.fds()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let grew = d.rss().saturating_sub(rss);
        eprintln!(
            "churn: 10000 connections in {took}; daemon RSS +{} KiB",
            grew >> 10
        );
        assert!(grew < 16 << 20, "RSS grew by {grew} bytes");
    });
}
