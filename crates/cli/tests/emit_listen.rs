//! `ncclient emit` and `ncclient listen` against an in-process daemon,
//! with library clients on the other end.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use netcluster::{Client, Message, Subscription};
use netcluster_testkit::TestDaemon;
use serde_json::{json, Value};

const CONFIG: &str = r#"{ "channels": { "A": {}, "B": {} } }"#;

async fn client(d: &TestDaemon, ch: &str) -> Client {
    Client::builder(ch)
        .socket_dir(d.socket_dir())
        .connect()
        .await
        .expect("connect")
}

/// Runs a blocking process call off the async test's threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

async fn recv(sub: &mut Subscription) -> Message {
    tokio::time::timeout(Duration::from_secs(10), sub.recv())
        .await
        .expect("a message within 10s")
        .expect("connection open")
}

/// Asserts nothing more arrives within a short quiet period.
async fn assert_quiet(sub: &mut Subscription) {
    if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), sub.recv()).await {
        panic!("unexpected message {m:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn emit_sends_json_as_is_and_other_text_as_a_string() {
    let d = TestDaemon::start(CONFIG);
    let rx = client(&d, "A").await;
    let mut sub = rx.subscribe("log").await.unwrap();
    for (arg, want) in [
        (
            r#"{"level": "info", "n": [1, 2]}"#,
            json!({"level": "info", "n": [1, 2]}),
        ),
        ("42", json!(42)),
        ("\"quoted\"", json!("quoted")),
        ("hello world", json!("hello world")),
        ("-5", json!(-5)),
        ("{not json", json!("{not json")),
    ] {
        let mut cmd = ncclient(&d);
        cmd.args(["emit", "A", "log", arg]);
        let o = blocking(move || cmd.output()).await.unwrap();
        assert_code(&o, 0);
        let m = recv(&mut sub).await;
        assert_eq!(m.json::<Value>().unwrap(), want, "{arg}");
        assert_eq!(m.event(), "log");
        assert_eq!(m.channel(), "A");
    }
    assert_quiet(&mut sub).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn emit_raw_sends_the_bytes_unchanged() {
    let d = TestDaemon::start(CONFIG);
    let rx = client(&d, "B").await;
    let mut sub = rx.subscribe("blob").await.unwrap();
    let mut cmd = ncclient(&d);
    cmd.args(["emit", "--raw", "B", "blob", "not \"json"]);
    let o = blocking(move || cmd.output()).await.unwrap();
    assert_code(&o, 0);
    assert_eq!(recv(&mut sub).await.payload(), b"not \"json");
}

#[tokio::test(flavor = "multi_thread")]
async fn emit_without_data_sends_each_line_of_stdin() {
    let d = TestDaemon::start(CONFIG);
    let rx = client(&d, "A").await;
    let mut sub = rx.subscribe("line").await.unwrap();
    let input = "first line\n\n{\"k\": 2}\r\n   \n3\nlast without newline";
    let mut cmd = ncclient(&d);
    cmd.args(["emit", "A", "line"]);
    let o = blocking(move || run_with_stdin(cmd, input)).await;
    assert_code(&o, 0);
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(recv(&mut sub).await.json::<Value>().unwrap());
    }
    assert_eq!(
        got,
        [
            json!("first line"),
            json!({"k": 2}),
            json!(3),
            json!("last without newline")
        ]
    );
    assert_quiet(&mut sub).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn emit_many_lines_loses_nothing() {
    let d = TestDaemon::start(CONFIG);
    let rx = client(&d, "A").await;
    let mut sub = rx.subscribe("n").await.unwrap();
    const N: usize = 5_000;
    let input: String = (0..N).map(|i| format!("{i}\n")).collect();
    let mut cmd = ncclient(&d);
    cmd.args(["emit", "A", "n"]);
    let o = blocking(move || run_with_stdin(cmd, &input)).await;
    assert_code(&o, 0);
    for i in 0..N {
        assert_eq!(recv(&mut sub).await.json::<usize>().unwrap(), i);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn listen_prints_only_the_named_events_as_json_lines() {
    let d = TestDaemon::start(CONFIG);
    let mut child = ncclient(&d)
        .args(["listen", "A", "log", "--count", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr_rest = wait_for_stderr_line(&mut child, "listening on A for log");

    let tx = client(&d, "A").await;
    tx.emit("log", &json!({"n": 1})).await.unwrap();
    tx.emit("log", "two").await.unwrap();
    tx.emit("other", &3).await.unwrap();
    tx.emit_bytes("log", b"not json").await.unwrap();
    tx.flush().await.unwrap();

    let (status, out) = blocking(move || {
        let status = wait_exit(&mut child);
        let mut out = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
        (status, out)
    })
    .await;
    let err = stderr_rest.join().unwrap();
    assert_eq!(status.code(), Some(0), "stderr: {err}\nstdout: {out}");

    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let origin = format!("{:016x}:{}", tx.node_id(), tx.client_id());
    let want_data = [json!({"n": 1}), json!("two"), json!("not json")];
    let want_seq = [1, 2, 4];
    for (i, line) in lines.iter().enumerate() {
        let v: Value = serde_json::from_str(line).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["channel", "event", "data", "origin", "seq"],
            "{line}"
        );
        assert!(line.starts_with("{\"channel\":\"A\",\"event\":\"log\",\"data\":"));
        assert_eq!(v["data"], want_data[i], "{line}");
        assert_eq!(v["origin"], json!(origin), "{line}");
        assert_eq!(v["seq"], json!(want_seq[i]), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn listen_to_several_events_keeps_their_order() {
    let d = TestDaemon::start(CONFIG);
    let mut child = ncclient(&d)
        .args(["listen", "A", "a", "b", "--count", "6"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _stderr = wait_for_stderr_line(&mut child, "listening on A for a, b");
    // B's messages do not reach A (no rule), and c is not listened to.
    let other = client(&d, "B").await;
    other.emit("a", &0).await.unwrap();
    other.flush().await.unwrap();
    let tx = client(&d, "A").await;
    for (ev, n) in [
        ("a", 1),
        ("b", 2),
        ("c", 0),
        ("b", 3),
        ("a", 4),
        ("a", 5),
        ("b", 6),
    ] {
        tx.emit(ev, &n).await.unwrap();
    }
    tx.flush().await.unwrap();
    let out = blocking(move || {
        assert_eq!(wait_exit(&mut child).code(), Some(0));
        let mut out = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
        out
    })
    .await;
    let got: Vec<(String, i64)> = out
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["event"].as_str().unwrap().to_string(),
                v["data"].as_i64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, i64)> = [("a", 1), ("b", 2), ("b", 3), ("a", 4), ("a", 5), ("b", 6)]
        .iter()
        .map(|(e, n)| (e.to_string(), *n))
        .collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread")]
async fn listen_timeout_exits_successfully() {
    let d = TestDaemon::start(CONFIG);
    let mut cmd = ncclient(&d);
    cmd.args(["listen", "B", "--timeout", "0.2"]);
    let o = blocking(move || cmd.output()).await.unwrap();
    assert_code(&o, 0);
    assert!(o.stdout.is_empty());
    assert!(stderr(&o).contains("listening on B for *"));
}

#[test]
fn listen_fails_when_the_daemon_goes_away() {
    let mut d = TestDaemon::start(CONFIG);
    let mut child = ncclient(&d)
        .args(["listen", "B", "--no-reconnect"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr_rest = wait_for_stderr_line(&mut child, "listening on B for *");
    d.stop();
    let status = wait_exit(&mut child);
    let err = stderr_rest.join().unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("ncclient: error: the connection to ncserver"),
        "{err}"
    );
}

#[test]
fn listen_reconnects_when_the_daemon_restarts() {
    let mut d = TestDaemon::start(CONFIG);
    let mut child = ncclient(&d)
        .args(["listen", "B", "--count", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr_rest = wait_for_stderr_line(&mut child, "listening on B for *");
    d.restart();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Wait until the listener is back on the new daemon, then emit.
        let ctl = client(&d, "control").await;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let cs = ctl.request("nc-control-showchannel", "B").await.unwrap();
            let listening =
                |c: &Value| c["name"] == "ncclient listen" && c["subscriptions"] == json!(["*"]);
            if cs.as_array().unwrap().iter().any(listening) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "listen did not reconnect"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let b = client(&d, "B").await;
        b.emit("after", &"restart").await.unwrap();
        b.flush().await.unwrap();
    });
    let status = wait_exit(&mut child);
    let _ = stderr_rest.join();
    assert!(status.success());
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["event"], "after");
    assert_eq!(v["data"], "restart");
}

/// The README's quick start, as a shell runs it: `listen B` in the
/// background, wait for its "listening" line, then `emit A` (the built-in
/// config routes A to B). Without the wait the emit could beat the
/// subscription; with it the message arrives every time.
///
/// Unix only: it runs the README's shell idiom through `sh` and
/// `timeout`, which a Windows build (under Wine in CI) does not have;
/// `scripts/wine-test.sh` drives the Windows binaries' emit and listen.
#[cfg(unix)]
#[test]
fn quick_start_emit_after_the_listening_line_always_arrives() {
    let d = TestDaemon::builtin();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_ncclient"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = r#"
        ncclient listen B --count 1 --timeout 20 > out.json 2> listen.log &
        until grep -q listening listen.log; do sleep 0.05; done
        ncclient emit A greet '"hello"'
        wait
        cat out.json
    "#;
    for run in 0..20 {
        let work = netcluster_testkit::tempdir();
        let o = std::process::Command::new("timeout")
            .args(["60", "sh", "-c", script])
            .current_dir(work.path())
            .env("PATH", &path)
            .env("NETCLUSTER_SOCKET_DIR", d.socket_dir())
            .output()
            .unwrap();
        assert_code(&o, 0);
        let v: Value = serde_json::from_str(stdout(&o).trim())
            .unwrap_or_else(|e| panic!("run {run}: {e}: {:?}", stdout(&o)));
        assert_eq!(
            (v["event"].as_str(), v["data"].as_str()),
            (Some("greet"), Some("hello")),
            "run {run}"
        );
    }
}

/// `ncclient listen` whose output nobody reads becomes a slow consumer;
/// under `slowconsumer: "disconnect"` the daemon closes it, and listen says
/// why (the daemon's error) on stderr before reconnecting.
#[test]
fn listen_says_why_the_daemon_closed_it() {
    let d = TestDaemon::start(
        r#"{ "queuebytes": "256KiB", "channels": { "A": { "slowconsumer": "disconnect" } } }"#,
    );
    let logs = netcluster_testkit::tempdir();
    let log = logs.path().join("stderr");
    let mut child = ncclient(&d)
        .args(["listen", "A"])
        .stdout(Stdio::piped()) // not read for now
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let stderr = || std::fs::read_to_string(&log).unwrap_or_default();
    netcluster_testkit::wait_until(20, "listen to subscribe", || {
        stderr().contains("listening on A for *")
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let publisher = client(&d, "A").await;
        let ctl = client(&d, "control").await;
        let chunk = vec![b'x'; 8192];
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        // Publish until the daemon has closed the listener.
        loop {
            for _ in 0..64 {
                publisher.emit_bytes("bulk", &chunk).await.unwrap();
            }
            publisher.flush().await.unwrap();
            let st = ctl.request("nc-control-status", &()).await.unwrap();
            if st["disconnects"]["slow_consumer"] == json!(1) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never disconnected: {st}"
            );
        }
    });
    // Reading its output lets listen get to the error frame behind it.
    let mut out = child.stdout.take().unwrap();
    let drain = std::thread::spawn(move || {
        let _ = std::io::copy(&mut out, &mut std::io::sink());
    });
    netcluster_testkit::wait_until(30, "listen to say why it was disconnected", || {
        stderr().contains("ncclient: lost the connection on channel \"A\"")
    });
    let _ = child.kill();
    let _ = child.wait();
    let _ = drain.join();
    let err = stderr();
    assert!(
        err.contains("slow consumer: queue reached queuebytes (262144 bytes)"),
        "{err}"
    );
}
