//! The REPL's input language: function calls in the seed's style.
//!
//! A line holds one or more calls separated by `;`, e.g.
//! `showchannel("A"); showclient('A', 3)`. A call is a name followed by an
//! optional parenthesised argument list (`status` and `status()` are the
//! same). Arguments are JSON values with a few JavaScript conveniences:
//! strings may also be single-quoted, and object keys may be bare words.
//! As in JSON (and as the seed's README warns), a backslash inside a string
//! starts an escape, so a literal `\` is written `\\`. This module only
//! parses; what a call does is decided in `control`. Errors carry the
//! 1-based column (in characters) where the problem is.

use std::fmt;

use serde_json::{Map, Number, Value};

/// How deeply arrays and objects may nest in an argument; deeper input is
/// refused rather than risking the stack.
const MAX_DEPTH: usize = 128;

/// One parsed call: `name(args…)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The function name.
    pub name: String,
    /// The arguments, in order.
    pub args: Vec<Value>,
}

/// Why a line could not be parsed, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based column, counted in characters.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "parse error at column {}: {}", self.column, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Parses a line into its calls. A blank line (or one holding only `;`)
/// gives no calls.
pub fn parse_line(input: &str) -> Result<Vec<Call>, ParseError> {
    let mut p = Parser { src: input, pos: 0 };
    let mut calls = Vec::new();
    loop {
        p.skip_ws();
        match p.peek() {
            None => return Ok(calls),
            Some(';') => p.bump(),
            Some(_) => {
                calls.push(p.call()?);
                p.skip_ws();
                match p.peek() {
                    None | Some(';') => {}
                    Some(c) => {
                        return Err(p.error(format!(
                            "unexpected {}; separate calls with ';'",
                            describe(c)
                        )))
                    }
                }
            }
        }
    }
}

/// A cursor over the input; positions are byte offsets into `src`.
struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == '$'
}

fn is_ident_char(c: char) -> bool {
    is_ident_start(c) || c.is_ascii_digit()
}

/// A character as shown in error messages.
fn describe(c: char) -> String {
    format!("{c:?}")
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn bump(&mut self) {
        if let Some(c) = self.peek() {
            self.pos += c.len_utf8();
        }
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        self.bump();
        c
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    /// 1-based column of byte offset `pos`.
    fn column_at(&self, pos: usize) -> usize {
        self.src[..pos].chars().count() + 1
    }

    fn error(&self, message: impl Into<String>) -> ParseError {
        self.error_at(self.pos, message)
    }

    fn error_at(&self, pos: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            column: self.column_at(pos),
            message: message.into(),
        }
    }

    /// An error for input that ended before `closer` matched the `opener`
    /// at byte offset `open`.
    fn unclosed(&self, opener: char, closer: char, open: usize) -> ParseError {
        self.error(format!(
            "missing '{closer}' to close the '{opener}' at column {}",
            self.column_at(open)
        ))
    }

    /// An error for the character at the cursor (or the end of input),
    /// when `what` was expected.
    fn expected(&self, what: &str) -> ParseError {
        match self.peek() {
            None => self.error(format!("expected {what}, found the end of the input")),
            Some(c) => self.error(format!("expected {what}, found {}", describe(c))),
        }
    }

    /// A word (JavaScript identifier); it borrows the input, not the
    /// parser, so errors can still be built while it is held.
    fn ident(&mut self) -> Option<&'a str> {
        let src = self.src;
        let start = self.pos;
        if !self.peek().is_some_and(is_ident_start) {
            return None;
        }
        while self.peek().is_some_and(is_ident_char) {
            self.bump();
        }
        Some(&src[start..self.pos])
    }

    fn call(&mut self) -> Result<Call, ParseError> {
        let name = self
            .ident()
            .ok_or_else(|| self.expected("a function name such as showchannel(\"A\")"))?
            .to_string();
        self.skip_ws();
        let mut args = Vec::new();
        if self.peek() != Some('(') {
            return Ok(Call { name, args });
        }
        let open = self.pos;
        self.bump();
        self.skip_ws();
        if self.peek() == Some(')') {
            self.bump();
            return Ok(Call { name, args });
        }
        loop {
            if self.peek().is_none() {
                return Err(self.unclosed('(', ')', open));
            }
            args.push(self.value(0)?);
            self.skip_ws();
            match self.peek() {
                Some(',') => {
                    self.bump();
                    self.skip_ws();
                }
                Some(')') => {
                    self.bump();
                    return Ok(Call { name, args });
                }
                None => return Err(self.unclosed('(', ')', open)),
                Some(c) => {
                    return Err(self.error(format!(
                        "expected ',' or ')' after an argument, found {}",
                        describe(c)
                    )))
                }
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, ParseError> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!("arguments nest deeper than {MAX_DEPTH} levels")));
        }
        match self.peek() {
            Some(q @ ('"' | '\'')) => self.string(q).map(Value::String),
            Some('[') => self.array(depth),
            Some('{') => self.object(depth),
            Some(c) if c == '-' || c.is_ascii_digit() => self.number(),
            Some(c) if is_ident_start(c) => {
                let start = self.pos;
                let word = self.ident().unwrap_or_default();
                match word {
                    "true" => Ok(Value::Bool(true)),
                    "false" => Ok(Value::Bool(false)),
                    "null" => Ok(Value::Null),
                    w => Err(self.error_at(
                        start,
                        format!("unknown word {w:?}; strings need quotes: \"{w}\""),
                    )),
                }
            }
            _ => Err(self.expected("a value (string, number, true, false, null, [..] or {..})")),
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, ParseError> {
        let open = self.pos;
        self.bump();
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(']') {
            self.bump();
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            match self.peek() {
                Some(',') => {
                    self.bump();
                    self.skip_ws();
                }
                Some(']') => {
                    self.bump();
                    return Ok(Value::Array(items));
                }
                None => return Err(self.unclosed('[', ']', open)),
                Some(_) => return Err(self.expected("',' or ']' in an array")),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, ParseError> {
        let open = self.pos;
        self.bump();
        let mut map = Map::new();
        self.skip_ws();
        if self.peek() == Some('}') {
            self.bump();
            return Ok(Value::Object(map));
        }
        loop {
            let key = match self.peek() {
                Some(q @ ('"' | '\'')) => self.string(q)?,
                Some(c) if is_ident_start(c) => self.ident().unwrap_or_default().to_string(),
                _ => return Err(self.expected("an object key (a string or a word)")),
            };
            self.skip_ws();
            if self.peek() != Some(':') {
                return Err(self.expected("':' after an object key"));
            }
            self.bump();
            self.skip_ws();
            let v = self.value(depth + 1)?;
            map.insert(key, v);
            self.skip_ws();
            match self.peek() {
                Some(',') => {
                    self.bump();
                    self.skip_ws();
                }
                Some('}') => {
                    self.bump();
                    return Ok(Value::Object(map));
                }
                None => return Err(self.unclosed('{', '}', open)),
                Some(_) => return Err(self.expected("',' or '}' in an object")),
            }
        }
    }

    /// A number in JSON's grammar, converted by serde_json so integers stay
    /// exact.
    fn number(&mut self) -> Result<Value, ParseError> {
        let start = self.pos;
        let digits = |p: &mut Self| -> usize {
            let mut n = 0;
            while p.peek().is_some_and(|c| c.is_ascii_digit()) {
                p.bump();
                n += 1;
            }
            n
        };
        if self.peek() == Some('-') {
            self.bump();
        }
        let int_start = self.pos;
        match digits(self) {
            0 => return Err(self.expected("a digit")),
            n if n > 1 && self.src[int_start..].starts_with('0') => {
                return Err(self.error_at(int_start, "numbers cannot start with 0"))
            }
            _ => {}
        }
        if self.peek() == Some('.') {
            self.bump();
            if digits(self) == 0 {
                return Err(self.expected("a digit after '.'"));
            }
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            self.bump();
            if matches!(self.peek(), Some('+' | '-')) {
                self.bump();
            }
            if digits(self) == 0 {
                return Err(self.expected("a digit in the exponent"));
            }
        }
        let text = &self.src[start..self.pos];
        text.parse::<Number>()
            .map(Value::Number)
            .map_err(|e| self.error_at(start, format!("bad number {text}: {e}")))
    }

    /// A string quoted with `quote` (`"` or `'`), with JSON's escapes plus
    /// `\'`.
    fn string(&mut self, quote: char) -> Result<String, ParseError> {
        let open = self.pos;
        self.bump();
        let mut out = String::new();
        loop {
            let at = self.pos;
            match self.next() {
                None => {
                    return Err(self.error_at(
                        open,
                        format!("unterminated string: no closing {quote} for this one"),
                    ))
                }
                Some(c) if c == quote => return Ok(out),
                Some('\\') => out.push(self.escape(at)?),
                Some(c) => out.push(c),
            }
        }
    }

    /// The character of an escape whose backslash is at `at`.
    fn escape(&mut self, at: usize) -> Result<char, ParseError> {
        let c = match self.next() {
            Some('"') => '"',
            Some('\'') => '\'',
            Some('\\') => '\\',
            Some('/') => '/',
            Some('b') => '\u{8}',
            Some('f') => '\u{c}',
            Some('n') => '\n',
            Some('r') => '\r',
            Some('t') => '\t',
            Some('u') => return self.unicode_escape(at),
            Some(c) => {
                return Err(self.error_at(
                    at,
                    format!(
                        "unknown escape \\{c}; a backslash starts an escape, \
                         write \\\\ for a literal backslash"
                    ),
                ))
            }
            None => return Err(self.error_at(at, "a string cannot end with a lone backslash")),
        };
        Ok(c)
    }

    fn hex4(&mut self, at: usize) -> Result<u32, ParseError> {
        let start = self.pos;
        let end = self.src[start..]
            .char_indices()
            .nth(4)
            .map_or(self.src.len(), |(i, _)| start + i);
        let text = &self.src[start..end];
        match u32::from_str_radix(text, 16) {
            Ok(v) if text.len() == 4 && text.bytes().all(|b| b.is_ascii_hexdigit()) => {
                self.pos = end;
                Ok(v)
            }
            _ => Err(self.error_at(at, "\\u needs exactly four hex digits, as in \\u00e9")),
        }
    }

    /// `\uXXXX`, including a UTF-16 surrogate pair `\uD83D\uDE00`.
    fn unicode_escape(&mut self, at: usize) -> Result<char, ParseError> {
        let hi = self.hex4(at)?;
        if !(0xD800..0xDC00).contains(&hi) {
            return char::from_u32(hi)
                .ok_or_else(|| self.error_at(at, "a lone low surrogate is not a character"));
        }
        let lo_at = self.pos;
        if !self.src[lo_at..].starts_with("\\u") {
            return Err(self.error_at(at, "a high surrogate must be followed by \\uDC00..\\uDFFF"));
        }
        self.pos += 2;
        let lo = self.hex4(lo_at)?;
        if !(0xDC00..0xE000).contains(&lo) {
            return Err(self.error_at(lo_at, "expected a low surrogate \\uDC00..\\uDFFF"));
        }
        char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
            .ok_or_else(|| self.error_at(at, "invalid surrogate pair"))
    }
}

#[cfg(test)]
mod tests;
