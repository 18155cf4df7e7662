//! What `ncserver` tells a new user: error texts that say each thing once,
//! `--check` refusing what start-up would refuse, and `--help`/`--version`
//! naming the program. Through the real binary.
#![cfg(unix)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{Daemon, BIN};
use netcluster_testkit::tempdir;

/// Runs `ncserver ARGS` with its sockets in `socket_dir`; exit code, stdout, stderr.
fn run_in(socket_dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("NETCLUSTER_SOCKET_DIR", socket_dir)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// The number of times `needle` occurs in `hay`.
fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

#[test]
fn an_os_error_is_printed_once() {
    let dir = tempdir();
    let missing = dir.path().join("missing.json");
    let (code, _, err) = run_in(dir.path(), &["--check", missing.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot read config file"), "{err}");
    assert_eq!(count(&err, "(os error 2)"), 1, "{err}");

    // A socket directory that cannot be created: its parent is a file.
    let file = dir.path().join("plainfile");
    std::fs::write(&file, "").unwrap();
    let cfg = dir.path().join("c.json");
    std::fs::write(
        &cfg,
        format!(r#"{{ "socketdir": {:?} }}"#, file.join("sockets")),
    )
    .unwrap();
    let (code, _, err) = run_in(dir.path(), &[cfg.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot bind channel"), "{err}");
    assert_eq!(count(&err, "(os error 20)"), 1, "{err}");
}

#[test]
fn a_second_daemon_names_the_process_it_found() {
    let first = Daemon::start(r#"{ "channels": { "A": {} } }"#);
    let (code, _, err) = run_in(first.dir(), &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("another ncserver is already serving channel"),
        "{err}"
    );
    assert!(
        err.contains(&format!("process {} (ncserver)", first.pid())),
        "{err}"
    );
}

/// Each config here loads, but the daemon refuses to start on it; `--check`
/// must refuse it too, with the same reason, and bind nothing.
#[test]
fn check_refuses_what_start_up_refuses() {
    let dir = tempdir();
    let sockets = tempdir();
    let long = "x".repeat(255);
    let cases = [
        (
            r#"{ "socketgroup": "no-such-group-nc" }"#.to_string(),
            "socketgroup \"no-such-group-nc\": no such group",
        ),
        (
            r#"{ "connecttonet": true, "interface": "nosuchif9" }"#.to_string(),
            "interface \"nosuchif9\": no interface has that name or address",
        ),
        (
            format!(r#"{{ "channels": {{ "{long}": {{}} }} }}"#),
            "the system limit is 107",
        ),
    ];
    for (i, (text, why)) in cases.iter().enumerate() {
        let cfg = dir.path().join(format!("c{i}.json"));
        std::fs::write(&cfg, text).unwrap();
        let cfg = cfg.to_str().unwrap();
        let (code, out, err) = run_in(sockets.path(), &["--check", cfg]);
        assert_eq!(code, 2, "--check {text}: {out}{err}");
        assert!(err.contains(why), "--check {text}: {err}");
        assert!(err.contains(cfg), "names the file: {err}");
        assert_eq!(
            std::fs::read_dir(sockets.path()).unwrap().count(),
            0,
            "--check binds nothing"
        );
        let (code, _, err) = run_in(sockets.path(), &[cfg]);
        assert_eq!(code, 2, "start {text}: {err}");
        assert!(err.contains(why), "start {text}: {err}");
    }
    // And a good one is still ok.
    let cfg = dir.path().join("good.json");
    std::fs::write(&cfg, r#"{ "channels": { "A": {} } }"#).unwrap();
    let (code, out, err) = run_in(sockets.path(), &["--check", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok"), "{out}");
}

#[test]
fn help_and_version_name_ncserver() {
    let dir = tempdir();
    let (code, out, _) = run_in(dir.path(), &["--version"]);
    assert_eq!(code, 0);
    assert_eq!(
        out.trim(),
        format!("ncserver {}", env!("CARGO_PKG_VERSION"))
    );
    let (code, out, _) = run_in(dir.path(), &["--help"]);
    assert_eq!(code, 0);
    let first = out.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("ncserver, the netcluster daemon"),
        "{out}"
    );
    assert!(out.contains("Usage: ncserver"), "{out}");
}

/// On a host without a multicast route, joining the group fails with the
/// kernel's "No such device"; ncserver (and --check) must say that a route
/// or `interface` is needed. Runs in a network namespace of its own.
#[cfg(target_os = "linux")]
#[test]
fn no_multicast_route_says_what_is_needed() {
    let Some(lan) = netcluster_testkit::netns::Lan::new(1) else {
        return;
    };
    lan.remove_multicast_route(0);
    let dir = tempdir();
    let cfg = dir.path().join("net.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{ "connecttonet": true, "socketdir": {:?}, "channels": {{ "A": {{ "propagatetonet": true }} }} }}"#,
            dir.path().join("sockets")
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    for args in [&["--check", cfg][..], &[cfg][..]] {
        // `timeout`: were it to start after all, it must not run forever.
        let mut cmd = vec!["timeout", "20", BIN];
        cmd.extend_from_slice(args);
        let out = lan.exec(0, &cmd);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("cannot join multicast group"), "{err}");
        assert!(err.contains("a route for 224.0.0.0/4"), "{err}");
        assert!(err.contains("`interface`"), "{err}");
    }
}
