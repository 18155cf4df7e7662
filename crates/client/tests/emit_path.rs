//! The emit fast path (`emit_bytes` appending on its first poll, and the
//! blocking client's `emit_bytes` appending on the calling thread) through
//! a real daemon and real sockets, at its edges: it waits at
//! `max_pending` and resumes when the buffer frees, queues up to the
//! offline bound while reconnecting (counted by `flush`), fails once the
//! client is closed, and keeps order when some emits take the general
//! path.

mod common;
use common::wait_state;
use std::time::Duration;

use netcluster::{Client, ConnectionState, EmitError};
use netcluster_testkit::TestDaemon;

const CONFIG: &str = r#"{ "channels": { "A": {} } }"#;

/// A subscriber that stops reading blocks the publisher (instead of being
/// dropped): the publisher's socket then fills and its buffer too.
const BLOCKING: &str = r#"{
  "queuebytes": "64KiB",
  "channels": { "A": { "slowconsumer": "block", "blockms": 600000 } }
}"#;

fn payload(i: u32, size: usize) -> Vec<u8> {
    let mut p = vec![b'x'; size];
    p[..4].copy_from_slice(&i.to_le_bytes());
    p
}

fn index(p: &[u8]) -> u32 {
    u32::from_le_bytes([p[0], p[1], p[2], p[3]])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_bytes_waits_at_max_pending_and_resumes_in_order_when_the_buffer_frees() {
    const SIZE: usize = 1024;
    let d = TestDaemon::start(BLOCKING);
    let rx = Client::builder("A")
        .socket_dir(d.socket_dir())
        .subscription_capacity(16)
        .connect()
        .await
        .unwrap();
    // Subscribed, and not read yet: the daemon soon stops reading tx.
    let mut sub = rx.subscribe("n").await.unwrap();
    let tx = Client::builder("A")
        .socket_dir(d.socket_dir())
        .echo(false)
        .max_pending(16 * 1024)
        .connect()
        .await
        .unwrap();
    // An emit with room completes on its first poll, whatever the load;
    // one that must wait for room never completes while nobody reads. At
    // most 64 MB go out before the buffer must be full.
    let mut next = 0u32;
    let blocked = loop {
        assert!(next < 64 * 1024, "emits never waited for room");
        let emit = tx.emit_bytes("n", payload(next, SIZE));
        match tokio::time::timeout(Duration::from_millis(200), emit).await {
            Ok(r) => r.unwrap(),
            // Dropped while waiting: it appended nothing; sent again below.
            Err(_) => break next,
        }
        next += 1;
    };
    let total = blocked + 500;
    let emitter = tokio::spawn({
        let tx = tx.clone();
        async move {
            for i in blocked..total {
                tx.emit_bytes("n", payload(i, SIZE)).await.unwrap();
            }
            tx.flush().await
        }
    });
    for want in 0..total {
        let m = tokio::time::timeout(Duration::from_secs(30), sub.recv())
            .await
            .unwrap_or_else(|_| panic!("message {want} never came"))
            .expect("connection open");
        assert_eq!(index(m.payload()), want, "out of order or lost");
        assert_eq!(m.payload().len(), SIZE);
    }
    emitter.await.unwrap().expect("flush");
    assert_eq!(tx.state(), ConnectionState::Connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_bytes_while_reconnecting_queues_up_to_the_offline_bound_and_flush_counts_them() {
    let mut d = TestDaemon::start(CONFIG);
    let tx = Client::builder("A")
        .socket_dir(d.socket_dir())
        .echo(false)
        .offline_queue(1024)
        .connect()
        .await
        .unwrap();
    tx.emit_bytes("n", [1u8; 100]).await.unwrap();
    tx.flush().await.unwrap();

    d.stop();
    wait_state(&tx, ConnectionState::Reconnecting).await;
    // Frames of 108 bytes (5 header, 2 + 1 name, 100 payload): one is
    // appended while the queue holds less than 1024 bytes, so 10 fit.
    let (mut queued, mut refused) = (0, 0);
    for _ in 0..50 {
        match tx.emit_bytes("n", [2u8; 100]).await {
            Ok(()) => queued += 1,
            Err(EmitError::Disconnected(why)) => {
                assert!(why.contains("offline queue is full (1024 bytes)"), "{why}");
                refused += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((queued, refused), (10, 40));

    d.restart();
    wait_state(&tx, ConnectionState::Connected).await;
    // The window spans the restart: flush says how many it cannot confirm.
    let err = tx.flush().await.unwrap_err();
    assert_eq!(err.unconfirmed(), 10, "{err}");
    tx.flush().await.unwrap();
    let me = common::show_client(&d, "A", tx.client_id()).await;
    assert_eq!(me["messages_in"].as_u64(), Some(10), "{me}");
}

/// The offline queue's default (4 MiB) is its own, not `max_pending`'s
/// (256 KiB since the fifth round of issue 15): a client with default
/// options keeps 2 MB of emits while its daemon restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_offline_queue_keeps_more_than_max_pending_while_reconnecting() {
    const N: u64 = 2000;
    const { assert!(netcluster::DEFAULT_MAX_PENDING < 1024 * 1024) };
    let mut d = TestDaemon::start(CONFIG);
    let tx = Client::builder("A")
        .socket_dir(d.socket_dir())
        .echo(false)
        .connect()
        .await
        .unwrap();
    tx.emit_bytes("n", [1u8; 10]).await.unwrap();
    tx.flush().await.unwrap();

    d.stop();
    wait_state(&tx, ConnectionState::Reconnecting).await;
    // 2,000 frames of 1,008 bytes: past 256 KiB, within 4 MiB.
    for i in 0..N {
        if let Err(e) = tx.emit_bytes("n", [2u8; 1000]).await {
            panic!("emit {i} while reconnecting: {e}");
        }
    }

    d.restart();
    wait_state(&tx, ConnectionState::Connected).await;
    let err = tx.flush().await.unwrap_err();
    assert_eq!(err.unconfirmed(), N, "{err}");
    tx.flush().await.unwrap();
    let ctl = Client::builder("control")
        .socket_dir(d.socket_dir())
        .connect()
        .await
        .unwrap();
    let me = ctl
        .request(
            "nc-control-showclient",
            &serde_json::json!({"channel": "A", "client": tx.client_id()}),
        )
        .await
        .unwrap();
    assert_eq!(me["messages_in"].as_u64(), Some(N), "{me}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_bytes_fails_once_the_client_is_closed() {
    let mut d = TestDaemon::start(CONFIG);
    let a = Client::builder("A")
        .socket_dir(d.socket_dir())
        .connect()
        .await
        .unwrap();
    a.emit_bytes("n", b"before").await.unwrap();
    a.disconnect().await.unwrap();
    assert_eq!(a.state(), ConnectionState::Closed);
    match a.emit_bytes("n", b"after").await {
        Err(EmitError::Disconnected(why)) => assert!(why.contains("disconnected"), "{why}"),
        other => panic!("emit after disconnect: {other:?}"),
    }
    // Closed because the daemon went away and reconnecting is off.
    let b = Client::builder("A")
        .socket_dir(d.socket_dir())
        .reconnect(false)
        .connect()
        .await
        .unwrap();
    d.stop();
    wait_state(&b, ConnectionState::Closed).await;
    assert!(matches!(
        b.emit_bytes("n", b"after").await,
        Err(EmitError::Disconnected(_))
    ));
}

#[test]
fn blocking_emit_bytes_keeps_order_through_a_full_buffer_and_fails_once_closed() {
    const N: u32 = 3000;
    const SIZE: usize = 512;
    let d = TestDaemon::start(CONFIG);
    let dir = d.socket_dir().to_path_buf();
    let rx = netcluster::blocking::Client::builder("A")
        .with(|b| b.socket_dir(&dir))
        .connect()
        .unwrap();
    let mut sub = rx.subscribe("n").unwrap();
    // A small buffer: the plain thread's emits append on the calling
    // thread, and some find it full and wait in the client's runtime.
    let tx = netcluster::blocking::Client::builder("A")
        .with(|b| b.socket_dir(&dir).echo(false).max_pending(4096))
        .connect()
        .unwrap();
    let reader = std::thread::spawn(move || {
        for want in 0..N {
            let m = sub
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|| panic!("message {want} never came"));
            assert_eq!(index(m.payload()), want, "out of order or lost");
        }
    });
    for i in 0..N {
        tx.emit_bytes("n", payload(i, SIZE)).unwrap();
    }
    tx.flush().unwrap();
    reader.join().unwrap();
    tx.disconnect().unwrap();
    assert!(matches!(
        tx.emit_bytes("n", b"after"),
        Err(EmitError::Disconnected(_))
    ));
}
