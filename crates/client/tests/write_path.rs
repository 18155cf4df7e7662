//! The output path through a real daemon and real sockets: emits written
//! by the emitting task itself, by the writer task when the socket is
//! full, and by several emitters at once keep their order; a connection
//! that breaks while a write is cut mid-frame is reported by `flush` and
//! the next connection starts on a whole frame; after the writer task
//! waited for room, a later emit is written at once.

mod common;
use common::wait_state;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netcluster::{Client, ConnectionState, EmitError, FlushError};
use netcluster_testkit::TestDaemon;

/// A subscriber that stops reading blocks the publisher (instead of being
/// dropped): the publisher's socket then fills and its writes would block.
const BLOCKING: &str = r#"{
  "queuebytes": "64KiB",
  "channels": { "A": { "slowconsumer": "block", "blockms": 600000 } }
}"#;

async fn client(d: &TestDaemon) -> Client {
    Client::builder("A")
        .socket_dir(d.socket_dir())
        .echo(false)
        .connect()
        .await
        .expect("connect")
}

fn payload(tag: u8, i: u32, size: usize) -> Vec<u8> {
    let mut p = vec![tag; size];
    p[1..5].copy_from_slice(&i.to_le_bytes());
    p
}

fn index(p: &[u8]) -> (u8, u32) {
    (p[0], u32::from_le_bytes([p[1], p[2], p[3], p[4]]))
}

/// Emits `n` payloads of `size` bytes tagged `tag` from a publisher with a
/// small buffer while its subscriber does not read for a while, so that
/// the daemon stops reading the publisher and its socket fills (MBs
/// emitted against a few hundred KB of socket and queue room); then reads
/// them all, checking size, order and content, and waits for the
/// publisher's `flush`. Returns the publisher, the subscriber and its
/// subscription.
async fn burst_through_a_full_socket(
    d: &TestDaemon,
    tag: u8,
    n: u32,
    size: usize,
) -> (Client, Client, netcluster::Subscription) {
    let rx = client(d).await;
    let mut sub = rx.subscribe("n").await.unwrap();
    // A small buffer: the emit loop reaches it and waits for the writer.
    let tx = Client::builder("A")
        .socket_dir(d.socket_dir())
        .echo(false)
        .max_pending(256 * 1024)
        .connect()
        .await
        .unwrap();
    let emitter = tokio::spawn({
        let tx = tx.clone();
        async move {
            for i in 0..n {
                tx.emit_bytes("n", payload(tag, i, size)).await.unwrap();
            }
            tx.flush().await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    for want in 0..n {
        let m = tokio::time::timeout(Duration::from_secs(30), sub.recv())
            .await
            .unwrap_or_else(|_| panic!("message {want} never came"))
            .expect("connection open");
        assert_eq!(m.payload().len(), size, "message {want} has the wrong size");
        assert_eq!(index(m.payload()), (tag, want), "out of order");
        assert!(
            m.payload()[5..].iter().all(|&b| b == tag),
            "message {want} corrupted"
        );
    }
    emitter.await.unwrap().expect("flush after the burst");
    (tx, rx, sub)
}

#[tokio::test]
async fn emits_that_find_the_socket_full_arrive_whole_and_in_order() {
    let d = TestDaemon::start(BLOCKING);
    // 1500 × 8 KiB: 12 MB.
    let (tx, _rx, _sub) = burst_through_a_full_socket(&d, 7, 1500, 8 * 1024).await;
    assert_eq!(tx.state(), ConnectionState::Connected);
}

/// While the writer task waits for room in a full socket, emits leave
/// the writing to it; once it has written everything, that wait must end:
/// a later emit, with nothing left for the daemon to read (so no
/// "writable" event will come), is written at once and `flush` returns.
#[tokio::test]
async fn an_emit_after_a_full_socket_drained_is_written_at_once() {
    let d = TestDaemon::start(BLOCKING);
    let (tx, _rx, mut sub) = burst_through_a_full_socket(&d, 3, 400, 8 * 1024).await;
    // Everything was written and read: the daemon has nothing left.
    for round in 0..3u32 {
        tx.emit_bytes("n", payload(4, round, 100)).await.unwrap();
        tokio::time::timeout(Duration::from_secs(20), tx.flush())
            .await
            .unwrap_or_else(|_| panic!("flush {round} after the drain never returned"))
            .unwrap();
        let m = tokio::time::timeout(Duration::from_secs(20), sub.recv())
            .await
            .unwrap_or_else(|_| panic!("message {round} after the drain never came"))
            .expect("connection open");
        assert_eq!(index(m.payload()), (4, round));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn emitters_on_several_threads_keep_each_their_order() {
    const EMITTERS: u8 = 4;
    const N: u32 = 4000;
    let d = TestDaemon::start(r#"{ "channels": { "A": {} } }"#);
    let rx = client(&d).await;
    let mut sub = rx.subscribe("n").await.unwrap();
    let tx = client(&d).await;
    let mut tasks = Vec::new();
    for e in 0..EMITTERS {
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..N {
                // Sizes vary so that writes end at random points in frames.
                let size = 5 + (i as usize * 37 + e as usize * 101) % 3000;
                tx.emit_bytes("n", payload(e, i, size)).await.unwrap();
                if i % 500 == 499 {
                    tx.flush().await.unwrap();
                }
                if i % 97 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    let mut next = [0u32; EMITTERS as usize];
    for _ in 0..EMITTERS as u32 * N {
        let m = tokio::time::timeout(Duration::from_secs(30), sub.recv())
            .await
            .unwrap_or_else(|_| panic!("stalled at {next:?}"))
            .expect("connection open");
        let (e, i) = index(m.payload());
        assert_eq!(i, next[e as usize], "emitter {e} out of order");
        next[e as usize] += 1;
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(next, [N; EMITTERS as usize]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_break_while_a_write_is_cut_is_reported_and_the_next_connection_starts_clean() {
    const SIZE: usize = 100 * 1024 + 13;
    let mut d = TestDaemon::start(BLOCKING);
    // A subscriber that never reads (and does not come back after the
    // restart): it makes the daemon stop reading the publisher.
    let rx = Client::builder("A")
        .socket_dir(d.socket_dir())
        .subscription_capacity(1)
        .reconnect(false)
        .connect()
        .await
        .unwrap();
    let _stuck = rx.subscribe("n").await.unwrap();
    let tx = Client::builder("A")
        .socket_dir(d.socket_dir())
        .echo(false)
        .max_pending(1024 * 1024)
        .connect()
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let emitter = tokio::spawn({
        let (tx, stop, sent) = (tx.clone(), stop.clone(), sent.clone());
        async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                // 100 KiB frames: the socket fills at some point inside one.
                match tx.emit_bytes("n", payload(1, i, SIZE)).await {
                    Ok(()) => {
                        sent.fetch_add(1, Ordering::Relaxed);
                        i += 1;
                    }
                    // While reconnecting, the offline queue may be full.
                    Err(EmitError::Disconnected(_)) => {
                        tokio::time::sleep(Duration::from_millis(5)).await
                    }
                    Err(e) => panic!("emit {i}: {e}"),
                }
            }
        }
    });
    // Wait until the emitter is stuck: socket and buffer full.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = u64::MAX;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = sent.load(Ordering::Relaxed);
        if now == last && now > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the emitter never blocked");
        last = now;
    }
    d = tokio::task::spawn_blocking(move || {
        d.restart();
        d
    })
    .await
    .unwrap();
    wait_state(&tx, ConnectionState::Connected).await;
    stop.store(true, Ordering::Relaxed);
    tokio::time::timeout(Duration::from_secs(30), emitter)
        .await
        .expect("the emitter ends once its buffer is sent")
        .unwrap();
    let emitted = sent.load(Ordering::Relaxed);
    match tx.flush().await {
        Err(FlushError::Unconfirmed { count, .. }) => assert_eq!(count, emitted),
        other => panic!("a flush over the break must be unconfirmed, got {other:?}"),
    }
    // The new connection carried the rest of the buffer from a frame
    // boundary: the daemon found no garbage and the next window is clean.
    let rx2 = client(&d).await;
    let mut sub2 = rx2.subscribe("after").await.unwrap();
    tx.emit_bytes("after", b"x").await.unwrap();
    tx.flush()
        .await
        .expect("a window without a break is confirmed");
    let m = tokio::time::timeout(Duration::from_secs(10), sub2.recv())
        .await
        .expect("the message after the break arrives")
        .unwrap();
    assert_eq!(m.payload(), b"x");
    assert_eq!(tx.state(), ConnectionState::Connected);
    drop(rx);
}
