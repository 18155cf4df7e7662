//! Network metrics on a LAN of network namespaces: two daemons, each with
//! its HTTP endpoint on its own loopback, one emitting to the network
//! with 1 in 5 datagrams lost on the way in to the other (one message per datagram); /metrics must
//! show the messages, datagrams, NAKs, retransmissions and peers that
//! `showpeers()` counts.
#![cfg(target_os = "linux")]

mod common;
#[allow(dead_code)]
#[path = "ops/daemon.rs"]
mod daemon;

use std::path::Path;

use common::lan::*;
use daemon::{http_get, sample};
use netcluster_testkit::netns::Lan;

const BIN: &str = env!("CARGO_BIN_EXE_ncserver");
const N: u64 = 300;
/// The network key: sealed datagrams, and a secret no endpoint may show.
const KEY: &str = "5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7";

fn config(name: &str) -> String {
    format!(
        r#"{{ "connecttonet": true, "nodename": "{name}", "key": "{KEY}",
             "http": {{ "listen": "127.0.0.1:9454" }},
             "channels": {{ "A": {{ "propagatetonet": true }} }} }}"#
    )
}

fn fetch(lan: &Lan, i: usize, path: &str) -> String {
    lan.run_in(i, || {
        http_get("127.0.0.1:9454".parse().unwrap(), path, None).body
    })
}

#[test]
fn network_metrics_count_what_crossed_the_lan() {
    let Some(mut lan) = Lan::new(2) else { return };
    for i in 0..2 {
        lan.start_daemon(i, Path::new(BIN), &config(&format!("h{i}")));
    }
    lan.drop_udp(1, "input", 5);
    rt().block_on(async {
        let dirs: Vec<&Path> = lan.hosts.iter().map(|h| h.dir()).collect();
        wait_peers(&dirs, 1).await;
        let rx = client(dirs[1], "A").await;
        let mut sub = rx.subscribe("n").await.unwrap();
        let tx = client(dirs[0], "A").await;
        // About one message per datagram, so that losses hit messages.
        let pad = "x".repeat(1000);
        for i in 0..N {
            tx.emit("n", &serde_json::json!({"i": i, "pad": pad}))
                .await
                .unwrap();
        }
        tx.flush().await.unwrap();
        for i in 0..N {
            let m = next(&mut sub, 20).await.expect("message from host 0");
            let v: serde_json::Value = m.json().unwrap();
            assert_eq!(v["i"], i, "in order, once");
        }
    });
    let m0 = fetch(&lan, 0, "/metrics");
    let m1 = fetch(&lan, 1, "/metrics");
    let get = |m: &str, s: &str| sample(m, s).unwrap_or_else(|| panic!("no {s} in\n{m}"));
    assert_eq!(get(&m0, "netcluster_net_connected"), 1.0);
    assert_eq!(
        get(&m0, "netcluster_net_sent_messages_total"),
        N as f64,
        "{m0}"
    );
    assert!(
        get(&m1, "netcluster_net_received_messages_total") >= N as f64,
        "{m1}"
    );
    assert_eq!(
        get(
            &m1,
            r#"netcluster_channel_messages_delivered_total{channel="A"}"#
        ),
        N as f64,
        "{m1}"
    );
    assert_eq!(
        get(
            &m0,
            r#"netcluster_channel_messages_received_total{channel="A"}"#
        ),
        N as f64
    );
    assert!(get(&m0, "netcluster_net_sent_datagrams_total") > 0.0);
    assert!(get(&m1, "netcluster_net_received_bytes_total") > 0.0);
    assert!(
        get(&m1, "netcluster_net_sent_naks_total") > 0.0,
        "losses make NAKs: {m1}"
    );
    assert!(get(&m0, "netcluster_net_received_naks_total") > 0.0, "{m0}");
    assert!(
        get(&m0, "netcluster_net_retransmitted_datagrams_total") > 0.0,
        "{m0}"
    );
    for m in [&m0, &m1] {
        assert_eq!(get(m, "netcluster_net_peers_up"), 1.0, "{m}");
        assert_eq!(
            get(
                m,
                r#"netcluster_net_rejected_datagrams_total{reason="unauthenticated"}"#
            ),
            0.0
        );
    }

    let doc = include_str!("../../../docs/METRICS.md");
    for name in m0.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = name.split(' ').next().unwrap();
        assert!(
            doc.contains(&format!("`{name}`")),
            "{name} is not in docs/METRICS.md"
        );
    }
    // /api/status shows the peer table, and neither endpoint the key.
    let st: serde_json::Value = serde_json::from_str(&fetch(&lan, 1, "/api/status")).unwrap();
    assert_eq!(st["peers"]["peers"][0]["name"], "h0", "{st}");
    assert_eq!(st["peers"]["peers"][0]["up"], true, "{st}");
    assert_eq!(st["peers"]["sealed"], true, "{st}");
    for body in [&m0, &m1, &st.to_string()] {
        assert!(
            !body.to_lowercase().contains(&KEY[..16]),
            "the key leaked: {body}"
        );
    }
}
