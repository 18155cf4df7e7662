//! The network security keys: `key`, `keyfile` (read when the config is
//! loaded, relative to the config file), `retransmitbytes`; their errors
//! with file, line and column; and `showconfig` never revealing the key.

use super::{err, ok};
use crate::config::{Config, KeySource};

const HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

#[test]
fn inline_key_is_read_and_never_shown() {
    let c = ok(&format!(r#"{{"key": "{HEX}", "retransmitbytes": "1MiB"}}"#));
    let key = c.key.clone().expect("a key");
    assert_eq!(key, netcluster_proto::net::Key::from_hex(HEX).unwrap());
    assert_eq!(c.keysource, Some(KeySource::Inline));
    assert_eq!(c.retransmitbytes, 1 << 20);
    let shown = c.to_json().to_string();
    assert!(!shown.contains("aabbcc"), "{shown}");
    assert_eq!(c.to_json()["key"], "(set)");
    assert!(!format!("{c:?}").contains("aabbcc"), "Debug shows the key");
    assert_eq!(ok("{}").to_json().get("key"), None);
    assert_eq!(ok(r#"{"retransmitbytes": 0}"#).retransmitbytes, 0);
}

#[test]
fn keyfile_is_read_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("net.key"), format!("{HEX}\n")).unwrap();
    let cfg = dir.path().join("c.json");
    std::fs::write(&cfg, "{\n  \"keyfile\": \"net.key\"\n}").unwrap();
    let c = Config::load(&cfg).unwrap();
    assert_eq!(
        c.key,
        Some(netcluster_proto::net::Key::from_hex(HEX).unwrap())
    );
    assert_eq!(
        c.keysource,
        Some(KeySource::File(dir.path().join("net.key")))
    );
    assert_eq!(
        c.to_json()["keyfile"],
        dir.path().join("net.key").display().to_string()
    );
    assert!(!c.to_json().to_string().contains("aabbcc"));
}

#[test]
fn key_errors_name_the_key_and_never_quote_it() {
    assert_eq!(
        err("{\n  \"key\": \"abc\"\n}"),
        "config.json:2:10: key: a key is 64 hexadecimal digits (32 bytes), found 3 characters"
    );
    let bad = format!("{}zz", &HEX[..62]);
    let e = err(&format!(r#"{{"key": "{bad}"}}"#));
    assert_eq!(
        e,
        "config.json:1:9: key: a key is 64 hexadecimal digits; character 63 is not one"
    );
    assert_eq!(
        err(r#"{"key": 5}"#),
        "config.json:1:9: key: expected a string, found a number"
    );
    assert_eq!(
        err(&format!(r#"{{"key": "{HEX}", "keyfile": "k"}}"#)),
        "config.json:1:88: keyfile: give either key or keyfile, not both"
    );
    assert_eq!(
        err(r#"{"retransmitbytes": "2GiB"}"#),
        "config.json:1:21: retransmitbytes: retransmitbytes must be between 0 bytes and 1 GiB, found 2147483648 bytes"
    );
}

#[test]
fn keyfile_errors_name_the_file_and_the_config_position() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.key");
    let e = err(&format!("{{\n  \"keyfile\": \"{}\"\n}}", missing.display()));
    assert!(
        e.starts_with(&format!(
            "config.json:2:14: keyfile: cannot read keyfile {}: ",
            missing.display()
        )),
        "{e}"
    );
    let short = dir.path().join("short.key");
    std::fs::write(&short, "1234\n").unwrap();
    let e = err(&format!(r#"{{"keyfile": "{}"}}"#, short.display()));
    assert_eq!(
        e,
        format!(
            "config.json:1:13: keyfile: keyfile {} is not a key: a key is 64 hexadecimal digits (32 bytes), found 4 characters",
            short.display()
        )
    );
}

#[test]
fn receive_memory_and_retransmit_rate_are_sizes_with_ranges() {
    let c = ok(r#"{"reassemblybytes": "48MiB", "retransmitrate": "4MiB"}"#);
    assert_eq!(c.reassemblybytes, 48 << 20);
    assert_eq!(c.retransmitrate, 4 << 20);
    assert_eq!(ok(r#"{"retransmitrate": 0}"#).retransmitrate, 0);
    assert_eq!(
        err(r#"{"reassemblybytes": 1000}"#),
        "config.json:1:21: reassemblybytes: reassemblybytes must be between 1 MiB and 4 GiB, found 1000 bytes"
    );
}
