//! The `nats` key: the bridge to a NATS server (see docs/NATS.md).
//!
//! This module owns [`NatsConfig`] and the keys of the `nats` object
//! ([`NATS_KEYS`]): `servers` (required), `prefix`, `name`, one way to
//! authenticate (`user` with `password`, `token`, `credsfile` or
//! `nkeyfile`), `tls` (`ca`, `cert`, `key`), `buffer` (bytes kept while
//! disconnected) and `narrow` (subscribe by event). Paths are relative to the config file. Secrets
//! (`password`, `token`) are never shown: `showconfig` writes `"(set)"`.
//! A reload that changes the section makes the bridge reconnect with it;
//! adding or removing the section is refused with "restart ncserver"
//! (channel settings `propagatetonats`/`acceptfromnats` apply at once).

use std::path::{Path, PathBuf};

use netcluster_proto::nats::is_valid_prefix;
use serde_json::{Map, Value};

use super::jsonc::{Kind, Node};
use super::validate::{apply_object, Key, Problem};
use super::values;

/// Default `nats.prefix`: the first token of every subject.
pub const DEFAULT_NATS_PREFIX: &str = "netcluster";
/// Default `nats.buffer`: bytes of outgoing messages kept while the
/// connection is down; past it messages are dropped and counted.
pub const DEFAULT_NATS_BUFFER: usize = 8 * 1024 * 1024;
/// Largest accepted `nats.buffer`.
pub const MAX_NATS_BUFFER: u64 = 1024 * 1024 * 1024;
/// Longest accepted `nats.prefix`, in bytes.
pub const MAX_NATS_PREFIX: usize = 128;

/// How the bridge authenticates (at most one way). Its `Debug` form hides
/// the secrets, so a logged config never shows them.
#[derive(Clone, PartialEq, Eq)]
pub enum NatsAuth {
    /// `user` and `password`.
    UserPassword {
        /// The user.
        user: String,
        /// The password (never shown).
        password: String,
    },
    /// `token` (never shown).
    Token(String),
    /// `credsfile`: a JWT and NKey seed file, as resolved.
    CredsFile(PathBuf),
    /// `nkeyfile`: a file holding an NKey seed, as resolved.
    NkeyFile(PathBuf),
}

impl std::fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NatsAuth::UserPassword { user, .. } => write!(f, "UserPassword({user:?}, (set))"),
            NatsAuth::Token(_) => write!(f, "Token((set))"),
            NatsAuth::CredsFile(p) => write!(f, "CredsFile({p:?})"),
            NatsAuth::NkeyFile(p) => write!(f, "NkeyFile({p:?})"),
        }
    }
}

/// `nats.tls`: certificates for TLS to the servers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NatsTls {
    /// `ca`: root certificates (PEM) to trust for the servers.
    pub ca: Option<PathBuf>,
    /// `cert`: client certificate (PEM), with `key`.
    pub cert: Option<PathBuf>,
    /// `key`: the client certificate's private key (PEM).
    pub key: Option<PathBuf>,
}

/// `nats`: the NATS bridge. Absent = no bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsConfig {
    /// `servers`: URLs (`nats://host:4222`, `tls://host:4222`, or
    /// `host:port`); the client connects to any and fails over.
    pub servers: Vec<String>,
    /// `prefix`: first token(s) of every subject.
    pub prefix: String,
    /// `name`: the connection's name as servers show it; `None` = the
    /// node's name.
    pub name: Option<String>,
    /// The authentication, if any.
    pub auth: Option<NatsAuth>,
    /// `tls`, if given.
    pub tls: Option<NatsTls>,
    /// `buffer`: bytes kept while disconnected.
    pub buffer: usize,
    /// `narrow`: subscribe on NATS only to the events local clients
    /// listen to (default false: one `{prefix}.{channel}.*` per channel).
    pub narrow: bool,
}

#[derive(Default)]
struct Draft {
    servers: Option<Vec<String>>,
    prefix: Option<String>,
    name: Option<String>,
    user: Option<String>,
    password: Option<String>,
    token: Option<String>,
    credsfile: Option<PathBuf>,
    nkeyfile: Option<PathBuf>,
    tls: Option<NatsTls>,
    buffer: Option<usize>,
    narrow: Option<bool>,
    base: Option<PathBuf>,
}

impl Draft {
    /// Auth methods exclude each other (user/password count as one).
    fn one_auth(&self, v: &Node, k: &str, key: &str) -> Result<(), Problem> {
        let set = [
            ("user", self.user.is_some() || self.password.is_some()),
            ("token", self.token.is_some()),
            ("credsfile", self.credsfile.is_some()),
            ("nkeyfile", self.nkeyfile.is_some()),
        ];
        let pair = matches!(key, "user" | "password");
        match set.iter().find(|(n, on)| *on && !(pair && *n == "user")) {
            Some((other, _)) => Err(Problem::at(
                v,
                k,
                format!("give one way to authenticate: {key} cannot be combined with {other}"),
            )),
            None => Ok(()),
        }
    }
}

const NATS_KEYS: &[Key<Draft>] = &[
    Key {
        name: "servers",
        apply: |c, v, k| servers(v, k).map(|x| c.servers = Some(x)),
    },
    Key {
        name: "prefix",
        apply: |c, v, k| {
            let p = values::nonempty_string(v, k, "prefix")?;
            if p.len() > MAX_NATS_PREFIX || !is_valid_prefix(&p) {
                return Err(Problem::at(v, k, format!("prefix {p:?} must be NATS subject tokens separated by '.' (printable ASCII without spaces, '*' or '>'), at most {MAX_NATS_PREFIX} bytes")));
            }
            c.prefix = Some(p);
            Ok(())
        },
    },
    Key {
        name: "name",
        apply: |c, v, k| values::nonempty_string(v, k, "name").map(|x| c.name = Some(x)),
    },
    Key {
        name: "user",
        apply: |c, v, k| {
            c.one_auth(v, k, "user")?;
            c.user = Some(values::nonempty_string(v, k, "user")?);
            Ok(())
        },
    },
    Key {
        name: "password",
        apply: |c, v, k| {
            c.one_auth(v, k, "password")?;
            c.password = Some(values::nonempty_string(v, k, "password")?);
            Ok(())
        },
    },
    Key {
        name: "token",
        apply: |c, v, k| {
            c.one_auth(v, k, "token")?;
            c.token = Some(values::nonempty_string(v, k, "token")?);
            Ok(())
        },
    },
    Key {
        name: "credsfile",
        apply: |c, v, k| {
            c.one_auth(v, k, "credsfile")?;
            c.credsfile = Some(file(c.base.as_deref(), v, k, "credsfile")?);
            Ok(())
        },
    },
    Key {
        name: "nkeyfile",
        apply: |c, v, k| {
            c.one_auth(v, k, "nkeyfile")?;
            c.nkeyfile = Some(file(c.base.as_deref(), v, k, "nkeyfile")?);
            Ok(())
        },
    },
    Key {
        name: "tls",
        apply: |c, v, k| tls(c, v, k).map(|x| c.tls = Some(x)),
    },
    Key {
        name: "buffer",
        apply: |c, v, k| {
            values::size(v, k, "buffer", 0, MAX_NATS_BUFFER).map(|x| c.buffer = Some(x))
        },
    },
    Key {
        name: "narrow",
        apply: |c, v, k| values::boolean(v, k).map(|x| c.narrow = Some(x)),
    },
];

/// `servers`: a non-empty list of URLs.
fn servers(v: &Node, path: &str) -> Result<Vec<String>, Problem> {
    let Kind::Array(items) = &v.kind else {
        return Err(Problem::expected(
            v,
            path,
            "a list such as [\"nats://127.0.0.1:4222\"]",
        ));
    };
    if items.is_empty() {
        return Err(Problem::at(v, path, "servers needs at least one URL"));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let k = super::jsonc::join_index(path, i);
        let s = values::nonempty_string(item, &k, "a server")?;
        // Credentials in a URL would be shown by showconfig and logs.
        let authority = s.split_once("://").map_or(s.as_str(), |(_, r)| r);
        if authority.split('/').next().is_some_and(|a| a.contains('@')) {
            return Err(Problem::at(
                item,
                &k,
                "put credentials in user/password or token, not in the server URL (it is shown by showconfig)",
            ));
        }
        if let Err(e) = s.parse::<async_nats::ServerAddr>() {
            return Err(Problem::at(
                item,
                &k,
                format!("{s:?} is not a NATS server URL such as nats://host:4222: {e}"),
            ));
        }
        out.push(s);
    }
    Ok(out)
}

struct TlsDraft {
    tls: NatsTls,
    base: Option<PathBuf>,
}

const TLS_KEYS: &[Key<TlsDraft>] = &[
    Key {
        name: "ca",
        apply: |c, v, k| file(c.base.as_deref(), v, k, "ca").map(|x| c.tls.ca = Some(x)),
    },
    Key {
        name: "cert",
        apply: |c, v, k| file(c.base.as_deref(), v, k, "cert").map(|x| c.tls.cert = Some(x)),
    },
    Key {
        name: "key",
        apply: |c, v, k| file(c.base.as_deref(), v, k, "key").map(|x| c.tls.key = Some(x)),
    },
];

fn tls(c: &Draft, v: &Node, path: &str) -> Result<NatsTls, Problem> {
    if !matches!(v.kind, Kind::Object(_)) {
        return Err(Problem::expected(
            v,
            path,
            "an object such as {\"ca\": \"ca.pem\"}",
        ));
    }
    let mut d = TlsDraft {
        tls: NatsTls::default(),
        base: c.base.clone(),
    };
    apply_object(&mut d, v, path, TLS_KEYS)?;
    if d.tls.cert.is_some() != d.tls.key.is_some() {
        return Err(Problem::at(v, path, "cert and key go together"));
    }
    Ok(d.tls)
}

/// A file named by the config, relative to its folder, that must exist.
fn file(base: Option<&Path>, v: &Node, k: &str, what: &str) -> Result<PathBuf, Problem> {
    let name = values::nonempty_string(v, k, what)?;
    let p = match base {
        Some(b) if Path::new(&name).is_relative() => b.join(&name),
        _ => PathBuf::from(&name),
    };
    if !p.is_file() {
        return Err(Problem::at(
            v,
            k,
            format!("{what} {} is not a readable file", p.display()),
        ));
    }
    Ok(p)
}

/// Reads the `nats` object; `base` is the config file's folder.
pub(super) fn nats(v: &Node, path: &str, base: Option<&Path>) -> Result<NatsConfig, Problem> {
    if !matches!(v.kind, Kind::Object(_)) {
        return Err(Problem::expected(
            v,
            path,
            "an object such as {\"servers\": [\"nats://127.0.0.1:4222\"]}",
        ));
    }
    let mut d = Draft {
        base: base.map(Path::to_path_buf),
        ..Draft::default()
    };
    apply_object(&mut d, v, path, NATS_KEYS)?;
    let servers = d.servers.take().ok_or_else(|| {
        Problem::at(
            v,
            path,
            "missing \"servers\": give the NATS servers, e.g. {\"servers\": [\"nats://127.0.0.1:4222\"]}",
        )
    })?;
    let auth = match (d.user, d.password, d.token, d.credsfile, d.nkeyfile) {
        (Some(user), Some(password), ..) => Some(NatsAuth::UserPassword { user, password }),
        (Some(_), None, ..) | (None, Some(_), ..) => {
            return Err(Problem::at(v, path, "user and password go together"))
        }
        (None, None, Some(t), ..) => Some(NatsAuth::Token(t)),
        (None, None, None, Some(f), _) => Some(NatsAuth::CredsFile(f)),
        (None, None, None, None, Some(f)) => Some(NatsAuth::NkeyFile(f)),
        _ => None,
    };
    Ok(NatsConfig {
        servers,
        prefix: d.prefix.unwrap_or_else(|| DEFAULT_NATS_PREFIX.to_string()),
        name: d.name,
        auth,
        tls: d.tls,
        buffer: d.buffer.unwrap_or(DEFAULT_NATS_BUFFER),
        narrow: d.narrow.unwrap_or(false),
    })
}

fn show(p: &Path) -> Value {
    p.to_string_lossy().into_owned().into()
}

impl NatsConfig {
    /// The object as `showconfig` shows it: secrets as `"(set)"`.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("servers".into(), self.servers.clone().into());
        m.insert("prefix".into(), self.prefix.clone().into());
        if let Some(n) = &self.name {
            m.insert("name".into(), n.clone().into());
        }
        match &self.auth {
            Some(NatsAuth::UserPassword { user, .. }) => {
                m.insert("user".into(), user.clone().into());
                m.insert("password".into(), "(set)".into());
            }
            Some(NatsAuth::Token(_)) => {
                m.insert("token".into(), "(set)".into());
            }
            Some(NatsAuth::CredsFile(p)) => {
                m.insert("credsfile".into(), show(p));
            }
            Some(NatsAuth::NkeyFile(p)) => {
                m.insert("nkeyfile".into(), show(p));
            }
            None => {}
        }
        if let Some(t) = &self.tls {
            let mut o = Map::new();
            for (k, p) in [("ca", &t.ca), ("cert", &t.cert), ("key", &t.key)] {
                if let Some(p) = p {
                    o.insert(k.into(), show(p));
                }
            }
            m.insert("tls".into(), Value::Object(o));
        }
        m.insert("buffer".into(), self.buffer.into());
        m.insert("narrow".into(), self.narrow.into());
        Value::Object(m)
    }
}
