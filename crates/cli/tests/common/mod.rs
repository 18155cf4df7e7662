//! Helpers for running the real `ncclient` binary against a test daemon.

#![allow(dead_code)] // each test file uses a different subset

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use netcluster_testkit::TestDaemon;
use serde_json::Value;

/// How long a child process may take before a test gives up on it.
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(20);

/// `ncclient --socket-dir DIR` with a clean environment for the socket
/// directory (so a developer's NETCLUSTER_SOCKET_DIR cannot interfere).
pub fn ncclient_in(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ncclient"));
    c.arg("--socket-dir")
        .arg(dir)
        .env_remove("NETCLUSTER_SOCKET_DIR")
        .stdin(Stdio::null());
    c
}

/// `ncclient` pointed at `d`'s sockets.
pub fn ncclient(d: &TestDaemon) -> Command {
    ncclient_in(d.socket_dir())
}

/// Runs `ncclient -c CALLS` against `d`.
pub fn run_c(d: &TestDaemon, calls: &str) -> Output {
    ncclient(d)
        .arg("-c")
        .arg(calls)
        .output()
        .expect("run ncclient")
}

/// Runs `cmd` with `input` on its stdin.
pub fn run_with_stdin(mut cmd: Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ncclient");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait for ncclient")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the exit code, showing the output on failure.
pub fn assert_code(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "exit status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        stdout(o),
        stderr(o)
    );
}

/// The JSON documents printed one after another on stdout.
pub fn json_docs(o: &Output) -> Vec<Value> {
    serde_json::Deserializer::from_slice(&o.stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("stdout is not JSON documents ({e}):\n{}", stdout(o)))
}

/// Reads `child`'s stderr until a line containing `notice` appears, and
/// keeps draining it on a thread; joining the handle gives all of stderr.
pub fn wait_for_stderr_line(child: &mut Child, notice: &str) -> std::thread::JoinHandle<String> {
    let err = child.stderr.take().expect("stderr piped");
    let (tx, rx) = std::sync::mpsc::channel();
    let wanted = notice.to_string();
    let notice = wanted.clone();
    let handle = std::thread::spawn(move || {
        let mut all = String::new();
        let mut tx = Some(tx);
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            all.push_str(&line);
            all.push('\n');
            if line.contains(&notice) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(());
                }
            }
        }
        all
    });
    if rx.recv_timeout(CHILD_TIMEOUT).is_err() {
        let _ = child.kill();
        let rest = handle.join().unwrap_or_default();
        panic!("ncclient never printed {wanted:?}; stderr:\n{rest}");
    }
    handle
}

/// Waits for `child` to exit, killing it (and failing) after
/// [`CHILD_TIMEOUT`].
pub fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + CHILD_TIMEOUT;
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ncclient did not exit within {CHILD_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
