//! The systemd side of `NOTIFY_SOCKET`: a Unix datagram socket in a temp
//! dir receives what ncserver tells its service manager, in order.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netcluster_testkit::{tempdir, wait_until};

use crate::daemon::BIN;

/// Reads notifications until one contains `want` (bounded in time),
/// returning every message read on the way, `want`'s included.
fn read_until(sock: &UnixDatagram, want: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = vec![0u8; 4096];
    loop {
        assert!(
            Instant::now() < deadline,
            "no {want:?} from ncserver; got {seen:#?}"
        );
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let done = msg.lines().any(|l| l == want);
                seen.push(msg);
                if done {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("recv: {e}"),
        }
    }
}

#[test]
fn notifies_ready_reloading_watchdog_and_stopping_in_order() {
    let dir = tempdir();
    let notify = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let sockets = dir.path().join("sock");
    std::fs::create_dir(&sockets).unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(&config, r#"{ "channels": { "A": {}, "B": {} } }"#).unwrap();
    // systemd sets WATCHDOG_PID to the service's pid: the shell's `$$`,
    // which `exec` hands on to ncserver.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("WATCHDOG_PID=$$ exec \"$0\" \"$1\"")
        .arg(BIN)
        .arg(&config)
        .env("NOTIFY_SOCKET", &notify)
        .env("WATCHDOG_USEC", "300000")
        .env("NETCLUSTER_SOCKET_DIR", &sockets)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut seen = Vec::new();

    read_until(&sock, "READY=1", &mut seen);
    // READY only once every channel is bound.
    for ch in ["control", "A", "B"] {
        assert!(
            netcluster_local::channel_path(&sockets, ch).exists(),
            "READY=1 before channel {ch} was bound"
        );
    }
    let ready = seen.last().unwrap();
    assert!(
        ready
            .lines()
            .any(|l| l.starts_with("STATUS=serving 3 channels")),
        "{ready}"
    );

    // Pings at half of WATCHDOG_USEC: at least two more in a second.
    seen.clear();
    read_until(&sock, "WATCHDOG=1", &mut seen);
    read_until(&sock, "WATCHDOG=1", &mut seen);

    // SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1 with a STATUS.
    std::fs::write(&config, r#"{ "channels": { "A": {}, "B": {}, "C": {} } }"#).unwrap();
    // SAFETY: kill(2) on our own child; no memory is involved.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    seen.clear();
    read_until(&sock, "RELOADING=1", &mut seen);
    let reloading = seen.last().unwrap();
    assert!(
        reloading.lines().any(|l| l.starts_with("MONOTONIC_USEC=")
            && l["MONOTONIC_USEC=".len()..].parse::<u64>().is_ok()),
        "{reloading}"
    );
    seen.clear();
    read_until(&sock, "READY=1", &mut seen);
    let after = seen.last().unwrap();
    assert!(
        after.contains("STATUS=serving; last reload applied"),
        "{after}"
    );
    assert!(after.contains("\"added\":[\"C\"]"), "{after}");
    assert!(netcluster_local::channel_path(&sockets, "C").exists());

    // SIGTERM: STOPPING=1, then the process exits.
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    seen.clear();
    read_until(&sock, "STOPPING=1", &mut seen);
    assert!(
        !seen.iter().any(|m| m.contains("READY=1")),
        "READY after the stop signal: {seen:?}"
    );
    let mut status = None;
    wait_until(15, "ncserver to exit", || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    assert!(status.unwrap().success());
}

#[test]
fn without_notify_socket_nothing_changes() {
    // The other tests run without NOTIFY_SOCKET; this one checks that a
    // NOTIFY_SOCKET nobody listens on does not stop the daemon either.
    let dir = tempdir();
    let sockets = dir.path().join("sock");
    std::fs::create_dir(&sockets).unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(&config, r#"{ "channels": { "A": {} } }"#).unwrap();
    let mut child = Command::new(BIN)
        .arg(&config)
        .env("NOTIFY_SOCKET", dir.path().join("nobody.sock"))
        .env("NETCLUSTER_SOCKET_DIR", &sockets)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(20, "ncserver to bind A", || {
        netcluster_local::channel_path(&sockets, "A").exists()
    });
    std::thread::sleep(Duration::from_millis(200));
    assert!(child.try_wait().unwrap().is_none(), "ncserver exited");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut status = None;
    wait_until(15, "ncserver to exit", || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    assert!(status.unwrap().success());
}
