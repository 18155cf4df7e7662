//! The frame of the slow-consumer tests: the daemon's config per policy,
//! the numbered 64 KiB messages, normal listeners (the client library,
//! checking order), clients that stop reading (native and seed format), the
//! publisher, the watchers that see the daemon close a stalled client, and
//! the bound on the daemon's memory growth.
#![allow(dead_code)]

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use netcluster_proto::frame::ErrorCode;
use serde_json::{json, Value};

use super::{since, Daemon, Got, Raw};

/// `queuebytes` in these tests.
pub const QUEUE: u64 = 1 << 20;
/// Payload size: large enough that the daemon shares payloads between
/// recipients instead of copying them, as it does for big messages.
pub const PAYLOAD: usize = 64 * 1024;
/// 1600 × 64 KiB = 100 MiB (104.9 MB) from the publisher.
pub const MESSAGES: u64 = 1600;
/// How far (in messages) the publisher may run ahead of the slowest normal
/// listener under `drop` and `disconnect`. 8 × 64 KiB = 512 KiB is below
/// `queuebytes`, so a listener that keeps this pace is never "slow": the
/// test then checks that the policy only ever hits the clients that stop.
pub const WINDOW: u64 = 8;

/// The tests here each push 100 MB through one daemon; run them one at a
/// time so they do not starve each other on a small machine.
pub static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A config with `queuebytes` = [`QUEUE`] and channel `S` under `policy`
/// (`blockms` left at its default of 1000).
pub fn config(policy: &str) -> String {
    format!(
        r#"{{
  "queuebytes": "1MiB",
  "maxmessage": "128KiB",
  "channels": {{ "S": {{ "slowconsumer": "{policy}" }} }}
}}"#
    )
}

/// Message `i`: a JSON string (so legacy clients get it as is) of exactly
/// `PAYLOAD` bytes that starts with the index.
pub fn payload(i: u64) -> Vec<u8> {
    let mut p = format!("\"{i:08}").into_bytes();
    p.resize(PAYLOAD - 1, b'x');
    p.push(b'"');
    p
}

pub fn index_of(p: &[u8]) -> u64 {
    assert_eq!(p.len(), PAYLOAD, "payload size");
    std::str::from_utf8(&p[1..9]).unwrap().parse().unwrap()
}

/// The daemon's peak RSS may grow by at most this much while 100 MB pass.
///
/// What the daemon may hold, by design: per client a queue of at most
/// `queuebytes` plus the one message that crossed it (1 MiB + 64 KiB), for
/// the 5 clients of a test (2 slow, 2 listeners, the publisher) at most
/// 5.3 MiB; the shared read buffer (256 KiB) and the publisher's unread
/// rest; and large payloads shared between queues that keep their whole
/// read-buffer allocation (256 KiB for at most 4 payloads) alive, which at
/// most multiplies the queued bytes by 4: 4 × 5.3 ≈ 21 MiB. 32 MiB leaves
/// room for the allocator's slack; a daemon that buffered what a slow
/// client does not read would pass 100 MiB.
pub const RSS_GROWTH_BOUND: u64 = 32 << 20;

/// A normal listener: the client library, checking order and counting.
pub struct Listener {
    pub id: u64,
    pub progress: Arc<AtomicU64>,
    pub thread: JoinHandle<u64>,
}

impl Listener {
    pub fn join(self) -> u64 {
        self.thread.join().unwrap()
    }
}

/// Starts a listener for `count` messages that pauses for `pause` after
/// every `pause_every` messages (0: never) and buffers at most `capacity`
/// messages in the library.
pub fn listener(
    d: &Daemon,
    count: u64,
    capacity: usize,
    pause_every: u64,
    pause: Duration,
) -> Listener {
    let c = netcluster::blocking::Client::builder("S")
        .with(|b| {
            b.socket_dir(d.dir())
                .name("listener")
                .subscription_capacity(capacity)
        })
        .connect()
        .unwrap();
    let mut sub = c.subscribe("bulk").unwrap();
    let id = c.client_id();
    let progress = Arc::new(AtomicU64::new(0));
    let p = progress.clone();
    let thread = std::thread::spawn(move || {
        let _c = c;
        for want in 0..count {
            let m = sub
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|| panic!("listener: message {want} never came"));
            assert_eq!(index_of(m.payload()), want, "listener: order");
            p.store(want + 1, Ordering::Release);
            if pause_every > 0 && want % pause_every == pause_every - 1 {
                std::thread::sleep(pause);
            }
        }
        count
    });
    Listener {
        id,
        progress,
        thread,
    }
}

/// A native client that subscribes to everything and then stops reading.
pub fn stalled_native(d: &Daemon) -> Raw {
    let mut r = d.raw("S", "stalled-native");
    r.subscribe(&["*"]);
    r
}

/// A seed-format client that sends nothing (so it only listens, and gets
/// every message of the channel) and does not read.
pub struct Legacy {
    pub s: UnixStream,
    pub buf: Vec<u8>,
    pub id: u64,
}

impl Legacy {
    pub fn connect(d: &Daemon, ctl: &mut Raw) -> Legacy {
        let before: Vec<u64> = legacy_ids(ctl);
        let s = UnixStream::connect(d.path("S")).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // A silent client is listed (as a seed client) as soon as it is
        // accepted.
        let mut id = None;
        let t = Instant::now();
        while id.is_none() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "legacy client never registered"
            );
            std::thread::sleep(Duration::from_millis(20));
            id = legacy_ids(ctl).into_iter().find(|i| !before.contains(i));
        }
        Legacy {
            s,
            buf: Vec::new(),
            id: id.unwrap(),
        }
    }

    /// The next packet; `None` once the daemon closed the connection.
    pub fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == 0) {
                let p: Vec<u8> = self.buf.drain(..=i).collect();
                return Some(serde_json::from_slice(&p[..i]).expect("legacy packet is JSON"));
            }
            let mut chunk = [0u8; 64 * 1024];
            match self.s.read(&mut chunk) {
                Ok(0) => {
                    assert!(self.buf.is_empty(), "legacy stream ended inside a packet");
                    return None;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => panic!("legacy read: {e}"),
            }
        }
    }
}

pub fn legacy_ids(ctl: &mut Raw) -> Vec<u64> {
    let v = ctl.request("nc-control-showchannel", &json!("S")).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .filter(|c| c["protocol"] == "legacy")
        .map(|c| c["id"].as_u64().unwrap())
        .collect()
}

/// Polls `showclient` (on its own control connection) until the client is
/// gone; returns the last answer that showed its queue at or over
/// `queuebytes`, if any.
pub fn watch_until_gone(control: &Path, id: u64) -> Option<Value> {
    let mut ctl = Raw::connect(control);
    ctl.hello("watcher");
    let mut full = None;
    loop {
        match ctl.show_client("S", id) {
            // A departed client's last record says why it went.
            Ok(v) if v.get("disconnected").is_some() => {
                assert!(
                    v["reason"].as_str().unwrap().contains("slow consumer"),
                    "{v}"
                );
                return full;
            }
            Ok(v) => {
                if v["queued_bytes"].as_u64().unwrap() >= QUEUE {
                    full = Some(v);
                }
            }
            Err(e) => panic!("showclient: {e}"),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What a stalled native client finds once it reads again after the daemon
/// closed it: a gapless prefix of the messages, then the error frame.
pub fn read_after_close_native(mut r: Raw) -> (u64, String) {
    let all = r.drain();
    let (last, msgs) = all.split_last().expect("something was queued");
    for (k, g) in msgs.iter().enumerate() {
        match g {
            Got::Deliver { event, payload, .. } => {
                assert_eq!(event, "bulk");
                assert_eq!(
                    index_of(payload),
                    k as u64,
                    "stalled client: gapless prefix"
                );
            }
            other => panic!("stalled client: unexpected {other:?}"),
        }
    }
    match last {
        Got::Error {
            code: ErrorCode::SlowConsumer,
            fatal: true,
            message,
            ..
        } => (msgs.len() as u64, message.clone()),
        other => panic!("stalled client: expected a slow-consumer error last, got {other:?}"),
    }
}

pub fn read_after_close_legacy(mut l: Legacy) -> (u64, String) {
    let mut n = 0;
    loop {
        let p = l.next().expect("an nc-error packet before the close");
        if p["event"] == "nc-error" {
            assert!(l.next().is_none(), "closed after the error");
            return (n, p["data"]["error"].as_str().unwrap().to_string());
        }
        assert_eq!(p["event"], "bulk");
        let data = p["data"].as_str().unwrap();
        assert_eq!(
            data[..8].parse::<u64>().unwrap(),
            n,
            "legacy: gapless prefix"
        );
        n += 1;
    }
}

/// Sends `count` messages; with `pace`, never more than `WINDOW` messages
/// ahead of the slowest listener.
pub fn publish(d: &Daemon, count: u64, listeners: &[&Listener], pace: bool) -> Publisher {
    let publisher = netcluster::blocking::Client::builder("S")
        .with(|b| b.socket_dir(d.dir()).name("publisher").echo(false))
        .connect()
        .unwrap();
    for i in 0..count {
        while pace
            && listeners
                .iter()
                .any(|l| l.progress.load(Ordering::Acquire) + WINDOW <= i)
        {
            std::thread::sleep(Duration::from_micros(200));
        }
        publisher.emit_bytes("bulk", payload(i)).unwrap();
    }
    publisher.flush().unwrap();
    publisher
}

pub type Publisher = netcluster::blocking::Client;

/// Checks and prints the daemon's peak RSS after `count` messages.
pub fn report(what: &str, d: &Daemon, count: u64, base: u64, t: Instant) -> u64 {
    let peak = d.peak_rss();
    eprintln!(
        "{what}: {} MB in {}; daemon VmHWM {:.1} MiB (at start {:.1} MiB)",
        count * PAYLOAD as u64 / 1_000_000,
        since(t),
        peak as f64 / (1 << 20) as f64,
        base as f64 / (1 << 20) as f64
    );
    assert!(
        peak <= base + RSS_GROWTH_BOUND,
        "daemon peak RSS {peak} B grew more than {RSS_GROWTH_BOUND} B over its start ({base} B)"
    );
    peak
}

/// The stalled clients of a test and the daemon's peak RSS before traffic.
pub struct Setup {
    pub d: Daemon,
    pub ctl: Raw,
    pub base: u64,
    pub native: Raw,
    pub legacy: Legacy,
    pub listeners: [Listener; 2],
}

pub fn setup(policy: &str) -> Setup {
    let d = Daemon::start(&config(policy));
    let mut ctl = d.control();
    let native = stalled_native(&d);
    let legacy = Legacy::connect(&d, &mut ctl);
    let listeners = [
        listener(&d, MESSAGES, 1024, 0, Duration::ZERO),
        listener(&d, MESSAGES, 1024, 0, Duration::ZERO),
    ];
    let base = d.peak_rss();
    Setup {
        d,
        ctl,
        base,
        native,
        legacy,
        listeners,
    }
}

/// What a watcher thread learned about a stalled client: the last
/// `showclient` answer with its queue over `queuebytes` (if it saw one),
/// how many messages the client read after it was closed, and the error.
pub type Watched = JoinHandle<(Option<Value>, (u64, String))>;

/// Under `block` and `disconnect`: threads that wait for the daemon to
/// close each stalled client, then read what it gets at once (as a client
/// that resumes would). Returns the watchers (native, legacy).
pub fn watch_stalled(native: Raw, legacy: Legacy, control: PathBuf) -> [Watched; 2] {
    let native = {
        let control = control.clone();
        std::thread::spawn(move || {
            let full = watch_until_gone(&control, native.client);
            (full, read_after_close_native(native))
        })
    };
    let legacy = std::thread::spawn(move || {
        let full = watch_until_gone(&control, legacy.id);
        (full, read_after_close_legacy(legacy))
    });
    [native, legacy]
}

pub fn assert_gone(ctl: &mut Raw, ids: &[u64]) {
    let v = ctl.request("nc-control-showchannel", &json!("S")).unwrap();
    for c in v.as_array().unwrap() {
        assert!(
            !ids.contains(&c["id"].as_u64().unwrap()),
            "{c} is still connected"
        );
    }
}
