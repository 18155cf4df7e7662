//! Subjects: `{prefix}.{channel}.{event}` and the escaping of names.
//!
//! A NATS subject is a list of tokens separated by `.`; a token must not be
//! empty and must not hold `.`, `*`, `>` (wildcards), white space or control
//! characters. netcluster names may hold any of these, so each name becomes
//! one token by this rule:
//!
//! - a *plain* name — non-empty, only printable ASCII (`!`..`~`) other than
//!   `.`, `*`, `>`, and not starting with `~` — is its own token;
//! - any other name becomes `~` followed by the name's UTF-8 bytes, each
//!   byte that is not printable ASCII or is one of `.` `*` `>` `%` written
//!   as `%XX` (two upper-case hex digits). The empty name is `~`.
//!
//! A plain token never starts with `~`, so decoding is unambiguous, and the
//! escaped form is canonical (decoding refuses a token that [`encode_token`]
//! would not have produced), so every name has exactly one token and back.
//! Examples: `sensors` → `sensors`; `a.b` → `~a%2Eb`; `temp room` →
//! `~temp%20room`; `~x` → `~~x`; `é` → `~%C3%A9`.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Marks an escaped token.
pub const ESCAPE: char = '~';

/// Why a subject or token could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubjectError {
    /// The subject does not start with `{prefix}.`.
    #[error("subject {0:?} is not under the configured prefix")]
    Prefix(String),
    /// The subject does not have exactly a channel and an event token after
    /// the prefix.
    #[error("subject {0:?} is not {{prefix}}.{{channel}}.{{event}}")]
    Shape(String),
    /// A token is not a valid encoded name.
    #[error("token {token:?} is not a validly escaped name: {why}")]
    Token {
        /// The token.
        token: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// Whether byte `b` may stand for itself inside a token.
fn literal(b: u8) -> bool {
    b.is_ascii_graphic() && !matches!(b, b'.' | b'*' | b'>')
}

/// Whether byte `b` may stand for itself inside an escaped token.
fn literal_escaped(b: u8) -> bool {
    literal(b) && b != b'%'
}

/// Whether `name` is its own token.
fn is_plain(name: &str) -> bool {
    !name.is_empty() && !name.starts_with(ESCAPE) && name.bytes().all(literal)
}

/// Whether `token` is a valid NATS subject token (non-empty, printable
/// ASCII without `.`, `*`, `>`). Every [`encode_token`] result is one.
pub fn is_valid_token(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(literal)
}

/// The token for `name` (see the module docs).
pub fn encode_token(name: &str) -> Cow<'_, str> {
    if is_plain(name) {
        return Cow::Borrowed(name);
    }
    let mut t = String::with_capacity(name.len() + 8);
    t.push(ESCAPE);
    for b in name.bytes() {
        if literal_escaped(b) {
            t.push(b as char);
        } else {
            let _ = write!(t, "%{b:02X}");
        }
    }
    Cow::Owned(t)
}

/// The name a token stands for; refuses anything [`encode_token`] would
/// not have produced.
pub fn decode_token(token: &str) -> Result<Cow<'_, str>, SubjectError> {
    let bad = |why| SubjectError::Token {
        token: token.to_string(),
        why,
    };
    let Some(body) = token.strip_prefix(ESCAPE) else {
        return if is_plain(token) {
            Ok(Cow::Borrowed(token))
        } else {
            Err(bad("not a valid NATS token"))
        };
    };
    let bytes = body.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(|| bad("cut-off %XX"))?;
            let v = hex_pair(hex).ok_or_else(|| bad("%XX needs two upper-case hex digits"))?;
            if literal_escaped(v) {
                return Err(bad("escapes a character that stands for itself"));
            }
            out.push(v);
            i += 3;
        } else if literal_escaped(b) {
            out.push(b);
            i += 1;
        } else {
            return Err(bad("holds a character that must be escaped"));
        }
    }
    let name = String::from_utf8(out).map_err(|_| bad("escapes bytes that are not UTF-8"))?;
    if is_plain(&name) {
        return Err(bad("escapes a name that needs no escaping"));
    }
    Ok(Cow::Owned(name))
}

fn hex_pair(h: &[u8]) -> Option<u8> {
    let d = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    Some(d(h[0])? << 4 | d(h[1])?)
}

/// Whether `prefix` can begin subjects: one or more valid tokens separated
/// by `.`, without wildcards.
pub fn is_valid_prefix(prefix: &str) -> bool {
    prefix.split('.').all(is_valid_token)
}

/// The subject of a message on `channel` with `event`.
pub fn subject(prefix: &str, channel: &str, event: &str) -> String {
    format!("{prefix}.{}.{}", encode_token(channel), encode_token(event))
}

/// The subject a bridge subscribes to for every event of `channel`.
pub fn channel_wildcard(prefix: &str, channel: &str) -> String {
    format!("{prefix}.{}.*", encode_token(channel))
}

/// Splits a subject into its channel and event tokens (not decoded).
pub fn split_subject<'a>(
    prefix: &str,
    subject: &'a str,
) -> Result<(&'a str, &'a str), SubjectError> {
    let rest = subject
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('.'))
        .ok_or_else(|| SubjectError::Prefix(subject.to_string()))?;
    // Exactly one `.` left, found byte-wise (a receiving daemon splits
    // every message's subject).
    let shape = || SubjectError::Shape(subject.to_string());
    let dot = rest.bytes().position(|b| b == b'.').ok_or_else(shape)?;
    let (c, e) = (&rest[..dot], &rest[dot + 1..]);
    if e.bytes().any(|b| b == b'.') {
        return Err(shape());
    }
    Ok((c, e))
}

/// Splits a subject into the channel and event names it stands for.
pub fn parse_subject<'a>(
    prefix: &str,
    subject: &'a str,
) -> Result<(Cow<'a, str>, Cow<'a, str>), SubjectError> {
    let (c, e) = split_subject(prefix, subject)?;
    Ok((decode_token(c)?, decode_token(e)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        assert_eq!(encode_token("sensors"), "sensors");
        assert_eq!(encode_token("a.b"), "~a%2Eb");
        assert_eq!(encode_token("temp room"), "~temp%20room");
        assert_eq!(encode_token("~x"), "~~x");
        assert_eq!(encode_token("x~"), "x~");
        assert_eq!(encode_token(""), "~");
        assert_eq!(encode_token("é"), "~%C3%A9");
        assert_eq!(encode_token("*"), "~%2A");
        assert_eq!(encode_token(">"), "~%3E");
        assert_eq!(encode_token("50%.x"), "~50%25%2Ex");
        assert_eq!(encode_token("50%"), "50%");
        assert_eq!(subject("netcluster", "A", "b.c"), "netcluster.A.~b%2Ec");
        assert_eq!(channel_wildcard("x.y", "a b"), "x.y.~a%20b.*");
    }

    #[test]
    fn refuses_non_canonical_tokens() {
        for t in [
            "", "~%41", "~a", "~%2e", "~%2", "~a b", "a.b", "*", "~%FF", "~%C3", "a\tb",
        ] {
            assert!(decode_token(t).is_err(), "{t:?} accepted");
        }
    }

    #[test]
    fn parses_subjects() {
        let (c, e) = parse_subject("nc.site", "nc.site.~a%2Eb.ev").unwrap();
        assert_eq!((&*c, &*e), ("a.b", "ev"));
        assert!(matches!(
            parse_subject("nc", "other.a.b"),
            Err(SubjectError::Prefix(_))
        ));
        assert!(matches!(
            parse_subject("nc", "ncx.a.b"),
            Err(SubjectError::Prefix(_))
        ));
        assert!(matches!(
            parse_subject("nc", "nc.a.b.c"),
            Err(SubjectError::Shape(_))
        ));
        assert!(matches!(
            parse_subject("nc", "nc.a"),
            Err(SubjectError::Shape(_))
        ));
    }

    #[test]
    fn prefixes() {
        assert!(is_valid_prefix("netcluster"));
        assert!(is_valid_prefix("site1.netcluster"));
        for p in ["", "a..b", "a.*", "a.>", "a b", ".a", "a."] {
            assert!(!is_valid_prefix(p), "{p:?}");
        }
    }

    proptest! {
        #[test]
        fn round_trip_any_name(name in any::<String>()) {
            let t = encode_token(&name);
            prop_assert!(is_valid_token(&t), "{:?} -> invalid token {:?}", name, t);
            prop_assert_eq!(decode_token(&t).unwrap(), name.as_str());
        }

        #[test]
        fn round_trip_tricky_names(name in "[a-z.*> ~%\t\u{e9}]{0,12}") {
            let t = encode_token(&name);
            prop_assert!(is_valid_token(&t));
            prop_assert_eq!(decode_token(&t).unwrap(), name.as_str());
            let s = subject("p.q", &name, &name);
            let (c, e) = parse_subject("p.q", &s).unwrap();
            prop_assert_eq!(&*c, name.as_str());
            prop_assert_eq!(&*e, name.as_str());
        }

        #[test]
        fn decoded_tokens_encode_back(token in "[~a-z%0-9A-F.]{0,10}") {
            if let Ok(name) = decode_token(&token) {
                prop_assert_eq!(encode_token(&name), token.as_str());
            }
        }
    }
}
