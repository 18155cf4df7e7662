//! The seed's wire format (NUL-terminated JSON) next to native clients,
//! through real sockets.
#![cfg(unix)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use netcluster_testkit::TestDaemon;
use serde_json::{json, Value};

const CONFIG: &str = r#"{ "channels": { "A": { "propagatetochannels": "^B$" }, "B": {} } }"#;

/// A raw legacy client.
struct Legacy {
    s: UnixStream,
    buf: Vec<u8>,
}

impl Legacy {
    fn connect(d: &TestDaemon, ch: &str) -> Legacy {
        let s = UnixStream::connect(d.socket_dir().join(format!("netcluster-{ch}"))).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Legacy { s, buf: Vec::new() }
    }

    fn send_raw(&mut self, b: &[u8]) {
        self.s.write_all(b).unwrap();
    }

    /// The next packet, or None if the connection closed.
    fn recv(&mut self) -> Option<Value> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == 0) {
                let p: Vec<u8> = self.buf.drain(..=i).collect();
                return Some(serde_json::from_slice(&p[..i]).unwrap());
            }
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => panic!("legacy read: {e}"),
            }
        }
    }
}

fn packet(event: &str, data: Value) -> Vec<u8> {
    let mut v = serde_json::to_vec(&json!({"emmiteruuid": "u-1", "channel": "A", "broadcast": false, "event": event, "data": data})).unwrap();
    v.push(0);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_and_native_clients_talk_both_ways() {
    let d = TestDaemon::start(CONFIG);
    let native = netcluster::Client::builder("B")
        .socket_dir(d.socket_dir())
        .connect()
        .await
        .unwrap();
    let mut sub = native.subscribe("*").await.unwrap();
    let native_a = netcluster::Client::builder("A")
        .socket_dir(d.socket_dir())
        .connect()
        .await
        .unwrap();

    let mut leg = Legacy::connect(&d, "A");
    // Two packets in one write, then one split across three writes.
    let mut two = packet("log", json!("TESTE"));
    two.extend(packet("obj", json!({"a": [1, 2]})));
    leg.send_raw(&two);
    let third = packet("split", json!(3));
    leg.send_raw(&third[..5]);
    std::thread::sleep(Duration::from_millis(50));
    leg.send_raw(&third[5..20]);
    std::thread::sleep(Duration::from_millis(50));
    leg.send_raw(&third[20..]);

    let mut got = Vec::new();
    for _ in 0..3 {
        let m = tokio::time::timeout(Duration::from_secs(5), sub.recv())
            .await
            .unwrap()
            .unwrap();
        got.push((
            m.event().to_string(),
            m.channel().to_string(),
            m.json::<Value>().unwrap(),
        ));
    }
    assert_eq!(
        got,
        vec![
            ("log".into(), "A".into(), json!("TESTE")),
            ("obj".into(), "A".into(), json!({"a": [1, 2]})),
            ("split".into(), "A".into(), json!(3)),
        ]
    );

    // Native → legacy: every event of the channel, in the seed's format.
    native_a.emit("hello", &json!({"x": 1})).await.unwrap();
    native_a.emit_bytes("raw", b"not json").await.unwrap();
    let p = tokio::task::spawn_blocking(move || (leg.recv(), leg.recv(), leg))
        .await
        .unwrap();
    let (p1, p2, mut leg) = (p.0.unwrap(), p.1.unwrap(), p.2);
    let origin = format!("{:016x}:{}", d.node_id(), native_a.client_id());
    assert_eq!(
        p1,
        json!({"emmiteruuid": origin, "channel": "A", "broadcast": false, "event": "hello", "data": {"x": 1}})
    );
    assert_eq!(p2["data"], json!("not json"));

    // Legacy → legacy across a propagation rule (A → B).
    // A legacy client that only listens (sends nothing) is still served.
    let mut leg_b = Legacy::connect(&d, "B");
    let ctl = netcluster::Client::builder("control")
        .socket_dir(d.socket_dir())
        .connect()
        .await
        .unwrap();
    loop {
        let clients = ctl.request("nc-control-showchannel", "B").await.unwrap();
        if clients
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["protocol"] == "legacy")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    leg.send_raw(&packet("relay", json!(7)));
    let p = tokio::task::spawn_blocking(move || leg_b.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p["event"], "relay");
    assert_eq!(p["channel"], "A");
    assert_eq!(p["data"], 7);
}

#[test]
fn malformed_legacy_packet_gets_an_error_and_a_disconnect() {
    let d = TestDaemon::start(CONFIG);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (native, mut sub) = rt.block_on(async {
        let c = netcluster::Client::builder("A")
            .socket_dir(d.socket_dir())
            .connect()
            .await
            .unwrap();
        let s = c.subscribe("*").await.unwrap();
        (c, s)
    });
    for bad in [
        &b"{not json}\0"[..],
        b"{\"event\": 5}\0",
        b"{\"data\": 1}\0",
    ] {
        let mut leg = Legacy::connect(&d, "A");
        leg.send_raw(bad);
        let err = leg.recv().expect("an error packet");
        assert_eq!(err["event"], "nc-error");
        assert!(!err["data"]["error"].as_str().unwrap().is_empty());
        assert!(
            leg.recv().is_none(),
            "the connection is closed after the error"
        );
    }
    // A good legacy client and the native one are unaffected.
    let mut leg = Legacy::connect(&d, "A");
    leg.send_raw(&packet("fine", json!(1)));
    let m = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), sub.recv())
            .await
            .unwrap()
            .unwrap()
    });
    assert_eq!(m.event(), "fine");
    drop(native);
}

#[test]
fn legacy_control_events_are_answered_to_the_caller() {
    let d = TestDaemon::start(CONFIG);
    let mut asker = Legacy::connect(&d, "control");
    let mut other = Legacy::connect(&d, "control");
    asker.send_raw(&packet("nc-control-showchannel", json!("A")));
    let r = asker.recv().unwrap();
    assert_eq!(r["event"], "nc-control-showchannel-response");
    assert_eq!(r["emmiteruuid"], "ncserver");
    assert_eq!(r["data"], json!([]));
    // Reload given as an object (the seed sent the config itself).
    let cfg = json!({"socketdir": d.socket_dir(), "channels": {"A": {}, "B": {}, "C": {}}});
    asker.send_raw(&packet("nc-control-reloadconfig", cfg));
    let r = asker.recv().unwrap();
    assert_eq!(r["data"]["added"], json!(["C"]), "{r}");
    other
        .s
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut b = [0u8; 16];
    assert!(
        other.s.read(&mut b).is_err(),
        "the other control client saw nothing"
    );
}

/// The clients of `channel` as `showchannel` lists them.
async fn show_channel(ctl: &netcluster::Client, channel: &str) -> Vec<Value> {
    let v = ctl
        .request("nc-control-showchannel", channel)
        .await
        .unwrap();
    v.as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_legacy_listener_gets_everything_from_the_moment_it_connects() {
    let d = TestDaemon::start(CONFIG);
    let tx = netcluster::Client::builder("A")
        .socket_dir(d.socket_dir())
        .connect()
        .await
        .unwrap();
    let ctl = netcluster::Client::builder("control")
        .socket_dir(d.socket_dir())
        .connect()
        .await
        .unwrap();
    let before = show_channel(&ctl, "A").await.len();
    // It sends nothing: the daemon learns it is a seed client only after
    // 500 ms of silence, yet it must get what is sent meanwhile.
    let leg = Legacy::connect(&d, "A");
    let t0 = tokio::time::Instant::now();
    let reader = tokio::task::spawn_blocking(move || {
        let mut leg = leg;
        (0..4)
            .map(|_| leg.recv().expect("a packet"))
            .collect::<Vec<_>>()
    });
    let mut listed = None;
    for (i, at) in [0u64, 50, 200, 400].into_iter().enumerate() {
        tokio::time::sleep_until(t0 + Duration::from_millis(at)).await;
        tx.emit("early", &i).await.unwrap();
        tx.flush().await.unwrap();
        if listed.is_none() {
            let clients = show_channel(&ctl, "A").await;
            if clients.len() > before {
                let c = clients.last().unwrap();
                assert_eq!(c["protocol"], "legacy", "{c}");
                listed = Some(t0.elapsed());
            }
        }
    }
    let got = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("four packets")
        .unwrap();
    let data: Vec<Value> = got.iter().map(|p| p["data"].clone()).collect();
    assert_eq!(
        data,
        vec![json!(0), json!(1), json!(2), json!(3)],
        "{got:?}"
    );
    assert!(got.iter().all(|p| p["event"] == "early"));
    let listed = listed.expect("the silent client was never listed by showchannel while silent");
    eprintln!("listed by showchannel {listed:?} after connecting; got all 4 packets");
}

#[test]
fn a_legacy_packet_with_a_bad_event_name_is_refused_alone() {
    let d = TestDaemon::start(CONFIG);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (native, mut sub) = rt.block_on(async {
        let c = netcluster::Client::builder("A")
            .socket_dir(d.socket_dir())
            .connect()
            .await
            .unwrap();
        let s = c.subscribe("*").await.unwrap();
        (c, s)
    });
    let mut leg = Legacy::connect(&d, "A");
    let long = "e".repeat(1025);
    for bad in ["", "*", long.as_str()] {
        leg.send_raw(&packet(bad, json!("dropped")));
        let err = leg.recv().expect("an error packet, not a disconnect");
        assert_eq!(err["event"], "nc-error", "{err}");
        let text = err["data"]["error"].as_str().unwrap();
        assert!(text.contains("packet dropped"), "{text}");
    }
    // Still connected both ways: its next packet is delivered, and it
    // gets what others send.
    leg.send_raw(&packet("fine", json!(1)));
    let m = rt.block_on(async {
        let m = tokio::time::timeout(Duration::from_secs(5), sub.recv())
            .await
            .unwrap()
            .unwrap();
        native.emit("back", &2).await.unwrap();
        native.flush().await.unwrap();
        m
    });
    assert_eq!(m.event(), "fine");
    let p = leg.recv().expect("still connected");
    assert_eq!(
        (p["event"].clone(), p["data"].clone()),
        (json!("back"), json!(2))
    );
}
