//! A small JSON-with-comments parser that keeps positions.
//!
//! This module owns the config file's syntax: strict JSON (RFC 8259) plus
//! `//` line comments and `/* */` block comments wherever whitespace may
//! appear, and an optional UTF-8 byte order mark. It produces a [`Node`]
//! tree in which every value and every object key carries its 1-based line
//! and column (columns count characters, not bytes), so the validator can
//! point at the exact spot of a bad value. It refuses what `JSON.parse`
//! refuses (trailing commas, single quotes, `NaN`, leading zeros, raw
//! control characters in strings) and, unlike `JSON.parse`, duplicate keys,
//! because a config with two `port`s silently using the last one is a trap.
//! It knows nothing of the config's keys.

use std::collections::HashMap;

use serde_json::Number;

/// Deepest nesting of arrays and objects accepted. A config needs 3 levels;
/// the limit keeps a hostile reload request from exhausting the stack.
pub(super) const MAX_DEPTH: usize = 64;

/// A 1-based line and column (in characters) in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pos {
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
}

/// A parsed value with the position of its first character.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Node {
    /// Where the value starts.
    pub pos: Pos,
    /// The value.
    pub kind: Kind,
}

/// The JSON value of a [`Node`].
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Kind {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number; integers within `i64`/`u64` are exact.
    Number(Number),
    /// A string, escapes resolved.
    String(String),
    /// An array.
    Array(Vec<Node>),
    /// An object, members in file order (keys are unique).
    Object(Vec<Member>),
}

impl Kind {
    /// The JSON type with an article, for "expected X, found Y" messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool(_) => "a boolean",
            Kind::Number(_) => "a number",
            Kind::String(_) => "a string",
            Kind::Array(_) => "an array",
            Kind::Object(_) => "an object",
        }
    }
}

/// One `"key": value` pair of an object.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Member {
    /// The key, escapes resolved.
    pub key: String,
    /// Where the key's opening quote is.
    pub key_pos: Pos,
    /// The value.
    pub value: Node,
}

/// Why the text is not valid JSONC.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct SyntaxError {
    /// Where the problem is.
    pub pos: Pos,
    /// Dotted key path, only for errors that concern a key (duplicates).
    pub key: Option<String>,
    /// What was expected / what is wrong.
    pub message: String,
}

/// Renders a key path segment: plain when it is a simple word, else quoted
/// as a JSON string so that `channels."a.b"` stays unambiguous.
pub(super) fn join_key(parent: &str, key: &str) -> String {
    let simple = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-');
    let seg = if simple {
        key.to_string()
    } else {
        serde_json::Value::from(key).to_string()
    };
    if parent.is_empty() {
        seg
    } else {
        format!("{parent}.{seg}")
    }
}

/// Renders the path of an array element (`parent[i]`, 0-based).
pub(super) fn join_index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// Parses a whole document: one value, surrounded by whitespace/comments.
pub(super) fn parse(text: &str) -> Result<Node, SyntaxError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut p = Parser {
        src: text,
        i: 0,
        line: 1,
        column: 1,
    };
    p.skip_blank()?;
    let root = p.value(0, "")?;
    p.skip_blank()?;
    if let Some(c) = p.peek() {
        return Err(p.error(format!(
            "expected end of input after the top-level value, found {}",
            describe(Some(c))
        )));
    }
    Ok(root)
}

/// `'x'` for a character, `end of file` for none.
fn describe(c: Option<char>) -> String {
    match c {
        None => "end of file".to_string(),
        Some(c) => format!("{c:?}"),
    }
}

/// The escapes JSON allows, for the message about one it does not.
const ESCAPES: &str = r#"\" \\ \/ \b \f \n \r \t \uXXXX"#;

/// What must follow a high surrogate escape.
const LOW_SURROGATE: &str = r"a low surrogate \uDC00-\uDFFF";

struct Parser<'a> {
    src: &'a str,
    /// Byte offset of the next character.
    i: usize,
    line: usize,
    column: usize,
}

impl Parser<'_> {
    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.column,
        }
    }

    fn peek(&self) -> Option<char> {
        self.src[self.i..].chars().next()
    }

    fn peek2(&self) -> Option<char> {
        self.src[self.i..].chars().nth(1)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn error(&self, message: impl Into<String>) -> SyntaxError {
        self.error_at(self.pos(), message)
    }

    fn error_at(&self, pos: Pos, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            pos,
            key: None,
            message: message.into(),
        }
    }

    /// After an array element or object member: consumes a `,` (refusing a
    /// trailing one) or the closing bracket; true when the bracket closed.
    fn separator(&mut self, close: char, after: &str) -> Result<bool, SyntaxError> {
        self.skip_blank()?;
        match self.peek() {
            Some(',') => {
                let comma = self.pos();
                self.bump();
                self.skip_blank()?;
                if self.peek() == Some(close) {
                    return Err(self.error_at(
                        comma,
                        format!(
                            "trailing comma before '{close}' is not allowed in JSON; remove it"
                        ),
                    ));
                }
                Ok(false)
            }
            Some(c) if c == close => {
                self.bump();
                Ok(true)
            }
            c => Err(self.error(format!(
                "expected ',' or '{close}' after {after}, found {}",
                describe(c)
            ))),
        }
    }

    /// Skips whitespace and comments.
    fn skip_blank(&mut self) -> Result<(), SyntaxError> {
        loop {
            match (self.peek(), self.peek2()) {
                (Some(' ' | '\t' | '\n' | '\r'), _) => {
                    self.bump();
                }
                (Some('/'), Some('/')) => {
                    while let Some(c) = self.peek() {
                        if c == '\n' {
                            break;
                        }
                        self.bump();
                    }
                }
                (Some('/'), Some('*')) => {
                    let start = self.pos();
                    self.bump();
                    self.bump();
                    loop {
                        match self.bump() {
                            None => {
                                return Err(self.error_at(
                                    start,
                                    "unterminated block comment: expected '*/' before the end of the file",
                                ))
                            }
                            Some('*') if self.peek() == Some('/') => {
                                self.bump();
                                break;
                            }
                            Some(_) => {}
                        }
                    }
                }
                (Some('/'), _) => {
                    return Err(
                        self.error("expected '//' or '/*' to start a comment, found a lone '/'")
                    )
                }
                _ => return Ok(()),
            }
        }
    }

    /// Parses one value at the current (non-blank) position. `path` is the
    /// key path of the value, used only to name duplicate keys.
    fn value(&mut self, depth: usize, path: &str) -> Result<Node, SyntaxError> {
        let pos = self.pos();
        let kind = match self.peek() {
            Some('{') => self.object(depth + 1, path)?,
            Some('[') => self.array(depth + 1, path)?,
            Some('"') => Kind::String(self.string()?),
            Some('-' | '0'..='9') => Kind::Number(self.number()?),
            Some(c) if c.is_alphabetic() => self.word()?,
            Some('\'') => {
                return Err(
                    self.error("expected a value, found '\\''; JSON strings use double quotes")
                )
            }
            c => return Err(self.error(format!("expected a value, found {}", describe(c)))),
        };
        Ok(Node { pos, kind })
    }

    /// `true`, `false`, `null`, or an error naming the bare word found.
    fn word(&mut self) -> Result<Kind, SyntaxError> {
        let pos = self.pos();
        let start = self.i;
        while matches!(self.peek(), Some(c) if c.is_alphanumeric() || c == '_') {
            self.bump();
        }
        match &self.src[start..self.i] {
            "true" => Ok(Kind::Bool(true)),
            "false" => Ok(Kind::Bool(false)),
            "null" => Ok(Kind::Null),
            w => {
                let lower = w.to_ascii_lowercase();
                let note = if matches!(lower.as_str(), "true" | "false" | "null") {
                    "; JSON literals are lowercase: true, false, null"
                } else {
                    "; strings need double quotes"
                };
                Err(self.error_at(pos, format!("expected a value, found `{w}`{note}")))
            }
        }
    }

    fn enter(&self, depth: usize) -> Result<(), SyntaxError> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!(
                "arrays and objects are nested more than {MAX_DEPTH} levels deep"
            )));
        }
        Ok(())
    }

    fn array(&mut self, depth: usize, path: &str) -> Result<Kind, SyntaxError> {
        self.enter(depth)?;
        self.bump(); // '['
        let mut items = Vec::new();
        self.skip_blank()?;
        if self.peek() == Some(']') {
            self.bump();
            return Ok(Kind::Array(items));
        }
        loop {
            let item_path = join_index(path, items.len());
            items.push(self.value(depth, &item_path)?);
            if self.separator(']', "an array element")? {
                return Ok(Kind::Array(items));
            }
        }
    }

    fn object(&mut self, depth: usize, path: &str) -> Result<Kind, SyntaxError> {
        self.enter(depth)?;
        self.bump(); // '{'
        let mut members: Vec<Member> = Vec::new();
        let mut seen: HashMap<String, Pos> = HashMap::new();
        self.skip_blank()?;
        if self.peek() == Some('}') {
            self.bump();
            return Ok(Kind::Object(members));
        }
        loop {
            let key_pos = self.pos();
            match self.peek() {
                Some('"') => {}
                Some('\'') => return Err(self.error(
                    "expected a key in double quotes, found '\\''; JSON strings use double quotes",
                )),
                c => {
                    return Err(self.error(format!(
                        "expected a key in double quotes, found {}",
                        describe(c)
                    )))
                }
            }
            let key = self.string()?;
            let key_path = join_key(path, &key);
            if let Some(first) = seen.get(&key) {
                return Err(SyntaxError {
                    pos: key_pos,
                    key: Some(key_path),
                    message: format!(
                        "duplicate key; it is already defined at line {}, column {}",
                        first.line, first.column
                    ),
                });
            }
            seen.insert(key.clone(), key_pos);
            self.skip_blank()?;
            if self.peek() != Some(':') {
                return Err(self.error(format!(
                    "expected ':' after the key, found {}",
                    describe(self.peek())
                )));
            }
            self.bump();
            self.skip_blank()?;
            let value = self.value(depth, &key_path)?;
            members.push(Member {
                key,
                key_pos,
                value,
            });
            if self.separator('}', "an object member")? {
                return Ok(Kind::Object(members));
            }
        }
    }

    /// A string starting at the current `"`.
    fn string(&mut self) -> Result<String, SyntaxError> {
        let start = self.pos();
        self.bump(); // '"'
        let mut out = String::new();
        loop {
            let here = self.pos();
            match self.peek() {
                None => {
                    return Err(self.error_at(
                        start,
                        "unterminated string: expected '\"' before the end of the file",
                    ))
                }
                Some('\n' | '\r') => {
                    return Err(self.error_at(
                        start,
                        "unterminated string: expected '\"' before the end of the line",
                    ))
                }
                Some('"') => {
                    self.bump();
                    return Ok(out);
                }
                Some('\\') => {
                    self.bump();
                    out.push(self.escape(here)?);
                }
                Some(c) if c < ' ' => {
                    let code = c as u32;
                    return Err(self.error(format!(
                        "control character U+{code:04X} is not allowed in a string; \
                         write it as an escape"
                    )));
                }
                Some(c) => {
                    self.bump();
                    out.push(c);
                }
            }
        }
    }

    /// The character of an escape whose backslash (at `at`) was consumed.
    fn escape(&mut self, at: Pos) -> Result<char, SyntaxError> {
        let c = match self.bump() {
            Some('"') => '"',
            Some('\\') => '\\',
            Some('/') => '/',
            Some('b') => '\u{8}',
            Some('f') => '\u{c}',
            Some('n') => '\n',
            Some('r') => '\r',
            Some('t') => '\t',
            Some('u') => return self.unicode_escape(at),
            c => {
                return Err(self.error_at(
                    at,
                    format!(
                        "invalid escape: expected one of {ESCAPES} after '\\', found {}",
                        describe(c)
                    ),
                ))
            }
        };
        Ok(c)
    }

    /// Four hex digits after `\u`.
    fn hex4(&mut self, at: Pos) -> Result<u32, SyntaxError> {
        let mut v = 0;
        for _ in 0..4 {
            match self.peek().and_then(|c| c.to_digit(16)) {
                Some(d) => {
                    self.bump();
                    v = v * 16 + d;
                }
                None => {
                    return Err(self.error_at(
                        at,
                        format!(
                            "invalid \\u escape: expected 4 hex digits, found {}",
                            describe(self.peek())
                        ),
                    ))
                }
            }
        }
        Ok(v)
    }

    /// `\uXXXX` (the `\u` consumed), joining a UTF-16 surrogate pair.
    fn unicode_escape(&mut self, at: Pos) -> Result<char, SyntaxError> {
        let hi = self.hex4(at)?;
        let code = match hi {
            0xD800..=0xDBFF => {
                let low_at = self.pos();
                if self.peek() != Some('\\') || self.peek2() != Some('u') {
                    return Err(self.error_at(
                        at,
                        format!("lone surrogate \\u{hi:04X}: expected {LOW_SURROGATE} after it"),
                    ));
                }
                self.bump();
                self.bump();
                let lo = self.hex4(low_at)?;
                if !(0xDC00..=0xDFFF).contains(&lo) {
                    return Err(self.error_at(
                        at,
                        format!(
                            "lone surrogate \\u{hi:04X}: expected {LOW_SURROGATE} after it, \
                             found \\u{lo:04X}"
                        ),
                    ));
                }
                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
            }
            0xDC00..=0xDFFF => {
                return Err(self.error_at(
                    at,
                    format!("lone surrogate \\u{hi:04X}: a low surrogate must follow a high one"),
                ))
            }
            c => c,
        };
        Ok(char::from_u32(code).expect("surrogates handled above"))
    }

    /// A number per the JSON grammar, converted exactly when it is an integer.
    fn number(&mut self) -> Result<Number, SyntaxError> {
        let pos = self.pos();
        let start = self.i;
        if self.peek() == Some('-') {
            self.bump();
        }
        match self.peek() {
            Some('0') => {
                self.bump();
                if matches!(self.peek(), Some('0'..='9')) {
                    return Err(self.error_at(pos, "leading zeros are not allowed in JSON numbers"));
                }
            }
            Some('1'..='9') => self.digits(),
            c => {
                return Err(self.error(format!("expected a digit after '-', found {}", describe(c))))
            }
        }
        if self.peek() == Some('.') {
            self.bump();
            self.expect_digits("'.'")?;
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            self.bump();
            if matches!(self.peek(), Some('+' | '-')) {
                self.bump();
            }
            self.expect_digits("the exponent")?;
        }
        let text = &self.src[start..self.i];
        text.parse::<Number>()
            .map_err(|_| self.error_at(pos, format!("number {text} is out of range")))
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some('0'..='9')) {
            self.bump();
        }
    }

    fn expect_digits(&mut self, after: &str) -> Result<(), SyntaxError> {
        if !matches!(self.peek(), Some('0'..='9')) {
            return Err(self.error(format!(
                "expected a digit after {after}, found {}",
                describe(self.peek())
            )));
        }
        self.digits();
        Ok(())
    }
}

#[cfg(test)]
mod tests;
