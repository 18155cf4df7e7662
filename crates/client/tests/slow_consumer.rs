//! A client the daemon disconnects as a slow consumer learns why: the
//! daemon's error frame ("slow consumer: queue reached queuebytes …")
//! reaches the client's closed reason, not just "the daemon closed the
//! connection".

use std::time::Duration;

use netcluster::{Client, ConnectionState};
use netcluster_testkit::TestDaemon;

const CONFIG: &str = r#"{
  "queuebytes": "1MiB",
  "channels": { "A": { "slowconsumer": "disconnect" } }
}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnected_slow_consumer_is_told_why() {
    let d = TestDaemon::start(CONFIG);
    let connect = || {
        Client::builder("A")
            .socket_dir(d.socket_dir())
            .reconnect(false)
            .subscription_capacity(1)
            .connect()
    };
    let slow = connect().await.unwrap();
    let publisher = connect().await.unwrap();
    // Subscribed but not reading: the stream fills, the client stops
    // reading its socket, the daemon's queue for it reaches queuebytes.
    let mut sub = slow.subscribe("bulk").await.unwrap();
    let chunk = vec![b'x'; 4096];
    let mut state = slow.watch_state();
    let flood = async {
        for _ in 0..10_000 {
            if publisher.emit_bytes("bulk", &chunk).await.is_err() {
                break;
            }
        }
        publisher.flush().await.unwrap();
    };
    tokio::time::timeout(Duration::from_secs(60), flood)
        .await
        .expect("publishing finishes (disconnect never blocks publishers)");
    // Now read what was delivered, as a slow application eventually does
    // (after a while: longer than the daemon waits to flush a closing
    // connection's last frames), until the stream ends with the connection.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let drained = tokio::time::timeout(Duration::from_secs(30), async {
        let mut n = 0u64;
        while sub.recv().await.is_some() {
            n += 1;
        }
        n
    })
    .await
    .expect("the stream ends once the connection is closed");
    tokio::time::timeout(Duration::from_secs(10), async {
        while *state.borrow_and_update() != ConnectionState::Closed {
            state.changed().await.unwrap();
        }
    })
    .await
    .expect("the client sees the connection closed");
    let reason = slow.closed_reason().expect("a closed reason");
    eprintln!("drained {drained}: {reason}");
    assert!(
        reason.contains("slow consumer") && reason.contains("queuebytes"),
        "after {drained} messages the reason is {reason:?}"
    );
}
