//! `dumptoconsole` and `dumpnet`: each message logged as one readable line
//! by the `ncserver` binary.
#![cfg(target_os = "linux")]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use netcluster_testkit::{tempdir, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_ncserver");

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn dumptoconsole_logs_each_message_of_the_channel() {
    let dir = tempdir();
    let cfg = dir.path().join("c.json");
    std::fs::write(
        &cfg,
        r#"{ "channels": { "A": { "dumptoconsole": true }, "B": {} } }"#,
    )
    .unwrap();
    let log = dir.path().join("log");
    let mut child = Command::new(BIN)
        .arg(&cfg)
        .env("NETCLUSTER_SOCKET_DIR", dir.path())
        .stderr(std::fs::File::create(&log).unwrap())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until(20, "ncserver to serve", || {
        read().contains("ncserver serving")
    });
    let origin = rt().block_on(async {
        let a = netcluster::Client::builder("A")
            .socket_dir(dir.path())
            .connect()
            .await
            .unwrap();
        a.emit("temp", &serde_json::json!({"c": 21.5}))
            .await
            .unwrap();
        let b = netcluster::Client::builder("B")
            .socket_dir(dir.path())
            .connect()
            .await
            .unwrap();
        b.emit("quiet", &1).await.unwrap();
        a.flush().await.unwrap();
        b.flush().await.unwrap();
        format!("{:016x}:{}", a.node_id(), a.client_id())
    });
    wait_until(10, "the dump line", || read().contains("[A] temp from"));
    let text = read();
    let line = text.lines().find(|l| l.contains("[A] temp")).unwrap();
    assert!(
        line.contains(&format!("[A] temp from {origin} #1: {{\"c\":21.5}}")),
        "{line}"
    );
    assert!(!text.contains("quiet"), "channel B does not dump: {text}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn dumpnet_logs_each_network_message_in_and_out() {
    let Some(mut lan) = netcluster_testkit::netns::Lan::new(2) else {
        return;
    };
    for i in 0..2 {
        let cfg = format!(
            r#"{{ "connecttonet": true, "dumpnet": true, "nodename": "h{i}",
                 "channels": {{ "A": {{ "propagatetonet": true }} }} }}"#
        );
        lan.start_daemon(i, Path::new(BIN), &cfg);
    }
    let dir0 = lan.hosts[0].dir().to_path_buf();
    let dir1 = lan.hosts[1].dir().to_path_buf();
    rt().block_on(async {
        let rx = netcluster::Client::builder("A")
            .socket_dir(&dir1)
            .connect()
            .await
            .unwrap();
        let mut sub = rx.subscribe("hello").await.unwrap();
        let tx = netcluster::Client::builder("A")
            .socket_dir(&dir0)
            .connect()
            .await
            .unwrap();
        // Until the peers see each other, a message may go before the
        // receiver listens; retry until one arrives.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            tx.emit("hello", &"world").await.unwrap();
            if tokio::time::timeout(Duration::from_millis(300), sub.recv())
                .await
                .is_ok()
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no message crossed the network"
            );
        }
    });
    wait_until(10, "dumpnet lines", || {
        lan.log(1, 0).contains("in [A] hello #")
    });
    let out = lan.log(0, 0);
    assert!(
        out.lines()
            .any(|l| l.contains("out [A] hello #1 from client") && l.ends_with("\"world\"")),
        "{out}"
    );
    let inn = lan.log(1, 0);
    assert!(
        inn.lines()
            .any(|l| l.contains("in [A] hello #1 from ") && l.ends_with("\"world\"")),
        "{inn}"
    );
}
