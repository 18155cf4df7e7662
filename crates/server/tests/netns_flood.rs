//! A hostile neighbour without the key (network namespaces on a bridge):
//! a flood of fragments and held datagrams under 150 fake node ids keeps
//! the daemon's memory within its documented bound and the memory falls
//! back afterwards; a spoofed NAK makes the sender send at most
//! `NAK_ANSWER_MAX` datagrams, and many within the per-requester rate; a
//! fake receiver that ACKs without progressing does not stall a stream
//! beyond `flow_timeout`. The figures are printed (run with
//! `--nocapture`). Needs root and iproute2; skipped with a message
//! otherwise, except under NETCLUSTER_REQUIRE_NETNS=1 (CI), where it fails.
#![cfg(target_os = "linux")]

mod common;

use std::net::UdpSocket;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::flood::{mib, rss, Fake, RssSampler};
use common::lan::*;
use netcluster_proto::net::NAK_ANSWER_MAX;
use netcluster_testkit::netns::Lan;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ncserver");
const PORT: u16 = 4454;
/// What the README promises above idle under a flood, at the defaults.
const RSS_BOUND: u64 = 64 << 20;

fn config(name: &str, extra: &str) -> String {
    format!(
        r#"{{ "connecttonet": true, "nodename": "{name}", {extra}
             "channels": {{ "A": {{ "propagatetonet": true }} }} }}"#
    )
}

fn total(p: &Value, k: &str) -> u64 {
    p["totals"][k]
        .as_u64()
        .unwrap_or_else(|| panic!("{k} in {p}"))
}

fn node_id(p: &Value) -> u64 {
    u64::from_str_radix(p["node"].as_str().unwrap(), 16).unwrap()
}

#[test]
fn a_fragment_flood_from_fake_ids_keeps_memory_bounded_and_it_falls_back() {
    let Some(mut lan) = Lan::new(2) else { return };
    lan.start_daemon(0, Path::new(BIN), &config("h0", ""));
    let pid = lan.daemon_pid(0, 0);
    let target = (lan.hosts[0].ip, PORT);
    std::thread::sleep(Duration::from_millis(1500));
    let idle = rss(pid);
    let sampler = RssSampler::start(pid);
    // 150 fake ids, each announcing a 16 MiB message and sending 16
    // fragments of 60 000 bytes (900 MB announced, 144 MB sent), then
    // each holding 16 more datagrams behind a missing one.
    const IDS: u64 = 150;
    const LEN: usize = 60_000;
    let total_len: u64 = 16 << 20;
    let count = total_len.div_ceil(LEN as u64);
    let sent = lan.run_in(1, || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        let mut sent = 0u64;
        let mut send = |d: &[u8], n: u64| {
            s.send_to(d, target).unwrap();
            sent += d.len() as u64;
            // Give the daemon time to read, so the flood lands in its
            // memory rather than overflowing its socket buffer.
            if n % 8 == 0 {
                std::thread::sleep(Duration::from_micros(500));
            }
        };
        let mut n = 0;
        for index in 0..16u64 {
            for id in 0..IDS {
                let f = Fake::new(0xf100_0000 + id);
                let d = f.fragment(index + 1, index, count, total_len, index * LEN as u64, LEN);
                n += 1;
                send(&d, n);
            }
        }
        for seq in 3..19u64 {
            for id in 0..IDS {
                let f = Fake::new(0xf200_0000 + id);
                if seq == 3 {
                    n += 1;
                    send(&f.fragment(1, 0, count, total_len, 0, 100), n);
                }
                n += 1;
                send(&f.fragment(seq, 1, count, total_len, 0, LEN), n);
            }
        }
        sent
    });
    std::thread::sleep(Duration::from_millis(500));
    let during = rt().block_on(peers(lan.hosts[0].dir()));
    let peak = sampler.peak();
    // The flood stopped: partials expire (reassembly timeout, 5 s), the
    // fake peers time out (3.5 s) and their memory is freed.
    std::thread::sleep(Duration::from_secs(9));
    let after = rss(pid);
    let later = rt().block_on(peers(lan.hosts[0].dir()));
    eprintln!(
        "fragment flood: {:.1} MiB sent from {} fake ids; RSS idle {:.1} MiB, peak {:.1} MiB \
         (+{:.1}), after {:.1} MiB (+{:.1}); receive memory during {} bytes, evicted {}",
        mib(sent),
        2 * IDS,
        mib(idle),
        mib(peak),
        mib(peak.saturating_sub(idle)),
        mib(after),
        mib(after.saturating_sub(idle)),
        during["totals"]["receive_memory_bytes"],
        during["totals"]["evicted"],
    );
    assert!(
        total(&during, "datagrams_in") > 2 * IDS * 8,
        "the flood reached the daemon: {during}"
    );
    assert!(
        total(&during, "receive_memory_bytes") <= 32 << 20,
        "{during}"
    );
    assert!(total(&during, "evicted") > 0, "{during}");
    assert!(
        peak.saturating_sub(idle) <= RSS_BOUND,
        "RSS rose {:.1} MiB above idle under the flood",
        mib(peak - idle)
    );
    assert_eq!(total(&later, "receive_memory_bytes"), 0, "{later}");
    assert!(
        after.saturating_sub(idle) <= RSS_BOUND / 4,
        "RSS stayed {:.1} MiB above idle after the flood",
        mib(after.saturating_sub(idle))
    );
}

/// Host 0 sends `n` messages of about 1 kB to host 1, which receives them.
async fn stream(dirs: &[&Path], n: u64) {
    let rx = client(dirs[1], "A").await;
    let mut sub = rx.subscribe("n").await.unwrap();
    let tx = client(dirs[0], "A").await;
    let pad = "x".repeat(1000);
    for i in 0..n {
        tx.emit("n", &(i, &pad)).await.unwrap();
    }
    tx.flush().await.unwrap();
    for i in 0..n {
        let m = next(&mut sub, 30)
            .await
            .unwrap_or_else(|| panic!("message {i} of {n} missing"));
        assert_eq!(m.json::<(u64, String)>().unwrap().0, i);
    }
}

#[test]
fn a_spoofed_nak_makes_the_sender_send_a_few_datagrams_within_a_rate() {
    let Some(mut lan) = Lan::new(3) else { return };
    // A low rate, so that the limit shows within a short test.
    lan.start_daemon(
        0,
        Path::new(BIN),
        &config("h0", r#""retransmitrate": "64KiB","#),
    );
    lan.start_daemon(1, Path::new(BIN), &config("h1", ""));
    let rt = rt();
    let dirs: Vec<&Path> = lan.hosts.iter().map(|h| h.dir()).collect();
    let target = (lan.hosts[0].ip, PORT);
    let sender = rt.block_on(async {
        wait_peers(&dirs[..2], 1).await;
        stream(&dirs, 2000).await;
        node_id(&peers(dirs[0]).await)
    });
    let mut f = Fake::new(0xbad0_0001);
    let s = lan.run_in(2, || UdpSocket::bind("0.0.0.0:0").unwrap());
    s.send_to(&f.heartbeat(), target).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let before = rt.block_on(peers(dirs[0]));
    let nak = f.nak(sender, &[(1, 2000)]);
    s.send_to(&nak, target).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let after = rt.block_on(peers(dirs[0]));
    let d = |k: &str| total(&after, k) - total(&before, k);
    let (datagrams, bytes) = (d("retransmitted"), d("bytes_out"));
    let other = d("heartbeats_out") * 100 + d("acks_out") * 60;
    eprintln!(
        "spoofed NAK of {} bytes for 2000 datagrams: {datagrams} retransmitted, {bytes} bytes \
         sent in all (heartbeats and ACKs included), ratio {:.0}",
        nak.len(),
        bytes.saturating_sub(other) as f64 / nak.len() as f64
    );
    assert!(
        total(&before, "naks_in") < total(&after, "naks_in"),
        "{after}"
    );
    assert!(datagrams <= NAK_ANSWER_MAX as u64, "{after}");
    assert!(datagrams > 0, "{after}");
    assert!(bytes <= NAK_ANSWER_MAX as u64 * 1400 + other, "{after}");
    // Many NAKs from one requester: the rate holds (64 KiB/s after a burst
    // of 32 KiB; every datagram here is about 1.1 kB).
    let start = Instant::now();
    let mut naks = 0;
    for i in 0..400u64 {
        let q = 1 + 4 * i;
        let nak = f.nak(sender, &[(q, q + 3)]);
        s.send_to(&nak, target).unwrap();
        naks += nak.len() as u64;
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(100));
    let elapsed = start.elapsed();
    let last = rt.block_on(peers(dirs[0]));
    let resent = total(&last, "retransmitted") - total(&after, "retransmitted");
    let allowed = ((32 << 10) as f64 + (64 << 10) as f64 * elapsed.as_secs_f64()) / 1000.0;
    eprintln!(
        "400 NAKs ({naks} bytes) in {elapsed:?}: {resent} retransmitted (rate allows {allowed:.0}), \
         {} not sent for the limits",
        total(&last, "retransmits_limited")
    );
    assert!((resent as f64) <= allowed + 4.0, "{last}");
    assert!(total(&last, "retransmits_limited") > 0, "{last}");
}

#[test]
fn a_fake_receiver_acking_without_progress_does_not_stall_a_stream() {
    let Some(mut lan) = Lan::new(3) else { return };
    // A window of 64 KiB (46 datagrams), so that 2000 messages of 1 kB
    // need flow control all along.
    lan.start_daemon(
        0,
        Path::new(BIN),
        &config("h0", r#""retransmitbytes": "64KiB","#),
    );
    lan.start_daemon(1, Path::new(BIN), &config("h1", ""));
    let rt = rt();
    let dirs: Vec<&Path> = lan.hosts.iter().map(|h| h.dir()).collect();
    let target = (lan.hosts[0].ip, PORT);
    let sender = rt.block_on(async {
        wait_peers(&dirs[..2], 1).await;
        node_id(&peers(dirs[0]).await)
    });
    let stop = AtomicBool::new(false);
    let took = std::thread::scope(|scope| {
        scope.spawn(|| {
            lan.run_in(2, || {
                // Announces itself, then "progresses" by one datagram
                // every half second, as the stalling attacker did.
                let s = UdpSocket::bind("0.0.0.0:0").unwrap();
                let mut f = Fake::new(0xbad0_0002);
                let mut next = 1;
                while !stop.load(Ordering::Relaxed) {
                    s.send_to(&f.heartbeat(), target).unwrap();
                    s.send_to(&f.ack(sender, next), target).unwrap();
                    next += 1;
                    std::thread::sleep(Duration::from_millis(500));
                }
            })
        });
        // Stops the attacker however this thread leaves the scope.
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = Stop(&stop);
        std::thread::sleep(Duration::from_millis(700));
        let start = Instant::now();
        let r = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(120), stream(&dirs, 2000)).await
        });
        r.map(|_| start.elapsed())
    });
    let p = rt.block_on(peers(dirs[0]));
    let took = took.unwrap_or_else(|_| panic!("the stream stalled: {p}"));
    assert!(
        p["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["name"] == "fake" && x["up"] == true),
        "the fake receiver was up: {p}"
    );
    eprintln!(
        "2000 messages with a fake ACKer: {took:?}; flow waits {}",
        total(&p, "flow_waits")
    );
}
