//! The NATS bridge when its server goes away: a server killed and
//! restarted mid-stream, and an outage longer than the bridge's `buffer`
//! holds. Every message either arrives (in order, once) or lies in a
//! reported `nc-gap` with `"cause":"nats"`.
#![cfg(unix)]

mod common;

use std::time::{Duration, Instant};

use common::nats::{config, status, wait_bridged, warm_up, NatsServer};
use common::{Daemon, Got, Raw};
use serde_json::Value;

#[test]
fn nats_server_restart_loses_nothing_silently() {
    let Some(mut nats) = NatsServer::start() else {
        return;
    };
    let d1 = Daemon::start(&config(&nats.url(), ""));
    let d2 = Daemon::start(&config(&nats.url(), ""));
    wait_bridged(&d1, 1);
    wait_bridged(&d2, 1);
    let mut l2 = d2.raw("A", "l2");
    l2.subscribe(&["e", "warm", "nc-gap"]);
    let mut p1 = d1.raw("A", "p1");
    warm_up(&mut p1, &mut l2);
    let before = status(&d1)["nats"]["reconnects"].as_u64().unwrap();

    const N: u64 = 600;
    let publisher = std::thread::spawn(move || {
        for i in 0..N {
            p1.publish("e", i.to_string().as_bytes());
            std::thread::sleep(Duration::from_millis(5));
        }
        p1.ping();
        p1
    });
    std::thread::sleep(Duration::from_millis(800));
    nats.kill();
    std::thread::sleep(Duration::from_millis(500));
    nats.restart();
    let mut p1 = publisher.join().unwrap();
    netcluster_testkit::wait_until(30, "both bridges to reconnect", || {
        let (a, b) = (status(&d1), status(&d2));
        a["nats"]["state"] == "connected" && b["nats"]["state"] == "connected"
    });
    assert!(status(&d1)["nats"]["reconnects"].as_u64().unwrap() > before);
    let (delivered, gaps) = collect_until_marker(&mut p1, &mut l2);
    let missing = check_accounted(&delivered, &gaps, N);
    let got = N - missing;
    eprintln!(
        "restart: {} of {N} delivered, {missing} reported lost in {} gaps; d1 {}",
        got,
        gaps.len(),
        status(&d1)["nats"]
    );
}

/// (origin sequence number, index) of a delivery, or (first, last) of a gap.
type Pair = (u64, u64);

/// After a reconnect: publishes markers until one arrives, so the receiver
/// has seen a sequence number after any lost range; returns the "e"
/// deliveries as (origin seq, index) and the gaps reported.
fn collect_until_marker(p1: &mut Raw, l2: &mut Raw) -> (Vec<Pair>, Vec<Pair>) {
    let mut delivered = Vec::new();
    let mut gaps: Vec<(u64, u64)> = Vec::new();
    l2.s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = 0;
    loop {
        assert!(Instant::now() < deadline, "no marker after the restart");
        p1.publish("warm", b"marker");
        loop {
            match l2.try_next() {
                Ok(Some(Got::Deliver {
                    event,
                    payload,
                    seq,
                    ..
                })) => match event.as_str() {
                    "e" => {
                        let i: u64 = String::from_utf8_lossy(&payload).parse().unwrap();
                        last = seq;
                        delivered.push((seq, i));
                    }
                    "nc-gap" => {
                        let v: Value = serde_json::from_slice(&payload).unwrap();
                        assert_eq!(v["cause"], "nats", "{v}");
                        gaps.push((v["first"].as_u64().unwrap(), v["last"].as_u64().unwrap()));
                    }
                    "warm" if seq > last && !delivered.is_empty() => return (delivered, gaps),
                    // A marker after a lost tail of "e": the gap before it
                    // has been reported (gaps come before the message).
                    "warm" if !gaps.is_empty() => return (delivered, gaps),
                    _ => {}
                },
                Ok(Some(_)) => {}
                Ok(None) => panic!("daemon closed"),
                Err(_) => break,
            }
        }
    }
}

/// Every "e" delivered is in order and once; every "e" index below `n`
/// not delivered lies in a reported gap. `base_seq` is "e" 0's sequence
/// number (the publisher's first "e" came right after its warm-ups).
/// Returns how many were reported lost.
fn check_accounted(delivered: &[(u64, u64)], gaps: &[(u64, u64)], n: u64) -> u64 {
    assert!(
        delivered
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1),
        "order"
    );
    assert!(!delivered.is_empty(), "nothing delivered; gaps {gaps:?}");
    let base = delivered[0].0 - delivered[0].1;
    let got: std::collections::HashSet<u64> = delivered.iter().map(|d| d.1).collect();
    let mut missing = 0;
    for i in 0..n {
        if !got.contains(&i) {
            let seq = base + i;
            assert!(
                gaps.iter().any(|&(a, b)| a <= seq && seq <= b),
                "e {i} (seq {seq}) neither delivered nor reported; gaps {gaps:?}"
            );
            missing += 1;
        }
    }
    missing
}

#[test]
fn outage_past_the_buffer_drops_counts_and_reports_gaps() {
    let Some(mut nats) = NatsServer::start() else {
        return;
    };
    let small = |url: &str| {
        format!(
            r#"{{"nats": {{"servers": ["{url}"], "buffer": "16KiB"}},
                "channels": {{"A": {{"propagatetonats": true}}}}}}"#
        )
    };
    let d1 = Daemon::start(&small(&nats.url()));
    let d2 = Daemon::start(&small(&nats.url()));
    wait_bridged(&d1, 1);
    wait_bridged(&d2, 1);
    let mut l2 = d2.raw("A", "l2");
    l2.subscribe(&["e", "warm", "nc-gap"]);
    let mut p1 = d1.raw("A", "p1");
    warm_up(&mut p1, &mut l2);
    // "e" 0 goes through before the outage, so the base is known.
    p1.publish("e", b"0");
    let e0 = match l2.next() {
        Some(Got::Deliver { event, seq, .. }) if event == "e" => seq,
        other => panic!("{other:?}"),
    };
    nats.kill();
    netcluster_testkit::wait_until(30, "the bridge to notice the outage", || {
        status(&d1)["nats"]["state"] != "connected"
    });
    // More than async-nats's own queue (4096 commands) plus 16 KiB.
    const N: u64 = 9000;
    for i in 1..N {
        p1.publish("e", i.to_string().as_bytes());
    }
    p1.ping();
    netcluster_testkit::wait_until(30, "messages past the buffer to be dropped", || {
        status(&d1)["nats"]["dropped"].as_u64() > Some(0)
    });
    nats.restart();
    netcluster_testkit::wait_until(30, "both bridges to reconnect", || {
        let (a, b) = (status(&d1), status(&d2));
        a["nats"]["state"] == "connected" && b["nats"]["state"] == "connected"
    });
    let (mut delivered, gaps) = collect_until_marker(&mut p1, &mut l2);
    // "e" 0's own sequence number is the base (when every "e" after it
    // was lost, e.g. published on reconnecting before the receiver had
    // subscribed again, the gap alone accounts for them).
    delivered.insert(0, (e0, 0));
    let missing = check_accounted(&delivered, &gaps, N);
    let s = status(&d1);
    assert!(missing > 0, "nothing was lost? {s}");
    assert!(!gaps.is_empty());
    eprintln!(
        "outage: {} of {N} delivered, {missing} reported lost in {} gaps; d1 {}",
        N - missing,
        gaps.len(),
        s["nats"]
    );
}
