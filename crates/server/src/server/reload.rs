//! Applying a new config to a running daemon (`reloadconfig`, SIGHUP):
//! what may change while running and what needs a restart, binding added
//! channels before anything changes so that a refused reload leaves the
//! daemon as it was, then switching rules, links, sockets' modes and the
//! HTTP endpoint.

use std::rc::Rc;

use serde_json::{json, Value};

use super::{is_root, resolve_group, spawn_accept};
use crate::config::{resolve_socket_dir, Config, ConfigSource};
use crate::hub::Hub;
use netcluster_local::LocalListener;

/// Reloads the file the active config came from (the last file loaded),
/// as `reloadconfig()` without argument does; errors are logged here too,
/// since a signal has nobody else to tell.
pub(super) fn reload_file(hub: &Rc<Hub>) -> Result<Value, String> {
    let result = match &hub.config().source {
        ConfigSource::File(path) => Config::load(path)
            .map_err(|e| format!("reload refused, the old config stays: {e}"))
            .and_then(|new| apply_config(hub, new)),
        ConfigSource::BuiltIn | ConfigSource::Inline => Err(
            "nothing to reload: the active config was not loaded from a file (built-in default or sent in a control request)"
                .into(),
        ),
    };
    if let Err(e) = &result {
        tracing::error!("{e}");
    }
    result
}

/// Applies a new config to a running daemon: binds added channels first
/// (refusing the whole reload if one fails), then switches the rules,
/// closes removed channels and their clients. Clients of channels that
/// stay keep their connections and subscriptions.
pub(super) fn apply_config(hub: &Rc<Hub>, mut new: Config) -> Result<Value, String> {
    let refused = |why: String| format!("reload refused, the old config stays: {why}");
    // A file without `socketdir` keeps the directory in use (which may have
    // come from the environment or the first file) rather than moving it.
    if new.socketdir.is_none() {
        new.socketdir = Some(hub.socket_dir.clone());
    }
    let new_dir = resolve_socket_dir(
        new.socketdir.as_deref(),
        |k| std::env::var(k).ok(),
        is_root(),
    );
    if new_dir != hub.socket_dir {
        return Err(refused(format!(
            "socketdir cannot change while running ({} -> {}); restart ncserver",
            hub.socket_dir.display(),
            new_dir.display()
        )));
    }
    let old = hub.config();
    // A changed `nats` section reconnects the bridge (checked here, applied
    // below); adding or removing the section needs a restart.
    let nats = crate::nats::bridge(hub);
    if old.nats != new.nats {
        match (&nats, &new.nats) {
            (Some(bridge), Some(_)) => bridge.check_reload(&new).map_err(refused)?,
            _ => {
                return Err(refused(
                    "the nats section cannot be added or removed while running; restart ncserver"
                        .to_string(),
                ))
            }
        }
    }
    if let Some(key) = network_change(&old, &new) {
        return Err(refused(format!(
            "{key} cannot change while running; restart ncserver"
        )));
    }
    let group = new
        .socketgroup
        .as_ref()
        .map(resolve_group)
        .transpose()
        .map_err(|e| refused(e.to_string()))?;
    let mut opened = Vec::new();
    for ch in &new.channels {
        if old.channel(&ch.name).is_none() {
            let l = LocalListener::bind(&hub.socket_dir, &ch.name, new.socketmode, group)
                .map_err(|e| refused(e.to_string()))?;
            opened.push((ch.name.clone(), l));
        }
    }
    // Only a new address needs a new listener: `tail` and the token are
    // read by each request (and each open stream) from the active config.
    let listen = |c: &Config| c.http.as_ref().map(|h| h.listen);
    let http = if listen(&new) != listen(&old) {
        Some(rebind_http(hub, &new).map_err(refused)?)
    } else {
        None
    };
    let mode_changed = new.socketmode != old.socketmode;
    let mode = new.socketmode;
    let source = match &new.source {
        ConfigSource::File(p) => p.display().to_string(),
        ConfigSource::BuiltIn => "built-in default".into(),
        ConfigSource::Inline => "reload request".into(),
    };
    let change = hub.set_config(new);
    if let Some(net) = crate::net::driver(hub) {
        net.reload(&hub.config());
    }
    if let Some(nats) = nats {
        nats.reconfigure(&hub.config());
        nats.update_subscriptions(hub);
    }
    for (name, _) in &change.removed {
        let served = hub.listeners.borrow_mut().remove(name);
        if let Some(served) = served {
            served.close();
        }
    }
    let cfg = hub.config();
    hub.ops.keep_channels(|name| cfg.channel(name).is_some());
    if let Some(http) = http {
        *hub.ops.http.borrow_mut() = http;
    }
    for (name, l) in opened {
        spawn_accept(hub, &name, l);
    }
    if mode_changed {
        set_modes(hub, mode);
    }
    tracing::info!(
        source,
        added = ?change.added,
        removed = ?change.removed.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        changed = ?change.changed,
        "config reloaded"
    );
    Ok(json!({
        "reloaded": source,
        "added": change.added,
        "removed": change.removed.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        "changed": change.changed,
    }))
}

/// The HTTP endpoint for a reloaded config whose `http` differs from the
/// running one: the new one bound (`None` when `http` was removed). The
/// old listener is closed first when the two could clash on one port, and
/// bound again if the new address fails, so a refused reload leaves the
/// endpoint as it was.
fn rebind_http(hub: &Rc<Hub>, new: &Config) -> Result<Option<crate::stats::HttpHandle>, String> {
    let Some(want) = new.http.as_ref().map(|h| h.listen) else {
        return Ok(None);
    };
    let old = hub.ops.http.borrow().as_ref().map(|h| h.configured);
    let clash = old.is_some_and(|o| o.port() == want.port() && want.port() != 0);
    if clash {
        hub.ops.http.borrow_mut().take();
    }
    match crate::http::start(hub, want) {
        Ok(h) => Ok(Some(h)),
        Err(e) => {
            if let (true, Some(o)) = (clash, old) {
                match crate::http::start(hub, o) {
                    Ok(h) => *hub.ops.http.borrow_mut() = Some(h),
                    Err(e) => tracing::error!("HTTP endpoint {o} lost: {e}"),
                }
            }
            Err(format!("http.listen: cannot serve HTTP on {want}: {e}"))
        }
    }
}

/// The first network setting that differs, if any: these need a restart
/// (the network's state, node identity and socket are set up once).
fn network_change(old: &Config, new: &Config) -> Option<&'static str> {
    let checks: [(&'static str, bool); 10] = [
        ("connecttonet", old.connecttonet != new.connecttonet),
        ("addr", old.addr != new.addr),
        ("port", old.port != new.port),
        ("interface", old.interface != new.interface),
        ("ttl", old.ttl != new.ttl),
        ("loopback", old.loopback != new.loopback),
        ("nodename", old.nodename != new.nodename),
        ("peers", old.peers != new.peers),
        ("mtu", old.mtu != new.mtu),
        ("maxmessage", old.maxmessage != new.maxmessage),
    ];
    let connected = old.connecttonet || new.connecttonet;
    checks
        .into_iter()
        .find(|&(k, changed)| changed && (connected || k == "connecttonet"))
        .map(|(k, _)| k)
}

#[cfg(unix)]
fn set_modes(hub: &Hub, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    for name in hub.listeners.borrow().keys() {
        let path = netcluster_local::channel_path(&hub.socket_dir, name);
        if let Err(e) = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)) {
            tracing::warn!(path = %path.display(), "cannot change socket mode: {e}");
        }
    }
}

#[cfg(windows)]
fn set_modes(hub: &Hub, mode: u32) {
    for (name, served) in hub.listeners.borrow().iter() {
        if let Err(e) = served.listener.set_mode(mode) {
            tracing::warn!(channel = %name, "cannot change the pipe's security: {e}");
        }
    }
}

#[cfg(not(any(unix, windows)))]
fn set_modes(_hub: &Hub, _mode: u32) {}
