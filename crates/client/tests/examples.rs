//! The examples that mirror the seed's README snippets run for real.

use std::io::{BufRead, BufReader};
use std::path::Path;
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

/// Runs the receiver on B, then the sender on A (3 messages), against the
/// daemon serving `socket_dir`; the receiver prints the first and exits.
fn seed_sender_reaches_seed_receiver(socket_dir: &Path) {
    let mut receiver = Command::new(example("receiver"))
        .env("NETCLUSTER_SOCKET_DIR", socket_dir)
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
        .env("NETCLUSTER_SOCKET_DIR", socket_dir)
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

#[test]
fn seed_sender_reaches_seed_receiver_through_the_default_rules() {
    let d = TestDaemon::builtin();
    seed_sender_reaches_seed_receiver(d.socket_dir());
}

#[cfg(unix)]
#[test]
fn seed_embedded_server_serves_the_sender_and_receiver_and_stops_on_sigterm() {
    use netcluster_testkit::{tempdir, wait_until};

    let dir = tempdir();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        format!(
            r#"{{
  // The seed's config shape, with comments.
  "socketdir": {:?},
  "channels": {{
    "control": {{ "propagatetochannels": false }},
    "A": {{ "propagatetochannels": ".*" }},
    "B": {{ "propagatetochannels": ".*" }}
  }}
}}"#,
            dir.path()
        ),
    )
    .unwrap();
    let mut server = Command::new(example("embedded_server"))
        .arg(&config)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(server.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("serving in"), "{line}");
    for ch in ["control", "A", "B"] {
        let sock = dir.path().join(format!("netcluster-{ch}"));
        wait_until(10, "the embedded server's sockets", || sock.exists());
    }

    seed_sender_reaches_seed_receiver(dir.path());

    let pid = libc::pid_t::try_from(server.id()).unwrap();
    // SAFETY: kill has no memory-safety preconditions; pid is our child,
    // which has not been waited for yet, so the id is still its own.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = server.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert!(rest.contains("stopped"), "{rest}");
    assert!(
        !dir.path().join("netcluster-A").exists(),
        "a graceful stop removes the sockets"
    );
}

/// The README's Rust snippet is `examples/readme.rs` (between its markers),
/// and that example runs against the built-in config.
#[test]
fn readme_snippet_is_the_readme_example_and_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let example_src = std::fs::read_to_string(root.join("examples/readme.rs")).unwrap();
    let snippet = example_src
        .split("// README begin\n")
        .nth(1)
        .and_then(|s| s.split("// README end\n").next())
        .expect("markers in examples/readme.rs");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("```rust\n{snippet}```\n")),
        "README.md's Rust snippet differs from examples/readme.rs; copy it over"
    );

    let d = TestDaemon::builtin();
    let listener = netcluster::blocking::Client::builder("A")
        .with(|b| b.socket_dir(d.socket_dir()))
        .connect()
        .unwrap();
    let mut got = listener.subscribe("log").unwrap();
    let out = Command::new(example("readme"))
        .env("NETCLUSTER_SOCKET_DIR", d.socket_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(": Ok(\"TESTE\")"), "{stdout}");
    assert!(stdout.contains("metric Some(Ok(42))"), "{stdout}");
    // B's emit reached A through the built-in rules, then A's own.
    let first = got
        .recv_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        first.json::<serde_json::Value>().unwrap(),
        serde_json::json!({"n": 1})
    );
}
