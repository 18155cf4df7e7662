//! The HTTP endpoint through the binary: /healthz, /metrics (classic and
//! OpenMetrics), /api/status, the limits, and `http` added, moved and
//! removed by reloads.

use std::io::{Read, Write};
use std::time::Duration;

use netcluster_testkit::wait_until;

use crate::daemon::{http_get, http_raw, sample, Daemon, BIN};

const CONFIG: &str = r#"{
  "http": { "listen": "127.0.0.1:0" },
  "channels": { "A": { "propagatetochannels": "^B$" }, "B": {} }
}"#;

fn client(d: &Daemon, channel: &str) -> netcluster::blocking::Client {
    let dir = d.socket_dir();
    netcluster::blocking::Client::builder(channel)
        .with(|b| b.socket_dir(&dir))
        .connect()
        .unwrap()
}

#[test]
fn serves_health_metrics_and_status_and_never_payloads() {
    let mut d = Daemon::spawn(CONFIG, &[], &[]);
    d.wait_log("ncserver serving");
    let addr = d.http_addr();

    let h = http_get(addr, "/healthz", None);
    assert_eq!((h.status, h.body.as_str()), (200, "serving\n"), "{h:?}");

    let b = client(&d, "B");
    let mut sub = b.subscribe("tick").unwrap();
    let a = client(&d, "A");
    for i in 0..5 {
        a.emit("tick", &format!("secret-payload-{i}")).unwrap();
    }
    a.flush().unwrap();
    for _ in 0..5 {
        sub.recv_timeout(Duration::from_secs(10))
            .expect("message on B");
    }

    let mut m = String::new();
    wait_until(20, "the metrics to count 5 messages", || {
        m = http_get(addr, "/metrics", None).body;
        sample(
            &m,
            r#"netcluster_channel_messages_delivered_total{channel="B"}"#,
        ) == Some(5.0)
    });
    let got = http_get(addr, "/metrics", None);
    assert!(
        got.head.contains("Content-Type: text/plain; version=0.0.4"),
        "{}",
        got.head
    );
    assert_eq!(
        sample(
            &m,
            r#"netcluster_channel_messages_received_total{channel="A"}"#
        ),
        Some(5.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, r#"netcluster_channel_clients{channel="A"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, r#"netcluster_channel_clients{channel="B"}"#),
        Some(1.0)
    );
    assert_eq!(sample(&m, "netcluster_net_connected"), Some(0.0));
    assert!(sample(&m, "netcluster_open_fds").unwrap() > 5.0, "{m}");
    assert!(sample(&m, "netcluster_resident_memory_bytes").unwrap() > 1e5);
    assert!(
        m.contains("# TYPE netcluster_channel_messages_received_total counter"),
        "{m}"
    );
    assert!(!m.contains("# EOF"));

    let om = http_get(
        addr,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"),
    );
    assert!(
        om.head
            .contains("Content-Type: application/openmetrics-text; version=1.0.0"),
        "{}",
        om.head
    );
    assert!(om.body.ends_with("# EOF\n"));
    assert!(om
        .body
        .contains("# TYPE netcluster_channel_messages_received counter"));

    // A departed client's counts stay in its channel's totals.
    drop(a);
    wait_until(20, "A's client to be counted as left", || {
        m = http_get(addr, "/metrics", None).body;
        sample(
            &m,
            r#"netcluster_channel_disconnects_total{channel="A",cause="left"}"#,
        ) == Some(1.0)
    });
    assert_eq!(
        sample(
            &m,
            r#"netcluster_channel_messages_received_total{channel="A"}"#
        ),
        Some(5.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, r#"netcluster_channel_clients{channel="A"}"#),
        Some(0.0)
    );

    let st = http_get(addr, "/api/status", None);
    assert_eq!(st.status, 200);
    assert!(st.head.contains("Content-Type: application/json"));
    let v: serde_json::Value = serde_json::from_str(&st.body).unwrap();
    assert_eq!(v["status"]["channels"], 3, "{v}");
    assert_eq!(v["status"]["clients"], 1, "{v}");
    assert_eq!(v["channels"][1]["channel"], "A", "{v}");
    assert!(v["peers"].is_null());

    for body in [&m, &om.body, &st.body] {
        assert!(!body.contains("secret-payload"), "a payload leaked: {body}");
    }

    // Every metric served is documented.
    let doc = include_str!("../../../../docs/METRICS.md");
    for name in m.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = name.split(' ').next().unwrap();
        assert!(
            doc.contains(&format!("`{name}`")),
            "{name} is not in docs/METRICS.md"
        );
    }
}

#[test]
fn bad_requests_get_clear_statuses_and_limits_hold() {
    let mut d = Daemon::spawn(CONFIG, &[], &[]);
    d.wait_log("ncserver serving");
    let addr = d.http_addr();

    assert_eq!(http_get(addr, "/nope", None).status, 404);
    let post = http_raw(addr, "POST /metrics HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(post.status, 405);
    assert!(post.head.contains("Allow: GET, HEAD"));
    assert_eq!(http_raw(addr, "nonsense\r\n\r\n").unwrap().status, 400);
    let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    assert_eq!(http_raw(addr, &huge).unwrap().status, 431);
    let head = http_raw(addr, "HEAD /healthz HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!((head.status, head.body.as_str()), (200, ""));

    // 64 idle connections: a 65th is closed at once, messages still flow,
    // and the idle ones are answered 408 after the request timeout.
    let mut idle: Vec<std::net::TcpStream> = (0..64)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut extra = std::net::TcpStream::connect(addr).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\n\r\n");
    let mut buf = Vec::new();
    let n = extra.read_to_end(&mut buf).unwrap_or(0);
    assert_eq!(
        n,
        0,
        "over the limit: closed without an answer, got {:?}",
        String::from_utf8_lossy(&buf)
    );

    let b = client(&d, "B");
    let mut sub = b.subscribe("e").unwrap();
    let a = client(&d, "A");
    a.emit("e", &1).unwrap();
    a.flush().unwrap();
    assert!(
        sub.recv_timeout(Duration::from_secs(10)).is_some(),
        "delivery with HTTP saturated"
    );

    let first = &mut idle[0];
    first
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut text = String::new();
    first.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    drop(idle);
    wait_until(20, "HTTP to serve again", || {
        http_raw(addr, "GET /healthz HTTP/1.1\r\n\r\n").is_ok_and(|g| g.status == 200)
    });
}

#[test]
fn reload_adds_moves_and_removes_the_endpoint() {
    let mut d = Daemon::spawn(r#"{ "channels": { "A": {} } }"#, &[], &[]);
    d.wait_log("ncserver serving");
    assert!(!d.log().contains("HTTP endpoint listening"));

    std::fs::write(d.config_path(), CONFIG).unwrap();
    d.signal(libc::SIGHUP);
    d.wait_log("config reloaded");
    let first = d.http_addr();
    assert_eq!(http_get(first, "/healthz", None).status, 200);

    // Moved to another (free) port: the old one closes.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let moved = CONFIG.replace("127.0.0.1:0", &format!("[::1]:{port}"));
    std::fs::write(d.config_path(), &moved).unwrap();
    d.signal(libc::SIGHUP);
    wait_until(20, "the second reload", || {
        d.log_count("config reloaded") == 2
    });
    let second: std::net::SocketAddr = format!("[::1]:{port}").parse().unwrap();
    assert_eq!(http_get(second, "/healthz", None).status, 200);
    wait_until(10, "the old port to close", || {
        std::net::TcpStream::connect(first).is_err()
    });

    // A busy address refuses the reload and keeps the endpoint.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = CONFIG.replace("127.0.0.1:0", &busy.local_addr().unwrap().to_string());
    std::fs::write(d.config_path(), &taken).unwrap();
    d.signal(libc::SIGHUP);
    d.wait_log("http.listen: cannot serve HTTP on");
    assert_eq!(http_get(second, "/healthz", None).status, 200);

    // Removed.
    std::fs::write(d.config_path(), r#"{ "channels": { "A": {} } }"#).unwrap();
    d.signal(libc::SIGHUP);
    wait_until(20, "the third reload", || {
        d.log_count("config reloaded") == 3
    });
    wait_until(10, "the endpoint to close", || {
        std::net::TcpStream::connect(second).is_err()
    });
    assert!(d.alive());
}

#[test]
fn a_bad_listen_address_is_a_config_error_with_its_place() {
    let dir = netcluster_testkit::tempdir();
    let p = dir.path().join("c.json");
    std::fs::write(&p, "{\n  \"http\": { \"listen\": \"localhost\" }\n}").unwrap();
    let out = std::process::Command::new(BIN)
        .arg("--check")
        .arg(&p)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("c.json:2:23: http.listen: \"localhost\" is not an address and port"),
        "{err}"
    );
    std::fs::write(&p, "{ \"http\": {} }").unwrap();
    let out = std::process::Command::new(BIN)
        .arg("--check")
        .arg(&p)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("c.json:1:11: http: missing \"listen\""),
        "{err}"
    );
    std::fs::write(&p, "{ \"http\": { \"listen\": \"0.0.0.0:9454\" } }").unwrap();
    let out = std::process::Command::new(BIN)
        .arg("--check")
        .arg(&p)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn healthz_says_stopping_while_a_stopping_daemon_flushes() {
    let mut d = Daemon::spawn(CONFIG, &[], &[]);
    d.wait_log("ncserver serving");
    let addr = d.http_addr();
    // A client that never reads (a silent socket counts as a seed client
    // after 200 ms and gets every event of its channel): its queue keeps
    // the stopping daemon flushing for a while.
    let _silent = std::os::unix::net::UnixStream::connect(d.socket("B")).unwrap();
    let mut m = String::new();
    wait_until(20, "the silent client to register", || {
        m = http_get(addr, "/metrics", None).body;
        sample(&m, r#"netcluster_channel_clients{channel="B"}"#) == Some(1.0)
    });
    let b = client(&d, "B");
    let big = "x".repeat(64 * 1024);
    for _ in 0..40 {
        b.emit("fill", &big).unwrap();
    }
    b.flush().unwrap();
    wait_until(20, "bytes queued for the silent client", || {
        m = http_get(addr, "/metrics", None).body;
        sample(&m, r#"netcluster_channel_queued_bytes{channel="B"}"#).unwrap_or(0.0) > 100_000.0
    });
    assert_eq!(http_get(addr, "/healthz", None).status, 200);

    d.signal(libc::SIGTERM);
    let mut seen = None;
    wait_until(10, "/healthz to say stopping", || {
        match http_raw(addr, "GET /healthz HTTP/1.1\r\n\r\n") {
            Ok(g) if g.status == 503 => {
                seen = Some(g.body);
                true
            }
            Ok(_) => false,
            Err(e) => panic!("endpoint closed before answering 503: {e}"),
        }
    });
    assert_eq!(seen.as_deref(), Some("stopping\n"));
    wait_until(15, "ncserver to exit", || !d.alive());
}
