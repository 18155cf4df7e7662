//! Reliable and authenticated multicast between hosts (network namespaces
//! on a bridge): loss injected with nftables is repaired, a node with
//! another key is shut out and counted, a replayed datagram is rejected,
//! unrecoverable loss reaches clients as `nc-gap`. Needs root, iproute2 and
//! nftables; skipped with a message otherwise, except under
//! NETCLUSTER_REQUIRE_NETNS=1 (CI), where it fails.
#![cfg(target_os = "linux")]

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::Duration;

use common::lan::*;
use netcluster_testkit::netns::Lan;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ncserver");
const KEY_A: &str = "5d1f0c2a9b8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a392817060504";
const KEY_B: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 77, 54);
const PORT: u16 = 4454;

fn config(name: &str, extra: &str) -> String {
    format!(
        r#"{{ "connecttonet": true, "nodename": "{name}", {extra}
             "channels": {{ "A": {{ "propagatetonet": true }} }} }}"#
    )
}

fn keyed(name: &str, key: &str) -> String {
    config(name, &format!(r#""key": "{key}","#))
}

#[test]
fn ten_percent_loss_twenty_thousand_messages_arrive_complete_in_order_once() {
    let Some(mut lan) = Lan::new(3) else { return };
    for i in 0..3 {
        lan.start_daemon(i, Path::new(BIN), &keyed(&format!("h{i}"), KEY_A));
    }
    lan.drop_udp(0, "output", 10);
    lan.drop_udp(1, "input", 10);
    lan.drop_udp(2, "input", 10);
    rt().block_on(async {
        let dirs: Vec<&Path> = lan.hosts.iter().map(|h| h.dir()).collect();
        wait_peers(&dirs, 2).await;
        let r1 = client(dirs[1], "A").await;
        let mut s1 = r1.subscribe("n").await.unwrap();
        let mut g1 = r1.subscribe("nc-gap").await.unwrap();
        let r2 = client(dirs[2], "A").await;
        let mut s2 = r2.subscribe("n").await.unwrap();
        let tx = client(dirs[0], "A").await;
        const N: u64 = 20_000;
        for i in 0..N {
            tx.emit("n", &i).await.unwrap();
        }
        tx.flush().await.unwrap();
        expect_sequence_at(&mut s1, N, "host 1", dirs[1]).await;
        expect_sequence_at(&mut s2, N, "host 2", dirs[2]).await;
        assert!(next(&mut g1, 1).await.is_none(), "a gap was reported");
        let sender = peers(dirs[0]).await;
        assert!(
            sender["totals"]["retransmitted"].as_u64().unwrap() > 0,
            "nothing was lost? {sender}"
        );
        for d in &dirs[1..] {
            let p = peers(d).await;
            assert_eq!(p["totals"]["gaps"], 0, "{p}");
            assert!(p["totals"]["naks_out"].as_u64().unwrap() > 0, "{p}");
            assert_eq!(p["sealed"], true);
        }
    });
}

#[test]
fn a_node_with_another_key_hears_nothing_and_is_counted_as_rejected() {
    let Some(mut lan) = Lan::new(3) else { return };
    lan.start_daemon(0, Path::new(BIN), &keyed("h0", KEY_A));
    lan.start_daemon(1, Path::new(BIN), &keyed("h1", KEY_A));
    lan.start_daemon(2, Path::new(BIN), &keyed("stranger", KEY_B));
    rt().block_on(async {
        let dirs: Vec<&Path> = lan.hosts.iter().map(|h| h.dir()).collect();
        wait_peers(&dirs[..2], 1).await;
        let r1 = client(dirs[1], "A").await;
        let mut s1 = r1.subscribe("*").await.unwrap();
        let r2 = client(dirs[2], "A").await;
        let mut s2 = r2.subscribe("n").await.unwrap();
        let tx = client(dirs[0], "A").await;
        let stranger = client(dirs[2], "A").await;
        for i in 0..100u64 {
            tx.emit("n", &i).await.unwrap();
            stranger.emit("intruder", &i).await.unwrap();
        }
        expect_sequence(&mut s1, 100, "host 1").await;
        assert!(next(&mut s2, 1).await.is_none(), "the stranger heard us");
        let p2 = peers(dirs[2]).await;
        assert_eq!(up(&p2), 0, "{p2}");
        for (i, d) in dirs[..2].iter().enumerate() {
            let p = peers(d).await;
            let names: Vec<&str> = p["peers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x["name"].as_str().unwrap())
                .collect();
            assert!(!names.contains(&"stranger"), "host {i}: {p}");
            assert_eq!(p["peers"].as_array().unwrap().len(), 1, "host {i}: {p}");
            let n = p["rejected_by_source"]["10.77.0.3:4454"]
                .as_u64()
                .unwrap_or(0);
            assert!(n >= 100 / 20, "host {i}: {p}");
            assert!(p["totals"]["rejected"].as_u64().unwrap() >= n);
        }
    });
}

/// Captures the first DATA datagram that host `from_ip` sends to the
/// group, with a plain UDP socket joined to the group inside the host.
fn capture_socket() -> std::net::UdpSocket {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    s.set_reuse_address(true).unwrap();
    s.set_reuse_port(true).unwrap();
    s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PORT).into())
        .unwrap();
    s.join_multicast_v4(&GROUP, &Ipv4Addr::UNSPECIFIED).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.into()
}

#[test]
fn a_captured_datagram_replayed_is_rejected() {
    let Some(mut lan) = Lan::new(2) else { return };
    lan.start_daemon(0, Path::new(BIN), &keyed("h0", KEY_A));
    lan.start_daemon(1, Path::new(BIN), &keyed("h1", KEY_A));
    let rt = rt();
    let dirs: Vec<&Path> = lan.hosts.iter().map(|h| h.dir()).collect();
    let (r1, mut s1, tx) = rt.block_on(async {
        wait_peers(&dirs, 1).await;
        let r1 = client(dirs[1], "A").await;
        let s1 = r1.subscribe("n").await.unwrap();
        let tx = client(dirs[0], "A").await;
        (r1, s1, tx)
    });
    // A listener on host 1, like any program on that machine could open.
    let cap = lan.run_in(1, capture_socket);
    rt.block_on(async { tx.emit("n", &0u64).await.unwrap() });
    let datagram = {
        let mut buf = vec![0u8; 65_536];
        loop {
            let (n, from) = cap.recv_from(&mut buf).expect("capture a datagram");
            if from.ip() == std::net::IpAddr::from([10, 77, 0, 1]) && n > 24 && buf[6] == 1 {
                break buf[..n].to_vec();
            }
        }
    };
    drop(cap);
    assert_eq!(datagram[5] & 1, 1, "sealed");
    rt.block_on(async {
        expect_sequence(&mut s1, 1, "before the replay").await;
        let before = peers(dirs[1]).await;
        // Replay it three times, and once with one byte changed, from
        // host 1 itself to its daemon.
        lan.run_in(1, || {
            let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
            for _ in 0..3 {
                s.send_to(&datagram, ("10.77.0.2", PORT)).unwrap();
            }
            let mut bad = datagram.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            s.send_to(&bad, ("10.77.0.2", PORT)).unwrap();
        });
        assert!(next(&mut s1, 2).await.is_none(), "the replay was delivered");
        let after = peers(dirs[1]).await;
        let dup = |p: &Value| p["totals"]["duplicates"].as_u64().unwrap();
        let rej = |p: &Value| p["totals"]["rejected"].as_u64().unwrap();
        assert_eq!(dup(&after) - dup(&before), 3, "{after}");
        assert_eq!(rej(&after) - rej(&before), 1, "{after}");
        assert_eq!(after["rejected_by_source"]["10.77.0.2:"].as_u64(), None);
        // The stream goes on.
        tx.emit("n", &1u64).await.unwrap();
        let m = next(&mut s1, 5).await.expect("the next message");
        assert_eq!(m.json::<u64>().unwrap(), 1);
        drop(r1);
    });
}

#[test]
fn unrecoverable_loss_reaches_clients_as_nc_gap() {
    let Some(mut lan) = Lan::new(2) else { return };
    // The sender keeps nothing to retransmit: every loss is a gap.
    lan.start_daemon(
        0,
        Path::new(BIN),
        &keyed("h0", KEY_A).replace("\"key\"", "\"retransmitbytes\": 0, \"key\""),
    );
    lan.start_daemon(1, Path::new(BIN), &keyed("h1", KEY_A));
    rt().block_on(async {
        let dirs: Vec<&Path> = lan.hosts.iter().map(|h| h.dir()).collect();
        wait_peers(&dirs, 1).await;
        lan.drop_udp(1, "input", 10);
        let r1 = client(dirs[1], "A").await;
        let mut all = r1.subscribe("*").await.unwrap();
        let tx = client(dirs[0], "A").await;
        // About one message per datagram, so that many datagrams are lost.
        const N: u64 = 3000;
        let pad = "x".repeat(1000);
        for i in 0..N {
            tx.emit("n", &(i, &pad)).await.unwrap();
        }
        tx.flush().await.unwrap();
        // Each message fills one datagram, so message i travels in DATA
        // datagram s0 + i (s0 fixed, learned from the first gap): every
        // gap must cover exactly the messages missing where it sits, i.e.
        // it arrives after the last message before the hole and before the
        // first one after it.
        let (mut prev, mut got, mut gaps) = (-1i64, 0u64, 0u64);
        let mut s0: Option<i64> = None;
        // The next datagram a gap at this point must start at, as a
        // message index: right after `prev`, or after the previous gap.
        let mut expect_from = 0i64;
        while let Some(m) = next(&mut all, 3).await {
            match m.event() {
                "n" => {
                    let (i, _) = m.json::<(u64, String)>().unwrap();
                    let i = i as i64;
                    assert_eq!(
                        i, expect_from,
                        "message {i} after message {prev}: a hole without its nc-gap \
                         right before it, or out of order"
                    );
                    prev = i;
                    expect_from = i + 1;
                    got += 1;
                }
                "nc-gap" => {
                    let v: Value = m.json().unwrap();
                    assert_eq!(v["cause"], "network", "{v}");
                    assert_eq!(v["node"], format!("{:016x}", tx.node_id()));
                    let first = v["first"].as_u64().unwrap() as i64;
                    let last = v["last"].as_u64().unwrap() as i64;
                    assert!(first <= last, "{v}");
                    let base = *s0.get_or_insert(first - expect_from);
                    assert_eq!(
                        first - base,
                        expect_from,
                        "gap {v} out of place: after message {prev} (datagrams start at {base})"
                    );
                    expect_from = last - base + 1;
                    gaps += 1;
                }
                e => panic!("unexpected event {e}"),
            }
        }
        assert!(
            gaps > 0 && got < N && got > N / 2,
            "{got} messages, {gaps} gaps"
        );
        assert!(expect_from <= N as i64, "gaps past the last message");
        eprintln!("{got} of {N} messages, {gaps} gaps, each in its place");
        let p = peers(dirs[1]).await;
        assert_eq!(p["totals"]["gaps"].as_u64().unwrap(), gaps, "{p}");
    });
}

/// `reloadconfig()`: the daemon reads its config file again.
async fn reload(dir: &Path) -> Value {
    client(dir, "control")
        .await
        .request("nc-control-reloadconfig", &Value::Null)
        .await
        .expect("reload")
}

#[test]
fn a_reloaded_keyfile_changes_the_key_with_a_grace_period() {
    let Some(mut lan) = Lan::new(2) else { return };
    let keys = netcluster_testkit::tempdir();
    let file = |i: usize| keys.path().join(format!("h{i}.key"));
    for i in 0..2 {
        std::fs::write(file(i), format!("{KEY_A}\n")).unwrap();
        let cfg = config(
            &format!("h{i}"),
            &format!(r#""keyfile": "{}","#, file(i).display()),
        );
        lan.start_daemon(i, Path::new(BIN), &cfg);
    }
    rt().block_on(async {
        let dirs: Vec<&Path> = lan.hosts.iter().map(|h| h.dir()).collect();
        wait_peers(&dirs, 1).await;
        let r1 = client(dirs[1], "A").await;
        let mut s1 = r1.subscribe("n").await.unwrap();
        let tx = client(dirs[0], "A").await;
        tx.emit("n", &0u64).await.unwrap();
        // Host 0 moves to key B first; host 1 a moment later.
        std::fs::write(file(0), format!("{KEY_B}\n")).unwrap();
        std::fs::write(file(1), format!("{KEY_B}\n")).unwrap();
        reload(dirs[0]).await;
        tx.emit("n", &1u64).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        reload(dirs[1]).await;
        tx.emit("n", &2u64).await.unwrap();
        expect_sequence_at(&mut s1, 3, "host 1", dirs[1]).await;
        let shown: Value = client(dirs[0], "control")
            .await
            .request("nc-control-showconfig", &())
            .await
            .unwrap();
        let text = shown.to_string();
        assert!(!text.contains(KEY_A) && !text.contains(KEY_B), "{text}");
        assert_eq!(shown["keyfile"], file(0).display().to_string());
        let p = peers(dirs[1]).await;
        assert_eq!(p["totals"]["gaps"], 0, "{p}");
        // Before its reload, host 1 refused what host 0 sealed with key B
        // (message 1 came back by NAK); host 0 kept accepting key A.
        assert!(p["totals"]["rejected"].as_u64().unwrap() > 0, "{p}");
        let p0 = peers(dirs[0]).await;
        assert_eq!(p0["totals"]["rejected"], 0, "{p0}");
    });
}
