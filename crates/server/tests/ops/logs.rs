//! `--log-format json`: one JSON object per line; the plain format as it
//! was; RUST_LOG filters both.

use netcluster_testkit::wait_until;

use crate::daemon::Daemon;

const CONFIG: &str = r#"{ "channels": { "A": {} } }"#;

#[test]
fn json_logs_are_one_object_per_line() {
    let mut d = Daemon::spawn(CONFIG, &["--log-format", "json"], &[]);
    d.wait_log("ncserver serving");
    d.signal(libc::SIGHUP);
    d.wait_log("config reloaded");
    assert!(d.terminate().success());
    let log = d.log();
    let mut serving = None;
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        if v["fields"]["message"] == "ncserver serving" {
            serving = Some(v);
        }
    }
    let v = serving.expect("the serving line");
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["target"], "netcluster_server::server");
    assert_eq!(v["fields"]["channels"], "control, A");
    assert!(!log.contains('\u{1b}'), "no colour codes in JSON");
}

#[test]
fn plain_logs_are_unchanged_and_rust_log_filters() {
    let mut d = Daemon::spawn(CONFIG, &[], &[]);
    d.wait_log("ncserver serving");
    let line = d
        .log()
        .lines()
        .find(|l| l.contains("ncserver serving"))
        .unwrap()
        .to_string();
    assert!(
        line.contains(" INFO netcluster_server::server: ncserver serving node="),
        "{line}"
    );
    assert!(!line.starts_with('{'));
    drop(d);

    // RUST_LOG=warn hides the info lines, in JSON too.
    let mut d = Daemon::spawn(CONFIG, &["--log-format", "json"], &[("RUST_LOG", "warn")]);
    wait_until(20, "ncserver to bind A", || d.socket("A").exists());
    assert!(d.terminate().success());
    assert!(!d.log().contains("ncserver serving"), "{}", d.log());
}
