//! The config schema: which keys each object may hold and what each does.
//!
//! This module owns the key tables [`TOP_LEVEL_KEYS`] and [`CHANNEL_KEYS`].
//! Each row names a key and says how its value is read into the [`Config`]
//! or [`ChannelConfig`]; the same table decides which keys are unknown and
//! which valid key to suggest instead, so adding a key is one row here (plus
//! the field, its default and its line in `to_json`). It walks the parsed
//! tree in document order and stops at the first problem. How single values
//! are read (sizes, modes, regexes, …) lives in `values`.

use netcluster_proto::names;
use netcluster_proto::net::{MAX_MTU, MIN_MTU};

use super::jsonc::{join_key, Kind, Member, Node, Pos};
use super::values::{self, edit_distance};
use super::{ChannelConfig, Config, CONTROL_CHANNEL};
use super::{MAX_BLOCKMS, MAX_MAXMESSAGE, MAX_QUEUEBYTES, MIN_MAXMESSAGE, MIN_QUEUEBYTES};
use super::{MAX_FRAMETIMEOUTMS, MAX_PARTIALBYTES, MIN_FRAMETIMEOUTMS, MIN_PARTIALBYTES};
use super::{MAX_REASSEMBLYBYTES, MAX_RETRANSMITBYTES, MAX_RETRANSMITRATE, MAX_SHMBYTES};
use std::path::Path;

/// A located problem, turned into a `Diagnostic` once the file name is added.
#[derive(Debug)]
pub(super) struct Problem {
    /// Where.
    pub pos: Pos,
    /// Dotted key path, if the problem concerns a key.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
    /// Suggested key, for unknown keys.
    pub hint: Option<String>,
    /// Whether `message` may repeat text from the config (a value, a
    /// name): such messages are not shown for a file read on a client's
    /// behalf (see `private`).
    pub quotes_input: bool,
}

impl Problem {
    /// A problem with a value at `node`, whose key path is `path`.
    pub fn at(node: &Node, path: &str, message: impl Into<String>) -> Problem {
        Problem {
            pos: node.pos,
            key: (!path.is_empty()).then(|| path.to_string()),
            message: message.into(),
            hint: None,
            quotes_input: true,
        }
    }

    /// A type error: `expected {what}, found {the node's type}`.
    pub fn expected(node: &Node, path: &str, what: &str) -> Problem {
        Problem {
            quotes_input: false,
            ..Problem::at(
                node,
                path,
                format!("expected {what}, found {}", node.kind.type_name()),
            )
        }
    }
}

/// Reads one key's value into `T`; gets the value and its key path.
type Apply<T> = fn(&mut T, &Node, &str) -> Result<(), Problem>;

/// One valid key of an object.
pub(super) struct Key<T: 'static> {
    /// The key as written in the file.
    pub name: &'static str,
    /// How its value is read.
    pub apply: Apply<T>,
}

/// The keys of the top-level object.
pub(super) const TOP_LEVEL_KEYS: &[Key<Config>] = &[
    Key {
        name: "addr",
        apply: |c, v, k| values::addr(v, k).map(|x| c.addr = x),
    },
    Key {
        name: "port",
        apply: |c, v, k| values::port(v, k).map(|x| c.port = x),
    },
    Key {
        name: "dumpnet",
        apply: |c, v, k| values::boolean(v, k).map(|x| c.dumpnet = x),
    },
    Key {
        name: "connecttonet",
        apply: |c, v, k| values::boolean(v, k).map(|x| c.connecttonet = x),
    },
    Key {
        name: "interface",
        apply: |c, v, k| values::nonempty_string(v, k, "interface").map(|x| c.interface = Some(x)),
    },
    Key {
        name: "ttl",
        apply: |c, v, k| values::integer(v, k, "ttl", 1, 255).map(|x| c.ttl = x as u32),
    },
    Key {
        name: "loopback",
        apply: |c, v, k| values::boolean(v, k).map(|x| c.loopback = x),
    },
    Key {
        name: "nodename",
        apply: |c, v, k| values::nonempty_string(v, k, "nodename").map(|x| c.nodename = Some(x)),
    },
    Key {
        name: "peers",
        apply: |c, v, k| values::peers(v, k).map(|x| c.peers = x),
    },
    Key {
        name: "mtu",
        apply: |c, v, k| {
            values::integer(v, k, "mtu", MIN_MTU as u64, MAX_MTU as u64).map(|x| c.mtu = x as usize)
        },
    },
    Key {
        name: "key",
        apply: |c, v, k| {
            exclusive_key(c, v, k)?;
            values::key(v, k).map(|x| {
                c.key = Some(x);
                c.keysource = Some(super::KeySource::Inline);
            })
        },
    },
    Key {
        name: "keyfile",
        apply: |c, v, k| {
            exclusive_key(c, v, k)?;
            let base = match &c.source {
                super::ConfigSource::File(p) => p.parent().map(Path::to_path_buf),
                _ => None,
            };
            values::keyfile(v, k, base.as_deref()).map(|(key, path)| {
                c.key = Some(key);
                c.keysource = Some(super::KeySource::File(path));
            })
        },
    },
    Key {
        name: "retransmitbytes",
        apply: |c, v, k| {
            values::size(v, k, "retransmitbytes", 0, MAX_RETRANSMITBYTES)
                .map(|x| c.retransmitbytes = x)
        },
    },
    Key {
        name: "reassemblybytes",
        apply: |c, v, k| {
            values::size(v, k, "reassemblybytes", 1 << 20, MAX_REASSEMBLYBYTES)
                .map(|x| c.reassemblybytes = x)
        },
    },
    Key {
        name: "retransmitrate",
        apply: |c, v, k| {
            values::size(v, k, "retransmitrate", 0, MAX_RETRANSMITRATE)
                .map(|x| c.retransmitrate = x as u64)
        },
    },
    Key {
        name: "startcontrol",
        apply: |c, v, k| values::boolean(v, k).map(|x| c.startcontrol = x),
    },
    Key {
        name: "socketdir",
        apply: |c, v, k| values::socketdir(v, k).map(|x| c.socketdir = Some(x)),
    },
    Key {
        name: "socketmode",
        apply: |c, v, k| values::socketmode(v, k).map(|x| c.socketmode = x),
    },
    Key {
        name: "socketgroup",
        apply: |c, v, k| values::group(v, k).map(|x| c.socketgroup = Some(x)),
    },
    Key {
        name: "maxmessage",
        apply: |c, v, k| {
            values::size(v, k, "maxmessage", MIN_MAXMESSAGE, MAX_MAXMESSAGE)
                .map(|x| c.maxmessage = x)
        },
    },
    Key {
        name: "queuebytes",
        apply: |c, v, k| {
            values::size(v, k, "queuebytes", MIN_QUEUEBYTES, MAX_QUEUEBYTES)
                .map(|x| c.queuebytes = x)
        },
    },
    Key {
        name: "shmbytes",
        apply: |c, v, k| values::size(v, k, "shmbytes", 0, MAX_SHMBYTES).map(|x| c.shmbytes = x),
    },
    Key {
        name: "partialbytes",
        apply: |c, v, k| {
            values::size(v, k, "partialbytes", MIN_PARTIALBYTES, MAX_PARTIALBYTES)
                .map(|x| c.partialbytes = Some(x))
        },
    },
    Key {
        name: "frametimeoutms",
        apply: |c, v, k| {
            values::integer(
                v,
                k,
                "frametimeoutms",
                MIN_FRAMETIMEOUTMS,
                MAX_FRAMETIMEOUTMS,
            )
            .map(|x| c.frametimeoutms = x)
        },
    },
    Key {
        name: "adminuids",
        apply: |c, v, k| values::id_list(v, k).map(|x| c.adminuids = x),
    },
    Key {
        name: "admingids",
        apply: |c, v, k| values::id_list(v, k).map(|x| c.admingids = x),
    },
    Key {
        name: "channels",
        apply: |c, v, k| channels(v, k).map(|x| c.channels = x),
    },
    Key {
        name: "http",
        apply: |c, v, k| {
            let base = match &c.source {
                super::ConfigSource::File(p) => p.parent().map(Path::to_path_buf),
                _ => None,
            };
            super::http::http(v, k, base.as_deref()).map(|x| c.http = Some(x))
        },
    },
    Key {
        name: "nats",
        apply: |c, v, k| {
            let base = match &c.source {
                super::ConfigSource::File(p) => p.parent().map(Path::to_path_buf),
                _ => None,
            };
            super::nats::nats(v, k, base.as_deref()).map(|x| c.nats = Some(x))
        },
    },
];

/// The keys of a channel object (`channels.{name}`).
pub(super) const CHANNEL_KEYS: &[Key<ChannelConfig>] = &[
    Key {
        name: "propagatetochannels",
        apply: |c, v, k| values::propagation(v, k).map(|x| c.propagatetochannels = x),
    },
    Key {
        name: "propagatetonet",
        apply: |c, v, k| values::boolean(v, k).map(|x| c.propagatetonet = x),
    },
    Key {
        name: "dumptoconsole",
        apply: |c, v, k| values::boolean(v, k).map(|x| c.dumptoconsole = x),
    },
    Key {
        name: "acceptfromnet",
        apply: |c, v, k| values::boolean(v, k).map(|x| c.acceptfromnet = x),
    },
    Key {
        name: "propagatetonats",
        apply: |c, v, k| values::boolean(v, k).map(|x| c.propagatetonats = x),
    },
    Key {
        name: "acceptfromnats",
        apply: |c, v, k| values::boolean(v, k).map(|x| c.acceptfromnats = x),
    },
    Key {
        name: "slowconsumer",
        apply: |c, v, k| values::slow_consumer(v, k).map(|x| c.slowconsumer = x),
    },
    Key {
        name: "blockms",
        apply: |c, v, k| values::integer(v, k, "blockms", 1, MAX_BLOCKMS).map(|x| c.blockms = x),
    },
    Key {
        name: "allowuids",
        apply: |c, v, k| values::id_list(v, k).map(|x| c.allowuids = x),
    },
    Key {
        name: "allowgids",
        apply: |c, v, k| values::id_list(v, k).map(|x| c.allowgids = x),
    },
];

/// `key` and `keyfile` exclude each other: the second one is the error.
fn exclusive_key(c: &Config, v: &Node, path: &str) -> Result<(), Problem> {
    if c.keysource.is_some() {
        return Err(Problem::at(v, path, "give either key or keyfile, not both"));
    }
    Ok(())
}

/// Reads the whole document into `config`, which holds the defaults.
pub(super) fn apply(config: &mut Config, root: &Node) -> Result<(), Problem> {
    apply_object(config, root, "", TOP_LEVEL_KEYS)?;
    check_partialbytes(config, root)
}

/// A `partialbytes` smaller than one frame of `maxmessage` would refuse
/// every message of that size, so it is an error, located at
/// `partialbytes`.
fn check_partialbytes(config: &Config, root: &Node) -> Result<(), Problem> {
    let Some(set) = config.partialbytes else {
        return Ok(());
    };
    let need = super::frame_bytes(config.maxmessage);
    if set >= need {
        return Ok(());
    }
    let node = object(root, "")?
        .iter()
        .rev()
        .find(|m| m.key == "partialbytes")
        .map(|m| &m.value)
        .expect("partialbytes was read from the document");
    Err(Problem {
        quotes_input: false,
        ..Problem::at(
            node,
            "partialbytes",
            format!(
                "partialbytes ({set} bytes) must hold at least one whole frame of maxmessage \
                 ({need} bytes = maxmessage {} + {} bytes of frame overhead), or no message \
                 of that size could arrive",
                config.maxmessage,
                need - config.maxmessage
            ),
        )
    })
}

/// The members of an object node, or a type error.
fn object<'a>(node: &'a Node, path: &str) -> Result<&'a [Member], Problem> {
    match &node.kind {
        Kind::Object(members) => Ok(members),
        _ => Err(Problem::expected(node, path, "an object")),
    }
}

/// Reads every member of the object `node` into `target` using `keys`.
pub(super) fn apply_object<T>(
    target: &mut T,
    node: &Node,
    path: &str,
    keys: &'static [Key<T>],
) -> Result<(), Problem> {
    for m in object(node, path)? {
        let key_path = join_key(path, &m.key);
        match keys.iter().find(|k| k.name == m.key) {
            Some(k) => (k.apply)(target, &m.value, &key_path)?,
            None => {
                return Err(Problem {
                    pos: m.key_pos,
                    key: Some(key_path),
                    message: "unknown key".into(),
                    hint: suggest(&m.key, keys.iter().map(|k| k.name)).map(str::to_string),
                    quotes_input: false,
                })
            }
        }
    }
    Ok(())
}

/// The `channels` object, in file order, with the control channel added
/// first when the file does not define it.
fn channels(node: &Node, path: &str) -> Result<Vec<ChannelConfig>, Problem> {
    let members = object(node, path)?;
    let mut out = Vec::with_capacity(members.len() + 1);
    for m in members {
        let key_path = join_key(path, &m.key);
        if let Err(e) = names::check_channel(&m.key) {
            return Err(Problem {
                pos: m.key_pos,
                key: Some(key_path),
                message: e.to_string(),
                hint: None,
                quotes_input: true,
            });
        }
        let mut channel = ChannelConfig::with_defaults(m.key.clone());
        apply_object(&mut channel, &m.value, &key_path, CHANNEL_KEYS)?;
        out.push(channel);
    }
    if !out.iter().any(|c| c.name == CONTROL_CHANNEL) {
        out.insert(0, ChannelConfig::with_defaults(CONTROL_CHANNEL));
    }
    Ok(out)
}

/// The candidate nearest to `key` by edit distance, if it is near enough:
/// at most max(2, a third of the key's length) edits. Ties go to the
/// candidate listed first.
pub(super) fn suggest<'a>(
    key: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (key.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (edit_distance(key, c), c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_tables_have_unique_lowercase_names() {
        let top: Vec<&str> = TOP_LEVEL_KEYS.iter().map(|k| k.name).collect();
        let chan: Vec<&str> = CHANNEL_KEYS.iter().map(|k| k.name).collect();
        for names in [&top, &chan] {
            for (i, n) in names.iter().enumerate() {
                assert_eq!(n.to_lowercase(), *n);
                assert!(!names[..i].contains(n), "{n} listed twice");
            }
        }
    }

    #[test]
    fn suggestions() {
        let top = || TOP_LEVEL_KEYS.iter().map(|k| k.name);
        assert_eq!(suggest("prot", top()), Some("port"));
        assert_eq!(suggest("Port", top()), Some("port"));
        assert_eq!(suggest("chanels", top()), Some("channels"));
        assert_eq!(suggest("socket_mode", top()), Some("socketmode"));
        assert_eq!(suggest("colour", top()), None);
        let chan = || CHANNEL_KEYS.iter().map(|k| k.name);
        assert_eq!(
            suggest("propagateToChannels", chan()),
            Some("propagatetochannels")
        );
        assert_eq!(
            suggest("propagatetonetwork", chan()),
            Some("propagatetonet")
        );
        assert_eq!(suggest("dump", chan()), None);
    }
}
