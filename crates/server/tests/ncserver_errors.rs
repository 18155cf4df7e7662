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
