//! The `ncserver` binary: config discovery and errors, socket lifecycle,
//! signals, and a daemon that survives bad peers. (Unix; Windows runs are
//! tested under Wine by their own script.)
#![cfg(unix)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use netcluster_testkit::{tempdir, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_ncserver");

/// The config example of the seed's README, verbatim (also shipped as an
/// example config).
const SEED_EXAMPLE: &str = include_str!("../../../examples/seed-config.json");

/// A running ncserver with its stderr going to a file.
struct Daemon {
    child: Child,
    log: PathBuf,
    _logdir: tempfile::TempDir,
}

impl Daemon {
    fn spawn(bin: &Path, args: &[&str], socket_dir: &Path) -> Daemon {
        let logdir = tempdir();
        let log = logdir.path().join("stderr.log");
        let child = Command::new(bin)
            .args(args)
            .env("NETCLUSTER_SOCKET_DIR", socket_dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn ncserver");
        Daemon {
            child,
            log,
            _logdir: logdir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let log = self.log.clone();
        wait_until(20, "ncserver to report it is serving", || {
            if let Ok(Some(st)) = self.child.try_wait() {
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

    fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) with a pid we own; no memory is involved.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let mut status = None;
        wait_until(10, "ncserver to exit after SIGTERM", || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        status.unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn check_accepts_the_seed_example() {
    let dir = tempdir();
    let p = write(dir.path(), "config.json", SEED_EXAMPLE);
    let (code, out, err) = run(&["--check", p.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok (3 channels: control, A, B)"), "{out}");
}

#[test]
fn config_errors_name_file_line_column_and_key() {
    let dir = tempdir();
    let cases = [
        (
            "{\n  \"channels\": {\n    \"A\": { \"dumptoconsol\": true }\n  }\n}",
            ":3:12: channels.A.dumptoconsol: unknown key; did you mean \"dumptoconsole\"?",
        ),
        (
            "{\n  \"startcontrl\": true\n}",
            ":2:3: startcontrl: unknown key; did you mean \"startcontrol\"?",
        ),
        (
            "{\n  \"channels\": { \"A\": { \"propagatetochannels\": \"(unclosed\" } }\n}",
            ":2:47: channels.A.propagatetochannels: invalid regex \"(unclosed\": unclosed group",
        ),
        (
            "{\n  \"port\": \"4454\"\n}",
            ":2:11: port: expected an integer, found a string",
        ),
        (
            "{\n  \"dumpnet\": 1\n}",
            ":2:14: dumpnet: expected a boolean, found a number",
        ),
        (
            "{\n  \"channels\": { \"a/b\": {} }\n}",
            ":2:17: channels.\"a/b\": channel name \"a/b\" contains '/'",
        ),
    ];
    for (text, want) in cases {
        let p = write(dir.path(), "bad.json", text);
        let (code, _, err) = run(&["--check", p.to_str().unwrap()]);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains(&format!("{}{want}", p.display())),
            "want {want:?} in:\n{err}"
        );
        // Starting with the bad file fails the same way.
        let (code, _, err2) = run(&[p.to_str().unwrap()]);
        assert_eq!(code, 2);
        assert!(err2.contains(want), "{err2}");
    }
}

#[test]
fn without_argument_uses_config_beside_the_executable_else_builtin() {
    let bindir = tempdir();
    let bin = bindir.path().join("ncserver");
    std::fs::copy(BIN, &bin).unwrap();
    let sockets = tempdir();
    let mut d = Daemon::spawn(&bin, &[], sockets.path());
    d.wait_ready();
    assert!(
        d.log().contains("using the built-in default config"),
        "{}",
        d.log()
    );
    for ch in ["control", "A", "B"] {
        assert!(sockets.path().join(format!("netcluster-{ch}")).exists());
    }
    assert!(d.terminate().success());

    write(
        bindir.path(),
        "config.json",
        r#"{ "channels": { "only": {} } }"#,
    );
    let mut d = Daemon::spawn(&bin, &[], sockets.path());
    d.wait_ready();
    assert!(
        d.log().contains(&format!(
            "using config {}",
            bindir.path().join("config.json").display()
        )),
        "{}",
        d.log()
    );
    assert!(sockets.path().join("netcluster-only").exists());
    assert!(!sockets.path().join("netcluster-A").exists());
    assert!(d.terminate().success());
}

#[test]
fn sigterm_stops_gracefully_and_removes_sockets() {
    let sockets = tempdir();
    let mut d = Daemon::spawn(Path::new(BIN), &[], sockets.path());
    d.wait_ready();
    let path = sockets.path().join("netcluster-A");
    let mut peer = UnixStream::connect(&path).unwrap();
    let st = d.terminate();
    assert!(st.success(), "{st}");
    assert!(!path.exists());
    assert!(!sockets.path().join("netcluster-control").exists());
    // The connected peer saw the connection end.
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = Vec::new();
    let _ = peer.read_to_end(&mut buf);
}

#[test]
fn stale_socket_is_replaced_and_live_daemon_is_an_error() {
    let sockets = tempdir();
    // A socket file nobody listens on, as a killed daemon leaves it.
    let stale = sockets.path().join("netcluster-A");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let mut first = Daemon::spawn(Path::new(BIN), &[], sockets.path());
    first.wait_ready();
    assert!(
        first.log().contains("replacing stale socket"),
        "{}",
        first.log()
    );
    UnixStream::connect(&stale).expect("the new daemon serves the replaced socket");

    // A second daemon on the same directory refuses to start.
    let (code, _, err) = {
        let out = Command::new(BIN)
            .env("NETCLUSTER_SOCKET_DIR", sockets.path())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            (),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("another ncserver is already serving channel"),
        "{err}"
    );
    // ...and did not remove the first daemon's sockets.
    UnixStream::connect(&stale).expect("first daemon still serving");
    assert!(first.terminate().success());

    // A regular file in the way is not deleted.
    let f = sockets.path().join("netcluster-control");
    std::fs::write(&f, "precious").unwrap();
    let out = Command::new(BIN)
        .env("NETCLUSTER_SOCKET_DIR", sockets.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a socket; refusing to replace it")
    );
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "precious");
}

#[test]
fn socket_mode_is_applied() {
    use std::os::unix::fs::PermissionsExt;
    let sockets = tempdir();
    let cfgdir = tempdir();
    let p = write(
        cfgdir.path(),
        "c.json",
        r#"{ "socketmode": "0600", "channels": { "A": {} } }"#,
    );
    let mut d = Daemon::spawn(Path::new(BIN), &[p.to_str().unwrap()], sockets.path());
    d.wait_ready();
    let mode = std::fs::metadata(sockets.path().join("netcluster-A"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert!(d.terminate().success());
}

#[test]
fn garbage_from_one_peer_gets_an_error_and_others_keep_working() {
    let sockets = tempdir();
    let mut d = Daemon::spawn(Path::new(BIN), &[], sockets.path());
    d.wait_ready();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = sockets.path();
        let rx = netcluster::Client::builder("A")
            .socket_dir(dir)
            .connect()
            .await
            .unwrap();
        let mut sub = rx.subscribe("n").await.unwrap();
        let tx = netcluster::Client::builder("A")
            .socket_dir(dir)
            .connect()
            .await
            .unwrap();
        tx.emit("n", &1).await.unwrap();

        // Garbage instead of a hello.
        let mut bad = UnixStream::connect(dir.join("netcluster-A")).unwrap();
        bad.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        bad.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut reply = Vec::new();
        bad.read_to_end(&mut reply).unwrap();
        let text = String::from_utf8_lossy(&reply);
        assert!(
            text.contains("unknown frame type 0x47; is this a netcluster client?"),
            "{text}"
        );

        // A valid hello, then a frame with an absurd length.
        let mut bad = UnixStream::connect(dir.join("netcluster-A")).unwrap();
        let mut b = bytes::BytesMut::new();
        netcluster_proto::frame::encode_hello(&mut b, 1, "evil");
        b.extend_from_slice(&[0x04, 0xff, 0xff, 0xff, 0xff]);
        bad.write_all(&b).unwrap();
        bad.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut reply = Vec::new();
        bad.read_to_end(&mut reply).unwrap();
        assert!(
            String::from_utf8_lossy(&reply).contains("exceeds the limit"),
            "{}",
            String::from_utf8_lossy(&reply)
        );

        tx.emit("n", &2).await.unwrap();
        for want in [1, 2] {
            let m = tokio::time::timeout(Duration::from_secs(5), sub.recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(m.json::<i32>().unwrap(), want);
        }
    });
    assert!(d.terminate().success());
}

#[test]
fn a_client_that_never_reads_its_answers_is_closed_not_buffered_forever() {
    let sockets = tempdir();
    let cfgdir = tempdir();
    let p = write(
        cfgdir.path(),
        "c.json",
        r#"{ "queuebytes": "64KiB", "channels": { "A": { "blockms": 200 } } }"#,
    );
    let mut d = Daemon::spawn(Path::new(BIN), &[p.to_str().unwrap()], sockets.path());
    d.wait_ready();
    let path = sockets.path().join("netcluster-A");
    let mut greedy = UnixStream::connect(&path).unwrap();
    let mut b = bytes::BytesMut::new();
    netcluster_proto::frame::encode_hello(&mut b, 1, "greedy");
    greedy.write_all(&b).unwrap();
    // Pings whose pongs it never reads: the daemon stops reading from it
    // once its queue holds more than queuebytes, then closes it.
    let mut pings = bytes::BytesMut::new();
    for t in 0..10_000 {
        netcluster_proto::frame::encode_ping(&mut pings, true, t);
    }
    greedy
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut closed = false;
    for _ in 0..1000 {
        if greedy.write_all(&pings).is_err() {
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "the daemon kept reading from a client that never reads"
    );
    assert!(d.log().contains("slow consumer"), "{}", d.log());
    // Others are served as usual.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = netcluster::Client::builder("A")
            .socket_dir(sockets.path())
            .connect()
            .await
            .unwrap();
        c.flush().await.unwrap();
    });
    assert!(d.terminate().success());
}
