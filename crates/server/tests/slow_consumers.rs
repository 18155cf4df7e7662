//! Slow consumers through the `ncserver` binary: for each `slowconsumer`
//! policy, clients that stop reading while more than 100 MB pass must not
//! cost the other listeners a message, must not grow the daemon's memory
//! past what the config allows, and must be told what happened to them.
#![cfg(unix)]

mod common;

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{bounded, since, Daemon, Got, Raw};
use netcluster_proto::frame::ErrorCode;
use serde_json::{json, Value};

/// `queuebytes` in these tests.
const QUEUE: u64 = 1 << 20;
/// Payload size: large enough that the daemon shares payloads between
/// recipients instead of copying them, as it does for big messages.
const PAYLOAD: usize = 64 * 1024;
/// 1600 × 64 KiB = 100 MiB (104.9 MB) from the publisher.
const MESSAGES: u64 = 1600;
/// How far (in messages) the publisher may run ahead of the slowest normal
/// listener under `drop` and `disconnect`. 8 × 64 KiB = 512 KiB is below
/// `queuebytes`, so a listener that keeps this pace is never "slow": the
/// test then checks that the policy only ever hits the clients that stop.
const WINDOW: u64 = 8;

/// The tests here each push 100 MB through one daemon; run them one at a
/// time so they do not starve each other on a small machine.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A config with `queuebytes` = [`QUEUE`] and channel `S` under `policy`
/// (`blockms` left at its default of 1000).
fn config(policy: &str) -> String {
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
fn payload(i: u64) -> Vec<u8> {
    let mut p = format!("\"{i:08}").into_bytes();
    p.resize(PAYLOAD - 1, b'x');
    p.push(b'"');
    p
}

fn index_of(p: &[u8]) -> u64 {
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
const RSS_GROWTH_BOUND: u64 = 32 << 20;

/// A normal listener: the client library, checking order and counting.
struct Listener {
    id: u64,
    progress: Arc<AtomicU64>,
    thread: JoinHandle<u64>,
}

impl Listener {
    fn join(self) -> u64 {
        self.thread.join().unwrap()
    }
}

/// Starts a listener for `count` messages that pauses for `pause` after
/// every `pause_every` messages (0: never) and buffers at most `capacity`
/// messages in the library.
fn listener(
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
fn stalled_native(d: &Daemon) -> Raw {
    let mut r = d.raw("S", "stalled-native");
    r.subscribe(&["*"]);
    r
}

/// A seed-format client that sends nothing (so it only listens, and gets
/// every message of the channel) and does not read.
struct Legacy {
    s: UnixStream,
    buf: Vec<u8>,
    id: u64,
}

impl Legacy {
    fn connect(d: &Daemon, ctl: &mut Raw) -> Legacy {
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
    fn next(&mut self) -> Option<Value> {
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

fn legacy_ids(ctl: &mut Raw) -> Vec<u64> {
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
fn watch_until_gone(control: &Path, id: u64) -> Option<Value> {
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
fn read_after_close_native(mut r: Raw) -> (u64, String) {
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

fn read_after_close_legacy(mut l: Legacy) -> (u64, String) {
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
fn publish(d: &Daemon, count: u64, listeners: &[&Listener], pace: bool) -> Publisher {
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

type Publisher = netcluster::blocking::Client;

/// Checks and prints the daemon's peak RSS after `count` messages.
fn report(what: &str, d: &Daemon, count: u64, base: u64, t: Instant) -> u64 {
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
struct Setup {
    d: Daemon,
    ctl: Raw,
    base: u64,
    native: Raw,
    legacy: Legacy,
    listeners: [Listener; 2],
}

fn setup(policy: &str) -> Setup {
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
type Watched = JoinHandle<(Option<Value>, (u64, String))>;

/// Under `block` and `disconnect`: threads that wait for the daemon to
/// close each stalled client, then read what it gets at once (as a client
/// that resumes would). Returns the watchers (native, legacy).
fn watch_stalled(native: Raw, legacy: Legacy, control: PathBuf) -> [Watched; 2] {
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

fn assert_gone(ctl: &mut Raw, ids: &[u64]) {
    let v = ctl.request("nc-control-showchannel", &json!("S")).unwrap();
    for c in v.as_array().unwrap() {
        assert!(
            !ids.contains(&c["id"].as_u64().unwrap()),
            "{c} is still connected"
        );
    }
}

#[test]
fn disconnect_closes_stalled_clients_at_the_limit_and_others_get_everything() {
    let _g = serial();
    bounded(120, "slowconsumer disconnect", || {
        let t = Instant::now();
        let Setup {
            mut d,
            mut ctl,
            base,
            native,
            legacy,
            listeners: [l1, l2],
        } = setup("disconnect");
        let ids = [native.client, legacy.id];
        let [native, legacy] = watch_stalled(native, legacy, d.path("control"));
        let _p = publish(&d, MESSAGES, &[&l1, &l2], true);
        assert_eq!(l1.join(), MESSAGES);
        assert_eq!(l2.join(), MESSAGES);
        for (_, (n, why)) in [native.join().unwrap(), legacy.join().unwrap()] {
            assert_eq!(
                why, "slow consumer: queue reached queuebytes (1048576 bytes)",
                "the error names the limit"
            );
            // It got what fit in its queue (and the socket buffers) first.
            assert!(n * PAYLOAD as u64 >= QUEUE && n < MESSAGES, "{n} messages");
        }
        assert_gone(&mut ctl, &ids);
        report("slowconsumer disconnect", &d, MESSAGES, base, t);
        d.assert_alive();
    });
}

#[test]
fn block_waits_then_closes_stalled_clients_after_blockms_and_others_get_everything() {
    let _g = serial();
    bounded(120, "slowconsumer block", || {
        let t = Instant::now();
        let Setup {
            mut d,
            mut ctl,
            base,
            native,
            legacy,
            listeners: [l1, l2],
        } = setup("block");
        let ids = [native.client, legacy.id];
        let [native, legacy] = watch_stalled(native, legacy, d.path("control"));
        // Not paced: under block the daemon holds the publisher back.
        let _p = publish(&d, MESSAGES, &[], false);
        assert_eq!(l1.join(), MESSAGES);
        assert_eq!(l2.join(), MESSAGES);
        for (full, (n, why)) in [native.join().unwrap(), legacy.join().unwrap()] {
            assert_eq!(
                why, "slow consumer: queue stayed above queuebytes (1048576 bytes) for 1000 ms",
                "the error names the limit"
            );
            assert!(n * PAYLOAD as u64 >= QUEUE && n < MESSAGES, "{n} messages");
            // While the publisher waited, showclient showed the full queue
            // and the wait. A queue passes the limit by the message that
            // crossed it, and by one more when the publisher waited for the
            // other stalled client first.
            let full = full.expect("showclient showed the queue over queuebytes");
            let q = full["queued_bytes"].as_u64().unwrap();
            assert!((QUEUE..QUEUE + 3 * PAYLOAD as u64).contains(&q), "{full}");
            assert!(full["blocked"].as_u64().unwrap() >= 1, "{full}");
            assert_eq!(full["dropped"], 0, "{full}");
        }
        assert_gone(&mut ctl, &ids);
        report("slowconsumer block", &d, MESSAGES, base, t);
        d.assert_alive();
    });
}

#[test]
fn drop_counts_what_stalled_clients_miss_and_tells_them_with_one_gap_event() {
    let _g = serial();
    bounded(120, "slowconsumer drop", || {
        let t = Instant::now();
        let Setup {
            mut d,
            mut ctl,
            base,
            mut native,
            mut legacy,
            listeners: [l1, l2],
        } = setup("drop");
        let p = publish(&d, MESSAGES, &[&l1, &l2], true);
        assert_eq!(l1.join(), MESSAGES);
        assert_eq!(l2.join(), MESSAGES);
        report("slowconsumer drop", &d, MESSAGES, base, t);

        // showclient: a full queue and the drops, for both stalled clients.
        // (Once a client misses messages it gets none until its queue is
        // down to half, so a queue that shrank a little after the first
        // drop — the legacy client's, held while it was still silent and
        // written when it turned out to be a seed client — stays there.)
        let mut dropped = Vec::new();
        for id in [native.client, legacy.id] {
            let v = ctl.show_client("S", id).unwrap();
            let q = v["queued_bytes"].as_u64().unwrap();
            assert!((QUEUE / 2..QUEUE + 2 * PAYLOAD as u64).contains(&q), "{v}");
            let n = v["dropped"].as_u64().unwrap();
            assert!(n > 0 && n < MESSAGES, "{v}");
            assert_eq!(v["blocked"], 0, "{v}");
            dropped.push(n);
        }

        // Reading again, each gets a gapless prefix, then one nc-gap with
        // the count of the rest: every message is accounted for.
        let mut k = 0;
        let gap = loop {
            let next = native
                .try_next()
                .unwrap_or_else(|e| panic!("native: after {k} messages, no nc-gap event: {e}"));
            match next.expect("native: more frames") {
                Got::Deliver { event, payload, .. } if event == "bulk" => {
                    assert_eq!(index_of(&payload), k, "native: gapless prefix");
                    k += 1;
                }
                Got::Deliver {
                    event,
                    payload,
                    client: 0,
                    ..
                } if event == "nc-gap" => {
                    break serde_json::from_slice::<Value>(&payload).unwrap();
                }
                other => panic!("native: unexpected {other:?}"),
            }
        };
        assert_eq!(
            gap,
            json!({"cause": "slowconsumer", "dropped": MESSAGES - k, "queuebytes": QUEUE})
        );
        assert_eq!(dropped[0], MESSAGES - k);

        let mut k = 0;
        let gap = loop {
            let p = legacy.next().expect("legacy: more packets");
            match p["event"].as_str().unwrap() {
                "bulk" => {
                    let data = p["data"].as_str().unwrap();
                    assert_eq!(
                        data[..8].parse::<u64>().unwrap(),
                        k,
                        "legacy: gapless prefix"
                    );
                    k += 1;
                }
                "nc-gap" => break p,
                other => panic!("legacy: unexpected event {other}"),
            }
        };
        assert_eq!(gap["emmiteruuid"], "ncserver");
        assert_eq!(
            gap["data"],
            json!({"cause": "slowconsumer", "dropped": MESSAGES - k, "queuebytes": QUEUE})
        );
        assert_eq!(dropped[1], MESSAGES - k);

        // Caught up: the next message arrives, and there is only one gap event.
        p.emit("after", &1).unwrap();
        p.flush().unwrap();
        match native.next() {
            Some(Got::Deliver { event, .. }) => assert_eq!(event, "after"),
            other => panic!("native: expected the next message, got {other:?}"),
        }
        assert_eq!(native.ping(), vec![], "nothing else queued");
        assert_eq!(legacy.next().unwrap()["event"], "after");
        for id in [native.client, legacy.id] {
            let v = ctl.show_client("S", id).unwrap();
            assert_eq!(v["queued_bytes"], 0, "{v}");
        }
        d.assert_alive();
    });
}

#[test]
fn a_listener_a_little_slower_than_the_publisher_loses_nothing_under_block() {
    let _g = serial();
    bounded(120, "slightly slower listener", || {
        // 512 × 64 KiB = 32 MiB.
        const COUNT: u64 = 512;
        let t = Instant::now();
        let mut d = Daemon::start(r#"{ "queuebytes": "1MiB", "channels": { "S": {} } }"#);
        let mut ctl = d.control();
        // Buffers only 16 messages in the library, so its pace shows at the
        // daemon, and sleeps 40 ms per 16 messages (1 MiB): at most ~25 MB/s,
        // slower than the publisher even on a loaded machine, so the
        // publisher is held back now and then; far from blockms, so the
        // listener is never closed.
        let slow = listener(&d, COUNT, 16, 16, Duration::from_millis(40));
        let fast = listener(&d, COUNT, 1024, 0, Duration::ZERO);
        let slow_id = slow.id;
        let base = d.peak_rss();
        let _p = publish(&d, COUNT, &[], false);
        let v = ctl.show_client("S", slow_id).unwrap();
        assert_eq!(slow.join(), COUNT);
        assert_eq!(fast.join(), COUNT);
        assert_eq!(v["dropped"], 0, "{v}");
        assert!(
            v["blocked"].as_u64().unwrap() > 0,
            "the publisher never had to wait, so the listener was not slower: {v}"
        );
        report("slightly slower listener", &d, COUNT, base, t);
        d.assert_alive();
    });
}

#[test]
fn drop_puts_each_gap_right_before_the_first_message_after_the_hole() {
    let _g = serial();
    bounded(120, "slowconsumer drop, gap position", || {
        const COUNT: u64 = 600;
        let d = Daemon::start(&config("drop"));
        // A reader slower than the publisher that never stops: it misses
        // runs of messages and catches up again, many times.
        let mut slow = d.raw("S", "slow-reader");
        slow.subscribe(&["*"]);
        let reader = std::thread::spawn(move || {
            // (index of the message it follows, dropped) per nc-gap.
            let (mut next, mut gaps, mut got) = (0u64, Vec::new(), 0u64);
            while next < COUNT {
                match slow.next().expect("slow reader: more frames") {
                    Got::Deliver { event, payload, .. } if event == "bulk" => {
                        let i = index_of(&payload);
                        assert_eq!(
                            i, next,
                            "message {i} where {next} was due: a hole with no nc-gap right before it"
                        );
                        next = i + 1;
                        got += 1;
                    }
                    Got::Deliver {
                        event,
                        payload,
                        client: 0,
                        ..
                    } if event == "nc-gap" => {
                        let v: Value = serde_json::from_slice(&payload).unwrap();
                        assert_eq!(v["cause"], "slowconsumer", "{v}");
                        let n = v["dropped"].as_u64().unwrap();
                        assert!(n > 0, "{v}");
                        gaps.push((next, n));
                        // The messages it stands for: the next one due is
                        // the first after the hole.
                        next += n;
                    }
                    other => panic!("slow reader: unexpected {other:?}"),
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            assert_eq!(next, COUNT, "the gaps count more messages than were sent");
            (got, gaps)
        });
        let p = publish(&d, COUNT, &[], false);
        let (got, gaps) = reader.join().unwrap();
        let dropped: u64 = gaps.iter().map(|g| g.1).sum();
        eprintln!(
            "slow reader: {got} of {COUNT} messages, {} nc-gap events for {dropped} dropped, \
             each right before the first message after its hole",
            gaps.len()
        );
        assert!(!gaps.is_empty(), "the reader was never too slow");
        assert_eq!(got + dropped, COUNT);
        drop(p);
    });
}

#[test]
fn a_publisher_blocked_on_one_channel_holds_up_no_other_channel() {
    let _g = serial();
    bounded(120, "blocked publisher isolation", || {
        let d = Daemon::start(
            r#"{ "queuebytes": "1MiB", "channels": { "S": { "blockms": 60000 }, "T": {} } }"#,
        );
        let _stalled = stalled_native(&d);
        let connect = |ch: &str| {
            netcluster::blocking::Client::builder(ch)
                .with(|b| b.socket_dir(d.dir()).echo(false))
                .connect()
                .unwrap()
        };
        // S's publisher fills the stalled client's queue and then waits.
        let s_pub = connect("S");
        let filler = std::thread::spawn(move || {
            for i in 0..64 {
                // Fails only once the daemon is gone at the end.
                let _ = s_pub.emit_bytes("bulk", payload(i));
            }
        });
        let mut ctl = d.control();
        let t = Instant::now();
        loop {
            let v = ctl.request("nc-control-showchannel", &json!("S")).unwrap();
            let blocked: u64 = v
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["blocked"].as_u64().unwrap())
                .sum();
            if blocked > 0 {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "S's publisher never waited: {v}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Meanwhile T flows as usual.
        let t_rx = connect("T");
        let mut sub = t_rx.subscribe("n").unwrap();
        let t_tx = connect("T");
        for i in 0..1000u64 {
            t_tx.emit("n", &i).unwrap();
        }
        t_tx.flush().unwrap();
        for i in 0..1000u64 {
            let m = sub
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|| panic!("T's message {i} held up"));
            assert_eq!(m.json::<u64>().unwrap(), i);
        }
        // And S's publisher is still held by the stalled client (blockms
        // is a minute here), whose queue is full.
        let v = ctl.request("nc-control-showchannel", &json!("S")).unwrap();
        let full = v
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["queued_bytes"].as_u64().unwrap() >= QUEUE);
        assert!(full, "{v}");
        drop(filler);
    });
}
