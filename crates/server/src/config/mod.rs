//! The daemon's configuration: what a config file may say and what it means.
//!
//! This module owns the [`Config`] type, its defaults (the `DEFAULT_*`
//! constants), loading it from a file or from a JSON object sent in a reload
//! request, rendering the effective config back as JSON for `showconfig`,
//! and the errors a bad config produces. The file is JSON with `//` and
//! `/* */` comments (the seed's README example loads as written); the syntax
//! lives in `jsonc`, the list of valid keys and the meaning of each value in
//! `validate` and `values`. Every error names the file, line, column and the
//! dotted key, and an unknown key comes with the nearest valid one.

mod defaults;
mod error;
mod http;
mod jsonc;
mod nats;
mod private;
mod validate;
mod values;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub use error::{ConfigError, Diagnostic};
pub use http::{HttpConfig, TokenSource, DEFAULT_HTTP_TAIL, MAX_TOKEN_BYTES};
pub use nats::{
    NatsAuth, NatsConfig, NatsTls, DEFAULT_NATS_BUFFER, DEFAULT_NATS_PREFIX, MAX_NATS_BUFFER,
    MAX_NATS_PREFIX,
};
use netcluster_proto::router::{ChannelRules, Propagation};
use regex::Regex;
use serde_json::{Map, Value};

pub use defaults::*;

/// Where a [`Config`] came from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// Read from this file (or parsed from text said to come from it).
    File(PathBuf),
    /// [`Config::builtin`].
    BuiltIn,
    /// Given as a JSON object by a control request.
    Inline,
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::File(p) => write!(f, "{}", p.display()),
            ConfigSource::BuiltIn => f.write_str("built-in default config"),
            ConfigSource::Inline => f.write_str("config from a reload request"),
        }
    }
}

/// The daemon's effective configuration. Field names are the config keys.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where this config came from.
    pub source: ConfigSource,
    /// `addr`: the multicast group.
    pub addr: IpAddr,
    /// `port`: the UDP port.
    pub port: u16,
    /// `dumpnet`: print what arrives from the network.
    pub dumpnet: bool,
    /// `connecttonet`: join the network at all.
    pub connecttonet: bool,
    /// `interface`: network interface (name or address) for multicast;
    /// `None` lets the system choose by its routes.
    pub interface: Option<String>,
    /// `ttl`: multicast time-to-live (hops).
    pub ttl: u32,
    /// `loopback`: deliver our multicast datagrams to this host too (for
    /// several daemons on one host).
    pub loopback: bool,
    /// `nodename`: name announced to peers; `None` = the host name.
    pub nodename: Option<String>,
    /// `peers`: `host:port` addresses also sent to by unicast (for networks
    /// without multicast).
    pub peers: Vec<String>,
    /// `mtu`: largest datagram, in bytes of UDP payload.
    pub mtu: usize,
    /// `key` or `keyfile`: the pre-shared key sealing every datagram;
    /// `None` = plain datagrams. Never shown by `showconfig`.
    pub key: Option<netcluster_proto::net::Key>,
    /// Where `key` came from (for `showconfig`, which shows this instead).
    pub keysource: Option<KeySource>,
    /// `retransmitbytes`: bytes of sent datagrams kept to answer NAKs.
    pub retransmitbytes: usize,
    /// `reassemblybytes`: receive memory of all peers together.
    pub reassemblybytes: usize,
    /// `retransmitrate`: bytes per second sent again per requesting peer
    /// (0 = no limit).
    pub retransmitrate: u64,
    /// `startcontrol`: answer control requests on the control channel.
    pub startcontrol: bool,
    /// `socketdir`: directory of the channel sockets, if configured; see
    /// [`resolve_socket_dir`] for the fallbacks.
    pub socketdir: Option<PathBuf>,
    /// `socketmode`: permission bits of the channel sockets (≤ 0o777).
    pub socketmode: u32,
    /// `socketgroup`: group owner of the channel sockets, if configured.
    pub socketgroup: Option<GroupSpec>,
    /// `maxmessage`: largest message in bytes.
    pub maxmessage: usize,
    /// `queuebytes`: bytes queued for one client before it counts as slow.
    pub queuebytes: usize,
    /// `shmbytes`: the largest shared-memory pool one client may register
    /// (Linux; 0 = shared-memory payloads off, everything uses the socket).
    pub shmbytes: usize,
    /// `partialbytes`, when set: the most bytes all clients' unfinished
    /// frames may hold together; [`Config::partial_budget`] is the value
    /// in force.
    pub partialbytes: Option<usize>,
    /// `frametimeoutms`: how long a started frame may take to complete.
    pub frametimeoutms: u64,
    /// `adminuids`: users who may call the control functions that change
    /// the daemon (`reloadconfig`), besides root and the daemon's own user.
    pub adminuids: Vec<u32>,
    /// `admingids`: groups (primary or supplementary) whose members may
    /// call them too.
    pub admingids: Vec<u32>,
    /// `channels`, in file order; the control channel is always present
    /// (first, when the file did not name it).
    pub channels: Vec<ChannelConfig>,
    /// `http`: the HTTP endpoint (metrics, health, status, dashboard);
    /// `None` = off.
    pub http: Option<HttpConfig>,
    /// `nats`: the bridge to NATS; `None` = off.
    pub nats: Option<NatsConfig>,
}

/// Where the network key was configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `key`: in the config itself.
    Inline,
    /// `keyfile`: read from this file (as resolved).
    File(PathBuf),
}

/// One channel's settings (`channels.{name}`).
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// The channel name (checked with `netcluster_proto::names::check_channel`).
    pub name: String,
    /// `propagatetochannels`: where this channel's messages are copied.
    pub propagatetochannels: PropagateSpec,
    /// `propagatetonet`: copy this channel's local messages to the network.
    pub propagatetonet: bool,
    /// `dumptoconsole`: print this channel's messages.
    pub dumptoconsole: bool,
    /// `acceptfromnet`: deliver this channel's messages that come from
    /// other nodes.
    pub acceptfromnet: bool,
    /// `propagatetonats`: publish this channel's local messages to NATS.
    pub propagatetonats: bool,
    /// `acceptfromnats`: subscribe to this channel on NATS and deliver
    /// what arrives.
    pub acceptfromnats: bool,
    /// `slowconsumer`: what happens when a client of this channel does not
    /// read fast enough and its queue reaches `queuebytes`.
    pub slowconsumer: SlowConsumer,
    /// `blockms`: under `block`, how long publishers wait for a full queue
    /// before its client is disconnected.
    pub blockms: u64,
    /// `allowuids`: user ids allowed to connect (empty with `allowgids`
    /// also empty: anyone the socket mode lets in). Root is always allowed.
    pub allowuids: Vec<u32>,
    /// `allowgids`: group ids (primary or supplementary) allowed to connect.
    pub allowgids: Vec<u32>,
}

/// A channel's policy for clients that cannot keep up (`slowconsumer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowConsumer {
    /// `"block"`: publishers wait (lossless); a queue that stays full for
    /// `blockms` gets its client disconnected.
    Block,
    /// `"drop"`: messages for the full client are dropped and counted; it
    /// gets one `nc-gap` event with the count when it catches up.
    Drop,
    /// `"disconnect"`: the client is disconnected as soon as its queue is full.
    Disconnect,
}

impl SlowConsumer {
    /// The name used in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            SlowConsumer::Block => "block",
            SlowConsumer::Drop => "drop",
            SlowConsumer::Disconnect => "disconnect",
        }
    }
}

/// `socketgroup`: the group given the channel sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupSpec {
    /// A group name, looked up when the sockets are created.
    Name(String),
    /// A numeric group id.
    Id(u32),
}

/// A compiled `propagatetochannels` value that remembers how it was written,
/// so that [`Config::to_json`] gives back the same form (a single pattern
/// written as a string stays a string, a one-element list stays a list).
#[derive(Debug, Clone)]
pub enum PropagateSpec {
    /// `false`: no other channel.
    None,
    /// `true`: every other channel.
    All,
    /// A single regex written as a string.
    Pattern(Regex),
    /// An array of regexes; a channel is selected when any matches.
    Patterns(Vec<Regex>),
}

impl PropagateSpec {
    /// The routing rule this value stands for.
    pub fn rule(&self) -> Propagation {
        match self {
            PropagateSpec::None => Propagation::None,
            PropagateSpec::All => Propagation::All,
            PropagateSpec::Pattern(r) => Propagation::Patterns(vec![r.clone()]),
            PropagateSpec::Patterns(rs) => Propagation::Patterns(rs.clone()),
        }
    }

    /// The value as written in a config file.
    pub fn to_json(&self) -> Value {
        match self {
            PropagateSpec::None => Value::Bool(false),
            PropagateSpec::All => Value::Bool(true),
            PropagateSpec::Pattern(r) => Value::from(r.as_str()),
            PropagateSpec::Patterns(rs) => rs.iter().map(|r| Value::from(r.as_str())).collect(),
        }
    }
}

impl ChannelConfig {
    /// A channel with every setting at its default (propagates nowhere).
    pub fn with_defaults(name: impl Into<String>) -> Self {
        ChannelConfig {
            name: name.into(),
            propagatetochannels: PropagateSpec::None,
            propagatetonet: DEFAULT_PROPAGATETONET,
            dumptoconsole: DEFAULT_DUMPTOCONSOLE,
            acceptfromnet: DEFAULT_ACCEPTFROMNET,
            propagatetonats: DEFAULT_PROPAGATETONATS,
            acceptfromnats: DEFAULT_ACCEPTFROMNATS,
            slowconsumer: DEFAULT_SLOWCONSUMER,
            blockms: DEFAULT_BLOCKMS,
            allowuids: Vec::new(),
            allowgids: Vec::new(),
        }
    }

    /// The channel's settings as a JSON object shaped like the file's.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert(
            "propagatetochannels".into(),
            self.propagatetochannels.to_json(),
        );
        m.insert("propagatetonet".into(), self.propagatetonet.into());
        m.insert("dumptoconsole".into(), self.dumptoconsole.into());
        m.insert("acceptfromnet".into(), self.acceptfromnet.into());
        m.insert("propagatetonats".into(), self.propagatetonats.into());
        m.insert("acceptfromnats".into(), self.acceptfromnats.into());
        m.insert("slowconsumer".into(), self.slowconsumer.as_str().into());
        m.insert("blockms".into(), self.blockms.into());
        m.insert("allowuids".into(), self.allowuids.clone().into());
        m.insert("allowgids".into(), self.allowgids.clone().into());
        Value::Object(m)
    }

    /// The routing rules of this channel (messages from the network are
    /// accepted until a key says otherwise).
    pub fn rules(&self) -> ChannelRules {
        ChannelRules {
            name: self.name.clone(),
            propagate: self.propagatetochannels.rule(),
            to_net: self.propagatetonet,
            from_net: self.acceptfromnet,
        }
    }
}

impl Config {
    /// Every setting at its default: only the control channel.
    fn defaults(source: ConfigSource) -> Config {
        Config {
            source,
            addr: DEFAULT_ADDR,
            port: DEFAULT_PORT,
            dumpnet: DEFAULT_DUMPNET,
            connecttonet: DEFAULT_CONNECTTONET,
            interface: None,
            ttl: DEFAULT_TTL,
            loopback: DEFAULT_LOOPBACK,
            nodename: None,
            peers: Vec::new(),
            mtu: DEFAULT_MTU,
            key: None,
            keysource: None,
            retransmitbytes: DEFAULT_RETRANSMITBYTES,
            reassemblybytes: DEFAULT_REASSEMBLYBYTES,
            retransmitrate: DEFAULT_RETRANSMITRATE,
            startcontrol: DEFAULT_STARTCONTROL,
            socketdir: None,
            socketmode: DEFAULT_SOCKETMODE,
            socketgroup: None,
            maxmessage: DEFAULT_MAXMESSAGE,
            queuebytes: DEFAULT_QUEUEBYTES,
            shmbytes: DEFAULT_SHMBYTES,
            partialbytes: None,
            frametimeoutms: DEFAULT_FRAMETIMEOUTMS,
            adminuids: Vec::new(),
            admingids: Vec::new(),
            http: None,
            nats: None,
            channels: vec![ChannelConfig::with_defaults(CONTROL_CHANNEL)],
        }
    }

    /// The config used when no file is found: channels `control`, `A` and
    /// `B`, where A's messages reach B and B's reach A (the seed's demo).
    pub fn builtin() -> Config {
        let pattern =
            |p: &str| PropagateSpec::Pattern(Regex::new(p).expect("valid built-in regex"));
        let mut a = ChannelConfig::with_defaults("A");
        a.propagatetochannels = pattern("^B$");
        let mut b = ChannelConfig::with_defaults("B");
        b.propagatetochannels = pattern("^A$");
        let mut config = Config::defaults(ConfigSource::BuiltIn);
        config.channels.extend([a, b]);
        config
    }

    /// Parses config text; `file` names it in diagnostics and becomes the
    /// [`ConfigSource::File`].
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        Self::parse_as(text, file, ConfigSource::File(file.into()))
    }

    fn parse_as(text: &str, file: &str, source: ConfigSource) -> Result<Config, ConfigError> {
        Self::parse_with(text, file, source, false)
    }

    /// Parses; with `private`, errors repeat nothing of `text` (see
    /// [`Config::load_private`]).
    fn parse_with(
        text: &str,
        file: &str,
        source: ConfigSource,
        private: bool,
    ) -> Result<Config, ConfigError> {
        let invalid = |p: validate::Problem, syntax: bool| {
            let p = if private {
                private::redact(p, syntax)
            } else {
                p
            };
            ConfigError::Invalid(Box::new(Diagnostic {
                file: file.to_string(),
                line: p.pos.line,
                column: p.pos.column,
                key: p.key,
                message: p.message,
                hint: p.hint,
            }))
        };
        let root = jsonc::parse(text).map_err(|e| {
            let p = validate::Problem {
                pos: e.pos,
                key: e.key,
                message: e.message,
                hint: None,
                quotes_input: true,
            };
            invalid(p, true)
        })?;
        let mut config = Config::defaults(source);
        validate::apply(&mut config, &root).map_err(|p| invalid(p, false))?;
        Ok(config)
    }

    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with(path, false)
    }

    /// Reads and parses a config file named by a client (`reloadconfig(path)`),
    /// which may be a file the client could not read itself: errors name the
    /// file, line, column and key (channel names and unknown keys replaced
    /// by a placeholder) and what is wrong in general terms, never text from
    /// the file. `ncserver --check FILE`, run by someone who may read the
    /// file, shows the whole error.
    pub fn load_private(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with(path, true)
    }

    fn load_with(path: &Path, private: bool) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Io {
            path: path.to_path_buf(),
            cause,
        })?;
        Self::parse_with(
            &text,
            &path.display().to_string(),
            ConfigSource::File(path.to_path_buf()),
            private,
        )
    }

    /// Builds a config from a JSON object sent over the control channel.
    /// Diagnostics refer to the object pretty-printed (the form
    /// `showconfig` shows), in a file named [`RELOAD_REQUEST_FILE`].
    pub fn from_value(v: &Value) -> Result<Config, ConfigError> {
        let text = serde_json::to_string_pretty(v).expect("a Value always serializes");
        Self::parse_as(&text, RELOAD_REQUEST_FILE, ConfigSource::Inline)
    }

    /// The effective config in the file's shape, every key present with its
    /// effective value (`socketdir` only when set). Objects are
    /// `serde_json::Map`s, so keys and channels come out sorted by name.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("addr".into(), self.addr.to_string().into());
        m.insert("port".into(), self.port.into());
        m.insert("dumpnet".into(), self.dumpnet.into());
        m.insert("connecttonet".into(), self.connecttonet.into());
        if let Some(i) = &self.interface {
            m.insert("interface".into(), i.clone().into());
        }
        m.insert("ttl".into(), self.ttl.into());
        m.insert("loopback".into(), self.loopback.into());
        if let Some(n) = &self.nodename {
            m.insert("nodename".into(), n.clone().into());
        }
        m.insert("peers".into(), self.peers.clone().into());
        m.insert("mtu".into(), self.mtu.into());
        // The key itself is never shown: only that one is set, or its file.
        match &self.keysource {
            Some(KeySource::Inline) => m.insert("key".into(), "(set)".into()),
            Some(KeySource::File(p)) => {
                m.insert("keyfile".into(), p.to_string_lossy().into_owned().into())
            }
            None => None,
        };
        m.insert("retransmitbytes".into(), self.retransmitbytes.into());
        m.insert("reassemblybytes".into(), self.reassemblybytes.into());
        m.insert("retransmitrate".into(), self.retransmitrate.into());
        m.insert("startcontrol".into(), self.startcontrol.into());
        if let Some(dir) = &self.socketdir {
            m.insert(
                "socketdir".into(),
                dir.to_string_lossy().into_owned().into(),
            );
        }
        m.insert(
            "socketmode".into(),
            values::format_mode(self.socketmode).into(),
        );
        match &self.socketgroup {
            Some(GroupSpec::Name(n)) => m.insert("socketgroup".into(), n.clone().into()),
            Some(GroupSpec::Id(g)) => m.insert("socketgroup".into(), (*g).into()),
            None => None,
        };
        m.insert("maxmessage".into(), self.maxmessage.into());
        m.insert("queuebytes".into(), self.queuebytes.into());
        m.insert("shmbytes".into(), self.shmbytes.into());
        m.insert("partialbytes".into(), self.partial_budget().into());
        m.insert("frametimeoutms".into(), self.frametimeoutms.into());
        m.insert("adminuids".into(), self.adminuids.clone().into());
        m.insert("admingids".into(), self.admingids.clone().into());
        let channels: Map<String, Value> = self
            .channels
            .iter()
            .map(|c| (c.name.clone(), c.to_json()))
            .collect();
        m.insert("channels".into(), Value::Object(channels));
        if let Some(http) = &self.http {
            m.insert("http".into(), http.to_json());
        }
        if let Some(nats) = &self.nats {
            m.insert("nats".into(), nats.to_json());
        }
        Value::Object(m)
    }

    /// The bytes all unfinished frames may hold together: `partialbytes`,
    /// or by default [`DEFAULT_PARTIALBYTES`] raised to one whole frame of
    /// `maxmessage`, so that a message of any allowed size can arrive.
    pub fn partial_budget(&self) -> usize {
        self.partialbytes
            .unwrap_or_else(|| DEFAULT_PARTIALBYTES.max(frame_bytes(self.maxmessage)))
    }

    /// `frametimeoutms` as a duration.
    pub fn frame_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.frametimeoutms)
    }

    /// The channel named `name`.
    pub fn channel(&self, name: &str) -> Option<&ChannelConfig> {
        self.channels.iter().find(|c| c.name == name)
    }

    /// Routing rules for every channel, in config order.
    pub fn channel_rules(&self) -> Vec<ChannelRules> {
        self.channels.iter().map(ChannelConfig::rules).collect()
    }
}

/// The most bytes one frame carrying a message of `maxmessage` bytes may
/// take on the local wire (header, event name and fields included).
pub fn frame_bytes(maxmessage: usize) -> usize {
    maxmessage + netcluster_proto::frame::FRAME_OVERHEAD + netcluster_proto::frame::HEADER_LEN
}

/// Resolves the socket directory: the configured one, else the rule the
/// clients use too ([`netcluster_proto::names::default_socket_dir`]):
/// env `NETCLUSTER_SOCKET_DIR` (if non-empty), else `/var/run` for root (the
/// seed's path), else `$XDG_RUNTIME_DIR` (if non-empty), else `/tmp`.
/// `env` reads an environment variable (pass `|k| std::env::var(k).ok()`);
/// `is_root` is whether the effective uid is 0.
pub fn resolve_socket_dir(
    configured: Option<&Path>,
    env: impl Fn(&str) -> Option<String>,
    is_root: bool,
) -> PathBuf {
    match configured {
        Some(dir) => dir.to_path_buf(),
        None => netcluster_proto::names::default_socket_dir(env, is_root),
    }
}
