//! Daemons on different hosts (network namespaces on a bridge) exchange
//! channel messages over UDP multicast and unicast. Needs root and
//! iproute2; skipped with a message otherwise, except under
//! NETCLUSTER_REQUIRE_NETNS=1 (CI), where it fails.
#![cfg(target_os = "linux")]

mod common;

use std::path::Path;

use common::lan::*;
use netcluster_testkit::netns::Lan;

const BIN: &str = env!("CARGO_BIN_EXE_ncserver");

fn config(name: &str, extra: &str, channel_a: &str) -> String {
    format!(
        r#"{{ "connecttonet": true, "nodename": "{name}", {extra}
             "channels": {{ "A": {{ "propagatetonet": true {channel_a} }}, "B": {{}} }} }}"#
    )
}

#[test]
fn three_hosts_get_a_burst_in_order_exactly_once_and_nothing_echoes() {
    let Some(mut lan) = Lan::new(3) else { return };
    for i in 0..3 {
        lan.start_daemon(i, Path::new(BIN), &config(&format!("h{i}"), "", ""));
    }
    rt().block_on(async {
        let dirs: Vec<&Path> = lan.hosts.iter().map(|h| h.dir()).collect();
        wait_peers(&dirs, dirs.len() - 1).await;
        let mut subs = Vec::new();
        for d in &dirs {
            let c = client(d, "A").await;
            let s = c.subscribe("n").await.unwrap();
            subs.push((c, s));
        }
        let tx = client(dirs[0], "A").await;
        const N: u64 = 2000;
        for i in 0..N {
            tx.emit("n", &i).await.unwrap();
        }
        tx.flush().await.unwrap();
        for (i, (_, s)) in subs.iter_mut().enumerate() {
            expect_sequence(s, N, &format!("host {i}")).await;
        }
        let m = {
            let (c, s) = &mut subs[1];
            c.flush().await.unwrap();
            let _ = s;
            peers(dirs[1]).await
        };
        assert_eq!(
            m["totals"]["messages_out"], 0,
            "a message from the network was sent again: {m}"
        );
        let p0 = peers(dirs[0]).await;
        assert_eq!(p0["totals"]["messages_out"], N);
        let from0 = peers(dirs[2]).await["peers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["messages_in"].as_u64().unwrap())
            .sum::<u64>();
        assert_eq!(from0, N);
    });
}

#[test]
fn a_one_mib_message_arrives_whole_and_acceptfromnet_false_is_honoured() {
    let Some(mut lan) = Lan::new(3) else { return };
    lan.start_daemon(0, Path::new(BIN), &config("h0", "", ""));
    lan.start_daemon(1, Path::new(BIN), &config("h1", "", ""));
    lan.start_daemon(
        2,
        Path::new(BIN),
        &config("h2", "", r#", "acceptfromnet": false"#),
    );
    rt().block_on(async {
        let dirs: Vec<&Path> = lan.hosts.iter().map(|h| h.dir()).collect();
        wait_peers(&dirs, dirs.len() - 1).await;
        let r1 = client(dirs[1], "A").await;
        let mut s1 = r1.subscribe("*").await.unwrap();
        let r2 = client(dirs[2], "A").await;
        let mut s2 = r2.subscribe("*").await.unwrap();
        let tx = client(dirs[0], "A").await;
        let big: Vec<u8> = (0..(1u32 << 20))
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        tx.emit_bytes("big", &big).await.unwrap();
        tx.emit("small", &1).await.unwrap();
        let m = next(&mut s1, 10).await.expect("the 1 MiB message");
        assert_eq!(m.event(), "big");
        assert_eq!(m.payload().len(), big.len());
        assert!(m.payload() == &big[..], "payload corrupted");
        assert_eq!(m.origin().node, tx.node_id());
        assert_eq!(m.channel(), "A");
        assert_eq!(next(&mut s1, 10).await.unwrap().event(), "small");
        assert!(
            next(&mut s2, 2).await.is_none(),
            "acceptfromnet: false let a message in"
        );
        let p = peers(dirs[2]).await;
        assert!(
            p["totals"]["refused_by_acceptfromnet"].as_u64().unwrap() >= 2,
            "{p}"
        );
    });
}

#[test]
fn unicast_peers_work_without_multicast_routes() {
    let Some(mut lan) = Lan::new(2) else { return };
    lan.remove_multicast_route(0);
    lan.remove_multicast_route(1);
    lan.start_daemon(
        0,
        Path::new(BIN),
        &config("h0", r#""peers": ["10.77.0.2:4454"],"#, ""),
    );
    lan.start_daemon(
        1,
        Path::new(BIN),
        &config("h1", r#""peers": ["10.77.0.1:4454"],"#, ""),
    );
    rt().block_on(async {
        let dirs: Vec<&Path> = lan.hosts.iter().map(|h| h.dir()).collect();
        wait_peers(&dirs, dirs.len() - 1).await;
        let r = client(dirs[1], "A").await;
        let mut s = r.subscribe("n").await.unwrap();
        let r0 = client(dirs[0], "A").await;
        let mut s0 = r0.subscribe("n").await.unwrap();
        let tx = client(dirs[0], "A").await;
        for i in 0..500u64 {
            tx.emit("n", &i).await.unwrap();
        }
        expect_sequence(&mut s, 500, "unicast receiver").await;
        expect_sequence(&mut s0, 500, "local listener").await;
        // And back the other way.
        let tx1 = client(dirs[1], "A").await;
        tx1.emit("n", &0u64).await.unwrap();
        expect_sequence(&mut s0, 1, "reverse direction").await;
        let p = peers(dirs[0]).await;
        assert!(
            p["totals"]["send_errors"].as_u64().unwrap() > 0,
            "multicast sends should fail without a route: {p}"
        );
    });
}

#[test]
fn two_daemons_on_one_host_with_loopback() {
    let Some(mut lan) = Lan::new(1) else { return };
    let second_dir = netcluster_testkit::tempdir();
    lan.start_daemon(
        0,
        Path::new(BIN),
        &config("one", r#""loopback": true,"#, ""),
    );
    let cfg2 = config(
        "two",
        &format!(
            r#""loopback": true, "socketdir": "{}","#,
            second_dir.path().display()
        ),
        "",
    );
    lan.start_daemon(0, Path::new(BIN), &cfg2);
    rt().block_on(async {
        let dirs: Vec<&Path> = vec![lan.hosts[0].dir(), second_dir.path()];
        wait_peers(&dirs, dirs.len() - 1).await;
        let r2 = client(dirs[1], "A").await;
        let mut s2 = r2.subscribe("n").await.unwrap();
        let r1 = client(dirs[0], "A").await;
        let mut s1 = r1.subscribe("n").await.unwrap();
        let tx = client(dirs[0], "A").await;
        for i in 0..300u64 {
            tx.emit("n", &i).await.unwrap();
        }
        expect_sequence(&mut s2, 300, "second daemon").await;
        // The first daemon hears its own looped-back datagrams and ignores
        // them by node id: its listener gets each message once.
        expect_sequence(&mut s1, 300, "first daemon's own listener").await;
        let own = peers(dirs[0]).await;
        assert_eq!(own["peers"].as_array().unwrap().len(), 1, "{own}");
    });
}
