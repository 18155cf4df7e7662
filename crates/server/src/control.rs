//! The control agent: answers requests on the `control` channel.
//!
//! Requests are events named `nc-control-{command}` (the seed's names),
//! sent either as native Request frames (answered with a Response frame) or
//! emitted as ordinary events by any client of `control`, native or legacy
//! (answered with the event `nc-control-{command}-response`, delivered to
//! the caller only, so two callers never see each other's answers).
//! Commands: `showconfig`, `reloadconfig` (and the seed's `reloaconfig`),
//! `showchannel`, `showclient`, `showpeers`, `status`.
//!
//! Every caller may use the read-only commands. Those that change the
//! daemon ([`MUTATING`]) are checked first, on every path alike, against
//! the caller's kernel-reported credentials (`access::admin`): root, the
//! daemon's own user, `adminuids` and `admingids`. So nothing, not even
//! the file a reload names, is opened for anyone else.

use std::rc::Rc;

use netcluster_proto::frame::{self, DeliverHeader};
use netcluster_proto::legacy;
use serde_json::{json, Value};

use crate::config::{Config, ConfigSource};
use crate::conn::{Conn, Dialect};
use crate::hub::Hub;
use crate::timefmt::rfc3339;

/// Prefix of control request events.
pub const PREFIX: &str = "nc-control-";
/// The name of the channel the control agent serves.
pub const CONTROL_CHANNEL: &str = "control";

/// The commands the agent knows, for error messages and help.
pub const COMMANDS: &[&str] = &[
    "showconfig",
    "reloadconfig",
    "showchannel",
    "showclient",
    "showpeers",
    "status",
];

/// The commands that change the daemon, allowed to admins only (the seed's
/// misspelling included).
pub const MUTATING: &[&str] = &["reloadconfig", "reloaconfig"];

/// True if an event emitted by `conn` is a request for the agent (rather
/// than a message to route).
pub fn is_request(hub: &Hub, conn: &Conn, event: &str) -> bool {
    &*conn.channel == CONTROL_CHANNEL
        && event.starts_with(PREFIX)
        && !event.ends_with("-response")
        && hub.config().startcontrol
}

/// Runs one request and returns its JSON result or an error message.
pub fn request(hub: &Rc<Hub>, caller: &Conn, event: &str, arg: &[u8]) -> Result<Value, String> {
    if &*caller.channel != CONTROL_CHANNEL {
        return Err(format!(
            "control requests are answered on the {CONTROL_CHANNEL:?} channel only"
        ));
    }
    if !hub.config().startcontrol {
        return Err("the control agent is off (startcontrol is false in the config)".into());
    }
    let Some(command) = event.strip_prefix(PREFIX) else {
        return Err(format!(
            "control request names start with {PREFIX:?}, got {event:?}"
        ));
    };
    if MUTATING.contains(&command) {
        let cfg = hub.config();
        if let Err(why) =
            crate::access::admin(command, &caller.peer, &cfg.adminuids, &cfg.admingids)
        {
            tracing::warn!(
                client = caller.id,
                name = %caller.name,
                pid = ?caller.peer.pid,
                "control: {why}"
            );
            return Err(why);
        }
    }
    let arg: Value = if arg.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(arg)
            .map_err(|e| format!("argument of {command} is not valid JSON: {e}"))?
    };
    let result = match command {
        "showconfig" => Ok(hub.config().to_json()),
        "reloadconfig" | "reloaconfig" => reload(hub, &arg),
        "showchannel" => show_channel(hub, &arg),
        "showclient" => show_client(hub, &arg),
        "status" => Ok(status(hub)),
        "showpeers" => {
            let nats = crate::nats::bridge(hub).map(|n| n.status_json());
            match (crate::net::driver(hub), nats) {
                (Some(net), nats) => {
                    let mut v = net.peers_json();
                    if let (Some(o), Some(n)) = (v.as_object_mut(), nats) {
                        o.insert("nats".into(), n);
                    }
                    Ok(v)
                }
                (None, Some(n)) => Ok(json!({ "nats": n })),
                (None, None) => Err(
                    "this daemon is not connected to the network (connecttonet is false) nor to NATS (no nats section)".into(),
                ),
            }
        }
        other => Err(format!(
            "unknown control command {other:?}; known commands: {}",
            COMMANDS.join(", ")
        )),
    };
    tracing::debug!(
        command,
        caller = caller.id,
        ok = result.is_ok(),
        "control request"
    );
    result
}

/// Sends `body` to `conn` alone as the event `event` (the seed's way of
/// answering control requests).
pub fn reply_event(conn: &Conn, event: &str, body: &Value) {
    let body = body.to_string();
    let mut out = conn.out.borrow_mut();
    match conn.dialect {
        Dialect::Native => {
            let h = DeliverHeader {
                node: None,
                client: 0,
                seq: 0,
                channel: None,
            };
            frame::encode_deliver(out.tail(), &h, event, body.as_bytes());
        }
        Dialect::Legacy => legacy::encode(
            out.tail(),
            legacy::DAEMON_ORIGIN,
            &conn.channel,
            event,
            body.as_bytes(),
            true,
        ),
    }
}

fn reload(hub: &Rc<Hub>, arg: &Value) -> Result<Value, String> {
    let new = match arg {
        // A file read for a caller: its content never appears in errors.
        // That holds for the active config's file too, which an earlier
        // reloadconfig(path) may have named (and which may since have been
        // replaced by another file).
        Value::String(path) => {
            Config::load_private(std::path::Path::new(path)).map_err(|e| e.to_string())?
        }
        Value::Object(_) => Config::from_value(arg).map_err(|e| e.to_string())?,
        Value::Null => match &hub.config().source {
            ConfigSource::File(path) => Config::load_private(path).map_err(|e| e.to_string())?,
            _ => {
                return Err(
                    "the active config was not loaded from a file; give reloadconfig a path".into(),
                )
            }
        },
        _ => return Err("reloadconfig takes a path (string) or a config object".into()),
    };
    hub.apply_config(new)
}

fn unknown_channel(hub: &Hub, name: &str) -> String {
    format!(
        "no channel named {name:?}; channels are: {}",
        hub.router.borrow().channel_names().join(", ")
    )
}

pub(crate) fn show_channel(hub: &Hub, arg: &Value) -> Result<Value, String> {
    let clients = hub.clients();
    match arg {
        Value::Null => {
            let cfg = hub.config();
            let router = hub.router.borrow();
            let list: Vec<Value> = cfg
                .channels
                .iter()
                .map(|ch| {
                    let id = router.channel(&ch.name).expect("config channel is routed");
                    json!({
                        "channel": ch.name,
                        "clients": router.members(id).len(),
                        "propagatesto": router.targets(id).collect::<Vec<_>>(),
                        "socket": netcluster_local::channel_path(&hub.socket_dir, &ch.name),
                    })
                })
                .collect();
            Ok(Value::Array(list))
        }
        Value::String(name) => {
            if hub.router.borrow().channel(name).is_none() {
                return Err(unknown_channel(hub, name));
            }
            Ok(Value::Array(
                clients
                    .iter()
                    .filter(|c| &*c.channel == name)
                    .map(|c| hub.client_json(c))
                    .collect(),
            ))
        }
        _ => {
            Err("showchannel takes a channel name (string), or nothing to list all channels".into())
        }
    }
}

fn show_client(hub: &Hub, arg: &Value) -> Result<Value, String> {
    let (chan, id) = match arg {
        Value::Object(m) => (
            m.get("channel"),
            m.get("client")
                .or_else(|| m.get("id"))
                .or_else(|| m.get("uuid")),
        ),
        Value::Array(a) if a.len() == 2 => (a.first(), a.get(1)),
        _ => (None, None),
    };
    let usage = "showclient takes a channel and a client id: showclient(\"A\", 3) in ncclient; \
                 as a request argument [\"A\", 3] or {\"channel\": \"A\", \"client\": 3}";
    let chan = chan.and_then(Value::as_str).ok_or(usage)?;
    let id = match id {
        Some(Value::Number(n)) => n.as_u64(),
        // "3", or the origin form "{node}:3", whose node must be this one.
        Some(Value::String(s)) => match s.split_once(':') {
            Some((node, id)) if u64::from_str_radix(node, 16).ok() == Some(hub.node_id) => {
                id.parse().ok()
            }
            Some((node, _)) => {
                return Err(format!(
                    "client {s:?} is not on this node (this node is {:016x}; {node} is another)",
                    hub.node_id
                ))
            }
            None => s.parse().ok(),
        },
        _ => None,
    }
    .ok_or(usage)?;
    if hub.router.borrow().channel(chan).is_none() {
        return Err(unknown_channel(hub, chan));
    }
    hub.clients()
        .iter()
        .find(|c| &*c.channel == chan && c.id == id)
        .map(|c| hub.client_json(c))
        .or_else(|| hub.departed(chan, id))
        .ok_or_else(|| {
            format!("no client {id} on channel {chan:?} (showchannel({chan:?}) lists them)")
        })
}

pub(crate) fn status(hub: &Hub) -> Value {
    let cfg = hub.config();
    let source = match &cfg.source {
        ConfigSource::File(p) => p.display().to_string(),
        ConfigSource::BuiltIn => "built-in default".into(),
        ConfigSource::Inline => "reload request".into(),
    };
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "node": format!("{:016x}", hub.node_id),
        "started": rfc3339(hub.started),
        "config": source,
        "socketdir": hub.socket_dir,
        "channels": cfg.channels.len(),
        "clients": hub.clients().len(),
        // Held by unfinished frames of all clients (bounded by partialbytes).
        "partial_bytes": hub.partial.used(),
        "disconnects": {
            "total": hub.disconnect_counts().total,
            "slow_consumer": hub.disconnect_counts().slow_consumer,
            "protocol_error": hub.disconnect_counts().protocol_error,
            "channel_removed": hub.disconnect_counts().channel_removed,
        },
        "nats": crate::nats::bridge(hub).map(|n| n.status_json()),
    })
}
