//! The NATS bridge against a real `nats-server` on loopback: two daemons
//! (separate socket folders, no multicast) connected to it exchange
//! messages both ways in order and once; a plain NATS client publishes to
//! and subscribes from the bus with payloads unchanged and escaped names;
//! propagation rules on both sides make no loops; reload of channel
//! settings (a changed `nats` section: `nats_reload.rs`), TLS with
//! user/password, a leaf-node layout, `/metrics` and the drain on stop.
//! Server restarts and outages are in `nats_failover.rs`.
#![cfg(unix)]

mod common;

use std::time::Duration;

use common::nats::{
    config, expect_in_order, origin_header, status, wait_bridged, warm_up, NatsServer, RawNats,
};
use common::{Daemon, Got};
use serde_json::Value;

#[test]
fn two_daemons_cross_both_ways_in_order_once() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let (d1, d2) = (
        Daemon::start(&config(&nats.url(), "")),
        Daemon::start(&config(&nats.url(), "")),
    );
    let Bridged {
        mut l1,
        mut l2,
        mut p1,
        mut p2,
    } = bridged(&d1, &d2);
    const N: usize = 3000;
    let t1 = std::thread::spawn(move || {
        for i in 0..N {
            p1.publish("e1", i.to_string().as_bytes());
        }
        p1.ping();
        p1
    });
    let t2 = std::thread::spawn(move || {
        for i in 0..N {
            p2.publish("e2", i.to_string().as_bytes());
        }
        p2.ping();
        p2
    });
    let r2 = std::thread::spawn(move || {
        expect_in_order(&mut l2, "e1", N);
        l2
    });
    expect_in_order(&mut l1, "e2", N);
    r2.join().unwrap();
    t1.join().unwrap();
    t2.join().unwrap();
    let s1 = status(&d1);
    assert_eq!(s1["nats"]["dropped"], 0, "{s1}");
    assert_eq!(s1["nats"]["gaps"], 0, "{s1}");
    assert!(
        s1["nats"]["messages_out"].as_u64().unwrap() >= N as u64,
        "{s1}"
    );
    assert!(
        s1["nats"]["messages_in"].as_u64().unwrap() >= N as u64,
        "{s1}"
    );
    // The bridge connects with no_echo: its own messages do not come back.
    assert_eq!(s1["nats"]["loops"], 0, "{s1}");
    let peers = d1
        .control()
        .request("nc-control-showpeers", &Value::Null)
        .unwrap();
    assert_eq!(peers["nats"]["server"], format!("127.0.0.1:{}", nats.port));
    // One subscription: A (the control channel never crosses NATS).
    assert_eq!(peers["nats"]["subscriptions"], 1);
}

#[test]
fn plain_nats_clients_publish_and_subscribe_with_escaped_names() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let d = Daemon::start(&config(
        &nats.url(),
        r#", "my chan": {"propagatetonats": true}"#,
    ));
    wait_bridged(&d, 2);
    let mut plain = RawNats::connect(nats.port);
    plain.subscribe("netcluster.>", 1);

    // netcluster → NATS: subject escaped, payload unchanged, headers exact.
    let mut p = d.raw("my chan", "p");
    let payload = b"\x00binary\xffpayload\r\n";
    p.publish("a.b", payload);
    let m = plain.next_msg();
    assert_eq!(m.subject, "netcluster.~my%20chan.~a%2Eb");
    assert_eq!(m.payload, payload);
    // One header, five fields; names as their subject tokens.
    assert_eq!(m.headers.len(), 1, "{:?}", m.headers);
    let node = format!("{:016x}", p.node);
    let client = p.client.to_string();
    assert_eq!(
        m.origin(),
        Some([node.as_str(), client.as_str(), "1", "~my%20chan", "~a%2Eb"])
    );

    // NATS → netcluster, plain and escaped names.
    let mut l = d.raw("my chan", "l");
    l.subscribe(&["hello world", "x"]);
    let mut la = d.raw("A", "la");
    la.subscribe(&["*"]);
    // Interest of the bridge's subscription is in place (status said so);
    // a round trip makes sure the plain client's messages follow it.
    plain.publish("netcluster.~my%20chan.~hello%20world", b"{\"n\":1}");
    plain.publish("netcluster.~my%20chan.x", b"plain");
    plain.publish("netcluster.A.ev", b"to A");
    // Other headers are no netcluster origin: delivered as from NATS.
    plain.publish_with_headers("netcluster.A.ev", &[("X-Trace", "1")], b"traced");
    // A malformed, truncated, oversized or disagreeing Nc-Origin is
    // refused and counted, not delivered.
    let good = origin_header(0xaa, 1, 1, "A", "ev");
    let refused = [
        "zz".to_string(),
        good[..good.len() - 3].to_string(),
        format!("{good} extra"),
        format!("{good}{}", "v".repeat(5000)),
        origin_header(0xaa, 1, 1, "B", "ev"),
        origin_header(0xaa, 1, u64::MAX, "A", "ev") + "0",
    ];
    for v in &refused {
        plain.publish_with_headers("netcluster.A.ev", &[("Nc-Origin", v)], b"refused");
    }
    // The five headers of older daemons are refused too.
    plain.publish_with_headers(
        "netcluster.A.ev",
        &[("Nc-Node", "00000000000000aa"), ("Nc-Seq", "1")],
        b"refused: older format",
    );
    plain.sync();
    match l.next() {
        Some(Got::Deliver { event, payload, .. }) => {
            assert_eq!(event, "hello world");
            assert_eq!(payload, b"{\"n\":1}");
        }
        other => panic!("{other:?}"),
    }
    match l.next() {
        Some(Got::Deliver { event, payload, .. }) => {
            assert_eq!((event.as_str(), payload.as_slice()), ("x", &b"plain"[..]));
        }
        other => panic!("{other:?}"),
    }
    for want in [&b"to A"[..], b"traced"] {
        match la.next() {
            Some(Got::Deliver {
                event,
                payload,
                client,
                seq,
            }) => {
                assert_eq!((event.as_str(), payload.as_slice()), ("ev", want));
                // Plain NATS clients show as client 0, sequence 0 (of
                // node "NATS").
                assert_eq!((client, seq), (0, 0));
            }
            other => panic!("{other:?}"),
        }
    }
    netcluster_testkit::wait_until(10, "the refused messages to be counted", || {
        status(&d)["nats"]["refused"].as_u64() >= Some(refused.len() as u64 + 1)
    });
    let after: Vec<_> = la
        .ping()
        .into_iter()
        .filter(|g| matches!(g, Got::Deliver { .. }))
        .collect();
    assert!(after.is_empty(), "refused messages delivered: {after:?}");
    // Messages from NATS are never sent back to NATS.
    plain.sync();
    let s = status(&d);
    assert_eq!(s["nats"]["messages_out"], 1, "{s}");
}

#[test]
fn propagation_rules_on_both_sides_make_no_loops() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let rules = r#"{"nats": {"servers": ["URL"]}, "channels": {
        "A": {"propagatetonats": true, "propagatetochannels": "^B$"},
        "B": {"propagatetonats": true, "propagatetochannels": "^A$"}}}"#
        .replace("URL", &nats.url());
    let d1 = Daemon::start(&rules);
    let d2 = Daemon::start(&rules);
    wait_bridged(&d1, 2);
    wait_bridged(&d2, 2);
    let mut l2a = d2.raw("A", "l2a");
    let mut l2b = d2.raw("B", "l2b");
    let mut l1b = d1.raw("B", "l1b");
    let mut l1a = d1.raw("A", "l1a");
    for l in [&mut l2a, &mut l2b, &mut l1b, &mut l1a] {
        l.subscribe(&["x", "warm"]);
    }
    let mut p = d1.raw("A", "p");
    warm_up(&mut p, &mut l2a);
    for l in [&mut l2b, &mut l1b, &mut l1a] {
        std::thread::sleep(Duration::from_millis(200));
        let _ = l.ping();
    }
    for i in 0..10 {
        p.publish("x", i.to_string().as_bytes());
    }
    p.ping();
    for l in [&mut l2a, &mut l2b, &mut l1b, &mut l1a] {
        expect_in_order(l, "x", 10);
    }
    let (s1, s2) = (status(&d1), status(&d2));
    // d2 published nothing: what it got from NATS was never sent back.
    assert_eq!(s2["nats"]["messages_out"], 0, "{s2}");
    // d1 published each message once (on A; B's copy is not local-origin).
    let out1 = s1["nats"]["messages_out"].as_u64().unwrap();
    let warm = out1 - 10;
    assert!(warm >= 1, "{s1}");
    assert_eq!(s2["nats"]["duplicates"], 0, "{s2}");
}

#[test]
fn reload_applies_channel_settings_and_refuses_adding_or_removing_nats() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let url = nats.url();
    let d = Daemon::start(&config(&url, ""));
    wait_bridged(&d, 1);
    let mut ctl = d.control();
    let cfg = |accept: bool, extra: &str| {
        serde_json::from_str::<Value>(&format!(
            r#"{{"nats": {{"servers": ["{url}"]{extra}}},
                "channels": {{"A": {{"propagatetonats": true, "acceptfromnats": {accept}}}}}}}"#
        ))
        .unwrap()
    };
    // acceptfromnats off: the subscription goes at once.
    ctl.request("nc-control-reloadconfig", &cfg(false, ""))
        .unwrap();
    netcluster_testkit::wait_until(10, "the subscription to be dropped", || {
        status(&d)["nats"]["subscriptions"] == 0
    });
    let mut plain = RawNats::connect(nats.port);
    let mut l = d.raw("A", "l");
    l.subscribe(&["*"]);
    plain.publish("netcluster.A.ev", b"not wanted");
    plain.sync();
    std::thread::sleep(Duration::from_millis(300));
    let got: Vec<_> = l
        .ping()
        .into_iter()
        .filter(|g| matches!(g, Got::Deliver { .. }))
        .collect();
    assert!(got.is_empty(), "{got:?}");
    // And back on.
    ctl.request("nc-control-reloadconfig", &cfg(true, ""))
        .unwrap();
    wait_bridged(&d, 1);
    // Adding or removing the nats section needs a restart.
    let e = ctl
        .request(
            "nc-control-reloadconfig",
            &serde_json::json!({"channels": {"A": {}}}),
        )
        .unwrap_err();
    assert!(
        e.contains("the nats section cannot be added or removed while running; restart ncserver"),
        "{e}"
    );
    // The password is never shown.
    let r = ctl.request(
        "nc-control-reloadconfig",
        &cfg(true, r#", "user": "u", "password": "s3cretpw""#),
    );
    assert!(!format!("{r:?}").contains("s3cretpw"));
    let shown = ctl.request("nc-control-showconfig", &Value::Null).unwrap();
    assert!(!shown.to_string().contains("s3cretpw"), "{shown}");
    assert!(!status(&d).to_string().contains("s3cretpw"));
}

#[test]
fn tls_with_user_and_password() {
    let Some(nats) = NatsServer::start_with(Some(|dir: &std::path::Path| {
        common::nats::make_certs(dir);
        r#"
            tls { cert_file: "server.pem", key_file: "server.key" }
            authorization { user: "site", password: "s3cret-pw" }
        "#
        .to_string()
    })) else {
        return;
    };
    let ca = nats.dir.path().join("ca.pem");
    let cfg = |password: &str| {
        format!(
            r#"{{"nats": {{"servers": ["tls://127.0.0.1:{}"], "user": "site", "password": "{password}",
                 "tls": {{"ca": "{}"}}}},
                "channels": {{"A": {{"propagatetonats": true}}}}}}"#,
            nats.port,
            ca.display()
        )
    };
    let d1 = Daemon::start(&cfg("s3cret-pw"));
    let d2 = Daemon::start(&cfg("s3cret-pw"));
    wait_bridged(&d1, 1);
    wait_bridged(&d2, 1);
    let mut l2 = d2.raw("A", "l2");
    l2.subscribe(&["e", "warm"]);
    let mut p1 = d1.raw("A", "p1");
    warm_up(&mut p1, &mut l2);
    for i in 0..100 {
        p1.publish("e", i.to_string().as_bytes());
    }
    expect_in_order(&mut l2, "e", 100);
    // A wrong password never connects, and is not shown anywhere.
    let bad = Daemon::start(&cfg("wrong-pw"));
    std::thread::sleep(Duration::from_secs(2));
    let s = status(&bad);
    assert_ne!(s["nats"]["state"], "connected", "{s}");
    let shown = bad
        .control()
        .request("nc-control-showconfig", &Value::Null)
        .unwrap();
    assert_eq!(shown["nats"]["password"], "(set)");
    assert!(!bad.log().contains("wrong-pw"));
    assert!(!d1.log().contains("s3cret-pw"));
}

/// GET `path` from the daemon's HTTP endpoint; returns the body.
/// Listeners and publishers on channel A of two daemons bridged through
/// NATS: `l1` on d1 hears `e2`, `l2` on d2 hears `e1`; each direction is
/// warmed up (subscriptions known on both sides) before it is returned.
struct Bridged {
    l1: common::Raw,
    l2: common::Raw,
    p1: common::Raw,
    p2: common::Raw,
}

fn bridged(d1: &Daemon, d2: &Daemon) -> Bridged {
    wait_bridged(d1, 1);
    wait_bridged(d2, 1);
    let mut l1 = d1.raw("A", "l1");
    let mut l2 = d2.raw("A", "l2");
    l1.subscribe(&["e2", "warm"]);
    l2.subscribe(&["e1", "warm"]);
    let mut p1 = d1.raw("A", "p1");
    let mut p2 = d2.raw("A", "p2");
    warm_up(&mut p1, &mut l2);
    warm_up(&mut p2, &mut l1);
    Bridged { l1, l2, p1, p2 }
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.split_once("\r\n\r\n").unwrap().1.to_string()
}

#[test]
fn metrics_show_the_bridge_and_are_documented() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = Daemon::start(&format!(
        r#"{{"http": {{"listen": "127.0.0.1:{port}"}},
            "nats": {{"servers": ["{}"], "token": "tok-secret-1"}},
            "channels": {{"A": {{"propagatetonats": true}}}}}}"#,
        nats.url()
    ));
    wait_bridged(&d, 1);
    let mut p = d.raw("A", "p");
    p.publish("e", b"x");
    p.ping();
    netcluster_testkit::wait_until(10, "the message to be published", || {
        status(&d)["nats"]["messages_out"] == 1
    });
    let m = http_get(port, "/metrics");
    assert!(m.contains("netcluster_nats_connected 1"), "{m}");
    assert!(m.contains("netcluster_nats_sent_messages_total 1"), "{m}");
    assert!(!m.contains("tok-secret-1"));
    let doc = include_str!("../../../docs/METRICS.md");
    let mut n = 0;
    for name in m
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE netcluster_nats"))
    {
        let name = format!("netcluster_nats{}", name.split(' ').next().unwrap());
        assert!(
            doc.contains(&format!("`{name}`")) || doc.contains(&format!("`{name}_total`")),
            "{name} is not in docs/METRICS.md"
        );
        n += 1;
    }
    assert_eq!(n, 11, "{m}");
}

#[test]
fn leaf_node_layout() {
    // A hub server accepting leaf nodes, and a site-local server that is
    // its leaf; one daemon on each.
    let leaf_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let Some(hub) = NatsServer::start_with(Some(move |_: &std::path::Path| {
        format!("leafnodes {{ listen: \"127.0.0.1:{leaf_port}\" }}\n")
    })) else {
        return;
    };
    let Some(leaf) = NatsServer::start_with(Some(move |_: &std::path::Path| {
        format!("leafnodes {{ remotes = [ {{ url: \"nats-leaf://127.0.0.1:{leaf_port}\" }} ] }}\n")
    })) else {
        return;
    };
    let (d1, d2) = (
        Daemon::start(&config(&leaf.url(), "")),
        Daemon::start(&config(&hub.url(), "")),
    );
    let Bridged {
        mut l1,
        mut l2,
        mut p1,
        mut p2,
    } = bridged(&d1, &d2);
    for i in 0..500 {
        p1.publish("e1", i.to_string().as_bytes());
        p2.publish("e2", i.to_string().as_bytes());
    }
    expect_in_order(&mut l2, "e1", 500);
    expect_in_order(&mut l1, "e2", 500);
}

#[test]
fn stopping_daemon_drains_what_clients_emitted_last() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let mut d = Daemon::start(&config(&nats.url(), ""));
    wait_bridged(&d, 1);
    let mut plain = RawNats::connect(nats.port);
    plain.subscribe("netcluster.A.e", 1);
    let mut p = d.raw("A", "p");
    const N: usize = 2000;
    for i in 0..N {
        p.publish("e", i.to_string().as_bytes());
    }
    p.ping();
    // SIGTERM right away: the daemon stops, sending what is queued first.
    unsafe { libc::kill(d.pid() as i32, libc::SIGTERM) };
    let _ = d.child.wait();
    for i in 0..N {
        let m = plain.next_msg();
        assert_eq!(m.payload, i.to_string().as_bytes());
    }
}

/// A burst far larger than `buffer` while the link is up is paced (the
/// publisher is held back), not cut: 1000 messages of 64 KiB (64 MiB)
/// through the default 8 MiB buffer all arrive, in order, none dropped.
#[test]
fn burst_past_the_buffer_while_connected_is_paced_not_dropped() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let d1 = Daemon::start(&config(&nats.url(), ""));
    // The receiving client's queue takes the whole burst: remote messages
    // are never waited for, and this test is about the bridge.
    let d2 = Daemon::start(&format!(
        r#"{{"queuebytes": "256MiB", "nats": {{"servers": ["{}"]}},
            "channels": {{"A": {{"propagatetonats": true}}}}}}"#,
        nats.url()
    ));
    wait_bridged(&d1, 1);
    wait_bridged(&d2, 1);
    let mut l2 = d2.raw("A", "l2");
    l2.subscribe(&["big", "warm"]);
    let mut p1 = d1.raw("A", "p1");
    warm_up(&mut p1, &mut l2);
    const N: u32 = 1000;
    const SIZE: usize = 64 << 10;
    let reader = std::thread::spawn(move || {
        let mut next = 0;
        while next < N {
            match l2.next() {
                Some(Got::Deliver { event, payload, .. }) if event == "big" => {
                    assert_eq!(payload.len(), SIZE);
                    let i = u32::from_le_bytes(payload[..4].try_into().unwrap());
                    assert_eq!(i, next, "out of order, duplicated or lost");
                    next += 1;
                }
                Some(Got::Deliver { event, .. }) if event == "warm" => {}
                other => panic!("unexpected {other:?} after {next} of {N}"),
            }
        }
    });
    let mut body = vec![b'x'; SIZE];
    for i in 0..N {
        body[..4].copy_from_slice(&i.to_le_bytes());
        p1.publish("big", &body);
    }
    p1.ping();
    reader.join().unwrap();
    let s1 = status(&d1);
    assert_eq!(s1["nats"]["dropped"], 0, "{s1}");
    assert_eq!(s1["nats"]["state"], "connected", "{s1}");
    let s2 = status(&d2);
    assert_eq!(s2["nats"]["gaps"], 0, "{s2}");
    assert_eq!(s2["nats"]["slow_consumer"], 0, "{s2}");
}
