//! The `http` key: the daemon's HTTP endpoint and its dashboard.
//!
//! This module owns [`HttpConfig`] and the keys of the `http` object
//! ([`HTTP_KEYS`]): `listen` (required), `tail` (the dashboard's live tail,
//! which shows payloads; off by default) and the bearer token, given inline
//! (`token`) or read from a file (`tokenfile`, relative to the config
//! file). Errors are located like every other key's.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::jsonc::{Kind, Node};
use super::validate::{apply_object, Key, Problem};
use super::values;

/// Default of `http.tail`: the live tail shows payloads, so it is off.
pub const DEFAULT_HTTP_TAIL: bool = false;
/// Longest accepted bearer token, in bytes.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// Where the bearer token was configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `token`: in the config itself.
    Inline,
    /// `tokenfile`: read from this file (as resolved).
    File(PathBuf),
}

/// `http`: the HTTP endpoint. Absent = no endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// `http.listen`: address and port (`127.0.0.1:9454`, `[::1]:9454`,
    /// `0.0.0.0:9454`; port 0 picks a free port, which the log shows).
    pub listen: SocketAddr,
    /// `tail`: allow the dashboard's live tail of a channel's messages.
    pub tail: bool,
    /// `token` or `tokenfile`: the bearer token every `/api/` request must
    /// carry; `None` = no token asked. Never shown by `showconfig`.
    pub token: Option<String>,
    /// Where the token came from (shown instead of the token).
    pub tokensource: Option<TokenSource>,
}

/// The `http` object while it is read (`listen` is required).
#[derive(Default)]
struct Draft {
    listen: Option<SocketAddr>,
    tail: Option<bool>,
    token: Option<String>,
    tokensource: Option<TokenSource>,
    /// The config file's folder, for a relative `tokenfile`.
    base: Option<PathBuf>,
}

/// The keys of the `http` object.
const HTTP_KEYS: &[Key<Draft>] = &[
    Key {
        name: "listen",
        apply: |c, v, k| values::listen(v, k).map(|x| c.listen = Some(x)),
    },
    Key {
        name: "tail",
        apply: |c, v, k| values::boolean(v, k).map(|x| c.tail = Some(x)),
    },
    Key {
        name: "token",
        apply: |c, v, k| {
            exclusive(c, v, k)?;
            let t = values::nonempty_string(v, k, "token")?;
            check_token(&t).map_err(|m| Problem::at(v, k, m))?;
            c.token = Some(t);
            c.tokensource = Some(TokenSource::Inline);
            Ok(())
        },
    },
    Key {
        name: "tokenfile",
        apply: |c, v, k| {
            exclusive(c, v, k)?;
            let name = values::nonempty_string(v, k, "tokenfile")?;
            let file = match &c.base {
                Some(b) if Path::new(&name).is_relative() => b.join(&name),
                _ => PathBuf::from(&name),
            };
            let text = std::fs::read_to_string(&file).map_err(|e| {
                Problem::at(
                    v,
                    k,
                    format!("cannot read tokenfile {}: {e}", file.display()),
                )
            })?;
            let t = text.trim().to_string();
            check_token(&t)
                .map_err(|m| Problem::at(v, k, format!("tokenfile {}: {m}", file.display())))?;
            c.token = Some(t);
            c.tokensource = Some(TokenSource::File(file));
            Ok(())
        },
    },
];

/// `token` and `tokenfile` exclude each other: the second one is the error.
fn exclusive(c: &Draft, v: &Node, path: &str) -> Result<(), Problem> {
    if c.tokensource.is_some() {
        return Err(Problem::at(
            v,
            path,
            "give either token or tokenfile, not both",
        ));
    }
    Ok(())
}

/// A token must fit in an `Authorization` header as one word.
fn check_token(t: &str) -> Result<(), String> {
    if t.is_empty() {
        return Err("the token is empty".into());
    }
    if t.len() > MAX_TOKEN_BYTES {
        return Err(format!("the token is longer than {MAX_TOKEN_BYTES} bytes"));
    }
    if !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the token must be printable ASCII without spaces".into());
    }
    Ok(())
}

/// Reads the `http` object; `base` is the config file's folder.
pub(super) fn http(v: &Node, path: &str, base: Option<&Path>) -> Result<HttpConfig, Problem> {
    let mut d = Draft {
        base: base.map(Path::to_path_buf),
        ..Draft::default()
    };
    if !matches!(v.kind, Kind::Object(_)) {
        return Err(Problem::expected(
            v,
            path,
            "an object such as {\"listen\": \"127.0.0.1:9454\"}",
        ));
    }
    apply_object(&mut d, v, path, HTTP_KEYS)?;
    let listen = d.listen.ok_or_else(|| {
        Problem::at(
            v,
            path,
            "missing \"listen\": give the address to serve on, e.g. {\"listen\": \"127.0.0.1:9454\"}",
        )
    })?;
    Ok(HttpConfig {
        listen,
        tail: d.tail.unwrap_or(DEFAULT_HTTP_TAIL),
        token: d.token,
        tokensource: d.tokensource,
    })
}

impl HttpConfig {
    /// The object as `showconfig` shows it: the token itself never.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("listen".into(), self.listen.to_string().into());
        m.insert("tail".into(), self.tail.into());
        match &self.tokensource {
            Some(TokenSource::Inline) => {
                m.insert("token".into(), "(set)".into());
            }
            Some(TokenSource::File(p)) => {
                m.insert("tokenfile".into(), p.to_string_lossy().into_owned().into());
            }
            None => {}
        }
        Value::Object(m)
    }
}
