//! The keys of the local security limits: `adminuids` / `admingids` (who
//! may change the daemon through `control`), `partialbytes` and
//! `frametimeoutms` (unfinished frames); their defaults, errors and
//! `showconfig` form; and `Config::load_private`, whose errors never
//! repeat the file's text.

use serde_json::json;

use super::{err, ok};
use crate::config::{
    frame_bytes, Config, DEFAULT_FRAMETIMEOUTMS, DEFAULT_MAXMESSAGE, DEFAULT_PARTIALBYTES,
};

#[test]
fn defaults() {
    let c = ok("{}");
    assert!(c.adminuids.is_empty() && c.admingids.is_empty());
    assert_eq!(c.frametimeoutms, DEFAULT_FRAMETIMEOUTMS);
    assert_eq!(c.frame_timeout(), std::time::Duration::from_secs(10));
    assert_eq!(c.partialbytes, None);
    assert_eq!(c.partial_budget(), DEFAULT_PARTIALBYTES);
    assert_eq!(c.partial_budget(), 64 << 20);
    assert_eq!(frame_bytes(DEFAULT_MAXMESSAGE), (16 << 20) + 1541);
    // By default the budget always holds one whole frame of maxmessage.
    let big = ok(r#"{"maxmessage": "100MiB"}"#);
    assert_eq!(big.partial_budget(), (100 << 20) + 1541);
}

#[test]
fn values_are_read_and_shown() {
    let c = ok(r#"{
        "adminuids": [1000, 0], "admingids": [27],
        "partialbytes": "128 MiB", "frametimeoutms": 2500
    }"#);
    assert_eq!(c.adminuids, [1000, 0]);
    assert_eq!(c.admingids, [27]);
    assert_eq!(c.partialbytes, Some(128 << 20));
    assert_eq!(c.partial_budget(), 128 << 20);
    assert_eq!(c.frametimeoutms, 2500);
    let shown = c.to_json();
    assert_eq!(shown["adminuids"], json!([1000, 0]));
    assert_eq!(shown["admingids"], json!([27]));
    assert_eq!(shown["partialbytes"], json!(128 << 20));
    assert_eq!(shown["frametimeoutms"], json!(2500));
    let again = Config::from_value(&shown).unwrap();
    assert_eq!(again.to_json(), shown);
}

#[test]
fn errors_name_the_key_and_the_limit() {
    assert_eq!(
        err(r#"{"adminuids": [1000, -1]}"#),
        "config.json:1:22: adminuids[1]: -1 is not a valid numeric id"
    );
    assert_eq!(
        err(r#"{"admingids": "wheel"}"#),
        "config.json:1:15: admingids: expected an array of numeric ids, found a string"
    );
    assert_eq!(
        err(r#"{"adminuid": [1]}"#),
        "config.json:1:2: adminuid: unknown key; did you mean \"adminuids\"?"
    );
    assert_eq!(
        err(r#"{"frametimeoutms": 5}"#),
        "config.json:1:20: frametimeoutms: frametimeoutms must be an integer between 100 and 3600000, found 5"
    );
    assert_eq!(
        err(r#"{"partialbytes": "1KiB"}"#),
        "config.json:1:18: partialbytes: partialbytes must be between 64 KiB and 64 GiB, found 1024 bytes"
    );
    assert_eq!(
        err("{\n  \"maxmessage\": \"32MiB\",\n  \"partialbytes\": \"16MiB\"\n}"),
        "config.json:3:19: partialbytes: partialbytes (16777216 bytes) must hold at least one \
         whole frame of maxmessage (33555973 bytes = maxmessage 33554432 + 1541 bytes of frame \
         overhead), or no message of that size could arrive"
    );
    assert_eq!(
        ok(r#"{"maxmessage": "1MiB", "partialbytes": "2MiB"}"#).partial_budget(),
        2 << 20
    );
}

/// Loads `content` with `load_private`; returns the error, checked to
/// carry no "SECRET" and to name the file.
fn private_error(content: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    std::fs::write(&p, content).unwrap();
    let e = Config::load_private(&p).unwrap_err().to_string();
    assert!(!e.contains("SECRET"), "{e}");
    let path = p.display().to_string();
    assert!(e.contains(&path), "{e}");
    e.strip_prefix(&format!("{path}:"))
        .unwrap_or(&e)
        .to_string()
}

#[test]
fn load_private_never_repeats_the_files_text() {
    let note = "(the file's content is not repeated in errors of reloadconfig(path); \
                `ncserver --check FILE`, run by someone who may read it, shows more)";
    assert_eq!(
        private_error(b"root:$6$SECRET:19000:0:99999:7:::\n"),
        format!("1:1: not valid JSON (with // and /* */ comments) {note}")
    );
    assert_eq!(
        private_error(b"{\n  \"port\": SECRET\n}"),
        format!("2:11: not valid JSON (with // and /* */ comments) {note}")
    );
    assert_eq!(
        private_error(br#"{"addr": "SECRET"}"#),
        format!("1:10: addr: invalid value for this key {note}")
    );
    assert_eq!(
        private_error(br#"{"SECRET": 1}"#),
        format!("1:2: <key>: unknown key {note}")
    );
    assert_eq!(
        private_error(br#"{"channels": {"SECRET": {"blockms": "SECRET"}}}"#),
        format!("1:37: channels.<channel>.blockms: expected an integer, found a string {note}")
    );
    assert_eq!(
        private_error(br#"{"channels": {"A": {"propagatetochannels": ["x", "(SECRET"]}}}"#),
        format!(
            "1:50: channels.<channel>.propagatetochannels[1]: invalid value for this key {note}"
        )
    );
    assert_eq!(
        private_error(br#"{"channels": {"A": {"SECRETX": 1}}}"#),
        format!("1:21: channels.<channel>.<key>: unknown key {note}")
    );
    // Unreadable as text: said so, nothing quoted.
    let e = private_error(b"\xff\xfeSECRET");
    assert!(e.contains("valid UTF-8"), "{e}");
    // The same files loaded as the daemon's own config say everything.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("own.json");
    std::fs::write(&p, br#"{"addr": "SECRET"}"#).unwrap();
    assert!(Config::load(&p).unwrap_err().to_string().contains("SECRET"));
}
