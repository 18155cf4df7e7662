//! Helpers for the NATS bridge tests: a real `nats-server` on a loopback
//! port in a temporary folder (killed on drop, restartable on the same
//! port), and a minimal raw-protocol NATS client (CONNECT, PUB, HPUB, SUB,
//! MSG, HMSG, PING/PONG) over a blocking TCP stream, so the tests see
//! exactly what travels on NATS; and the checks the bridge tests share.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Daemon, Got, Raw};

/// Where `nats-server` is, if installed (Debian's package puts it in
/// /usr/sbin). Missing: `None`, and the caller skips unless CI (or
/// `NETCLUSTER_REQUIRE_NATS`) says the test must run.
pub fn nats_server_bin() -> Option<PathBuf> {
    let found = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    if found.is_none()
        && (std::env::var_os("CI").is_some()
            || std::env::var_os("NETCLUSTER_REQUIRE_NATS").is_some())
    {
        panic!("nats-server is not installed (apt-get install nats-server)");
    }
    if found.is_none() {
        eprintln!("SKIPPED: nats-server is not installed");
    }
    found
}

/// A `nats-server` process on 127.0.0.1.
pub struct NatsServer {
    bin: PathBuf,
    child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// A config file (`-c`) in `dir`, if any.
    conf: Option<String>,
}

impl NatsServer {
    /// Starts one on a free port, or `None` when not installed.
    pub fn start() -> Option<NatsServer> {
        NatsServer::start_with(None::<fn(&std::path::Path) -> String>)
    }

    /// Starts one with a config file written by `conf` (given the
    /// server's folder, for certificates made there).
    pub fn start_with(conf: Option<impl FnOnce(&std::path::Path) -> String>) -> Option<NatsServer> {
        let bin = nats_server_bin()?;
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut s = NatsServer {
            bin,
            child: None,
            port,
            dir: tempfile::tempdir().unwrap(),
            conf: None,
        };
        if let Some(f) = conf {
            let text = f(s.dir.path());
            std::fs::write(s.dir.path().join("nats.conf"), text).unwrap();
            s.conf = Some("nats.conf".into());
        }
        s.restart();
        Some(s)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (as a crash would: SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it (again) on the same port and waits until it accepts.
    pub fn restart(&mut self) {
        self.kill();
        let log = std::fs::File::create(self.dir.path().join("nats.log")).unwrap();
        let mut cmd = Command::new(&self.bin);
        // SAFETY: prctl is async-signal-safe; the server dies with the test.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        if let Some(c) = &self.conf {
            cmd.args(["-c", c]);
        }
        let child = cmd
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not start: {}",
                std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A message as a raw NATS client receives it.
#[derive(Debug, Clone)]
pub struct NatsMsg {
    pub subject: String,
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
}

impl NatsMsg {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The five space-separated fields of the bridge's one header,
    /// `Nc-Origin: <node> <client> <seq> <channel token> <event token>`
    /// (read here without the proto crate, as any NATS client would).
    pub fn origin(&self) -> Option<[&str; 5]> {
        let v = self.header("Nc-Origin")?;
        let f: Vec<&str> = v.split(' ').collect();
        f.try_into().ok()
    }
}

/// An `Nc-Origin` value as a daemon would write it (for tests that play a
/// daemon from a plain NATS client): names given as subject tokens.
pub fn origin_header(node: u64, client: u64, seq: u64, channel: &str, event: &str) -> String {
    format!("{node:016x} {client} {seq} {channel} {event}")
}

/// A raw-protocol NATS client.
pub struct RawNats {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl RawNats {
    pub fn connect(port: u16) -> RawNats {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut c = RawNats {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        };
        let info = c.line();
        assert!(info.starts_with("INFO "), "{info}");
        c.send(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"name\":\"raw-test\"}\r\n");
        c.sync();
        c
    }

    fn send(&mut self, b: &[u8]) {
        self.w.write_all(b).unwrap();
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).expect("read from nats-server");
        assert!(!l.is_empty(), "nats-server closed the connection");
        l.trim_end().to_string()
    }

    /// Round trip: everything sent before is processed by the server.
    pub fn sync(&mut self) {
        self.send(b"PING\r\n");
        loop {
            let l = self.line();
            match l.as_str() {
                "PONG" => return,
                "PING" => self.send(b"PONG\r\n"),
                _ if l.starts_with("-ERR") => panic!("nats-server: {l}"),
                _ => {}
            }
        }
    }

    pub fn publish(&mut self, subject: &str, payload: &[u8]) {
        let mut b = format!("PUB {subject} {}\r\n", payload.len()).into_bytes();
        b.extend_from_slice(payload);
        b.extend_from_slice(b"\r\n");
        self.send(&b);
    }

    /// Publishes with headers (`HPUB`).
    pub fn publish_with_headers(
        &mut self,
        subject: &str,
        headers: &[(&str, &str)],
        payload: &[u8],
    ) {
        let mut h = String::from("NATS/1.0\r\n");
        for (k, v) in headers {
            h.push_str(&format!("{k}: {v}\r\n"));
        }
        h.push_str("\r\n");
        let mut b =
            format!("HPUB {subject} {} {}\r\n", h.len(), h.len() + payload.len()).into_bytes();
        b.extend_from_slice(h.as_bytes());
        b.extend_from_slice(payload);
        b.extend_from_slice(b"\r\n");
        self.send(&b);
    }

    pub fn subscribe(&mut self, subject: &str, sid: u32) {
        self.send(format!("SUB {subject} {sid}\r\n").as_bytes());
        self.sync();
    }

    /// The next message (answers the server's pings meanwhile).
    pub fn next_msg(&mut self) -> NatsMsg {
        loop {
            let l = self.line();
            let parts: Vec<&str> = l.split(' ').collect();
            match parts[0] {
                "PING" => self.send(b"PONG\r\n"),
                "MSG" => {
                    let len: usize = parts.last().unwrap().parse().unwrap();
                    let payload = self.body(len);
                    return NatsMsg {
                        subject: parts[1].to_string(),
                        headers: Vec::new(),
                        payload,
                    };
                }
                "HMSG" => {
                    let n = parts.len();
                    let hlen: usize = parts[n - 2].parse().unwrap();
                    let total: usize = parts[n - 1].parse().unwrap();
                    let all = self.body(total);
                    let head = String::from_utf8_lossy(&all[..hlen]).to_string();
                    let headers = head
                        .split("\r\n")
                        .skip(1)
                        .filter_map(|h| h.split_once(':'))
                        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                        .collect();
                    return NatsMsg {
                        subject: parts[1].to_string(),
                        headers,
                        payload: all[hlen..].to_vec(),
                    };
                }
                _ if l.starts_with("-ERR") => panic!("nats-server: {l}"),
                _ => {}
            }
        }
    }

    fn body(&mut self, len: usize) -> Vec<u8> {
        let mut b = vec![0; len + 2];
        self.r.read_exact(&mut b).unwrap();
        b.truncate(len);
        b
    }
}

/// Makes a CA and a server certificate for 127.0.0.1 signed by it in
/// `dir` (ca.pem, server.pem, server.key) with the openssl command.
pub fn make_certs(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (apt-get install openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut a = vec!["req", "-x509"];
    a.extend(ec);
    a.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=netcluster test CA",
    ]);
    run(&a);
    let mut a = vec!["req"];
    a.extend(ec);
    a.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    run(&a);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

pub fn config(url: &str, extra_channels: &str) -> String {
    format!(
        r#"{{"nats": {{"servers": ["{url}"]}},
            "channels": {{"A": {{"propagatetonats": true}}{extra_channels}}}}}"#
    )
}

pub fn status(d: &Daemon) -> Value {
    d.control()
        .request("nc-control-status", &Value::Null)
        .unwrap()
}

/// Waits until the daemon's bridge is connected and subscribed.
pub fn wait_bridged(d: &Daemon, subs: u64) {
    netcluster_testkit::wait_until(30, "the NATS bridge to connect and subscribe", || {
        let s = status(d);
        s["nats"]["state"] == "connected" && s["nats"]["subscriptions"].as_u64() >= Some(subs)
    });
}

/// Publishes `warm` on `from` until `to` gets one: NATS interest has
/// propagated. Returns how many it took.
pub fn warm_up(from: &mut Raw, to: &mut Raw) {
    let deadline = Instant::now() + Duration::from_secs(30);
    to.s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    loop {
        from.publish("warm", b"w");
        match to.try_next() {
            Ok(Some(Got::Deliver { event, .. })) if event == "warm" => break,
            _ => assert!(Instant::now() < deadline, "no message crossed NATS"),
        }
    }
    // Drain the other warm-ups still on their way.
    std::thread::sleep(Duration::from_millis(300));
    while let Ok(Some(_)) = to.try_next() {}
    to.s.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
}

/// Reads `n` deliveries of `event` and checks they are 0..n in order.
pub fn expect_in_order(r: &mut Raw, event: &str, n: usize) {
    let mut next = 0usize;
    while next < n {
        match r.next() {
            Some(Got::Deliver {
                event: e, payload, ..
            }) if e == event => {
                let i: usize = String::from_utf8(payload).unwrap().parse().unwrap();
                assert_eq!(i, next, "out of order or duplicate");
                next += 1;
            }
            Some(Got::Deliver { event: e, .. }) if e == "warm" => {}
            other => panic!("unexpected {other:?} after {next} of {n}"),
        }
    }
    // Nothing more (no duplicates) once the daemon has answered a ping.
    std::thread::sleep(Duration::from_millis(300));
    let extra: Vec<_> = r
        .ping()
        .into_iter()
        .filter(|g| matches!(g, Got::Deliver { event: e, .. } if e == event))
        .collect();
    assert!(
        extra.is_empty(),
        "{} duplicates, first {:?}",
        extra.len(),
        extra.first()
    );
}
