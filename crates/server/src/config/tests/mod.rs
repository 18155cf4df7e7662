//! Tests of the config module as a whole: the seed's example, the built-in
//! config, defaults, comments, sizes, modes, `propagatetochannels` forms,
//! the `to_json` round trip, loading files and the socket directory
//! fallbacks. The exact error messages are tested in `errors`, the parser's
//! own cases in `jsonc`.

use std::path::{Path, PathBuf};

use netcluster_proto::router::Propagation;
use serde_json::json;

use super::*;

mod admin;
mod errors;
mod keys;
mod nats;

/// The config example from the seed's README, verbatim.
const SEED_EXAMPLE: &str = include_str!("../../../../../examples/seed-config.json");

/// Parses `text` as `config.json`, expecting an error; returns it rendered.
pub(super) fn err(text: &str) -> String {
    match Config::parse(text, "config.json") {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

fn ok(text: &str) -> Config {
    Config::parse(text, "config.json").unwrap_or_else(|e| panic!("{e}"))
}

fn names(c: &Config) -> Vec<&str> {
    c.channels.iter().map(|c| c.name.as_str()).collect()
}

fn patterns(spec: &PropagateSpec) -> Vec<&str> {
    match spec {
        PropagateSpec::Pattern(r) => vec![r.as_str()],
        PropagateSpec::Patterns(rs) => rs.iter().map(|r| r.as_str()).collect(),
        other => panic!("not patterns: {other:?}"),
    }
}

#[test]
fn seed_example_loads_unchanged() {
    let c = ok(SEED_EXAMPLE);
    assert!(matches!(&c.source, ConfigSource::File(p) if p == Path::new("config.json")));
    assert_eq!(c.addr.to_string(), "224.0.0.0");
    assert_eq!(c.port, 4454);
    assert!(c.dumpnet && c.connecttonet && c.startcontrol);
    assert_eq!(names(&c), ["control", "A", "B"]);
    let a = c.channel("A").unwrap();
    assert!(matches!(&a.propagatetochannels, PropagateSpec::Pattern(r) if r.as_str() == ".*"));
    assert!(!a.propagatetonet && !a.dumptoconsole);
    assert!(matches!(
        c.channel("control").unwrap().propagatetochannels,
        PropagateSpec::None
    ));
    // Keys the seed does not have keep their defaults.
    assert_eq!(c.socketdir, None);
    assert_eq!(c.socketmode, DEFAULT_SOCKETMODE);
    assert_eq!(c.maxmessage, DEFAULT_MAXMESSAGE);
    assert_eq!(c.queuebytes, DEFAULT_QUEUEBYTES);
    let rules = c.channel_rules();
    assert_eq!(rules.len(), 3);
    assert_eq!(rules[1].name, "A");
    assert!(rules[1].propagate.selects("B"));
    assert!(!rules[1].to_net && rules[1].from_net);
    assert_eq!(rules[0].propagate, Propagation::None);
}

/// A channel's `to_json` with every key but `propagatetochannels` at its default.
fn default_channel(propagate: serde_json::Value) -> serde_json::Value {
    json!({
        "propagatetochannels": propagate, "propagatetonet": false, "dumptoconsole": false,
        "acceptfromnet": true, "propagatetonats": false, "acceptfromnats": true,
        "slowconsumer": "block", "blockms": 1000, "allowuids": [], "allowgids": []
    })
}

#[test]
fn builtin_config() {
    let c = Config::builtin();
    assert!(matches!(c.source, ConfigSource::BuiltIn));
    assert_eq!(names(&c), ["control", "A", "B"]);
    assert_eq!(
        patterns(&c.channel("A").unwrap().propagatetochannels),
        ["^B$"]
    );
    assert_eq!(
        patterns(&c.channel("B").unwrap().propagatetochannels),
        ["^A$"]
    );
    assert_eq!(c.addr, DEFAULT_ADDR);
    assert_eq!(c.addr.to_string(), "239.255.77.54");
    assert_eq!(c.port, DEFAULT_PORT);
    assert!(!c.dumpnet && !c.connecttonet && c.startcontrol);
    assert_eq!(
        c.to_json(),
        json!({
            "addr": "239.255.77.54", "port": 4454, "dumpnet": false,
            "connecttonet": false, "startcontrol": true, "socketmode": "0660",
            "ttl": 1, "loopback": false, "peers": [], "mtu": 1400,
            "retransmitbytes": 8388608,
            "reassemblybytes": 33554432, "retransmitrate": 16777216,
            "maxmessage": 16777216, "queuebytes": 8388608, "shmbytes": 67108864,
            "partialbytes": 67108864, "frametimeoutms": 10000,
            "adminuids": [], "admingids": [],
            "channels": {
                "control": default_channel(json!(false)),
                "A": default_channel(json!("^B$")),
                "B": default_channel(json!("^A$"))
            }
        })
    );
    assert!(c.channel_rules()[1].propagate.selects("B"));
    assert!(!c.channel_rules()[1].propagate.selects("BB"));
}

#[test]
fn control_channel_is_always_present() {
    assert_eq!(names(&ok("{}")), ["control"]);
    assert_eq!(names(&ok(r#"{"channels": {}}"#)), ["control"]);
    assert_eq!(
        names(&ok(r#"{"channels": {"Z": {}, "A": {}}}"#)),
        ["control", "Z", "A"]
    );
    // A control channel the file defines keeps its place and settings.
    let c = ok(r#"{"channels": {"A": {}, "control": {"dumptoconsole": true}}}"#);
    assert_eq!(names(&c), ["A", "control"]);
    assert!(c.channel("control").unwrap().dumptoconsole);
    assert!(c.channel("nope").is_none());
}

#[test]
fn comments_in_odd_places() {
    let text = "\u{feff}// leading\n/* block\n * more */{/**/\"port\"/* a */:// b\n 7 /* c */,\n\
                \"channels\"\n//x\n:{\"A\"/*y*/:{/*z*/}/**/}}\n// trailing\n/* end */";
    let c = ok(text);
    assert_eq!(c.port, 7);
    assert_eq!(names(&c), ["control", "A"]);
    assert_eq!(
        ok(r#"{"socketdir": "/run/a//b/*c*/"}"#).socketdir,
        Some(PathBuf::from("/run/a//b/*c*/"))
    );
}

#[test]
fn all_keys_set() {
    let c = ok(r#"{
        "addr": "ff02::1234", "port": 1, "dumpnet": true, "connecttonet": true,
        "startcontrol": false, "socketdir": "/run/nc", "socketmode": "600",
        "maxmessage": "1 KiB", "queuebytes": "4GiB",
        "channels": {"control": {"propagatetonet": true, "dumptoconsole": true}}
    }"#);
    assert_eq!(c.addr.to_string(), "ff02::1234");
    assert_eq!(c.port, 1);
    assert!(c.dumpnet && c.connecttonet && !c.startcontrol);
    assert_eq!(c.socketdir.as_deref(), Some(Path::new("/run/nc")));
    assert_eq!(c.socketmode, 0o600);
    assert_eq!(c.maxmessage, 1024);
    assert_eq!(c.queuebytes as u64, 4 << 30);
    let control = c.channel("control").unwrap();
    assert!(control.propagatetonet && control.dumptoconsole);
    assert!(c.channel_rules()[0].to_net);
}

#[test]
fn sizes_in_all_forms() {
    let maxmessage = |v: &str| ok(&format!(r#"{{"maxmessage": {v}}}"#)).maxmessage;
    assert_eq!(maxmessage("1024"), 1024);
    assert_eq!(maxmessage("1073741824"), 1 << 30);
    assert_eq!(maxmessage(r#""2048""#), 2048);
    assert_eq!(maxmessage(r#""2048B""#), 2048);
    assert_eq!(maxmessage(r#""2048 b""#), 2048);
    assert_eq!(maxmessage(r#""64KiB""#), 64 << 10);
    assert_eq!(maxmessage(r#""64kib""#), 64 << 10);
    assert_eq!(maxmessage(r#""16 MiB""#), 16 << 20);
    assert_eq!(maxmessage(r#""1GiB""#), 1 << 30);
    assert_eq!(maxmessage(r#""1MB""#), 1_000_000);
    assert_eq!(maxmessage(r#""5 kb""#), 5_000);
    assert_eq!(maxmessage(r#""1 GB""#), 1_000_000_000);
    let queuebytes = |v: &str| ok(&format!(r#"{{"queuebytes": {v}}}"#)).queuebytes;
    assert_eq!(queuebytes(r#""64KiB""#), 64 << 10);
    assert_eq!(queuebytes("65536"), 64 << 10);
    assert_eq!(queuebytes(r#""1MiB""#), 1 << 20);
}

#[test]
fn socketmode_forms() {
    let mode = |v: &str| ok(&format!(r#"{{"socketmode": {v}}}"#)).socketmode;
    assert_eq!(mode(r#""0660""#), 0o660);
    assert_eq!(mode(r#""660""#), 0o660);
    assert_eq!(mode(r#""0777""#), 0o777);
    assert_eq!(mode(r#""0""#), 0);
    assert_eq!(mode(r#""00600""#), 0o600);
}

#[test]
fn propagatetochannels_forms() {
    let spec = |v: &str| {
        let c = ok(&format!(
            r#"{{"channels": {{"A": {{"propagatetochannels": {v}}}}}}}"#
        ));
        c.channel("A").unwrap().propagatetochannels.clone()
    };
    assert!(matches!(spec("false"), PropagateSpec::None));
    assert!(matches!(spec("true"), PropagateSpec::All));
    assert_eq!(spec("true").rule(), Propagation::All);
    let one = spec(r#""^B""#);
    assert!(matches!(one, PropagateSpec::Pattern(_)));
    assert_eq!(patterns(&one), ["^B"]);
    let list = spec(r#"["^B$", "x\\d+"]"#);
    assert!(matches!(list, PropagateSpec::Patterns(_)));
    assert_eq!(patterns(&list), ["^B$", "x\\d+"]);
    let rule = list.rule();
    assert!(rule.selects("B") && rule.selects("ax12") && !rule.selects("BB"));
    // Unanchored, like JavaScript's RegExp.test.
    assert!(one.rule().selects("Bravo"));
    assert!(matches!(spec(r#"["^B$"]"#), PropagateSpec::Patterns(v) if v.len() == 1));
    assert!(matches!(spec("[]"), PropagateSpec::Patterns(v) if v.is_empty()));
    assert_eq!(spec(r#"["a", "b"]"#).to_json(), json!(["a", "b"]));
    assert_eq!(spec(r#""a""#).to_json(), json!("a"));
}

#[test]
fn to_json_round_trips() {
    let texts = [
        SEED_EXAMPLE,
        "{}",
        r#"{
            "addr": "ff02::1", "port": 9, "socketdir": "/run/x y", "socketmode": "600",
            "maxmessage": "1MiB", "queuebytes": "64KiB", "startcontrol": false,
            "channels": {
                "B": {"propagatetochannels": ["^A$"], "dumptoconsole": true},
                "A": {"propagatetochannels": true, "propagatetonet": true},
                "control": {},
                "sensors.temp": {"propagatetochannels": ["x", "y\\.z"]}
            }
        }"#,
    ];
    for text in texts {
        let first = ok(text).to_json();
        let again = Config::from_value(&first).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(again.source, ConfigSource::Inline));
        assert_eq!(again.to_json(), first);
    }
    let c = ok(texts[2]).to_json();
    assert_eq!(c["socketdir"], "/run/x y");
    assert_eq!(c["socketmode"], "0600");
    assert_eq!(c["maxmessage"], 1 << 20);
    assert_eq!(c["queuebytes"], 64 << 10);
    assert_eq!(c["channels"]["B"]["propagatetochannels"], json!(["^A$"]));
    assert_eq!(c["channels"]["A"]["propagatetochannels"], json!(true));
    assert_eq!(
        c["channels"]["control"]["propagatetochannels"],
        json!(false)
    );
    let seed = ok(SEED_EXAMPLE).to_json();
    assert_eq!(seed["channels"]["A"]["propagatetochannels"], json!(".*"));
    assert!(seed.get("socketdir").is_none());
}

#[test]
fn from_value_reports_against_the_pretty_text() {
    let e = Config::from_value(&json!({"port": 1, "prot": 2})).unwrap_err();
    assert_eq!(
        e.to_string(),
        "<reload request>:3:3: prot: unknown key; did you mean \"port\"?"
    );
    let e = Config::from_value(&json!([])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "<reload request>:1:1: expected an object, found an array"
    );
}

#[test]
fn load_reads_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, SEED_EXAMPLE).unwrap();
    let c = Config::load(&path).unwrap();
    assert!(matches!(&c.source, ConfigSource::File(p) if *p == path));
    assert_eq!(c.source.to_string(), path.display().to_string());
    assert_eq!(names(&c), ["control", "A", "B"]);

    std::fs::write(&path, "{\"port\": 0}").unwrap();
    let e = Config::load(&path).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}:1:10: port: port must be between 1 and 65535, found 0",
            path.display()
        )
    );

    let missing = dir.path().join("missing.json");
    let e = Config::load(&missing).unwrap_err();
    assert!(matches!(&e, ConfigError::Io { path, .. } if *path == missing));
    assert!(e
        .to_string()
        .starts_with(&format!("cannot read config file {}: ", missing.display())));
    assert!(e.diagnostic().is_none());
}

#[test]
fn socket_dir_resolution_order() {
    let env = |vars: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        }
    };
    let all = env(&[
        ("NETCLUSTER_SOCKET_DIR", "/env"),
        ("XDG_RUNTIME_DIR", "/xdg"),
    ]);
    let configured = Some(Path::new("/conf"));
    assert_eq!(
        resolve_socket_dir(configured, all, true),
        Path::new("/conf")
    );
    assert_eq!(resolve_socket_dir(None, all, true), Path::new("/env"));
    assert_eq!(resolve_socket_dir(None, all, false), Path::new("/env"));
    let xdg = env(&[("NETCLUSTER_SOCKET_DIR", ""), ("XDG_RUNTIME_DIR", "/xdg")]);
    assert_eq!(resolve_socket_dir(None, xdg, true), Path::new("/var/run"));
    assert_eq!(resolve_socket_dir(None, xdg, false), Path::new("/xdg"));
    let empty = env(&[("XDG_RUNTIME_DIR", "")]);
    assert_eq!(resolve_socket_dir(None, empty, false), Path::new("/tmp"));
    assert_eq!(resolve_socket_dir(None, env(&[]), false), Path::new("/tmp"));
}
