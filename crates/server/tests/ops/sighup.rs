//! SIGHUP reloads the config file as `reloadconfig()` does; a bad file is
//! logged and the old config stays, and the daemon keeps serving.

use netcluster_testkit::wait_until;

use crate::daemon::Daemon;

const TWO: &str = r#"{ "channels": { "A": {}, "B": {} } }"#;
const THREE: &str = r#"{ "channels": { "A": {}, "B": {}, "C": {} } }"#;

#[test]
fn sighup_reloads_the_file_and_a_bad_file_keeps_the_old_config() {
    let mut d = Daemon::spawn(TWO, &[], &[]);
    d.wait_log("ncserver serving");
    assert!(!d.socket("C").exists());

    // A channel added to the file appears on SIGHUP.
    std::fs::write(d.config_path(), THREE).unwrap();
    d.signal(libc::SIGHUP);
    wait_until(20, "channel C's socket after SIGHUP", || {
        d.socket("C").exists()
    });
    d.wait_log("config reloaded");
    assert!(d.alive(), "SIGHUP must not stop ncserver: {}", d.log());

    // A bad file: logged with its location, nothing changes.
    std::fs::write(
        d.config_path(),
        "{ \"channels\": { \"A\": { \"dumptoconsol\": true } } }",
    )
    .unwrap();
    d.signal(libc::SIGHUP);
    d.wait_log("reload refused, the old config stays");
    let log = d.log();
    assert!(
        log.contains("config.json:1:24: channels.A.dumptoconsol: unknown key"),
        "{log}"
    );
    assert!(d.alive());
    for ch in ["A", "B", "C"] {
        assert!(d.socket(ch).exists(), "channel {ch} must stay");
    }
    // Still serving: a client can connect to C.
    assert!(std::os::unix::net::UnixStream::connect(d.socket("C")).is_ok());

    // Back to two channels: C goes away, and SIGTERM still stops cleanly.
    std::fs::write(d.config_path(), TWO).unwrap();
    d.signal(libc::SIGHUP);
    wait_until(20, "channel C's socket to go", || !d.socket("C").exists());
    assert_eq!(d.log_count("config reloaded"), 2, "{}", d.log());
    assert!(d.terminate().success(), "{}", d.log());
    assert!(!d.socket("A").exists(), "sockets removed on SIGTERM");
}
