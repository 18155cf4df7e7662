//! Tests of the JSONC parser: agreement with serde_json on plain JSON,
//! positions, comments, every syntax error message, duplicates, depth.

use super::*;

fn err(text: &str) -> (usize, usize, String) {
    let e = parse(text).unwrap_err();
    (e.pos.line, e.pos.column, e.message)
}

fn to_plain(n: &Node) -> serde_json::Value {
    use serde_json::Value;
    match &n.kind {
        Kind::Null => Value::Null,
        Kind::Bool(b) => Value::Bool(*b),
        Kind::Number(x) => Value::Number(x.clone()),
        Kind::String(s) => Value::String(s.clone()),
        Kind::Array(a) => Value::Array(a.iter().map(to_plain).collect()),
        Kind::Object(m) => Value::Object(
            m.iter()
                .map(|m| (m.key.clone(), to_plain(&m.value)))
                .collect(),
        ),
    }
}

#[test]
fn agrees_with_serde_json_on_plain_json() {
    let text = r#"{"a": [1, -2, 3.5, 1e3, 18446744073709551615, -9223372036854775808],
        "b": {"c": null, "d": true, "e": false}, "s": "x\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00",
        "empty": {}, "none": []}"#;
    let ours = to_plain(&parse(text).unwrap());
    let theirs: serde_json::Value = serde_json::from_str(text).unwrap();
    assert_eq!(ours, theirs);
    assert_eq!(ours["s"], "x\"\\/\u{8}\u{c}\n\r\t\u{e9}\u{1F600}");
    assert_eq!(ours["a"][4].as_u64(), Some(u64::MAX));
    assert_eq!(ours["a"][5].as_i64(), Some(i64::MIN));
}

#[test]
fn positions_count_characters() {
    let text = "// é\n{\n\t\"ü\": [1,\n  \"x\"], \"k\": 2}";
    let root = parse(text).unwrap();
    assert_eq!(root.pos, Pos { line: 2, column: 1 });
    let Kind::Object(m) = &root.kind else {
        panic!()
    };
    assert_eq!(m[0].key_pos, Pos { line: 3, column: 2 });
    assert_eq!(m[0].value.pos, Pos { line: 3, column: 7 });
    let Kind::Array(a) = &m[0].value.kind else {
        panic!()
    };
    assert_eq!(a[1].pos, Pos { line: 4, column: 3 });
    assert_eq!(m[1].key_pos, Pos { line: 4, column: 9 });
}

#[test]
fn comments_anywhere() {
    let text = "\u{feff}/*a*/{/*b*/\"k\"/*c*/:/*d*/[/*e*/1/*f*/,//g\n2]//h\n/*i*/}/**/ // end";
    let v = to_plain(&parse(text).unwrap());
    assert_eq!(v, serde_json::json!({"k": [1, 2]}));
    assert!(parse("{\"a\": \"//not a comment /* */\"}").is_ok());
}

#[test]
fn syntax_errors() {
    assert_eq!(
        err(""),
        (1, 1, "expected a value, found end of file".into())
    );
    assert_eq!(
        err("{\"a\": 1,}"),
        (
            1,
            8,
            "trailing comma before '}' is not allowed in JSON; remove it".into()
        )
    );
    assert_eq!(
        err("[1,\n]"),
        (
            1,
            3,
            "trailing comma before ']' is not allowed in JSON; remove it".into()
        )
    );
    assert_eq!(
        err("{\"a\" 1}"),
        (1, 6, "expected ':' after the key, found '1'".into())
    );
    assert_eq!(
        err("{a: 1}"),
        (1, 2, "expected a key in double quotes, found 'a'".into())
    );
    assert_eq!(
        err("[1 2]"),
        (
            1,
            4,
            "expected ',' or ']' after an array element, found '2'".into()
        )
    );
    assert_eq!(
        err("{\"a\": 1 \"b\": 2}"),
        (
            1,
            9,
            "expected ',' or '}' after an object member, found '\"'".into()
        )
    );
    assert_eq!(
        err("[True]"),
        (
            1,
            2,
            "expected a value, found `True`; JSON literals are lowercase: true, false, null".into()
        )
    );
    assert_eq!(
        err("[01]"),
        (1, 2, "leading zeros are not allowed in JSON numbers".into())
    );
    assert_eq!(
        err("[1.]"),
        (1, 4, "expected a digit after '.', found ']'".into())
    );
    assert_eq!(
        err("[1e999]"),
        (1, 2, "number 1e999 is out of range".into())
    );
    assert_eq!(
        err("{} x"),
        (
            1,
            4,
            "expected end of input after the top-level value, found 'x'".into()
        )
    );
    assert_eq!(
        err("{\n  \"a\": \"abc\n}"),
        (
            2,
            8,
            "unterminated string: expected '\"' before the end of the line".into()
        )
    );
    assert_eq!(
        err("[\"abc"),
        (
            1,
            2,
            "unterminated string: expected '\"' before the end of the file".into()
        )
    );
    assert_eq!(
        err("{} /* x"),
        (
            1,
            4,
            "unterminated block comment: expected '*/' before the end of the file".into()
        )
    );
    assert_eq!(
        err("[\"a\\x\"]"),
        (
            1,
            4,
            "invalid escape: expected one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX after '\\', found 'x'"
                .into()
        )
    );
    assert_eq!(
        err("[\"\\ud800x\"]"),
        (
            1,
            3,
            "lone surrogate \\uD800: expected a low surrogate \\uDC00-\\uDFFF after it".into()
        )
    );
    assert_eq!(
        err("[\"\\u12g4\"]"),
        (
            1,
            3,
            "invalid \\u escape: expected 4 hex digits, found 'g'".into()
        )
    );
    assert_eq!(
        err("[\"a\tb\"]"),
        (
            1,
            4,
            "control character U+0009 is not allowed in a string; write it as an escape".into()
        )
    );
    assert_eq!(
        err("{'a': 1}"),
        (
            1,
            2,
            "expected a key in double quotes, found '\\''; JSON strings use double quotes".into()
        )
    );
    assert_eq!(
        err("[1] / 2"),
        (
            1,
            5,
            "expected '//' or '/*' to start a comment, found a lone '/'".into()
        )
    );
}

#[test]
fn duplicate_keys_name_their_path() {
    let e = parse("{\"c\": {\"a.b\": {\"x\": 1,\n \"x\": 2}}}").unwrap_err();
    assert_eq!(e.pos, Pos { line: 2, column: 2 });
    assert_eq!(e.key.as_deref(), Some("c.\"a.b\".x"));
    assert_eq!(
        e.message,
        "duplicate key; it is already defined at line 1, column 16"
    );
}

#[test]
fn depth_limit() {
    let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
    assert!(parse(&ok).is_ok());
    let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
    let (line, col, msg) = err(&deep);
    assert_eq!((line, col), (1, MAX_DEPTH + 1));
    assert_eq!(
        msg,
        "arrays and objects are nested more than 64 levels deep"
    );
    // Far deeper input fails the same way instead of overflowing the stack.
    assert!(parse(&"[".repeat(100_000)).is_err());
}
