//! The frame of the abuse tests: a daemon with small limits, a numbered
//! message stream that runs during each abuse and must lose nothing, and
//! the checks made after it (a normal emit/listen works, only the test's
//! clients remain).
#![allow(dead_code)]

use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use netcluster_proto::frame;
use serde_json::{json, Value};

use super::{bounded, since, Daemon, Raw};

/// `maxmessage` and `queuebytes` of the daemon under test: small, so the
/// limits are quick to reach.
pub const CONFIG: &str = r#"{
  "maxmessage": "64KiB",
  "queuebytes": "1MiB",
  "channels": { "A": {}, "B": {} }
}"#;
/// The frame limit the daemon applies: maxmessage + 1536 bytes.
pub const MAX_BODY: usize = 64 * 1024 + frame::FRAME_OVERHEAD;

/// A publisher and a listener on channel A that run during an abuse: the
/// listener (subscribed to everything) must see exactly the publisher's
/// numbered ticks, in order, and nothing else.
pub struct Background {
    stop: Arc<AtomicBool>,
    threads: Option<(JoinHandle<u64>, JoinHandle<u64>)>,
}

impl Background {
    pub fn start(d: &Daemon) -> Background {
        let dir = d.dir().to_path_buf();
        let listen = netcluster::blocking::Client::builder("A")
            .with(|b| b.socket_dir(&dir).name("background-listener"))
            .connect()
            .unwrap();
        let mut sub = listen.subscribe("*").unwrap();
        let received = Arc::new(AtomicU64::new(0));
        let listener = {
            let received = received.clone();
            std::thread::spawn(move || {
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
                            received.store(n, Ordering::Relaxed);
                        }
                        "end" => {
                            assert_eq!(m.json::<u64>().unwrap(), n, "background: count");
                            return n;
                        }
                        other => panic!("background: unexpected event {other:?}: {m:?}"),
                    }
                }
            })
        };
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
        // The stream flows before the abuse starts.
        let t = Instant::now();
        while received.load(Ordering::Relaxed) == 0 {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "background stream never started"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        Background {
            stop,
            threads: Some((publisher, listener)),
        }
    }

    /// Stops the stream and checks nothing was lost; returns its length.
    pub fn finish(mut self) -> u64 {
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
pub fn check_normal(d: &Daemon) {
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
pub fn wait_clients(ctl: &mut Raw, n: u64) {
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
pub fn run(
    what: &'static str,
    secs: u64,
    abuse: impl FnOnce(&mut Daemon, &mut Raw) + Send + 'static,
) {
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

pub fn connect(d: &Daemon, channel: &str) -> UnixStream {
    let s = UnixStream::connect(d.path(channel)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// A hello frame.
pub fn hello() -> BytesMut {
    let mut b = BytesMut::new();
    frame::encode_hello(&mut b, 1, "abuser");
    b
}
