//! Helpers for the tests that run the `ncserver` binary and talk to it
//! through raw sockets: a daemon process started on a config file, a raw
//! native client that speaks the frames byte by byte, control requests and
//! the daemon's memory and descriptor counts from `/proc`.
#![allow(dead_code)]

pub mod abuse;
pub mod flood;
pub mod lan;
pub mod nats;
pub mod slow;

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use netcluster_proto::frame::{self, ErrorCode, Frame};
use netcluster_testkit::{tempdir, wait_until};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_ncserver");

/// Frames bigger than this are not expected from the daemon in these tests.
const MAX_FRAME: usize = 64 << 20;

/// An `ncserver` process on a config file, with its sockets in a fresh
/// temporary directory (`NETCLUSTER_SOCKET_DIR`) and its log in a file.
/// Killed on drop.
pub struct Daemon {
    pub child: Child,
    pub sockets: tempfile::TempDir,
    log: PathBuf,
    _files: tempfile::TempDir,
}

impl Daemon {
    /// Starts `ncserver CONFIG` and waits until it serves.
    pub fn start(config: &str) -> Daemon {
        let files = tempdir();
        let sockets = tempdir();
        let cfg = files.path().join("config.json");
        std::fs::write(&cfg, config).unwrap();
        let log = files.path().join("stderr.log");
        let child = Self::spawn(&cfg, sockets.path(), &log);
        let mut d = Daemon {
            child,
            sockets,
            log,
            _files: files,
        };
        d.wait_ready();
        d
    }

    /// Kills the daemon with SIGKILL (no cleanup, as in a crash), then
    /// starts it again on the same config and socket directory and waits
    /// until it serves.
    pub fn kill_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let n = std::fs::read_dir(self._files.path()).unwrap().count();
        self.log = self._files.path().join(format!("stderr-{n}.log"));
        let cfg = self._files.path().join("config.json");
        self.child = Self::spawn(&cfg, self.sockets.path(), &self.log);
        self.wait_ready();
    }

    fn spawn(cfg: &Path, sockets: &Path, log: &Path) -> Child {
        let mut cmd = Command::new(BIN);
        // SAFETY: prctl is async-signal-safe and touches no memory of ours.
        // The daemon dies with the thread that started it, so a test that
        // fails by timing out (its thread never drops the Daemon) leaves no
        // daemon behind.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        cmd.arg(cfg)
            .env("NETCLUSTER_SOCKET_DIR", sockets)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("spawn ncserver")
    }

    fn wait_ready(&mut self) {
        let log = self.log.clone();
        let child = &mut self.child;
        wait_until(20, "ncserver to report it is serving", || {
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "ncserver exited with {st}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("ncserver serving")
        });
    }

    pub fn dir(&self) -> &Path {
        self.sockets.path()
    }

    pub fn path(&self, channel: &str) -> PathBuf {
        self.dir().join(format!("netcluster-{channel}"))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics (with the log) if the daemon has exited.
    pub fn assert_alive(&mut self) {
        if let Ok(Some(st)) = self.child.try_wait() {
            panic!("ncserver exited with {st}:\n{}", self.log());
        }
    }

    /// Peak resident memory of the daemon so far, in bytes.
    pub fn peak_rss(&self) -> u64 {
        status_kib(self.pid(), "VmHWM:") * 1024
    }

    /// Resident memory of the daemon now, in bytes.
    pub fn rss(&self) -> u64 {
        status_kib(self.pid(), "VmRSS:") * 1024
    }

    /// Open file descriptors of the daemon.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Connects a raw client and shakes hands.
    pub fn raw(&self, channel: &str, name: &str) -> Raw {
        let mut r = Raw::connect(&self.path(channel));
        r.hello(name);
        r
    }

    /// A connection to the control channel for requests.
    pub fn control(&self) -> Raw {
        self.raw("control", "test-control")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let status = self.child.try_wait().ok().flatten();
            eprintln!(
                "--- ncserver (pid {}, exited: {status:?}) log tail:\n{}",
                self.pid(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `kB` field of `/proc/{pid}/status`.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// A frame from the daemon, owned.
#[derive(Debug, Clone, PartialEq)]
pub enum Got {
    Welcome {
        node: u64,
        client: u64,
    },
    Deliver {
        client: u64,
        seq: u64,
        event: String,
        payload: Vec<u8>,
    },
    Error {
        code: ErrorCode,
        id: u32,
        fatal: bool,
        message: String,
    },
    Response {
        id: u32,
        ok: bool,
        body: Value,
    },
    Ack(u32),
    Pong(u64),
    Other(String),
}

impl Got {
    fn from(f: Frame<'_>) -> Got {
        match f {
            Frame::Welcome { node, client, .. } => Got::Welcome { node, client },
            Frame::Deliver(d) => Got::Deliver {
                client: d.client,
                seq: d.seq,
                event: d.event.to_string(),
                payload: d.payload.to_vec(),
            },
            Frame::Error {
                code,
                id,
                fatal,
                message,
            } => Got::Error {
                code,
                id,
                fatal,
                message: message.to_string(),
            },
            Frame::Response {
                id,
                status,
                payload,
            } => Got::Response {
                id,
                ok: status == frame::Status::Ok,
                body: serde_json::from_slice(payload).unwrap_or(Value::Null),
            },
            Frame::Ack(id) => Got::Ack(id),
            Frame::Pong(t) => Got::Pong(t),
            other => Got::Other(format!("{other:?}")),
        }
    }

    /// The error message, if this is an Error frame.
    pub fn error(&self) -> Option<&str> {
        match self {
            Got::Error { message, .. } => Some(message),
            _ => None,
        }
    }
}

/// A native client written by hand over a blocking `UnixStream`, so a test
/// controls exactly what is sent and when it is read (or not read).
pub struct Raw {
    pub s: UnixStream,
    buf: BytesMut,
    pub client: u64,
    pub node: u64,
    next_id: u32,
}

impl Raw {
    /// Connects without sending anything.
    pub fn connect(path: &Path) -> Raw {
        let s =
            UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        Raw {
            s,
            buf: BytesMut::new(),
            client: 0,
            node: 0,
            next_id: 1,
        }
    }

    /// Sends a Hello and reads the Welcome.
    pub fn hello(&mut self, name: &str) {
        let mut b = BytesMut::new();
        frame::encode_hello(&mut b, std::process::id(), name);
        self.send(&b);
        match self.next() {
            Some(Got::Welcome { node, client }) => {
                self.node = node;
                self.client = client;
            }
            other => panic!("expected a welcome, got {other:?}"),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("write to the daemon");
    }

    /// Subscribes and waits for the daemon's Ack.
    pub fn subscribe(&mut self, events: &[&str]) {
        let ack = self.id();
        let mut b = BytesMut::new();
        frame::encode_subscription(&mut b, true, ack, events.iter().copied());
        self.send(&b);
        match self.next() {
            Some(Got::Ack(a)) if a == ack => {}
            other => panic!("expected ack {ack}, got {other:?}"),
        }
    }

    pub fn publish(&mut self, event: &str, payload: &[u8]) {
        let mut b = BytesMut::new();
        frame::encode_publish(&mut b, event, payload);
        self.send(&b);
    }

    /// Sends a Ping and waits for its Pong, returning what came before it.
    pub fn ping(&mut self) -> Vec<Got> {
        let token = u64::from(self.id());
        let mut b = BytesMut::new();
        frame::encode_ping(&mut b, true, token);
        self.send(&b);
        let mut before = Vec::new();
        loop {
            match self.next() {
                Some(Got::Pong(t)) if t == token => return before,
                Some(g) => before.push(g),
                None => panic!("connection closed before the pong; got {before:?}"),
            }
        }
    }

    /// Sends a control request and returns its result (`Err` = failed).
    pub fn request(&mut self, name: &str, arg: &Value) -> Result<Value, String> {
        let id = self.id();
        let mut b = BytesMut::new();
        frame::encode_request(&mut b, id, name, arg.to_string().as_bytes());
        self.send(&b);
        loop {
            match self.next() {
                Some(Got::Response { id: i, ok, body }) if i == id => {
                    return if ok {
                        Ok(body)
                    } else {
                        Err(body["error"].as_str().unwrap_or_default().to_string())
                    };
                }
                Some(_) => {}
                None => panic!("connection closed before the response to {name}"),
            }
        }
    }

    /// `showclient(channel, id)`.
    pub fn show_client(&mut self, channel: &str, id: u64) -> Result<Value, String> {
        self.request(
            "nc-control-showclient",
            &serde_json::json!({"channel": channel, "client": id}),
        )
    }

    /// The number of clients of the daemon (`status`).
    pub fn client_count(&mut self) -> u64 {
        self.request("nc-control-status", &Value::Null).unwrap()["clients"]
            .as_u64()
            .unwrap()
    }

    fn id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    /// The next frame; `None` when the daemon closed the connection.
    /// Panics on a read timeout or a bad frame.
    pub fn next(&mut self) -> Option<Got> {
        match self.try_next() {
            Ok(g) => g,
            Err(e) => panic!("reading from the daemon: {e}"),
        }
    }

    /// The next frame, `Ok(None)` at the end of the stream, `Err` on a read
    /// error (including the read timeout).
    pub fn try_next(&mut self) -> io::Result<Option<Got>> {
        loop {
            match frame::decode(&self.buf, MAX_FRAME) {
                Ok(Some((f, n))) => {
                    let g = Got::from(f);
                    self.buf.advance(n);
                    return Ok(Some(g));
                }
                Ok(None) => {}
                Err(e) => return Err(io::Error::other(format!("bad frame from daemon: {e}"))),
            }
            let mut chunk = [0u8; 64 * 1024];
            match self.s.read(&mut chunk) {
                Ok(0) if self.buf.is_empty() => return Ok(None),
                Ok(0) => {
                    return Err(io::Error::other(format!(
                        "stream ended inside a frame ({} bytes left)",
                        self.buf.len()
                    )))
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads everything until the daemon closes the connection.
    pub fn drain(&mut self) -> Vec<Got> {
        let mut all = Vec::new();
        while let Some(g) = self.next() {
            all.push(g);
        }
        all
    }
}

/// Reads all a raw (non-native) peer gets until the daemon closes, as text.
pub fn read_to_close(s: &mut UnixStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    String::from_utf8_lossy(&all).into_owned()
}

/// The frames in `bytes` (everything a peer read), decoded.
pub fn frames(mut bytes: &[u8]) -> Vec<Got> {
    let mut out = Vec::new();
    while let Ok(Some((f, n))) = frame::decode(bytes, MAX_FRAME) {
        out.push(Got::from(f));
        bytes = &bytes[n..];
    }
    out
}

/// Runs `f` and fails if it takes longer than `secs`: every test here is
/// bounded in time, so a hang shows as a failure with its name.
pub fn bounded<T: Send + 'static>(
    secs: u64,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::Builder::new()
        .name(what.into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .unwrap();
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(v) => {
            let _ = t.join();
            v
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            // The closure panicked: re-raise its panic here.
            match t.join() {
                Err(p) => std::panic::resume_unwind(p),
                Ok(()) => unreachable!("sent nothing yet returned"),
            }
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: did not finish within {secs} s")
        }
    }
}

/// Elapsed time as a short string for test output.
pub fn since(t: Instant) -> String {
    format!("{:.2}s", t.elapsed().as_secs_f64())
}
