//! Keeps the harness from rotting: every netcluster workload of the suite,
//! in a tiny size, against an in-process daemon, through the real
//! `ncbench` binary and its role processes; and the order/count checks
//! fail loudly. Speed is not asserted (a timed test proves nothing on a
//! loaded machine); only that each workload runs and reports.
#![cfg(target_os = "linux")]

use std::path::Path;
use std::process::{Command, Output, Stdio};

use netcluster_testkit::TestDaemon;

const CONFIG: &str = r#"{ "channels": { "bench": {} } }"#;

fn ncbench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ncbench"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ncbench")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn tiny_suite_runs_every_netcluster_workload() {
    let daemon = TestDaemon::start(CONFIG);
    let out_dir = tempfile::tempdir().unwrap();
    let doc = out_dir.path().join("PERFORMANCE.md");
    std::fs::write(
        &doc,
        format!(
            "# P\n\n{}\nold\n{}\n",
            netcluster_bench::report::BEGIN,
            netcluster_bench::report::END
        ),
    )
    .unwrap();
    let dir = daemon.socket_dir().to_str().unwrap().to_string();
    // The daemon runs in this test process: its CPU time and memory are ours.
    let pid = std::process::id().to_string();
    let out = ncbench(&[
        "suite",
        "--scale",
        "tiny",
        "--nc-dir",
        &dir,
        "--nc-pid",
        &pid,
        "--out-dir",
        out_dir.path().to_str().unwrap(),
        "--doc",
        doc.to_str().unwrap(),
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "suite failed:\n{stderr}\n{stdout}");

    let json = std::fs::read_to_string(out_dir.path().join("latest.json")).unwrap();
    let r: netcluster_bench::results::Results = serde_json::from_str(&json).unwrap();
    use netcluster_bench::roles::System;
    for id in [
        "tp_1to1_16",
        "tp_1to1_256",
        "tp_1to4_256",
        "cpu_1to1_16",
        "cpu_1to4_256",
        "rtt_p50",
        "rtt_p999",
        "rtt1_p50",
        "rtt1_p99",
        "rss_idle",
        "rss_clients",
        "rss_peak",
    ] {
        let v = r.get(id, System::Nc);
        assert!(v.is_some_and(|v| v.is_finite() && v >= 0.0), "{id}: {v:?}");
    }
    for id in [
        "tp_1to1_16",
        "tp_1to4_256",
        "rtt_p50",
        "rtt1_p50",
        "rss_idle",
    ] {
        assert!(r.get(id, System::Nc).unwrap() > 0.0, "{id} is zero");
    }
    assert_eq!(
        r.socketpair.len(),
        2,
        "socketpair yardstick unpinned and one CPU"
    );
    assert!(r.socketpair.values().all(|l| l.samples == r.plan.rtt_count));
    assert_eq!(r.get("tp_1to1_16", System::Nats), None);
    // The raw-protocol client's row runs beside the library's, on the same
    // daemon; memory rows belong to the daemon and are not repeated.
    for id in [
        "tp_1to1_16",
        "tp_1to1_256",
        "tp_1to4_256",
        "rtt_p50",
        "rtt1_p50",
    ] {
        let v = r.get(id, System::NcRaw);
        assert!(
            v.is_some_and(|v| v.is_finite() && v > 0.0),
            "raw {id}: {v:?}"
        );
    }
    assert_eq!(r.get("rss_idle", System::NcRaw), None);
    assert!(
        json.contains("\"nc_raw\""),
        "latest.json keys the raw row nc_raw"
    );
    assert!(stdout.contains("netcluster (raw)"), "{stdout}");
    assert!(stdout.contains("Library 1→1 16 B ≥ 90 %"), "{stdout}");

    assert!(stdout.contains("1→4 fan-out, 256 B"), "{stdout}");
    // No --ncserver: the multicast rows are not measured.
    assert!(
        stdout.contains("multicast between 2 netns, 64 B"),
        "{stdout}"
    );
    assert_eq!(r.get("mcast_64", System::Nc), None);
    let svg = std::fs::read_to_string(out_dir.path().join("chart.svg")).unwrap();
    assert!(svg.starts_with("<svg"));
    let md = std::fs::read_to_string(&doc).unwrap();
    assert!(
        !md.contains("\nold\n") && md.contains("](chart.svg)"),
        "{md}"
    );

    // The saved results render again without measuring.
    let again = ncbench(&[
        "report",
        "--json",
        out_dir.path().join("latest.json").to_str().unwrap(),
    ]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(text(&again.stdout).contains("1→1 throughput, 16 B"));
}

/// Starts a subscriber role and waits for its READY line.
fn subscriber(dir: &Path, count: u64, size: usize) -> std::process::Child {
    subscriber_of("nc", dir, count, size)
}

fn subscriber_of(system: &str, dir: &Path, count: u64, size: usize) -> std::process::Child {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_ncbench"))
        .args(["sub", "--system", system, "--at", dir.to_str().unwrap()])
        .args(["--count", &count.to_string(), "--size", &size.to_string()])
        .args(["--timeout-s", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "READY");
    child
}

fn publish(dir: &Path, count: u64, size: usize) {
    publish_with("nc", dir, count, size)
}

fn publish_with(system: &str, dir: &Path, count: u64, size: usize) {
    let out = ncbench(&[
        "pub",
        "--system",
        system,
        "--at",
        dir.to_str().unwrap(),
        "--count",
        &count.to_string(),
        "--size",
        &size.to_string(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn subscriber_fails_loudly_on_missing_messages() {
    let daemon = TestDaemon::start(CONFIG);
    let sub = subscriber(daemon.socket_dir(), 100, 16);
    publish(daemon.socket_dir(), 60, 16);
    let out = sub.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("received 60 of 100"), "{err}");
}

#[test]
fn subscriber_fails_loudly_on_wrong_payloads() {
    let daemon = TestDaemon::start(CONFIG);
    let sub = subscriber(daemon.socket_dir(), 10, 32);
    publish(daemon.socket_dir(), 10, 16);
    let out = sub.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("payload of 16 bytes, expected 32"), "{err}");
}

#[test]
fn socketpair_yardstick_runs() {
    let out = ncbench(&["raw-ping", "--count", "50", "--warmup", "5", "--size", "16"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let line = text(&out.stdout);
    let json = line.trim().strip_prefix("RESULT ").expect("a RESULT line");
    let l: netcluster_bench::roles::LatencyOut = serde_json::from_str(json).unwrap();
    assert_eq!(l.samples, 50);
    assert!(l.min_ns > 0 && l.min_ns <= l.p50_ns && l.p50_ns <= l.max_ns);
}

/// The RESULT line's JSON of a role's output.
fn result_json(out: &Output) -> String {
    let stdout = text(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line: {stdout}"))
        .to_string()
}

#[test]
fn raw_client_and_library_exchange_messages_both_ways() {
    // The raw client is written from docs/PROTOCOL.md: it must interoperate
    // with the library in both directions, in order, with exact counts.
    let daemon = TestDaemon::start(CONFIG);
    let dir = daemon.socket_dir();
    exchange(
        dir,
        &[("nc-raw", "nc"), ("nc", "nc-raw"), ("nc-raw", "nc-raw")],
        256,
    );
    // And it notices a short count like the library's subscriber does.
    short_count_fails("nc-raw", dir);
}

/// Each (subscriber, publisher) pair of clients exchanges 3000 messages
/// of `size` bytes through the broker at `at`: all arrive, in order.
fn exchange(at: &Path, pairs: &[(&str, &str)], size: usize) {
    for &(sub, publ) in pairs {
        let s = subscriber_of(sub, at, 3000, size);
        publish_with(publ, at, 3000, size);
        let out = s.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{sub} ← {publ}: {}",
            text(&out.stderr)
        );
        let r: netcluster_bench::outcome::SubOut =
            serde_json::from_str(&result_json(&out)).unwrap();
        assert_eq!(r.count, 3000);
    }
}

/// A `kind` subscriber waiting for 100 messages that gets 60 fails,
/// naming the shortfall.
fn short_count_fails(kind: &str, at: &Path) {
    let s = subscriber_of(kind, at, 100, 16);
    publish_with(kind, at, 60, 16);
    let out = s.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("received 60 of 100"), "{err}");
}

#[test]
fn raw_client_round_trips() {
    use std::io::{BufRead, BufReader};
    let daemon = TestDaemon::start(CONFIG);
    let dir = daemon.socket_dir().to_str().unwrap().to_string();
    let mut pong = Command::new(env!("CARGO_BIN_EXE_ncbench"))
        .args(["pong", "--system", "nc-raw", "--at", &dir, "--count", "60"])
        .args(["--size", "16"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(pong.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "READY");
    let out = ncbench(&[
        "ping", "--system", "nc-raw", "--at", &dir, "--count", "50", "--warmup", "10", "--size",
        "16",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let l: netcluster_bench::roles::LatencyOut = serde_json::from_str(&result_json(&out)).unwrap();
    assert_eq!(l.samples, 50);
    assert!(l.min_ns > 0 && l.min_ns <= l.p50_ns && l.p50_ns <= l.max_ns);
    assert!(pong.wait().unwrap().success());
}

/// A `nats-server` on a free loopback port, killed on drop.
struct Nats {
    child: std::process::Child,
    addr: String,
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `nats-server` if installed (Debian puts it in /usr/sbin); skips
/// the caller otherwise, unless CI or `NETCLUSTER_REQUIRE_NATS` says the
/// test must run.
fn nats_server() -> Option<Nats> {
    let bin = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(bin) = bin else {
        if std::env::var_os("CI").is_some() || std::env::var_os("NETCLUSTER_REQUIRE_NATS").is_some()
        {
            panic!("nats-server is not installed (apt-get install nats-server)");
        }
        eprintln!("SKIPPED: nats-server is not installed");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let nats = Nats {
        child,
        addr: format!("127.0.0.1:{port}"),
    };
    let ready = ncbench(&["wait-for", "--tcp", &nats.addr]);
    assert!(ready.status.success(), "{}", text(&ready.stderr));
    Some(nats)
}

#[test]
fn async_nats_roles_exchange_messages_with_the_hand_written_client() {
    // The NATS bridge rows' second yardstick: async-nats publishes and
    // subscribes, in order and with exact counts, and interoperates with
    // the hand-written client both ways.
    let Some(nats) = nats_server() else {
        return;
    };
    let at = Path::new(&nats.addr);
    exchange(
        at,
        &[
            ("async-nats", "async-nats"),
            ("async-nats", "nats"),
            ("nats", "async-nats"),
        ],
        64,
    );
    // A short count fails loudly, as for the other clients.
    short_count_fails("async-nats", at);
}
