//! Abuse through real sockets against the `ncserver` binary, by
//! connections: a thousand idle ones, clients killed with SIGKILL in the
//! middle of a frame, ten thousand opening and closing, and clients that
//! go idle after sending or receiving a big message. A message stream running alongside loses
//! nothing, a normal emit/listen works afterwards, and the daemon's
//! clients, descriptors and memory come back to where they were.
#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::abuse::{connect, hello, run, wait_clients};
use common::{bounded, since, Daemon, Raw};
use netcluster_proto::frame;

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

/// A client that sent a message bigger than one read keeps no buffer for
/// it once it is handled: 20 such clients, idle, would otherwise hold
/// 20 × 4 MiB.
#[test]
fn clients_idle_after_a_big_message_hold_no_read_memory() {
    bounded(60, "idle after a big message", || {
        let d = Daemon::start(r#"{ "maxmessage": "8MiB", "channels": { "A": {} } }"#);
        let mut clients: Vec<Raw> = (0..20).map(|i| d.raw("A", &format!("big-{i}"))).collect();
        let rss = d.rss();
        let big = vec![b'7'; 4 << 20];
        for c in &mut clients {
            // Nobody listens: once handled, nothing needs the bytes.
            c.publish("nobody", &big);
            assert_eq!(c.ping(), vec![]);
        }
        let grew = d.rss().saturating_sub(rss);
        eprintln!(
            "20 idle clients after a 4 MiB message each: daemon RSS +{} MiB",
            grew >> 20
        );
        assert!(grew < 40 << 20, "RSS grew by {} MiB", grew >> 20);
    });
}

/// A seed client that was sent a big message (copied whole into its
/// queue, as seed packets are) keeps no buffer for it once it is written.
#[test]
fn seed_clients_idle_after_a_big_message_hold_no_write_memory() {
    bounded(60, "seed clients idle after a big message", || {
        let d = Daemon::start(r#"{ "maxmessage": "8MiB", "channels": { "A": {} } }"#);
        let mut ctl = d.control();
        let mut seed: Vec<UnixStream> = (0..20).map(|_| connect(&d, "A")).collect();
        wait_clients(&mut ctl, 21);
        let rss = d.rss();
        let mut big = vec![b'"'];
        big.resize(4 << 20, b'7');
        big.push(b'"');
        let mut p = d.raw("A", "publisher");
        p.publish("big", &big);
        assert_eq!(p.ping(), vec![]);
        for s in &mut seed {
            let mut got = 0;
            let mut chunk = vec![0u8; 1 << 20];
            while got < big.len() + 60 {
                got += s.read(&mut chunk).unwrap();
            }
        }
        let grew = d.rss().saturating_sub(rss);
        eprintln!(
            "20 idle seed clients after a 4 MiB message each: daemon RSS +{} MiB",
            grew >> 20
        );
        assert!(grew < 40 << 20, "RSS grew by {} MiB", grew >> 20);
    });
}
