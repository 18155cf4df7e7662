//! Helpers shared by the client's integration tests (each test file that
//! uses them says `mod common;`; not every file uses every helper).
#![allow(dead_code)]

use std::time::Duration;

use netcluster::{Client, ConnectionState};
use netcluster_testkit::TestDaemon;
use serde_json::Value;

/// Waits (at most 30 s, generous for a loaded machine) until `c` is in
/// state `want`.
pub async fn wait_state(c: &Client, want: ConnectionState) {
    let mut w = c.watch_state();
    tokio::time::timeout(Duration::from_secs(30), w.wait_for(|s| *s == want))
        .await
        .unwrap_or_else(|_| panic!("state never became {want:?}"))
        .unwrap();
}

/// What the daemon's `showclient` says about client `id` of `channel`,
/// asked through a fresh connection to the control channel.
pub async fn show_client(d: &TestDaemon, channel: &str, id: u64) -> Value {
    let ctl = Client::builder("control")
        .socket_dir(d.socket_dir())
        .connect()
        .await
        .expect("connect to control");
    ctl.request(
        "nc-control-showclient",
        &serde_json::json!({"channel": channel, "client": id}),
    )
    .await
    .expect("showclient")
}
