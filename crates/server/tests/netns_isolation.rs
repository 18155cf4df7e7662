//! Isolation across hosts (network namespaces on a bridge): a slow local
//! client on one channel cannot stall the network path of its daemon, nor
//! the other channels. Needs root and iproute2; skipped with a message
//! otherwise, except under NETCLUSTER_REQUIRE_NETNS=1 (CI), where it fails.
#![cfg(target_os = "linux")]

mod common;

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::lan::*;
use common::{frames, Got, Raw};
use netcluster_testkit::netns::Lan;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_ncserver");
const KEY: &str = "5d1f0c2a9b8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a392817060504";
/// The slow reader's daemon queues at most this much for one client.
/// Small against what the slow reader is sent (about 5 MB on A), large
/// enough that B's listener, which reads as fast as it can, does not
/// overflow it while a loaded machine deschedules its thread (64 KiB,
/// a quarter of a second of B's traffic, did in CI).
const QUEUE: usize = 512 * 1024;

fn config(name: &str) -> String {
    format!(
        r#"{{ "connecttonet": true, "nodename": "{name}", "key": "{KEY}", "queuebytes": {QUEUE},
             "channels": {{ "A": {{ "propagatetonet": true, "blockms": 5000 }},
                           "B": {{ "propagatetonet": true }} }} }}"#
    )
}

/// `showpeers()` field of the peer called `name`.
fn peer<'a>(p: &'a Value, name: &str) -> &'a Value {
    p["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == name)
        .unwrap_or_else(|| panic!("no peer {name}: {p}"))
}

/// What the slow reader got: messages on A and its nc-gap events.
struct SlowRead {
    messages: u64,
    gaps: Vec<Value>,
    bytes: usize,
}

/// Reads up to 64 KiB once a second until told to stop: far slower than
/// what comes, yet never full for `blockms` (5 s here, so that a test
/// thread descheduled for a while on a loaded machine is not taken for a
/// stalled reader). A daemon that waited for it on the network path would
/// stall for up to a second at a time, longer than its peers wait for its
/// acknowledgements.
fn slow_reader(mut r: Raw, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<SlowRead> {
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        r.s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        while !stop.load(Ordering::Relaxed) {
            match r.s.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => all.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => panic!("slow reader: {e}"),
            }
            std::thread::sleep(Duration::from_millis(1000));
        }
        let mut out = SlowRead {
            messages: 0,
            gaps: Vec::new(),
            bytes: all.len(),
        };
        for g in frames(&all) {
            match g {
                Got::Deliver { event, payload, .. } if event == "nc-gap" => {
                    out.gaps.push(serde_json::from_slice(&payload).unwrap())
                }
                Got::Deliver { .. } => out.messages += 1,
                Got::Error { message, .. } => panic!("slow reader got an error: {message}"),
                _ => {}
            }
        }
        out
    })
}

#[test]
fn a_slow_reader_on_a_does_not_stall_channel_b_from_the_network() {
    let Some(mut lan) = Lan::new(2) else { return };
    lan.start_daemon(0, Path::new(BIN), &config("h0"));
    lan.start_daemon(1, Path::new(BIN), &config("h1"));
    rt().block_on(async {
        let dirs: Vec<&Path> = lan.hosts.iter().map(|h| h.dir()).collect();
        wait_peers(&dirs, 1).await;
        // Host 1: the slow reader on A, a local publisher on A (which it
        // may make wait), and B's listener.
        let mut slow = Raw::connect(&dirs[1].join("netcluster-A"));
        slow.hello("slow");
        slow.subscribe(&["*"]);
        let slow_id = slow.client;
        let stop = Arc::new(AtomicBool::new(false));
        let reader = slow_reader(slow, stop.clone());
        const N: u64 = 10_000;
        // B's listener reads as the messages come (one that did not would
        // miss messages from the network, by design), on its own thread so
        // that the publishers here do not hold it up.
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let b_dir = dirs[1].to_path_buf();
        let b_done = std::thread::spawn(move || {
            rt().block_on(async move {
                let rb = client(&b_dir, "B").await;
                let mut b = rb.subscribe("*").await.unwrap();
                let _ = ready_tx.send(rb.client_id());
                check_sequence(&mut b, N, "host 1, channel B").await
            })
        });
        let b_id = ready_rx.await.unwrap();
        let acks_before = peers(dirs[1]).await["totals"]["acks_out"].as_u64().unwrap();
        let local_a = client(dirs[1], "A").await;
        let pad = "a".repeat(1000);
        let local = {
            let pad = pad.clone();
            tokio::spawn(async move {
                for i in 0..200u64 {
                    local_a.emit("local", &(i, &pad)).await.unwrap();
                }
                local_a.flush().await.unwrap();
            })
        };
        // Host 0: 10 000 messages on B, and 1 KiB messages on A between
        // them, far more than the slow reader takes.
        let tx_a = client(dirs[0], "A").await;
        let tx_b = client(dirs[0], "B").await;
        for i in 0..N {
            tx_b.emit("n", &i).await.unwrap();
            if i % 2 == 0 {
                tx_a.emit("a", &(i, &pad)).await.unwrap();
            }
            // At most some 10 000 messages a second on B: a steady flow,
            // not one burst.
            if i % 100 == 99 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        tx_a.flush().await.unwrap();
        tx_b.flush().await.unwrap();
        // Everything on B, in order, and nothing else (no nc-gap).
        let checked = tokio::task::spawn_blocking(move || b_done.join().unwrap())
            .await
            .unwrap();
        let p1 = peers(dirs[1]).await;
        let mut ctl = Raw::connect(&dirs[1].join("netcluster-control"));
        ctl.hello("ctl");
        if let Err(e) = checked {
            let b = ctl.show_client("B", b_id);
            panic!("{e}\nB's listener: {b:?}\nshowpeers at host 1: {p1}");
        }
        let from0 = peer(&p1, "h0");
        assert_eq!(from0["gaps"], 0, "{p1}");
        assert_eq!(from0["lost"], 0, "{p1}");
        let acks_after = p1["totals"]["acks_out"].as_u64().unwrap();
        assert!(
            acks_after > acks_before,
            "host 1 stopped acknowledging: {p1}"
        );
        let p0 = peers(dirs[0]).await;
        assert_eq!(peer(&p0, "h1")["up"], true, "{p0}");
        // The slow reader was really too slow for the network's A traffic
        // (it missed some) and was not disconnected for it.
        let shown = ctl.show_client("A", slow_id).unwrap();
        assert!(shown.get("disconnected").is_none(), "{shown}");
        let dropped = shown["dropped"].as_u64().unwrap();
        assert!(dropped > 0, "the reader kept up: {shown}");
        tokio::time::timeout(Duration::from_secs(120), local)
            .await
            .expect("host 1's local publisher on A finished")
            .unwrap();
        stop.store(true, Ordering::Relaxed);
        let got = tokio::task::spawn_blocking(move || reader.join().unwrap())
            .await
            .unwrap();
        for g in &got.gaps {
            assert_eq!(g["cause"], "slowconsumer", "{g}");
            assert_eq!(g["queuebytes"], json!(QUEUE), "{g}");
        }
        eprintln!(
            "slow reader on A: {} messages ({} bytes) read, {dropped} dropped, {} nc-gap events; \
             host 1 acks_out {acks_before} -> {acks_after}; B: {N} of {N}",
            got.messages,
            got.bytes,
            got.gaps.len()
        );
    });
}
