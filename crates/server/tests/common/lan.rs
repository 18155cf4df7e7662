//! Helpers of the multi-host tests (daemons in network namespaces, see
//! `netcluster_testkit::netns`): clients of a host's daemon, its peer
//! table, and checks of numbered message streams.

use std::path::Path;
use std::time::Duration;

use netcluster::{Client, Message, Subscription};
use serde_json::Value;

/// A runtime for one test.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A client of the daemon whose sockets are in `dir` (no echo to self).
pub async fn client(dir: &Path, ch: &str) -> Client {
    Client::builder(ch)
        .socket_dir(dir)
        .echo(false)
        .connect()
        .await
        .expect("connect")
}

/// The daemon's `showpeers()`.
pub async fn peers(dir: &Path) -> Value {
    client(dir, "control")
        .await
        .request("nc-control-showpeers", &())
        .await
        .expect("showpeers")
}

/// How many peers are up in a `showpeers()` answer.
pub fn up(p: &Value) -> usize {
    p["peers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["up"] == true)
        .count()
}

/// Waits until each daemon sees `want` peers up.
pub async fn wait_peers(dirs: &[&Path], want: usize) {
    for d in dirs {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let p = peers(d).await;
            if up(&p) == want {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "peers never came up: {p}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Waits until host `dir`'s daemon has the node `node` up.
pub async fn wait_node_up(dir: &Path, node: u64) {
    let want = format!("{node:016x}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let p = peers(dir).await;
        let up = p["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["node"] == want.as_str() && x["up"] == true);
        if up {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node {want} never came up: {}",
            p["totals"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The next message within `secs`.
pub async fn next(sub: &mut Subscription, secs: u64) -> Option<Message> {
    tokio::time::timeout(Duration::from_secs(secs), sub.recv())
        .await
        .ok()
        .flatten()
}

/// Checks that exactly `n` messages numbered 0..n arrive in order (event
/// `n`), then nothing more.
pub async fn check_sequence(sub: &mut Subscription, n: u64, what: &str) -> Result<(), String> {
    for i in 0..n {
        let m = next(sub, 10)
            .await
            .ok_or_else(|| format!("{what}: message {i} of {n} missing"))?;
        if m.event() != "n" {
            return Err(format!("{what}: unexpected event {m:?}"));
        }
        let got = m.json::<u64>().unwrap();
        if got != i {
            return Err(format!(
                "{what}: out of order or duplicated: got {got}, expected {i}"
            ));
        }
    }
    match next(sub, 1).await {
        Some(m) => Err(format!("{what}: unexpected extra message {m:?}")),
        None => Ok(()),
    }
}

/// [`check_sequence`], panicking on failure.
pub async fn expect_sequence(sub: &mut Subscription, n: u64, what: &str) {
    if let Err(e) = check_sequence(sub, n, what).await {
        panic!("{e}");
    }
}

/// Like [`expect_sequence`], with the receiving daemon's `showpeers()` in
/// the failure message.
pub async fn expect_sequence_at(sub: &mut Subscription, n: u64, what: &str, dir: &Path) {
    if let Err(e) = check_sequence(sub, n, what).await {
        panic!("{e}\nshowpeers: {}", peers(dir).await);
    }
}
