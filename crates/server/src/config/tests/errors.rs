//! Every kind of config error, with its exact rendered message including
//! file, line and column: unknown keys and their suggestions, bad types,
//! bad values, bad regexes, bad sizes and modes, syntax errors, and which
//! error wins when there are several.

use super::err;
use crate::config::{Config, Diagnostic};

#[test]
fn unknown_keys_suggest_the_nearest() {
    let text =
        "{\n  \"channels\": {\n    \"A\": {\n      \"propagatetochanels\": \".*\"\n    }\n  }\n}";
    assert_eq!(
        err(text),
        "config.json:4:7: channels.A.propagatetochanels: unknown key; did you mean \"propagatetochannels\"?"
    );
    assert_eq!(
        err("{\n  \"addr\": \"224.0.0.1\",\n  \"prot\": 1\n}"),
        "config.json:3:3: prot: unknown key; did you mean \"port\"?"
    );
    assert_eq!(
        err(r#"{"dumpNet": true}"#),
        "config.json:1:2: dumpNet: unknown key; did you mean \"dumpnet\"?"
    );
    assert_eq!(
        err(r#"{"colour": 1}"#),
        "config.json:1:2: colour: unknown key"
    );
    assert_eq!(
        err(r#"{"channels": {"A": {"x": 1}}}"#),
        "config.json:1:21: channels.A.x: unknown key"
    );
    // The key is reported before its value is looked at.
    assert_eq!(
        err(r#"{"channels": {"A": {"dumptoconsol": null}}}"#),
        "config.json:1:21: channels.A.dumptoconsol: unknown key; did you mean \"dumptoconsole\"?"
    );
}

#[test]
fn bad_regexes() {
    assert_eq!(
        err(r#"{"channels": {"A": {"propagatetochannels": ["^B$", "(?=x)"]}}}"#),
        "config.json:1:52: channels.A.propagatetochannels[1]: invalid regex \"(?=x)\": \
         look-around, including look-ahead and look-behind, is not supported; \
         note that JavaScript-only features (lookaround, backreferences) are not supported"
    );
    assert_eq!(
        err(r#"{"channels": {"A": {"propagatetochannels": "(a)\\1"}}}"#),
        "config.json:1:44: channels.A.propagatetochannels: invalid regex \"(a)\\\\1\": \
         backreferences are not supported; \
         note that JavaScript-only features (lookaround, backreferences) are not supported"
    );
    assert_eq!(
        err(r#"{"channels": {"A": {"propagatetochannels": "(ab"}}}"#),
        "config.json:1:44: channels.A.propagatetochannels: invalid regex \"(ab\": \
         unclosed group; \
         note that JavaScript-only features (lookaround, backreferences) are not supported"
    );
    assert_eq!(
        err(r#"{"channels": {"A": {"propagatetochannels": ""}}}"#),
        "config.json:1:44: channels.A.propagatetochannels: \
         the regex must not be empty; use true to propagate to every channel"
    );
    assert_eq!(
        err(r#"{"channels": {"A": {"propagatetochannels": ["a", 1]}}}"#),
        "config.json:1:50: channels.A.propagatetochannels[1]: expected a regex string, found a number"
    );
    assert_eq!(
        err(r#"{"channels": {"A": {"propagatetochannels": 1}}}"#),
        "config.json:1:44: channels.A.propagatetochannels: \
         expected a boolean, a regex string or an array of regex strings, found a number"
    );
}

#[test]
fn bad_types() {
    assert_eq!(
        err(r#"{"dumpnet": "yes"}"#),
        "config.json:1:13: dumpnet: expected a boolean, found a string"
    );
    assert_eq!(
        err(r#"{"port": null}"#),
        "config.json:1:10: port: expected an integer, found null"
    );
    assert_eq!(
        err(r#"{"port": "4454"}"#),
        "config.json:1:10: port: expected an integer, found a string"
    );
    assert_eq!(
        err(r#"{"addr": [224]}"#),
        "config.json:1:10: addr: expected a string, found an array"
    );
    assert_eq!(
        err(r#"{"channels": []}"#),
        "config.json:1:14: channels: expected an object, found an array"
    );
    assert_eq!(
        err(r#"{"channels": {"A": true}}"#),
        "config.json:1:20: channels.A: expected an object, found a boolean"
    );
    assert_eq!(
        err(r#"{"channels": {"A": {"propagatetonet": 0}}}"#),
        "config.json:1:39: channels.A.propagatetonet: expected a boolean, found a number"
    );
    assert_eq!(
        err("\n  [1]"),
        "config.json:2:3: expected an object, found an array"
    );
    assert_eq!(
        err(r#"{"socketdir": false}"#),
        "config.json:1:15: socketdir: expected a string, found a boolean"
    );
    assert_eq!(
        err(r#"{"maxmessage": {}}"#),
        "config.json:1:16: maxmessage: expected a size \
         (an integer number of bytes or a string like \"16MiB\"), found an object"
    );
}

#[test]
fn bad_values() {
    assert_eq!(
        err(r#"{"channels": {"a/b": {}}}"#),
        "config.json:1:15: channels.\"a/b\": channel name \"a/b\" contains '/', which is not allowed"
    );
    assert_eq!(
        err(r#"{"channels": {"": {}}}"#),
        "config.json:1:15: channels.\"\": channel name is empty"
    );
    assert_eq!(
        err(r#"{"port": 70000}"#),
        "config.json:1:10: port: port must be between 1 and 65535, found 70000"
    );
    assert_eq!(
        err(r#"{"port": 0}"#),
        "config.json:1:10: port: port must be between 1 and 65535, found 0"
    );
    assert_eq!(
        err(r#"{"port": -1}"#),
        "config.json:1:10: port: port must be between 1 and 65535, found -1"
    );
    assert_eq!(
        err(r#"{"port": 4454.5}"#),
        "config.json:1:10: port: port must be between 1 and 65535, found 4454.5"
    );
    assert_eq!(
        err(r#"{"addr": "300.1.1.1"}"#),
        "config.json:1:10: addr: \"300.1.1.1\" is not an IPv4 or IPv6 address"
    );
    assert_eq!(
        err(r#"{"addr": "localhost"}"#),
        "config.json:1:10: addr: \"localhost\" is not an IPv4 or IPv6 address"
    );
    assert_eq!(
        err(r#"{"socketdir": ""}"#),
        "config.json:1:15: socketdir: socketdir must not be empty"
    );
}

#[test]
fn bad_socketmodes() {
    assert_eq!(
        err(r#"{"socketmode": 660}"#),
        "config.json:1:16: socketmode: socketmode must be written as a string of octal digits, \
         e.g. \"0660\", not as a number"
    );
    assert_eq!(
        err(r#"{"socketmode": "0668"}"#),
        "config.json:1:16: socketmode: socketmode must be a string of octal digits like \"0660\", \
         found \"0668\""
    );
    assert_eq!(
        err(r#"{"socketmode": ""}"#),
        "config.json:1:16: socketmode: socketmode must be a string of octal digits like \"0660\", \
         found \"\""
    );
    assert_eq!(
        err(r#"{"socketmode": "1777"}"#),
        "config.json:1:16: socketmode: socketmode must be at most \"0777\", found \"1777\""
    );
    assert_eq!(
        err(r#"{"socketmode": "7777777777777777777777"}"#),
        "config.json:1:16: socketmode: socketmode must be at most \"0777\", \
         found \"7777777777777777777777\""
    );
    assert_eq!(
        err(r#"{"socketmode": true}"#),
        "config.json:1:16: socketmode: expected a string of octal digits, found a boolean"
    );
}

#[test]
fn bad_sizes() {
    assert_eq!(
        err(r#"{"maxmessage": "16 XB"}"#),
        "config.json:1:16: maxmessage: \"16 XB\" is not a size; write a number of bytes, \
         optionally followed by a unit: B, KB, MB, GB (powers of 1000), KiB, MiB, GiB (powers of 1024)"
    );
    for bad in ["", "MiB", "1.5MiB", "-5", "0x400", "16 M"] {
        let e = err(&format!(r#"{{"maxmessage": "{bad}"}}"#));
        assert!(e.contains("is not a size"), "{bad:?}: {e}");
    }
    assert_eq!(
        err(r#"{"maxmessage": 512}"#),
        "config.json:1:16: maxmessage: maxmessage must be between 1 KiB and 1 GiB, found 512 bytes"
    );
    assert_eq!(
        err(r#"{"maxmessage": "2GiB"}"#),
        "config.json:1:16: maxmessage: maxmessage must be between 1 KiB and 1 GiB, \
         found 2147483648 bytes"
    );
    assert_eq!(
        err(r#"{"maxmessage": -1}"#),
        "config.json:1:16: maxmessage: maxmessage must be between 1 KiB and 1 GiB, found -1"
    );
    assert_eq!(
        err(r#"{"maxmessage": 1.5}"#),
        "config.json:1:16: maxmessage: maxmessage must be a whole number of bytes, found 1.5"
    );
    assert_eq!(
        err(r#"{"queuebytes": "5GiB"}"#),
        "config.json:1:16: queuebytes: queuebytes must be between 64 KiB and 4 GiB, \
         found 5368709120 bytes"
    );
    assert_eq!(
        err(r#"{"queuebytes": "64000"}"#),
        "config.json:1:16: queuebytes: queuebytes must be between 64 KiB and 4 GiB, \
         found 64000 bytes"
    );
    assert_eq!(
        err(r#"{"shmbytes": "5GiB"}"#),
        "config.json:1:14: shmbytes: shmbytes must be between 0 bytes and 4 GiB, \
         found 5368709120 bytes"
    );
}

#[test]
fn syntax_errors() {
    assert_eq!(
        err("{\n  \"port\": 1,\n  \"port\": 2\n}"),
        "config.json:3:3: port: duplicate key; it is already defined at line 2, column 3"
    );
    assert_eq!(
        err(r#"{"channels": {"A": {}, "A": {}}}"#),
        "config.json:1:24: channels.A: duplicate key; it is already defined at line 1, column 15"
    );
    assert_eq!(
        err("{\n  \"port\": 1,\n}"),
        "config.json:2:12: trailing comma before '}' is not allowed in JSON; remove it"
    );
    assert_eq!(
        err(r#"{"channels": {"A": {"propagatetochannels": ["a", "b",]}}}"#),
        "config.json:1:53: trailing comma before ']' is not allowed in JSON; remove it"
    );
    assert_eq!(
        err("{\n  \"addr\": \"224.0.0.1\n}"),
        "config.json:2:11: unterminated string: expected '\"' before the end of the line"
    );
    assert_eq!(
        err("{\"addr\": \"224"),
        "config.json:1:10: unterminated string: expected '\"' before the end of the file"
    );
    assert_eq!(
        err("{\"port\": 1}\n/* the end"),
        "config.json:2:1: unterminated block comment: expected '*/' before the end of the file"
    );
    assert_eq!(
        err("{\"port\": 1"),
        "config.json:1:11: expected ',' or '}' after an object member, found end of file"
    );
    assert_eq!(
        err("// nothing but a comment\n"),
        "config.json:2:1: expected a value, found end of file"
    );
    assert_eq!(
        err("{port: 1}"),
        "config.json:1:2: expected a key in double quotes, found 'p'"
    );
}

#[test]
fn first_error_in_document_order_wins() {
    let text = r#"{"port": 0, "channels": {"a/b": {}}, "addr": "x", "bogus": 1}"#;
    assert_eq!(
        err(text),
        "config.json:1:10: port: port must be between 1 and 65535, found 0"
    );
    let text = r#"{"channels": {"A": {"dumptoconsole": 1}, "b/c": {}}, "port": 0}"#;
    assert_eq!(
        err(text),
        "config.json:1:38: channels.A.dumptoconsole: expected a boolean, found a number"
    );
}

#[test]
fn diagnostics_are_structured() {
    let e = Config::parse(r#"{"prot": 1}"#, "a.json").unwrap_err();
    let d = e.diagnostic().expect("invalid config");
    assert_eq!(
        *d,
        Diagnostic {
            file: "a.json".into(),
            line: 1,
            column: 2,
            key: Some("prot".into()),
            message: "unknown key".into(),
            hint: Some("port".into()),
        }
    );
}

#[test]
fn hardening_keys() {
    assert_eq!(
        err(r#"{"channels": {"A": {"slowconsumer": "wait"}}}"#),
        "config.json:1:37: channels.A.slowconsumer: \"wait\" is not a slow-consumer policy; use \"block\", \"drop\" or \"disconnect\""
    );
    assert_eq!(
        err(r#"{"channels": {"A": {"blockms": 0}}}"#),
        "config.json:1:32: channels.A.blockms: blockms must be an integer between 1 and 600000, found 0"
    );
    assert_eq!(
        err(r#"{"channels": {"A": {"allowuids": [1000, "bob"]}}}"#),
        "config.json:1:41: channels.A.allowuids[1]: expected a numeric id, found a string"
    );
    assert_eq!(
        err(r#"{"channels": {"A": {"allowgids": 5}}}"#),
        "config.json:1:34: channels.A.allowgids: expected an array of numeric ids, found a number"
    );
    assert_eq!(
        err(r#"{"socketgroup": true}"#),
        "config.json:1:17: socketgroup: expected a group name or a numeric group id, found a boolean"
    );
    let c = Config::parse(
        r#"{"socketgroup": "netcluster", "channels": {"A": {"slowconsumer": "drop", "blockms": 250, "allowuids": [1000], "allowgids": [27]}}}"#,
        "c.json",
    )
    .unwrap();
    let a = c.channel("A").unwrap();
    assert_eq!(a.slowconsumer, crate::config::SlowConsumer::Drop);
    assert_eq!(
        (a.blockms, a.allowuids.clone(), a.allowgids.clone()),
        (250, vec![1000], vec![27])
    );
    assert_eq!(
        c.socketgroup,
        Some(crate::config::GroupSpec::Name("netcluster".into()))
    );
}

#[test]
fn network_keys() {
    assert_eq!(
        err(r#"{"peers": ["10.0.0.1"]}"#),
        "config.json:1:12: peers[0]: \"10.0.0.1\" is not \"host:port\" (write IPv6 addresses as \"[addr]:port\")"
    );
    assert_eq!(
        err(r#"{"peers": ["fe80::1:4454"]}"#),
        "config.json:1:12: peers[0]: \"fe80::1:4454\" is not \"host:port\" (write IPv6 addresses as \"[addr]:port\")"
    );
    assert_eq!(
        err(r#"{"ttl": 0}"#),
        "config.json:1:9: ttl: ttl must be an integer between 1 and 255, found 0"
    );
    assert_eq!(
        err(r#"{"mtu": 100}"#),
        "config.json:1:9: mtu: mtu must be an integer between 256 and 65507, found 100"
    );
    assert_eq!(
        err(r#"{"interface": ""}"#),
        "config.json:1:15: interface: interface must be a non-empty string without NUL bytes"
    );
    assert_eq!(
        err(r#"{"channels": {"A": {"acceptfromnet": "no"}}}"#),
        "config.json:1:38: channels.A.acceptfromnet: expected a boolean, found a string"
    );
    let c = Config::parse(
        r#"{"interface": "eth0", "ttl": 4, "loopback": true, "nodename": "n1", "mtu": 9000,
            "peers": ["10.0.0.2:4454", "[fe80::1]:4454", "host.example:1"], "channels": {"A": {"acceptfromnet": false}}}"#,
        "c.json",
    )
    .unwrap();
    assert_eq!(
        (
            c.interface.as_deref(),
            c.ttl,
            c.loopback,
            c.nodename.as_deref(),
            c.mtu
        ),
        (Some("eth0"), 4, true, Some("n1"), 9000)
    );
    assert_eq!(c.peers.len(), 3);
    assert!(!c.channel("A").unwrap().rules().from_net);
}
