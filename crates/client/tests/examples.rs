//! The examples that mirror the seed's README snippets run for real.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use netcluster_testkit::TestDaemon;

fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe
        .parent()
        .and_then(|p| p.parent())
        .unwrap()
        .join("examples");
    let p = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(p.exists(), "example {} is not built: run the whole package's tests (`cargo test -p netcluster` builds examples) or `cargo build --examples` first", p.display());
    p
}

#[test]
fn seed_sender_reaches_seed_receiver_through_the_default_rules() {
    let d = TestDaemon::builtin();
    let mut receiver = Command::new(example("receiver"))
        .env("NETCLUSTER_SOCKET_DIR", d.socket_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the receiver listens.
    let mut err = BufReader::new(receiver.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("listening"), "{line}");

    let status = Command::new(example("sender"))
        .arg("3")
        .env("NETCLUSTER_SOCKET_DIR", d.socket_dir())
        .status()
        .unwrap();
    assert!(status.success());
    let out = receiver.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().next(),
        Some("A called:\"TESTE\"")
    );
}
