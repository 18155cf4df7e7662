//! Replays and floods between hosts (network namespaces on a bridge):
//! sealed DATA captured on the wire and sent again to a restarted daemon
//! delivers nothing and makes nobody retransmit; 5000 fake node ids do not
//! lock a restarting daemon out, and a daemon refused by a table full of
//! live (fake) peers is logged and announced as `nc-gap`; a daemon with
//! another key, and a flood of foreign datagrams, are logged once per
//! source, naming it and the reason.
//! Needs root and iproute2; skipped with a message otherwise, except under
//! NETCLUSTER_REQUIRE_NETNS=1 (CI), where it fails.
#![cfg(target_os = "linux")]

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::Duration;

use common::flood::FakeDaemons;
use common::lan::*;
use netcluster_proto::net::wire;
use netcluster_testkit::netns::Lan;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ncserver");
const KEY_A: &str = "5d1f0c2a9b8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a392817060504";
const KEY_B: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 77, 55);
const PORT: u16 = 4455;

fn config(name: &str, extra: &str) -> String {
    format!(
        r#"{{ "connecttonet": true, "nodename": "{name}", "addr": "{GROUP}", "port": {PORT}, {extra}
             "channels": {{ "A": {{ "propagatetonet": true }} }} }}"#
    )
}

fn keyed(name: &str, key: &str) -> String {
    config(name, &format!(r#""key": "{key}","#))
}

fn total(p: &Value, k: &str) -> u64 {
    p["totals"][k]
        .as_u64()
        .unwrap_or_else(|| panic!("no {k}: {p}"))
}

/// A plain UDP socket joined to the group inside a host, as any program on
/// that machine could open.
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

/// Sends `datagrams` from host `i` to `to`:PORT, pausing now and then so
/// the receiver's socket buffer keeps up.
fn send_from(lan: &Lan, i: usize, to: &str, datagrams: &[Vec<u8>]) {
    lan.run_in(i, || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        for (k, d) in datagrams.iter().enumerate() {
            s.send_to(d, (to, PORT)).unwrap();
            if k % 200 == 199 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    });
}

/// Drops on host `i` every UDP datagram from `src` to PORT (nftables).
fn block_from(lan: &Lan, i: usize, src: &str) -> tempfile::TempDir {
    let dir = netcluster_testkit::tempdir();
    let path = dir.path().join("block.nft");
    std::fs::write(
        &path,
        format!(
            "table inet ncblock {{\n  chain input {{\n    \
             type filter hook input priority 0; policy accept;\n    \
             ip saddr {src} udp dport {PORT} drop\n  }}\n}}\n"
        ),
    )
    .unwrap();
    let out = lan.exec(i, &["nft", "-f", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "nft: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// Removes [`block_from`]'s rule.
fn unblock(lan: &Lan, i: usize, _rules: tempfile::TempDir) {
    let out = lan.exec(i, &["nft", "delete", "table", "inet", "ncblock"]);
    assert!(
        out.status.success(),
        "nft: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn captured_sealed_data_replayed_into_a_restarted_daemon_delivers_nothing() {
    let Some(mut lan) = Lan::new(2) else { return };
    lan.start_daemon(0, Path::new(BIN), &keyed("h0", KEY_A));
    lan.start_daemon(1, Path::new(BIN), &keyed("h1", KEY_A));
    let rt = rt();
    let dirs: Vec<std::path::PathBuf> = lan.hosts.iter().map(|h| h.dir().to_owned()).collect();
    let (tx, r1, mut s1) = rt.block_on(async {
        wait_peers(&[&dirs[0], &dirs[1]], 1).await;
        let r1 = client(&dirs[1], "A").await;
        let s1 = r1.subscribe("n").await.unwrap();
        (client(&dirs[0], "A").await, r1, s1)
    });
    let cap = lan.run_in(1, capture_socket);
    // About one message per datagram: 100 sealed DATA datagrams.
    const N: u64 = 100;
    let pad = "x".repeat(1000);
    rt.block_on(async {
        for i in 0..N {
            tx.emit("n", &(i, &pad)).await.unwrap();
        }
        tx.flush().await.unwrap();
    });
    let mut tape: Vec<Vec<u8>> = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while (tape.len() as u64) < N {
        let (n, from) = cap.recv_from(&mut buf).expect("capture DATA datagrams");
        if from.ip() == std::net::IpAddr::from([10, 77, 0, 1]) && n > 24 && buf[6] == 1 {
            assert_eq!(buf[5] & 1, 1, "sealed");
            tape.push(buf[..n].to_vec());
        }
    }
    drop(cap);
    rt.block_on(async {
        for i in 0..N {
            let m = next(&mut s1, 10).await.expect("live message");
            assert_eq!(m.json::<(u64, String)>().unwrap().0, i);
        }
    });
    drop((s1, r1));
    let before = rt.block_on(peers(&dirs[0]));

    // Host 1's daemon restarts, and hears nothing from host 0 for a while
    // (as when its heartbeat is still a second away): the recording, sent
    // to it from host 1 itself, is the first it hears of host 0. Then once
    // more after host 0 is back and up, to the daemon and to the group.
    lan.kill_daemons(1);
    let nft = block_from(&lan, 1, "10.77.0.1");
    lan.start_daemon(1, Path::new(BIN), &keyed("h1", KEY_A));
    rt.block_on(async {
        let r1 = client(&dirs[1], "A").await;
        let mut all = r1.subscribe("*").await.unwrap();
        send_from(&lan, 1, "10.77.0.2", &tape);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let h1 = peers(&dirs[1]).await;
            if total(&h1, "unsynced") > 0 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{}", h1["totals"]);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        unblock(&lan, 1, nft);
        wait_node_up(&dirs[1], tx.node_id()).await;
        send_from(&lan, 1, "10.77.0.2", &tape);
        send_from(&lan, 1, "239.255.77.55", &tape);
        if let Some(m) = next(&mut all, 3).await {
            panic!("the replay delivered {m:?}");
        }
        let after = peers(&dirs[0]).await;
        let h1 = peers(&dirs[1]).await;
        eprintln!(
            "replayed {} datagrams 3 times: delivered 0, receiver NAKs {}, \
             sender retransmissions {} -> {}, unsynced drops {}, duplicates {}",
            tape.len(),
            total(&h1, "naks_out"),
            total(&before, "retransmitted"),
            total(&after, "retransmitted"),
            total(&h1, "unsynced"),
            total(&h1, "duplicates"),
        );
        assert_eq!(total(&h1, "naks_out"), 0, "{h1}");
        assert_eq!(total(&h1, "messages_in"), 0, "{h1}");
        assert_eq!(
            total(&after, "retransmitted"),
            total(&before, "retransmitted"),
            "{after}"
        );
        assert!(
            total(&h1, "unsynced") + total(&h1, "duplicates") >= tape.len() as u64,
            "{h1}"
        );
        // New messages flow normally.
        for i in 0..10u64 {
            tx.emit("n", &i).await.unwrap();
        }
        tx.flush().await.unwrap();
        let mut s = all;
        expect_sequence_at(&mut s, 10, "after the replay", &dirs[1]).await;
    });
}

/// A plain heartbeat from a made-up node.
fn fake_heartbeat(node: u64) -> Vec<u8> {
    let mut b = Vec::new();
    let hb = wire::Heartbeat {
        name: "fake",
        last_seq: 0,
        uptime_ms: 3_600_000,
        messages_out: 0,
        datagrams_out: 0,
        bytes_out: 0,
    };
    wire::encode_heartbeat(&mut b, node, 1, &hb);
    b
}

#[test]
fn five_thousand_fake_node_ids_do_not_lock_out_a_restarting_daemon() {
    let Some(mut lan) = Lan::new(3) else { return };
    lan.start_daemon(0, Path::new(BIN), &config("h0", ""));
    lan.start_daemon(1, Path::new(BIN), &config("h1", ""));
    let rt = rt();
    let dirs: Vec<std::path::PathBuf> = lan.hosts.iter().map(|h| h.dir().to_owned()).collect();
    rt.block_on(wait_peers(&[&dirs[0], &dirs[1]], 1));
    // Host 2 (no daemon) floods host 0 with 5000 made-up node ids.
    let fakes: Vec<Vec<u8>> = (0..5000u64)
        .map(|i| fake_heartbeat(0xfa4e_0000_0000_0000 | i))
        .collect();
    send_from(&lan, 2, "10.77.0.1", &fakes);
    let p = rt.block_on(peers(&dirs[0]));
    let n = p["peers"].as_array().unwrap().len();
    eprintln!(
        "after the flood: {n} peers in the table, {} evicted, {} refused",
        total(&p, "peers_evicted"),
        total(&p, "peers_refused")
    );
    assert!(n <= 1024, "{n} peers");
    assert!(total(&p, "peers_evicted") > 0, "{}", p["totals"]);
    // Host 1's daemon restarts: host 0 admits it and gets its messages.
    lan.kill_daemons(1);
    lan.start_daemon(1, Path::new(BIN), &config("h1", ""));
    rt.block_on(async {
        let r0 = client(&dirs[0], "A").await;
        let mut s0 = r0.subscribe("*").await.unwrap();
        let tx = client(&dirs[1], "A").await;
        wait_node_up(&dirs[0], tx.node_id()).await;
        for i in 0..100u64 {
            tx.emit("n", &i).await.unwrap();
        }
        tx.flush().await.unwrap();
        expect_sequence_at(&mut s0, 100, "host 0", &dirs[0]).await;
        let p = peers(&dirs[0]).await;
        assert_eq!(total(&p, "peers_refused"), 0, "{}", p["totals"]);
    });
}

/// Lines of a daemon's log that contain every one of `words`.
fn lines_with(log: &str, words: &[&str]) -> usize {
    log.lines()
        .filter(|l| words.iter().all(|w| l.contains(w)))
        .count()
}

#[test]
fn another_key_and_foreign_floods_are_logged_once_per_source() {
    let Some(mut lan) = Lan::new(3) else { return };
    lan.start_daemon(0, Path::new(BIN), &keyed("h0", KEY_A));
    lan.start_daemon(1, Path::new(BIN), &keyed("stranger", KEY_B));
    let rt = rt();
    let dirs: Vec<std::path::PathBuf> = lan.hosts.iter().map(|h| h.dir().to_owned()).collect();
    // Host 2 floods host 0 with 5000 datagrams that are not netcluster's.
    let junk: Vec<Vec<u8>> = (0..5000u32)
        .map(|i| format!("GET /{i} HTTP/1.0\r\n\r\n").into_bytes())
        .collect();
    send_from(&lan, 2, "10.77.0.1", &junk);
    // The stranger heartbeats every second, and talks too.
    rt.block_on(async {
        let s = client(&dirs[1], "A").await;
        for i in 0..50u64 {
            s.emit("n", &i).await.unwrap();
        }
        s.flush().await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let p = peers(&dirs[0]).await;
            if total(&p, "rejected") >= 5 && total(&p, "foreign") >= 4000 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{}", p["totals"]);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let log = lan.log(0, 0);
    let stranger = lines_with(&log, &["10.77.0.2", "another key"]);
    let foreign = lines_with(&log, &["10.77.0.3", "not a netcluster datagram"]);
    let p = rt.block_on(peers(&dirs[0]));
    eprintln!(
        "{} rejected datagrams -> {stranger} log line(s); {} foreign -> {foreign} line(s)",
        total(&p, "rejected"),
        total(&p, "foreign")
    );
    assert_eq!(stranger, 1, "{log}");
    assert_eq!(foreign, 1, "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("another key")),
        "{log}"
    );
}

#[test]
fn a_daemon_refused_by_a_table_full_of_live_peers_is_logged_and_announced_as_nc_gap() {
    let Some(mut lan) = Lan::new(3) else { return };
    lan.start_daemon(0, Path::new(BIN), &config("h0", ""));
    let rt = rt();
    let dirs: Vec<std::path::PathBuf> = lan.hosts.iter().map(|h| h.dir().to_owned()).collect();
    // Host 1 plays 1024 daemons that answer SYNC: host 0's table fills up
    // with peers that are up.
    let ids: Vec<u64> = (0..1024u64).map(|i| 0xfa4e_0000_0000_0000 | i).collect();
    let to = SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 1), PORT);
    let fakes = FakeDaemons::start(&lan.hosts[1].ns, GROUP, to, &ids);
    let (r0, mut gaps) = rt.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let p = peers(&dirs[0]).await;
            if up(&p) == 1024 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} up: {}",
                up(&p),
                p["totals"]
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let r0 = client(&dirs[0], "A").await;
        let gaps = r0.subscribe("nc-gap").await.unwrap();
        (r0, gaps)
    });
    // A real daemon starts on host 2: refused, logged, announced.
    lan.start_daemon(2, Path::new(BIN), &config("h2", ""));
    rt.block_on(async {
        let h2 = client(&dirs[2], "A").await;
        let node = format!("{:016x}", h2.node_id());
        let m = next(&mut gaps, 15)
            .await
            .expect("an nc-gap for the refused node");
        let v: Value = m.json().unwrap();
        assert_eq!(v["cause"], "network", "{v}");
        assert_eq!(v["reason"], "peer table full", "{v}");
        assert_eq!(v["node"], node.as_str(), "{v}");
        let p = peers(&dirs[0]).await;
        assert!(total(&p, "peers_refused") > 0, "{}", p["totals"]);
        let log = lan.log(0, 0);
        assert_eq!(
            lines_with(&log, &["WARN", "10.77.0.3", "peer table full"]),
            1,
            "{log}"
        );
        // Once the fakes fall silent they are stale: the real daemon gets in.
        fakes.stop();
        wait_node_up(&dirs[0], h2.node_id()).await;
        drop(r0);
    });
}
