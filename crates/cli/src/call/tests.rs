//! Unit tests of the call parser: quoting, nesting, escapes, and the column
//! reported for each kind of mistake.

use serde_json::json;

use super::{parse_line, Call, ParseError};

fn one(input: &str) -> Call {
    let mut calls = parse_line(input).unwrap_or_else(|e| panic!("{input}: {e}"));
    assert_eq!(calls.len(), 1, "{input}");
    calls.remove(0)
}

fn call(name: &str, args: Vec<serde_json::Value>) -> Call {
    Call {
        name: name.into(),
        args,
    }
}

fn err(input: &str) -> ParseError {
    match parse_line(input) {
        Ok(c) => panic!("{input} parsed as {c:?}"),
        Err(e) => e,
    }
}

#[test]
fn calls_with_and_without_parentheses() {
    assert_eq!(one("showconfig()"), call("showconfig", vec![]));
    assert_eq!(one("showconfig"), call("showconfig", vec![]));
    assert_eq!(one("  status ( ) "), call("status", vec![]));
    assert_eq!(
        one("showchannel(\"A\")"),
        call("showchannel", vec![json!("A")])
    );
    assert_eq!(
        one("showclient('A', 3)"),
        call("showclient", vec![json!("A"), json!(3)])
    );
    assert_eq!(
        one("showclient ( \"A\" , \"3\" )"),
        call("showclient", vec![json!("A"), json!("3")])
    );
}

#[test]
fn several_calls_separated_by_semicolons() {
    let calls = parse_line("status(); showchannel('A');;showconfig ;").unwrap();
    let names: Vec<&str> = calls.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["status", "showchannel", "showconfig"]);
    assert!(parse_line("").unwrap().is_empty());
    assert!(parse_line("   ;  ").unwrap().is_empty());
    // A ';' inside a string does not split.
    assert_eq!(one("x('a;b')"), call("x", vec![json!("a;b")]));
}

#[test]
fn quotes_of_both_kinds() {
    assert_eq!(one(r#"f('say "hi"')"#).args, [json!("say \"hi\"")]);
    assert_eq!(one(r#"f("it's")"#).args, [json!("it's")]);
    assert_eq!(one(r"f('it\'s')").args, [json!("it's")]);
    assert_eq!(one(r#"f("a\"b")"#).args, [json!("a\"b")]);
    assert_eq!(one("f('')").args, [json!("")]);
    assert_eq!(one("f('héllo ✓')").args, [json!("héllo ✓")]);
}

#[test]
fn escapes_and_doubled_backslashes() {
    assert_eq!(
        one(r#"reloadconfig("C:\\dir\\cfg.json")"#).args,
        [json!("C:\\dir\\cfg.json")]
    );
    assert_eq!(
        one(r#"f("\n\t\r\b\f\/")"#).args,
        [json!("\n\t\r\u{8}\u{c}/")]
    );
    assert_eq!(one(r#"f("\u00e9")"#).args, [json!("é")]);
    assert_eq!(one(r#"f('\uD83D\uDE00')"#).args, [json!("😀")]);
}

#[test]
fn nested_json_values() {
    let c = one(
        r#"reloadconfig({"channels": {"A": {"propagatetochannels": ["^B$", 'C']}}, port: 4454, "x": [1, -2.5e3, true, false, null, {}, []]})"#,
    );
    assert_eq!(
        c.args,
        [json!({
            "channels": {"A": {"propagatetochannels": ["^B$", "C"]}},
            "port": 4454,
            "x": [1, -2500.0, true, false, null, {}, []]
        })]
    );
    assert_eq!(one("f([[1],[2,[3]]])").args, [json!([[1], [2, [3]]])]);
    assert_eq!(one("f(18446744073709551615)").args, [json!(u64::MAX)]);
    assert_eq!(one("f(-3, 0.5)").args, [json!(-3), json!(0.5)]);
}

#[test]
fn errors_name_the_column() {
    // Each case: input, expected column, a fragment of the message.
    let cases: &[(&str, usize, &str)] = &[
        ("showchannel(\"A\"", 16, "missing ')'"),
        ("showchannel(\"A)", 13, "unterminated string"),
        (
            "showchannel(",
            13,
            "missing ')' to close the '(' at column 12",
        ),
        ("showclient('A', ", 17, "missing ')'"),
        ("showchannel(A)", 13, "strings need quotes"),
        ("showclient(\"A\" 3)", 16, "expected ',' or ')'"),
        ("showclient(\"A\",)", 16, "expected a value"),
        ("status() status()", 10, "separate calls with ';'"),
        ("(1)", 1, "function name"),
        ("3()", 1, "function name"),
        (r#"reloadconfig("C:\dir")"#, 17, "write \\\\"),
        (r#"f("\u12")"#, 4, "four hex digits"),
        (r#"f("\uD800x")"#, 4, "surrogate"),
        ("f(01)", 3, "cannot start with 0"),
        ("f(1.)", 5, "digit after '.'"),
        ("f(-)", 4, "a digit"),
        ("f(1e)", 5, "exponent"),
        ("f([1 2])", 6, "',' or ']'"),
        ("f([1,2)", 7, "',' or ']'"),
        ("f([1", 5, "missing ']' to close the '[' at column 3"),
        ("f({a 1})", 6, "':'"),
        ("f({1: 2})", 4, "object key"),
        ("f({'a': 1", 10, "missing '}'"),
        ("f(\"é\" x)", 7, "expected ',' or ')'"),
        ("f(@)", 3, "expected a value"),
    ];
    for (input, column, fragment) in cases {
        let e = err(input);
        assert_eq!(e.column, *column, "{input}: {e}");
        assert!(e.message.contains(fragment), "{input}: {e}");
        assert!(e
            .to_string()
            .starts_with(&format!("parse error at column {column}: ")));
    }
}

#[test]
fn deep_nesting_is_refused_not_a_crash() {
    let deep = format!("f({}{})", "[".repeat(10_000), "]".repeat(10_000));
    assert!(err(&deep).message.contains("nest deeper"));
}
