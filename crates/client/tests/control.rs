//! The control agent through real sockets: every function, answers matched
//! to their caller, and config reloads.

use std::time::Duration;

use netcluster::{Client, RequestError};
use netcluster_testkit::TestDaemon;
use serde_json::{json, Value};

const CONFIG: &str = r#"{
  // comments are allowed
  "channels": {
    "A": { "propagatetochannels": "^B$" },
    "B": { "propagatetochannels": false }
  }
}"#;

async fn client(d: &TestDaemon, ch: &str) -> Client {
    Client::builder(ch)
        .socket_dir(d.socket_dir())
        .name(format!("t-{ch}"))
        .connect()
        .await
        .expect("connect")
}

#[tokio::test]
async fn showconfig_status_showchannel_showclient() {
    let d = TestDaemon::start(CONFIG);
    let ctl = client(&d, "control").await;
    let a = client(&d, "A").await;
    let _sub = a.subscribe("log").await.unwrap();

    let cfg = ctl.request("nc-control-showconfig", &()).await.unwrap();
    assert_eq!(cfg["channels"]["A"]["propagatetochannels"], "^B$");
    assert_eq!(
        cfg["channels"]["control"]["propagatetonet"], false,
        "control is added"
    );
    assert_eq!(cfg["socketdir"], json!(d.socket_dir()));

    let st = ctl.request("nc-control-status", &()).await.unwrap();
    assert_eq!(st["clients"], 2);
    assert_eq!(st["node"], format!("{:016x}", d.node_id()));

    let all = ctl.request("nc-control-showchannel", &()).await.unwrap();
    let names: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["channel"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["control", "A", "B"]);
    assert_eq!(all[1]["propagatesto"], json!(["B"]));
    assert_eq!(all[1]["clients"], 1);

    let chan = ctl.request("nc-control-showchannel", "A").await.unwrap();
    let c = &chan[0];
    assert_eq!(c["id"], a.client_id());
    assert_eq!(c["name"], "t-A");
    assert_eq!(c["pid"], std::process::id());
    assert_eq!(c["subscriptions"], json!(["log"]));
    assert!(c["connected"].as_str().unwrap().ends_with('Z'));

    let one = ctl
        .request(
            "nc-control-showclient",
            &json!({"channel": "A", "client": a.client_id()}),
        )
        .await
        .unwrap();
    assert_eq!(one, *c);
    let by_str = ctl
        .request(
            "nc-control-showclient",
            &json!(["A", a.client_id().to_string()]),
        )
        .await
        .unwrap();
    assert_eq!(by_str["id"], a.client_id());

    let err = ctl
        .request("nc-control-showchannel", "Z")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RequestError::Failed(m) if m.contains("no channel named \"Z\"") && m.contains("A, B, control")),
        "{err}"
    );
    let err = ctl
        .request(
            "nc-control-showclient",
            &json!({"channel": "A", "client": 999}),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no client 999"), "{err}");
    let err = ctl.request("nc-control-frobnicate", &()).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("unknown control command \"frobnicate\""),
        "{err}"
    );
    // Control requests elsewhere than on control are refused.
    let err = a.request("nc-control-showconfig", &()).await.unwrap_err();
    assert!(
        err.to_string().contains("on the \"control\" channel only"),
        "{err}"
    );
}

#[tokio::test]
async fn seed_style_events_are_answered_to_the_caller_only() {
    let d = TestDaemon::start(CONFIG);
    let asker = client(&d, "control").await;
    let mut answers = asker
        .subscribe("nc-control-showchannel-response")
        .await
        .unwrap();
    let bystander = client(&d, "control").await;
    let mut overheard = bystander.subscribe("*").await.unwrap();

    asker.emit("nc-control-showchannel", "A").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), answers.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.json::<Value>().unwrap(), json!([]));
    asker.emit("nc-control-showchannel", "nope").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), answers.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(got.json::<Value>().unwrap()["error"]
        .as_str()
        .unwrap()
        .contains("no channel named"));
    // Neither the requests nor the answers reached the other control client.
    asker.flush().await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), overheard.recv())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn reload_adds_removes_and_changes_channels_keeping_other_clients() {
    let d = TestDaemon::start(CONFIG);
    let ctl = client(&d, "control").await;
    let a_tx = client(&d, "A").await;
    let b_rx = client(&d, "B").await;
    let mut b_sub = b_rx.subscribe("x").await.unwrap();
    // Before: A propagates to B.
    a_tx.emit("x", &1).await.unwrap();
    assert_eq!(b_sub.recv().await.unwrap().json::<i32>().unwrap(), 1);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.json");
    let sock = d.socket_dir().display().to_string();
    std::fs::write(
        &path,
        format!(r#"{{ "socketdir": "{sock}", "channels": {{ "A": {{ "propagatetochannels": "^C$" }}, "C": {{}} }} }}"#),
    )
    .unwrap();
    let r = ctl.request("nc-control-reloadconfig", &path).await.unwrap();
    assert_eq!(r["added"], json!(["C"]));
    assert_eq!(r["removed"], json!(["B"]));
    assert_eq!(r["changed"], json!(["A"]));

    // B's client was told why and closed; its socket is gone.
    let closed = tokio::time::timeout(Duration::from_secs(5), b_sub.recv())
        .await
        .unwrap();
    assert!(closed.is_none());
    assert!(b_rx
        .closed_reason()
        .unwrap()
        .contains("removed by a configuration reload"));
    assert!(!d.socket_dir().join("netcluster-B").exists());

    // The A client kept its connection; the new rule sends to C.
    let c_rx = client(&d, "C").await;
    let mut c_sub = c_rx.subscribe("x").await.unwrap();
    a_tx.emit("x", &2).await.unwrap();
    assert_eq!(c_sub.recv().await.unwrap().json::<i32>().unwrap(), 2);
    assert!(a_tx.closed_reason().is_none());

    // The seed's spelling and a config given as an object both work.
    let obj =
        json!({"socketdir": sock, "channels": {"A": {}, "C": {}, "D": {"dumptoconsole": true}}});
    let r = ctl.request("nc-control-reloaconfig", &obj).await.unwrap();
    assert_eq!(r["added"], json!(["D"]));
    assert!(d.socket_dir().join("netcluster-D").exists());
}

#[tokio::test]
async fn bad_reload_is_refused_and_the_old_config_stays() {
    let d = TestDaemon::start(CONFIG);
    let ctl = client(&d, "control").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(
        &path,
        "{\n  \"channels\": {\n    \"A\": { \"propagatetochanels\": true }\n  }\n}\n",
    )
    .unwrap();
    let err = ctl
        .request("nc-control-reloadconfig", &path)
        .await
        .unwrap_err();
    let msg = err.to_string();
    // A file read by the daemon for a client is never quoted (not even a
    // channel's or a key's name): the position says where.
    assert!(
        msg.contains(&format!(
            "{}:3:12: channels.<channel>.<key>: unknown key",
            path.display()
        )),
        "{msg}"
    );
    assert!(
        msg.contains("did you mean \"propagatetochannels\""),
        "{msg}"
    );
    let cfg = ctl.request("nc-control-showconfig", &()).await.unwrap();
    assert_eq!(cfg["channels"]["A"]["propagatetochannels"], "^B$");

    let err = ctl
        .request("nc-control-reloadconfig", &dir.path().join("missing.json"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot read config file"), "{err}");
    // Moving the socket directory needs a restart.
    let err = ctl
        .request(
            "nc-control-reloadconfig",
            &json!({"socketdir": "/elsewhere"}),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("socketdir cannot change"), "{err}");
    assert!(d.socket_dir().join("netcluster-B").exists());
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn showclient_tells_why_a_client_was_disconnected_and_status_counts_it() {
    use std::io::{Read, Write};
    let d = TestDaemon::start(
        r#"{ "queuebytes": "64KiB", "channels": { "A": { "slowconsumer": "disconnect" } } }"#,
    );
    // A raw client that subscribes to everything, reads its welcome, then
    // never reads again.
    let mut raw =
        std::os::unix::net::UnixStream::connect(d.socket_dir().join("netcluster-A")).unwrap();
    let mut b = bytes::BytesMut::new();
    netcluster_proto::frame::encode_hello(&mut b, 1, "stuck");
    netcluster_proto::frame::encode_subscription(&mut b, true, 1, ["*"]);
    raw.write_all(&b).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = raw.read(&mut buf).unwrap();
    let Ok(Some((netcluster_proto::frame::Frame::Welcome { client: stuck, .. }, _))) =
        netcluster_proto::frame::decode(&buf[..n], 1 << 20)
    else {
        panic!("no welcome")
    };
    let tx = client(&d, "A").await;
    let big = vec![b'x'; 16 * 1024];
    for _ in 0..200 {
        tx.emit_bytes("fill", &big).await.unwrap();
    }
    tx.flush().await.unwrap();
    let ctl = client(&d, "control").await;
    let gone = ctl
        .request("nc-control-showclient", &json!(["A", stuck]))
        .await
        .unwrap();
    assert_eq!(gone["name"], "stuck");
    assert!(
        gone["reason"].as_str().unwrap().contains("slow consumer"),
        "{gone}"
    );
    assert!(
        gone["disconnected"].as_str().unwrap().ends_with('Z'),
        "{gone}"
    );
    assert_eq!(gone["subscriptions"], json!(["*"]));
    let st = ctl.request("nc-control-status", &()).await.unwrap();
    assert_eq!(st["disconnects"]["slow_consumer"], 1, "{st}");
    drop(raw);
}
