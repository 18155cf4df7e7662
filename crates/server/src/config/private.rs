//! Errors about a file the daemon read on a client's behalf.
//!
//! `reloadconfig(path)` makes the daemon, which may run as root, read a
//! file the caller could not read itself (`/etc/shadow`). Its errors must
//! then say where and what kind of problem there is without repeating any
//! of the file's text: this module turns a [`Problem`] into such a one. The
//! position stays; the key path keeps only the schema's own key names (a
//! channel name becomes `<channel>`, any other name `<key>`); a message
//! that may quote the text (a value, a syntax error's token) becomes a
//! general one. Messages made only of the schema's words ("unknown key",
//! "expected a boolean, found a string") are kept.

use super::validate::{Problem, CHANNEL_KEYS, TOP_LEVEL_KEYS};

/// Appended to every such error, so that its reader knows where the whole
/// message is.
const NOTE: &str = "(the file's content is not repeated in errors of reloadconfig(path); \
                    `ncserver --check FILE`, run by someone who may read it, shows more)";

/// The problem with everything taken from the text removed.
pub(super) fn redact(p: Problem, syntax: bool) -> Problem {
    let general = if syntax {
        "not valid JSON (with // and /* */ comments)"
    } else {
        "invalid value for this key"
    };
    let message = if p.quotes_input { general } else { &p.message };
    Problem {
        key: p.key.as_deref().map(schema_path),
        message: format!("{message} {NOTE}"),
        quotes_input: false,
        ..p
    }
}

/// `channels.A.blockms` → `channels.<channel>.blockms`; `"x.y"` → `<key>`;
/// indices stay.
fn schema_path(path: &str) -> String {
    let mut out = String::new();
    for (depth, (name, indices)) in segments(path).into_iter().enumerate() {
        if depth > 0 {
            out.push('.');
        }
        let known = match depth {
            0 => TOP_LEVEL_KEYS.iter().any(|k| k.name == name),
            2 if out.starts_with("channels.") => CHANNEL_KEYS.iter().any(|k| k.name == name),
            _ => false,
        };
        if known {
            out.push_str(&name);
        } else if depth == 1 && out == "channels." {
            out.push_str("<channel>");
        } else {
            out.push_str("<key>");
        }
        out.push_str(&indices);
    }
    out
}

/// Splits a key path as `jsonc::join_key`/`join_index` build it: segments
/// separated by `.`, each a plain word or a JSON string, followed by any
/// number of `[n]`. Returns each segment's name (unquoted, or the quoted
/// text as is: it is never a schema key) and its index suffix.
fn segments(path: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = path.chars().peekable();
    loop {
        let mut name = String::new();
        if chars.peek() == Some(&'"') {
            // A JSON string: up to the unescaped closing quote.
            name.push(chars.next().expect("peeked"));
            let mut escaped = false;
            for c in chars.by_ref() {
                name.push(c);
                match c {
                    '\\' if !escaped => escaped = true,
                    '"' if !escaped => break,
                    _ => escaped = false,
                }
            }
        }
        while let Some(&c) = chars.peek() {
            if c == '.' || c == '[' {
                break;
            }
            name.push(c);
            chars.next();
        }
        let mut indices = String::new();
        while chars.peek() == Some(&'[') {
            for c in chars.by_ref() {
                indices.push(c);
                if c == ']' {
                    break;
                }
            }
        }
        out.push((name, indices));
        if chars.next().is_none() {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_paths_keep_only_schema_names() {
        assert_eq!(schema_path("port"), "port");
        assert_eq!(schema_path("peers[2]"), "peers[2]");
        assert_eq!(schema_path("SECRET"), "<key>");
        assert_eq!(
            schema_path("channels.SECRET.propagatetochannels[1]"),
            "channels.<channel>.propagatetochannels[1]"
        );
        assert_eq!(
            schema_path(r#"channels."a.b\".SECRET".allowuids[0]"#),
            "channels.<channel>.allowuids[0]"
        );
        assert_eq!(schema_path("channels.A.SECRET"), "channels.<channel>.<key>");
        assert_eq!(schema_path("port.SECRET"), "port.<key>");
        assert_eq!(schema_path(r#""SECRET.x""#), "<key>");
    }
}
