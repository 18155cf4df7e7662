//! The dashboard's HTTP routes through the `ncserver` binary over real TCP:
//! the embedded page, the snapshot stream, the live tail (its filter, its
//! cut payloads, its bounded queue and its limit), the bearer token, and
//! the `http` config keys' errors. The page itself is tested in a browser
//! by `tests/browser/dashboard.test.js`.
#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Daemon;
use netcluster_server::config::Config;
use serde_json::Value;

const TOKEN: &str = "s3cret-dashboard-token";

/// A daemon with channels A and B and `http` given as JSON members
/// (`listen` is added: a free loopback port).
fn daemon(http: &str) -> (Daemon, String) {
    let sep = if http.is_empty() { "" } else { ", " };
    let d = Daemon::start(&format!(
        r#"{{ "http": {{ "listen": "127.0.0.1:0"{sep}{http} }},
             "channels": {{ "A": {{ "propagatetochannels": "^B$" }}, "B": {{}} }} }}"#
    ));
    let log = d.log();
    let addr = log
        .lines()
        .find(|l| l.contains("HTTP endpoint listening"))
        .and_then(|l| l.split("addr=").nth(1))
        .and_then(|a| a.split_whitespace().next())
        .unwrap_or_else(|| panic!("no HTTP address in the log:\n{log}"))
        .to_string();
    (d, addr)
}

/// A response read to its end: status, head, body.
struct Response {
    status: u16,
    head: String,
    body: Vec<u8>,
}

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn send(s: &mut TcpStream, method: &str, target: &str, auth: Option<&str>) {
    let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: test\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
}

fn request(addr: &str, method: &str, target: &str, auth: Option<&str>) -> Response {
    let mut s = connect(addr);
    send(&mut s, method, target, auth);
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8(all[..end].to_vec()).unwrap();
    let status = head[9..12].parse().unwrap();
    Response {
        status,
        head,
        body: all[end + 4..].to_vec(),
    }
}

fn get(addr: &str, target: &str) -> Response {
    request(addr, "GET", target, None)
}

/// The status of a GET, without reading the body (which may be a stream).
fn status_of(addr: &str, target: &str) -> u16 {
    let mut s = connect(addr);
    send(&mut s, "GET", target, None);
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    line[9..12].parse().unwrap()
}

/// An event stream being read.
struct Sse {
    r: BufReader<TcpStream>,
}

impl Sse {
    /// Opens `target`; panics unless the answer is 200 and an event stream.
    fn open(addr: &str, target: &str, auth: Option<&str>) -> Sse {
        let mut s = connect(addr);
        send(&mut s, "GET", target, auth);
        let mut r = BufReader::new(s);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line);
        }
        assert!(head.starts_with("HTTP/1.1 200"), "{target}: {head}");
        assert!(head.contains("Content-Type: text/event-stream"), "{head}");
        Sse { r }
    }

    /// The next event (comments skipped): its name and data.
    fn next(&mut self) -> (String, String) {
        self.try_next().expect("the stream ended")
    }

    /// The next event, or `None` if the stream ended.
    fn try_next(&mut self) -> Option<(String, String)> {
        let (mut name, mut data) = ("message".to_string(), String::new());
        loop {
            let mut line = String::new();
            let n = match self.r.read_line(&mut line) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
                Err(e) => panic!("no event in time: {e}"),
            };
            if n == 0 {
                return None;
            }
            let line = line.trim_end_matches('\n');
            if line.is_empty() {
                if !data.is_empty() {
                    return Some((name, data));
                }
            } else if let Some(v) = line.strip_prefix("event: ") {
                name = v.to_string();
            } else if let Some(v) = line.strip_prefix("data: ") {
                data.push_str(v);
            }
        }
    }

    fn snapshot(&mut self) -> Value {
        let (name, data) = self.next();
        assert_eq!(name, "snapshot");
        serde_json::from_str(&data).unwrap()
    }
}

fn clients_of<'a>(snap: &'a Value, channel: &str) -> &'a Vec<Value> {
    snap["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == channel)
        .unwrap_or_else(|| panic!("no channel {channel} in {snap}"))["clients"]
        .as_array()
        .unwrap()
}

#[test]
fn the_page_and_the_snapshot_stream() {
    let (d, addr) = daemon("");
    let page = get(&addr, "/");
    assert_eq!(page.status, 200);
    assert!(
        page.head.contains("Content-Type: text/html"),
        "{}",
        page.head
    );
    assert!(page
        .head
        .contains("Content-Security-Policy: default-src 'none'"));
    let html = String::from_utf8(page.body).unwrap();
    assert!(html.contains("<script src=\"app.js\""), "{html}");
    for (path, ctype, needle) in [
        ("/app.js", "text/javascript", "api/events"),
        ("/app.css", "text/css", "prefers-color-scheme"),
        ("/favicon.svg", "image/svg+xml", "<svg"),
    ] {
        let r = get(&addr, path);
        assert_eq!(r.status, 200, "{path}");
        assert!(r.head.contains(ctype), "{path}: {}", r.head);
        assert!(String::from_utf8_lossy(&r.body).contains(needle), "{path}");
    }
    let head = request(&addr, "HEAD", "/", None);
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(request(&addr, "POST", "/", None).status, 405);
    assert_eq!(request(&addr, "POST", "/api/events", None).status, 405);

    let mut events = Sse::open(&addr, "/api/events", None);
    let snap = events.snapshot();
    let names: Vec<&str> = snap["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["control", "A", "B"]);
    assert_eq!(snap["node"]["id"].as_str().unwrap().len(), 16);
    assert_eq!(snap["tail"], false);
    assert_eq!(
        snap["channels"][1]["propagatesto"],
        serde_json::json!(["B"])
    );
    assert!(snap["node"]["config"]
        .as_str()
        .unwrap()
        .ends_with("config.json"));

    // A client that connects and emits appears with its counters.
    let mut a = d.raw("A", "rust-emitter");
    for i in 0..10 {
        a.publish("tick", format!("{i}").as_bytes());
    }
    a.ping();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (snap, t0) = loop {
        let snap = events.snapshot();
        let found = clients_of(&snap, "A")
            .iter()
            .any(|c| c["name"] == "rust-emitter" && c["messages_in"] == 10);
        if found {
            let t = snap["t"].as_u64().unwrap();
            break (snap, t);
        }
        assert!(Instant::now() < deadline, "client not shown: {snap}");
    };
    assert_eq!(
        snap["node"]["clients"],
        Value::Null,
        "node has no stale fields"
    );
    // Snapshots come about once a second, not faster.
    let t1 = events.snapshot()["t"].as_u64().unwrap();
    assert!(t1 >= t0 + 500, "snapshots {t0} then {t1}");
    assert_eq!(snap["channels"][1]["totals"]["messages_in"], 10);
    // A client that leaves is listed with its cause, and its messages stay
    // in the channel's totals (the page's rates never go negative).
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let snap = events.snapshot();
        if let Some(rec) = snap["departed"].as_array().unwrap().first() {
            assert_eq!(rec["name"], "rust-emitter");
            assert!(rec["reason"].is_string());
            assert_eq!(snap["channels"][1]["clients_total"], 0);
            assert_eq!(snap["channels"][1]["totals"]["messages_in"], 10);
            break;
        }
        assert!(Instant::now() < deadline, "departure not shown: {snap}");
    }
    // A crowded channel: every client counted, the first 100 listed.
    let crowd: Vec<_> = (0..101).map(|i| d.raw("B", &format!("c{i}"))).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let snap = events.snapshot();
        if snap["channels"][2]["clients_total"] == 101 {
            assert_eq!(clients_of(&snap, "B").len(), 100);
            break;
        }
        assert!(Instant::now() < deadline, "crowd not counted: {snap}");
    }
    drop(crowd);
}

#[test]
fn the_token_guards_every_api_route() {
    let (_d, addr) = daemon(&format!(r#""token": "{TOKEN}""#));
    // The page shell has no data and is what asks for the token.
    assert_eq!(get(&addr, "/").status, 200);
    assert_eq!(get(&addr, "/app.js").status, 200);
    let bearer = format!("Bearer {TOKEN}");
    for target in ["/api/events", "/api/tail?channel=A", "/api/status"] {
        for auth in [None, Some("Bearer nope"), Some(TOKEN), Some("Basic x")] {
            let r = request(&addr, "GET", target, auth);
            assert_eq!(r.status, 401, "{target} with {auth:?}");
            assert!(r.head.contains("WWW-Authenticate: Bearer"), "{}", r.head);
        }
    }
    // Monitoring stays open: health probes and scrapers carry no token.
    assert_eq!(get(&addr, "/healthz").status, 200);
    assert_eq!(get(&addr, "/metrics").status, 200);
    assert_eq!(
        request(&addr, "GET", "/api/status", Some(&bearer)).status,
        200
    );
    let mut ok = Sse::open(&addr, "/api/events", Some(&bearer));
    assert_eq!(ok.snapshot()["channels"].as_array().unwrap().len(), 3);
    // The right token, but the tail is off.
    let r = request(&addr, "GET", "/api/tail?channel=A", Some(&bearer));
    assert_eq!(r.status, 403);
    assert!(String::from_utf8_lossy(&r.body).contains("\"tail\": true"));
}

#[test]
fn a_token_from_a_file() {
    let dir = netcluster_testkit::tempdir();
    std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
    let path = dir.path().join("token");
    let (_d, addr) = daemon(&format!(r#""tokenfile": "{}""#, path.display()));
    assert_eq!(get(&addr, "/api/events").status, 401);
    let mut ok = Sse::open(&addr, "/api/events", Some(&format!("bearer {TOKEN}")));
    ok.snapshot();
}

#[test]
fn the_tail_shows_one_channel_filtered_and_cut() {
    let (d, addr) = daemon(r#""tail": true"#);
    let r = get(&addr, "/api/tail");
    assert_eq!(r.status, 400);
    let r = get(&addr, "/api/tail?channel=nope");
    assert_eq!(r.status, 404);
    assert!(String::from_utf8_lossy(&r.body).contains("channels are: control, A, B"));
    let long = "e".repeat(256);
    assert_eq!(
        get(&addr, &format!("/api/tail?channel=A&event={long}")).status,
        400
    );

    let mut tail = Sse::open(&addr, "/api/tail?channel=A&event=pick%20me", None);
    let mut a = d.raw("A", "tailed");
    let mut b = d.raw("B", "other");
    b.publish("pick me", b"\"not on A\"");
    b.ping();
    a.publish("skip", b"1");
    let big = format!("\"{}\"", "x".repeat(998));
    a.publish("pick me", big.as_bytes());
    a.ping();
    let (name, data) = tail.next();
    assert_eq!(name, "message");
    let m: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(m["event"], "pick me");
    assert_eq!(m["channel"], "A");
    assert_eq!(m["origin"], format!("{:016x}:{}", a.node, a.client));
    assert_eq!(m["size"], 1000);
    assert_eq!(m["truncated"], true);
    assert_eq!(m["payload"].as_str().unwrap().len(), 256);
    // Messages that reach A's subscribers by propagation from B are not A's.
    a.publish("pick me", b"2");
    a.ping();
    let m: Value = serde_json::from_str(&tail.next().1).unwrap();
    assert_eq!(
        (m["payload"].as_str(), m["truncated"].as_bool()),
        (Some("2"), Some(false))
    );
}

#[test]
fn a_tail_that_is_not_read_drops_instead_of_growing() {
    // About 8 MB of tail events: more than the kernel buffers of one TCP
    // connection hold (4 MiB for the daemon's side, 512 KiB for ours).
    const SENT: u64 = 20_000;
    let (d, addr) = daemon(r#""tail": true"#);
    let mut tail = Sse::open(&addr, "/api/tail?channel=A", None);
    shrink_receive_buffer(tail.r.get_ref());
    // A listener on A gets every message: the tail never holds delivery back.
    let mut listener = d.raw("A", "listener");
    listener.subscribe(&["n"]);
    let mut a = d.raw("A", "fast");
    let payload = vec![b'7'; 300];
    for _ in 0..SENT {
        a.publish("n", &payload);
    }
    a.ping();
    let mut got = 0;
    while got < SENT {
        match listener.next() {
            Some(common::Got::Deliver { event, .. }) if event == "n" => got += 1,
            other => panic!("listener got {other:?} after {got}"),
        }
    }
    // Every message is either shown by the tail or counted as dropped,
    // unless the daemon gave up on this page for not reading in time.
    let (mut shown, mut dropped, mut ended) = (0u64, 0u64, false);
    while shown + dropped < SENT {
        let Some((name, data)) = tail.try_next() else {
            ended = true;
            break;
        };
        match name.as_str() {
            "message" => shown += 1,
            "dropped" => {
                dropped += serde_json::from_str::<Value>(&data).unwrap()["dropped"]
                    .as_u64()
                    .unwrap()
            }
            other => panic!("unexpected event {other}"),
        }
    }
    eprintln!("tail of {SENT} messages read late: {shown} shown, {dropped} dropped, page dropped: {ended}");
    assert!(
        dropped > 0 || ended,
        "{shown} shown: the tail cannot have queued them all"
    );
    if !ended {
        assert_eq!(shown + dropped, SENT);
    }
    d.raw("A", "still-serving").ping();
}

#[test]
fn a_page_that_stops_reading_is_dropped() {
    const SENT: u64 = 20_000;
    let (d, addr) = daemon(r#""tail": true"#);
    let mut tail = Sse::open(&addr, "/api/tail?channel=A", None);
    shrink_receive_buffer(tail.r.get_ref());
    let mut a = d.raw("A", "fast");
    let payload = vec![b'7'; 300];
    for _ in 0..SENT {
        a.publish("n", &payload);
    }
    a.ping();
    // More than the connection's buffers hold waits for this page, which
    // does not read for longer than the daemon's write timeout…
    std::thread::sleep(Duration::from_secs(7));
    // … so the daemon has closed it: what was buffered, then the end.
    let mut events = 0u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    while tail.try_next().is_some() {
        events += 1;
        assert!(
            Instant::now() < deadline,
            "the stream of a stalled page never ended"
        );
    }
    assert!(events < SENT, "{events} events: the page was not dropped");
    eprintln!("stalled page: {events} events buffered before the daemon closed it");
    // Its tap is gone: the daemon serves tails and clients as before.
    a.ping();
    let mut again = Sse::open(&addr, "/api/tail?channel=A", None);
    a.publish("after", b"1");
    a.ping();
    assert_eq!(again.next().0, "message");
}

/// Makes the kernel keep little for this socket, so that a page that does
/// not read fills its stream quickly (as a stalled phone would).
fn shrink_receive_buffer(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 256 * 1024;
    // SAFETY: a valid socket and a c_int option of the right size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt SO_RCVBUF");
}

#[test]
fn tails_are_limited_and_freed_when_closed() {
    let (d, addr) = daemon(r#""tail": true"#);
    let tails: Vec<Sse> = (0..8)
        .map(|_| Sse::open(&addr, "/api/tail?channel=B", None))
        .collect();
    let r = get(&addr, "/api/tail?channel=B");
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("8 tails are open already"));
    drop(tails);
    // A closed tail is noticed when a message is written to it.
    let mut b = d.raw("B", "poke");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        b.publish("poke", b"1");
        b.ping();
        if status_of(&addr, "/api/tail?channel=B") == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "closed tails were never freed");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_reload_turns_the_tail_on_and_the_token_on_at_once() {
    let (d, addr) = daemon("");
    assert_eq!(get(&addr, "/api/tail?channel=A").status, 403);
    let mut events = Sse::open(&addr, "/api/events", None);
    events.snapshot();
    let cfg = |http: &str| {
        serde_json::from_str::<Value>(&format!(
            r#"{{ "http": {{ "listen": "127.0.0.1:0"{http} }},
                 "channels": {{ "A": {{ "propagatetochannels": "^B$" }}, "B": {{}} }} }}"#
        ))
        .unwrap()
    };
    // Same `listen` (port 0 as at start): the listener stays, the new keys
    // apply to the next requests.
    let mut ctl = d.control();
    ctl.request("nc-control-reloadconfig", &cfg(r#", "tail": true"#))
        .expect("reload with the tail on");
    let mut tail = Sse::open(&addr, "/api/tail?channel=B", None);
    let mut b = d.raw("B", "after-reload");
    b.publish("hi", b"1");
    b.ping();
    assert_eq!(tail.next().0, "message");
    // A token now: open streams end, new requests need it.
    let with_token = format!(r#", "tail": true, "token": "{TOKEN}""#);
    ctl.request("nc-control-reloadconfig", &cfg(&with_token))
        .expect("reload with a token");
    let deadline = Instant::now() + Duration::from_secs(10);
    while events.try_next().is_some() {
        assert!(
            Instant::now() < deadline,
            "the snapshot stream outlived the new token"
        );
    }
    b.publish("hi", b"2");
    b.ping();
    while tail.try_next().is_some() {
        assert!(Instant::now() < deadline, "the tail outlived the new token");
    }
    assert_eq!(get(&addr, "/api/events").status, 401);
    Sse::open(&addr, "/api/events", Some(&format!("Bearer {TOKEN}"))).snapshot();
}

#[test]
fn http_config_errors_name_the_place() {
    let cases = [
        (
            r#"{"http": {"listen": "127.0.0.1:9454", "tial": true}}"#,
            "cfg.json:1:39: http.tial: unknown key; did you mean \"tail\"?",
        ),
        (
            r#"{"http": {"listen": "127.0.0.1:9454", "tail": "yes"}}"#,
            "cfg.json:1:47: http.tail: expected a boolean",
        ),
        (
            r#"{"http": {"listen": "127.0.0.1:9454", "token": "a", "tokenfile": "/x"}}"#,
            "http.tokenfile: give either token or tokenfile, not both",
        ),
        (
            r#"{"http": {"listen": "127.0.0.1:9454", "token": "has space"}}"#,
            "http.token: the token must be printable ASCII without spaces",
        ),
        (
            r#"{"http": {"listen": "127.0.0.1:9454", "tokenfile": "/nonexistent/tok"}}"#,
            "http.tokenfile: cannot read tokenfile /nonexistent/tok",
        ),
        (r#"{"http": {"tail": true}}"#, "cfg.json:1:10: http: "),
    ];
    for (text, want) in cases {
        let err = Config::parse(text, "cfg.json").unwrap_err().to_string();
        assert!(err.contains(want), "{text}\n got: {err}\nwant: {want}");
    }
    let cfg = Config::parse(
        r#"{"http": {"listen": "[::1]:9454", "tail": true, "token": "t0k"}}"#,
        "cfg.json",
    )
    .unwrap();
    let shown = cfg.to_json()["http"].clone();
    assert_eq!(
        shown,
        serde_json::json!({"listen": "[::1]:9454", "tail": true, "token": "(set)"}),
        "showconfig never shows the token"
    );
}
