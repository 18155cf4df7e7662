//! The `nats` section and the channel keys `propagatetonats` and
//! `acceptfromnats`: defaults, files relative to the config, errors with
//! file, line and column, and secrets never shown.

use super::{err, ok};
use crate::config::{Config, NatsAuth, DEFAULT_NATS_BUFFER};

#[test]
fn defaults_and_channel_keys() {
    let c = ok(
        r#"{"nats": {"servers": ["nats://127.0.0.1:4222", "tls://h:4443"]},
        "channels": {"A": {"propagatetonats": true, "acceptfromnats": false}, "B": {}}}"#,
    );
    let n = c.nats.clone().unwrap();
    assert_eq!(n.servers.len(), 2);
    assert_eq!(n.prefix, "netcluster");
    assert_eq!(n.buffer, DEFAULT_NATS_BUFFER);
    assert!(!n.narrow);
    assert_eq!(n.auth, None);
    let a = c.channel("A").unwrap();
    assert!(a.propagatetonats && !a.acceptfromnats);
    let b = c.channel("B").unwrap();
    assert!(!b.propagatetonats && b.acceptfromnats);
    assert_eq!(c.to_json()["nats"]["prefix"], "netcluster");
    assert_eq!(c.to_json()["channels"]["A"]["propagatetonats"], true);
    assert!(ok("{}").nats.is_none());
    let c = ok(r#"{"nats": {"servers": ["h:4222"], "narrow": true}}"#);
    assert!(c.nats.as_ref().unwrap().narrow);
    assert_eq!(c.to_json()["nats"]["narrow"], true);
}

#[test]
fn secrets_are_never_shown() {
    let c = ok(
        r#"{"nats": {"servers": ["127.0.0.1:4222"], "prefix": "site1.nc", "name": "gw",
        "user": "u1", "password": "hunter2secret", "buffer": "1MiB"}}"#,
    );
    let n = c.nats.clone().unwrap();
    assert_eq!(
        n.auth,
        Some(NatsAuth::UserPassword {
            user: "u1".into(),
            password: "hunter2secret".into()
        })
    );
    assert_eq!(n.buffer, 1 << 20);
    let shown = c.to_json();
    assert_eq!(shown["nats"]["password"], "(set)");
    assert_eq!(shown["nats"]["user"], "u1");
    assert!(!shown.to_string().contains("hunter2"));
    assert!(
        !format!("{c:?}").contains("hunter2"),
        "Debug shows the password"
    );
    let t = ok(r#"{"nats": {"servers": ["127.0.0.1:4222"], "token": "tok3nvalue"}}"#);
    assert_eq!(t.to_json()["nats"]["token"], "(set)");
    assert!(!format!("{t:?} {}", t.to_json()).contains("tok3n"));
}

#[test]
fn files_are_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), "x").unwrap();
    std::fs::write(dir.path().join("u.nk"), "SUAXXX\n").unwrap();
    let cfg = dir.path().join("c.json");
    std::fs::write(
        &cfg,
        r#"{"nats": {"servers": ["tls://127.0.0.1:4222"], "nkeyfile": "u.nk", "tls": {"ca": "ca.pem"}}}"#,
    )
    .unwrap();
    let c = Config::load(&cfg).unwrap();
    let n = c.nats.unwrap();
    assert_eq!(n.auth, Some(NatsAuth::NkeyFile(dir.path().join("u.nk"))));
    assert_eq!(n.tls.unwrap().ca, Some(dir.path().join("ca.pem")));
}

#[test]
fn errors_name_file_line_column_and_key() {
    assert_eq!(
        err("{\n  \"nats\": {\"prefix\": \"x\"}\n}"),
        "config.json:2:11: nats: missing \"servers\": give the NATS servers, e.g. {\"servers\": [\"nats://127.0.0.1:4222\"]}"
    );
    let e = err(r#"{"nats": {"servers": ["nats://h:4222"], "prefix": "a.*"}}"#);
    assert!(
        e.starts_with("config.json:1:51: nats.prefix: prefix \"a.*\" must be NATS subject tokens"),
        "{e}"
    );
    let e = err(r#"{"nats": {"servers": []}}"#);
    assert_eq!(
        e,
        "config.json:1:22: nats.servers: servers needs at least one URL"
    );
    let e = err(r#"{"nats": {"servers": ["h:4222"], "serverz": 1}}"#);
    assert!(
        e.starts_with("config.json:1:34: nats.serverz: unknown key"),
        "{e}"
    );
    let e = err(r#"{"nats": {"servers": ["h:4222"], "token": "t", "user": "u"}}"#);
    assert!(
        e.contains("nats.user: give one way to authenticate: user cannot be combined with token"),
        "{e}"
    );
    let e = err(r#"{"nats": {"servers": ["h:4222"], "user": "u"}}"#);
    assert!(e.contains("nats: user and password go together"), "{e}");
    let e = err(r#"{"nats": {"servers": ["h:4222"], "tls": {"ca": "/nonexistent/ca.pem"}}}"#);
    assert!(
        e.contains("nats.tls.ca: ca /nonexistent/ca.pem is not a readable file"),
        "{e}"
    );
    let e = err(r#"{"nats": {"servers": ["h:4222"], "narrow": 1}}"#);
    assert!(
        e.starts_with("config.json:1:44: nats.narrow: expected a boolean"),
        "{e}"
    );
    let e = err(r#"{"channels": {"A": {"propagatetonats": "yes"}}}"#);
    assert!(
        e.starts_with("config.json:1:40: channels.A.propagatetonats: expected a boolean"),
        "{e}"
    );
    let e = err(r#"{"nats": {"servers": ["nats://u:sekrit98@h:4222"]}}"#);
    assert!(
        e.starts_with("config.json:1:23: nats.servers[0]: put credentials in user/password"),
        "{e}"
    );
    assert!(!e.contains("sekrit98"), "{e}");
    let e = err(r#"{"nats": {"servers": ["h:4222"], "password": "sekrit99"}}"#);
    assert!(!e.contains("sekrit99"), "{e}");
}
