//! The NATS bridge across "sites" in network namespaces: three
//! `nats-server`s clustered with routes, one per namespace; hosts 0 and 1
//! form a site whose daemons also talk multicast, host 2 is a site alone
//! reached only through NATS. Every message reaches every other daemon's
//! listeners once and in order (LAN neighbours by multicast, the NATS copy
//! dropped), and killing the NATS server host 2's daemon uses makes it
//! fail over to another server of the cluster, every message across the
//! failover arriving or reported by `nc-gap` with cause `nats`. A channel
//! that only NATS carries between the LAN neighbours (no `propagatetonet`
//! at the origin, or no `acceptfromnet` at the receiver) reaches them
//! through NATS all the same.
#![cfg(target_os = "linux")]

mod common;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::nats::nats_server_bin;
use common::{Got, Raw};
use netcluster_testkit::netns::Lan;
use serde_json::Value;

/// `nats-server`s in namespaces, killed on drop.
struct Cluster {
    servers: Vec<Option<Child>>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn start(lan: &Lan, bin: &std::path::Path) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let ips: Vec<String> = lan.hosts.iter().map(|h| h.ip.to_string()).collect();
        let mut servers = Vec::new();
        for (i, h) in lan.hosts.iter().enumerate() {
            let routes: Vec<String> = ips
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, ip)| format!("nats://{ip}:6222"))
                .collect();
            let log = std::fs::File::create(dir.path().join(format!("nats{i}.log"))).unwrap();
            let child = Command::new("ip")
                .args(["netns", "exec", &h.ns])
                .arg(bin)
                .args(["-a", &ips[i], "-p", "4222", "-n", &format!("n{i}")])
                .args(["--cluster_name", "wan"])
                .args(["--cluster", &format!("nats://{}:6222", ips[i])])
                .args(["--routes", &routes.join(",")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn nats-server");
            servers.push(Some(child));
        }
        Cluster { servers, _dir: dir }
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.servers[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            self.kill(i);
        }
    }
}

fn config(lan: &Lan, i: usize, multicast: bool) -> String {
    // Its own site's server first, then the others (failover).
    let mut servers = vec![format!("\"nats://{}:4222\"", lan.hosts[i].ip)];
    for (j, h) in lan.hosts.iter().enumerate() {
        if j != i {
            servers.push(format!("\"nats://{}:4222\"", h.ip));
        }
    }
    format!(
        r#"{{"connecttonet": {multicast}, "nodename": "h{i}",
            "nats": {{"servers": [{}]}},
            "channels": {{"A": {{"propagatetonet": true, "propagatetonats": true}},
                "B": {{"propagatetonats": true}},
                "C": {{"propagatetonet": true, "propagatetonats": true, "acceptfromnet": false}}}}}}"#,
        servers.join(", ")
    )
}

fn raw(lan: &Lan, i: usize, ch: &str) -> Raw {
    let mut r = Raw::connect(&lan.hosts[i].dir().join(format!("netcluster-{ch}")));
    r.hello("t");
    r
}

fn status(lan: &Lan, i: usize) -> Value {
    raw(lan, i, "control")
        .request("nc-control-status", &Value::Null)
        .unwrap()
}

/// Publishes "warm" on `p` until both listeners got one.
fn warm(p: &mut Raw, a: &mut Raw, b: &mut Raw) {
    for l in [&mut *a, &mut *b] {
        l.s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = [false, false];
    while !(got[0] && got[1]) {
        assert!(Instant::now() < deadline, "warm-up never arrived: {got:?}");
        p.publish("warm", b"w");
        for (k, l) in [&mut *a, &mut *b].into_iter().enumerate() {
            while let Ok(Some(g)) = l.try_next() {
                if matches!(&g, Got::Deliver { event, .. } if event == "warm") {
                    got[k] = true;
                }
            }
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    for l in [&mut *a, &mut *b] {
        while let Ok(Some(_)) = l.try_next() {}
        l.s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    }
}

/// Reads "e" deliveries until `streams` streams of `n` each are complete:
/// each stream (payload `h{host}:{i}`; client ids repeat across daemons)
/// in order and once. Panics on a gap.
fn read_streams(l: &mut Raw, streams: usize, n: u64) {
    let mut next: HashMap<String, u64> = HashMap::new();
    let mut total = 0;
    while total < streams * n as usize {
        match l.next() {
            Some(Got::Deliver { event, payload, .. }) if event == "e" => {
                let text = String::from_utf8_lossy(&payload).to_string();
                let (host, i) = text.split_once(':').unwrap();
                let i: u64 = i.parse().unwrap();
                let want = next.entry(host.to_string()).or_insert(0);
                assert_eq!(i, *want, "stream of {host} out of order");
                *want += 1;
                total += 1;
            }
            Some(Got::Deliver { event, payload, .. }) if event == "nc-gap" => {
                panic!("gap: {}", String::from_utf8_lossy(&payload))
            }
            Some(_) => {}
            None => panic!("daemon closed"),
        }
    }
    assert_eq!(next.len(), streams);
    // Nothing extra once the daemon answered a ping.
    std::thread::sleep(Duration::from_millis(500));
    let extra = l
        .ping()
        .into_iter()
        .filter(|g| matches!(g, Got::Deliver { event, .. } if event == "e"))
        .count();
    assert_eq!(extra, 0, "duplicates");
}

#[test]
fn two_sites_through_a_nats_cluster_once_in_order_and_failover() {
    let Some(mut lan) = Lan::new(3) else { return };
    let Some(bin) = nats_server_bin() else { return };
    let mut cluster = Cluster::start(&lan, &bin);
    let ncserver = std::path::PathBuf::from(common::BIN);
    for i in 0..3 {
        let cfg = config(&lan, i, i < 2);
        lan.start_daemon(i, &ncserver, &cfg);
    }
    netcluster_testkit::wait_until(60, "every bridge to connect", || {
        (0..3).all(|i| status(&lan, i)["nats"]["state"] == "connected")
    });
    let mut l0 = raw(&lan, 0, "A");
    let mut l1 = raw(&lan, 1, "A");
    let mut l2 = raw(&lan, 2, "A");
    for x in [&mut l0, &mut l1, &mut l2] {
        x.subscribe(&["e", "f", "warm", "nc-gap"]);
    }
    let mut p0 = raw(&lan, 0, "A");
    let mut p1 = raw(&lan, 1, "A");
    let mut p2 = raw(&lan, 2, "A");
    warm(&mut p0, &mut l1, &mut l2);
    warm(&mut p1, &mut l0, &mut l2);
    warm(&mut p2, &mut l0, &mut l1);

    // Every host publishes at once: host 0 and 1 reach each other by
    // multicast and host 2 by NATS; host 2 reaches both by NATS. Each
    // listener gets three streams (its own host's too), each once.
    const N: u64 = 10_000;
    let spawn = |mut p: Raw, host: usize| {
        std::thread::spawn(move || {
            for i in 0..N {
                p.publish("e", format!("h{host}:{i}").as_bytes());
            }
            p.ping();
            p
        })
    };
    let (t0, t1, t2) = (spawn(p0, 0), spawn(p1, 1), spawn(p2, 2));
    read_streams(&mut l0, 3, N);
    read_streams(&mut l1, 3, N);
    read_streams(&mut l2, 3, N);
    let _ = (t0.join().unwrap(), t1.join().unwrap());
    let mut p2 = t2.join().unwrap();
    // Host 1 heard host 0 on the LAN: the NATS copies were dropped.
    let s1 = status(&lan, 1);
    assert!(s1["nats"]["loops"].as_u64().unwrap() >= N, "{s1}");

    // Host 1 hears host 0 on the LAN, but NATS is the only way for B
    // (host 0 does not multicast it) and for C (host 1 refuses C's
    // multicast copies): those arrive through NATS, once and in order.
    for ch in ["B", "C"] {
        let mut a = raw(&lan, 1, ch);
        let mut b = raw(&lan, 2, ch);
        for x in [&mut a, &mut b] {
            x.subscribe(&["e", "warm", "nc-gap"]);
        }
        let mut p = raw(&lan, 0, ch);
        warm(&mut p, &mut a, &mut b);
        for i in 0..1000 {
            p.publish("e", format!("h0:{i}").as_bytes());
        }
        read_streams(&mut a, 1, 1000);
        read_streams(&mut b, 1, 1000);
    }

    // Failover: kill the NATS server host 2 is connected to (its own, the
    // first in its list) while host 2 publishes.
    let s2 = status(&lan, 2);
    let before = s2["nats"]["reconnects"].as_u64().unwrap();
    let own = format!("{}:4222", lan.hosts[2].ip);
    assert_eq!(
        s2["nats"]["server"],
        own.as_str(),
        "servers are tried in order"
    );
    const M: u64 = 600;
    let t2 = std::thread::spawn(move || {
        for i in 0..M {
            p2.publish("f", i.to_string().as_bytes());
            std::thread::sleep(Duration::from_millis(5));
        }
        p2.ping();
        p2
    });
    std::thread::sleep(Duration::from_millis(700));
    cluster.kill(2);
    let mut p2 = t2.join().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = status(&lan, 2);
        if s["nats"]["state"] == "connected" && s["nats"]["reconnects"].as_u64() > Some(before) {
            break;
        }
        if Instant::now() > deadline {
            let log = lan.log(2, 0);
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!("host 2 never failed over: {s}\n{}", tail.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let server = status(&lan, 2)["nats"]["server"].clone();
    assert_ne!(server, own.as_str(), "not failed over");
    // Markers until one arrives at host 0, then account for every "f".
    l0.s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut got = Vec::new();
    let mut gaps = Vec::new();
    let mut base = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut marker = false;
    while !marker {
        assert!(Instant::now() < deadline, "no marker after the failover");
        p2.publish("warm", b"marker");
        while let Ok(Some(g)) = l0.try_next() {
            let Got::Deliver {
                event,
                payload,
                seq,
                ..
            } = g
            else {
                continue;
            };
            match event.as_str() {
                "f" => {
                    let i: u64 = String::from_utf8_lossy(&payload).parse().unwrap();
                    base.get_or_insert(seq - i);
                    got.push(i);
                }
                "nc-gap" => {
                    let v: Value = serde_json::from_slice(&payload).unwrap();
                    assert_eq!(v["cause"], "nats");
                    gaps.push((v["first"].as_u64().unwrap(), v["last"].as_u64().unwrap()));
                }
                "warm" => marker = true,
                _ => {}
            }
        }
    }
    assert!(got.windows(2).all(|w| w[0] < w[1]), "order");
    let base = base.expect("no f arrived at all");
    let mut lost = 0;
    for i in 0..M {
        if !got.contains(&i) {
            let seq = base + i;
            assert!(
                gaps.iter().any(|&(a, b)| a <= seq && seq <= b),
                "f {i} neither delivered nor reported; gaps {gaps:?}"
            );
            lost += 1;
        }
    }
    eprintln!(
        "failover to {server}: {} of {M} delivered, {lost} reported lost",
        got.len()
    );
}
