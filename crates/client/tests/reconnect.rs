//! Reconnection: clients survive a daemon restart, renew their
//! subscriptions, queue emits while offline (within a bound) and report
//! their connection state.

mod common;
use common::wait_state;
use std::time::Duration;

use netcluster::{Client, ConnectionState, EmitError};
use netcluster_testkit::TestDaemon;

const CONFIG: &str = r#"{ "channels": { "A": {} } }"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_survive_a_daemon_restart_and_lose_nothing_after_it() {
    let mut d = TestDaemon::start(CONFIG);
    let rx = Client::builder("A")
        .socket_dir(d.socket_dir())
        .connect()
        .await
        .unwrap();
    let mut sub = rx.subscribe("n").await.unwrap();
    let tx = Client::builder("A")
        .socket_dir(d.socket_dir())
        .echo(false)
        .connect()
        .await
        .unwrap();

    // An emitter that never stops, across the restart.
    let emitter = {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut i = 0u64;
            let mut refused = 0u64;
            loop {
                match tx.emit("n", &i).await {
                    Ok(()) => i += 1,
                    Err(EmitError::Disconnected(_)) => refused += 1,
                    Err(e) => panic!("{e}"),
                }
                if i % 64 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                if i >= 3000 {
                    return refused;
                }
            }
        })
    };
    // Let some messages flow, then restart the daemon under both clients.
    let first = tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.json::<u64>().unwrap(), 0);
    let old_node = tx.node_id();
    d.restart();
    wait_state(&rx, ConnectionState::Connected).await;
    wait_state(&tx, ConnectionState::Connected).await;
    let refused = emitter.await.unwrap();
    assert_eq!(
        refused, 0,
        "the offline queue held every emit made while reconnecting"
    );
    assert_ne!(
        tx.node_id(),
        old_node,
        "the restarted daemon is a new node run"
    );

    // After both reconnected, nothing is lost and order holds.
    let mark = 1_000_000u64;
    for k in 0..500u64 {
        tx.emit("n", &(mark + k)).await.unwrap();
    }
    let mut next = mark;
    while next < mark + 500 {
        let m = tokio::time::timeout(Duration::from_secs(10), sub.recv())
            .await
            .expect("message")
            .expect("open");
        let v: u64 = m.json().unwrap();
        if v >= mark {
            assert_eq!(v, next, "lost or reordered after reconnecting");
            next += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_emits_are_sent_after_reconnecting_up_to_the_bound() {
    let mut d = TestDaemon::start(CONFIG);
    let tx = Client::builder("A")
        .socket_dir(d.socket_dir())
        .offline_queue(1024)
        .connect()
        .await
        .unwrap();
    let strict = Client::builder("A")
        .socket_dir(d.socket_dir())
        .offline_queue(0)
        .connect()
        .await
        .unwrap();
    let once = Client::builder("A")
        .socket_dir(d.socket_dir())
        .reconnect(false)
        .connect()
        .await
        .unwrap();

    d.stop();
    wait_state(&tx, ConnectionState::Reconnecting).await;
    wait_state(&strict, ConnectionState::Reconnecting).await;
    wait_state(&once, ConnectionState::Closed).await;
    assert!(
        once.closed_reason().unwrap().contains("stopping"),
        "{:?}",
        once.closed_reason()
    );
    assert!(matches!(
        once.emit("n", &0).await,
        Err(EmitError::Disconnected(_))
    ));

    let err = strict.emit("n", &0).await.unwrap_err();
    assert!(
        err.to_string().contains("offline queue is full (0 bytes)"),
        "{err}"
    );
    // 10 small emits fit in 1 KiB; then the bound is reached.
    for i in 0..10 {
        tx.emit("n", &i).await.unwrap();
    }
    let mut refused = 0;
    for i in 0..200 {
        if tx.emit("n", &i).await.is_err() {
            refused += 1;
        }
    }
    assert!(refused > 0, "the offline queue is bounded");
    let err = tx.request("nc-control-status", &()).await.unwrap_err();
    assert!(err.to_string().contains("reconnecting"), "{err}");

    d.restart();
    wait_state(&tx, ConnectionState::Connected).await;
    // The first flush's window spans the restart: it confirms none of the
    // messages emitted in it, and says how many; the next one is clean.
    let err = tx.flush().await.unwrap_err();
    assert_eq!(err.unconfirmed(), 210 - refused, "{err}");
    tx.flush().await.unwrap();
    // The daemon received what was queued offline.
    let me = common::show_client(&d, "A", tx.client_id()).await;
    let got = me["messages_in"].as_u64().unwrap();
    assert!(
        got >= 10 && got <= 210 - refused,
        "messages_in {got}, refused {refused}"
    );
}
