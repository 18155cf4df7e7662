//! The blocking client used from inside async code: it must work (or fail
//! with an error), never panic. Before this was handled, creating it in a
//! current-thread runtime panicked ("can call blocking only when running on
//! the multi-threaded runtime") and dropping it in any async context
//! panicked ("Cannot drop a runtime in a context where blocking is not
//! allowed").

use std::time::Duration;

use netcluster::blocking::Client;
use netcluster_testkit::TestDaemon;
use serde_json::json;

const CONFIG: &str = r#"{ "channels": { "A": {}, "B": {} } }"#;

fn connect(d: &TestDaemon, channel: &str) -> Client {
    let dir = d.socket_dir().to_path_buf();
    Client::builder(channel)
        .with(|b| b.socket_dir(dir))
        .connect()
        .expect("connect")
}

/// Connects, subscribes, emits (JSON and raw), requests and drops, all from
/// the calling context.
fn round_trip(d: &TestDaemon) {
    let rx = connect(d, "A");
    let tx = connect(d, "A");
    let mut sub = rx.subscribe_many(&["log", "raw"]).expect("subscribe");
    tx.emit("log", &json!({"n": 1})).expect("emit");
    tx.emit_bytes("raw", b"bytes").expect("emit_bytes");
    let m = sub.recv_timeout(Duration::from_secs(10)).expect("message");
    assert_eq!(m.json::<serde_json::Value>().unwrap(), json!({"n": 1}));
    let m = sub.recv_timeout(Duration::from_secs(10)).expect("message");
    assert_eq!(m.payload(), b"bytes");
    tx.flush().expect("flush");
    let control = connect(d, "control");
    let status = control.request("nc-control-status", &()).expect("status");
    assert!(status.is_object(), "{status}");
    drop(sub);
    drop((rx, tx, control));
}

#[tokio::test(flavor = "current_thread")]
async fn works_and_drops_inside_a_current_thread_runtime() {
    let d = TestDaemon::start(CONFIG);
    round_trip(&d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_and_drops_inside_a_multi_thread_runtime() {
    let d = TestDaemon::start(CONFIG);
    round_trip(&d);
}

#[tokio::test(flavor = "current_thread")]
async fn works_in_spawn_blocking() {
    let d = std::sync::Arc::new(TestDaemon::start(CONFIG));
    let d2 = d.clone();
    tokio::task::spawn_blocking(move || round_trip(&d2))
        .await
        .expect("no panic");
}

#[test]
fn works_outside_any_runtime() {
    let d = TestDaemon::start(CONFIG);
    round_trip(&d);
}

/// A handler (running on the client's own runtime) may call the client.
#[test]
fn a_handler_may_emit_through_its_own_client() {
    let d = TestDaemon::start(CONFIG);
    let a = connect(&d, "A");
    let watcher = connect(&d, "A");
    let mut answers = watcher.subscribe("answer").expect("subscribe");
    let a2 = a.clone();
    a.on("question", move |_| {
        a2.emit("answer", "42").expect("emit from a handler");
    })
    .expect("on");
    watcher.emit("question", &()).expect("emit");
    let m = answers
        .recv_timeout(Duration::from_secs(10))
        .expect("answer");
    assert_eq!(m.json::<String>().unwrap(), "42");
}
