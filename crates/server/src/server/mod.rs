//! The embeddable server: starts a daemon on its own thread and stops it.
//!
//! [`Server::start`] binds every channel's socket before it returns, so a
//! caller (the `ncserver` binary, a test, an application embedding the
//! daemon) knows at once whether the daemon is serving. The daemon runs on
//! one dedicated thread with a single-threaded tokio runtime: all state is
//! owned by that thread and the message path takes no lock. This module
//! also owns the channel listeners' lifecycle, including config reloads.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use netcluster_proto::frame::ErrorCode;
use serde_json::Value;
use tokio::sync::{mpsc, Notify};

use crate::config::GroupSpec;
use crate::config::{resolve_socket_dir, Config};
use crate::entropy::random_u64;
use crate::hub::{Hub, Served};
use crate::net::{NetDriver, NetError};
use crate::session;
use netcluster_local::{BindError, LocalListener};

/// How long a stopping daemon waits for clients' queues to drain.
mod reload;
use reload::{apply_config, reload_file};

const STOP_FLUSH: Duration = Duration::from_secs(2);

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A channel socket could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The network could not be joined.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The HTTP endpoint (`http.listen`) could not be bound.
    #[error("cannot serve HTTP on {addr} (http.listen): {source}")]
    Http {
        /// The configured address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The NATS bridge's settings could not be used (e.g. an unreadable
    /// credentials file).
    #[error("cannot start the NATS bridge: {0}")]
    Nats(String),
    /// The runtime or thread could not be created.
    #[error("cannot start the daemon thread: {0}")]
    Runtime(std::io::Error),
}

/// Starts daemons. See the module docs.
#[derive(Debug)]
pub struct Server;

impl Server {
    /// Starts a daemon serving `config` and returns once every channel
    /// socket is bound (or with the first error).
    pub fn start(config: Config) -> Result<ServerHandle, StartError> {
        let socket_dir = resolve_socket_dir(
            config.socketdir.as_deref(),
            |k| std::env::var(k).ok(),
            is_root(),
        );
        let node_id = random_u64();
        let stop = Arc::new(Notify::new());
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let (stop, socket_dir) = (stop.clone(), socket_dir.clone());
            let daemon = Daemon {
                socket_dir,
                node_id,
                stop,
                commands: command_rx,
            };
            std::thread::Builder::new()
                .name("ncserver".into())
                .spawn(move || run(config, daemon, ready_tx))
                .map_err(StartError::Runtime)?
        };
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(ServerHandle {
                stop,
                commands,
                thread: Some(thread),
                socket_dir,
                node_id,
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(StartError::Runtime(std::io::Error::other(
                    "daemon thread ended during startup",
                )))
            }
        }
    }
}

impl Server {
    /// Runs every check [`Server::start`] makes before serving, without
    /// binding or joining anything: the socket directory's rule, the
    /// `socketgroup`, each channel's socket path, and with `connecttonet`
    /// the interface, peers, network settings and that the multicast group
    /// can be joined. `ncserver --check` is this after loading the file.
    pub fn check(config: &Config) -> Result<(), StartError> {
        let socket_dir = resolve_socket_dir(
            config.socketdir.as_deref(),
            |k| std::env::var(k).ok(),
            is_root(),
        );
        if let Some(g) = &config.socketgroup {
            resolve_group(g)?;
        }
        for ch in &config.channels {
            LocalListener::check(&socket_dir, &ch.name)?;
        }
        if config.connecttonet {
            crate::net::check(config)?;
        }
        Ok(())
    }
}

/// A running daemon. Dropping the handle stops the daemon and waits for it.
#[derive(Debug)]
pub struct ServerHandle {
    stop: Arc<Notify>,
    commands: mpsc::UnboundedSender<Command>,
    thread: Option<std::thread::JoinHandle<()>>,
    socket_dir: PathBuf,
    node_id: u64,
}

impl ServerHandle {
    /// The directory holding the channel sockets.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// This run's node id.
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// Reloads the config file the active config was loaded from, as the
    /// control request `reloadconfig()` does (the ncserver binary does this
    /// on SIGHUP). Blocks until the daemon thread has applied it; must not
    /// be called from inside an async runtime. A bad file changes nothing:
    /// the error says why and the old config stays.
    pub fn reload(&self) -> Result<Value, String> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.commands
            .send(Command::Reload(tx))
            .map_err(|_| "the daemon is not running".to_string())?;
        rx.recv()
            .map_err(|_| "the daemon stopped during the reload".to_string())?
    }

    /// True if the daemon thread answers within `timeout`: its event loop
    /// is turning (for a service manager's watchdog).
    pub fn ping(&self, timeout: Duration) -> bool {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.commands.send(Command::Ping(tx)).is_ok() && rx.recv_timeout(timeout).is_ok()
    }

    /// Stops gracefully: closes the listeners (removing the socket files),
    /// flushes clients' queues for a bounded time, and waits for the thread.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Requests from a [`ServerHandle`] to its daemon thread.
#[derive(Debug)]
enum Command {
    /// Reload the active config's file; the result goes back.
    Reload(std::sync::mpsc::SyncSender<Result<Value, String>>),
    /// Answer at once (liveness).
    Ping(std::sync::mpsc::SyncSender<()>),
}

/// What the daemon thread gets from [`Server::start`].
struct Daemon {
    socket_dir: PathBuf,
    node_id: u64,
    stop: Arc<Notify>,
    commands: mpsc::UnboundedReceiver<Command>,
}

fn run(config: Config, daemon: Daemon, ready: std::sync::mpsc::Sender<Result<(), StartError>>) {
    let Daemon {
        socket_dir,
        node_id,
        stop,
        mut commands,
    } = daemon;
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(StartError::Runtime(e)));
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let names: Vec<String> = config.channels.iter().map(|c| c.name.clone()).collect();
        let hub = Hub::new(node_id, socket_dir, config);
        hub.set_reloader(apply_config);
        // HTTP first: /healthz says "starting" until every channel is bound,
        // and a busy address fails the start before any socket exists.
        if let Some(h) = hub.config().http.clone() {
            match crate::http::start(&hub, h.listen) {
                Ok(handle) => *hub.ops.http.borrow_mut() = Some(handle),
                Err(source) => {
                    let _ = ready.send(Err(StartError::Http {
                        addr: h.listen,
                        source,
                    }));
                    return;
                }
            }
        }
        let group = match hub
            .config()
            .socketgroup
            .as_ref()
            .map(resolve_group)
            .transpose()
        {
            Ok(g) => g,
            Err(e) => {
                let _ = ready.send(Err(e.into()));
                return;
            }
        };
        for name in &names {
            match LocalListener::bind(&hub.socket_dir, name, hub.config().socketmode, group) {
                Ok(l) => spawn_accept(&hub, name, l),
                Err(e) => {
                    // Dropping the hub's listeners removes what was bound.
                    abort_all(&hub);
                    tokio::task::yield_now().await;
                    let _ = ready.send(Err(e.into()));
                    return;
                }
            }
        }
        if hub.config().connecttonet {
            match NetDriver::open(&hub.config(), node_id) {
                Ok(net) => {
                    hub.add_link(net.clone());
                    tokio::task::spawn_local(net.run(hub.clone()));
                }
                Err(e) => {
                    abort_all(&hub);
                    tokio::task::yield_now().await;
                    let _ = ready.send(Err(e.into()));
                    return;
                }
            }
        }
        if hub.config().nats.is_some() {
            let cfg = hub.config();
            let nodename = cfg.nodename.clone().unwrap_or_else(crate::iface::hostname);
            let bridge = crate::nats::NatsBridge::new(&cfg, node_id, &nodename);
            if let Err(e) = bridge.options() {
                abort_all(&hub);
                tokio::task::yield_now().await;
                let _ = ready.send(Err(StartError::Nats(e)));
                return;
            }
            // Messages from nodes heard by multicast come that way.
            let net = crate::net::driver(&hub);
            bridge.set_lan_check(move |node| net.as_ref().is_some_and(|n| n.hears(node)));
            hub.add_link(bridge.clone());
            tokio::task::spawn_local(bridge.run(hub.clone()));
        }
        hub.ops.health.set(crate::stats::Health::Serving);
        tracing::info!(
            node = format!("{node_id:016x}"),
            socketdir = %hub.socket_dir.display(),
            channels = %names.join(", "),
            "ncserver serving"
        );
        let _ = ready.send(Ok(()));
        loop {
            tokio::select! {
                _ = stop.notified() => break,
                cmd = commands.recv() => match cmd {
                    Some(Command::Reload(reply)) => {
                        let _ = reply.send(reload_file(&hub));
                    }
                    Some(Command::Ping(reply)) => {
                        let _ = reply.send(());
                    }
                    // Every handle is gone without stopping: cannot happen,
                    // as dropping the handle stops first; serve on.
                    None => {
                        stop.notified().await;
                        break;
                    }
                },
            }
        }
        shutdown(&hub).await;
    });
}

fn spawn_accept(hub: &Rc<Hub>, name: &str, listener: LocalListener) {
    let channel: Rc<str> = name.into();
    let h = hub.clone();
    let listener = Rc::new(listener);
    let held = listener.clone();
    let task = tokio::task::spawn_local(async move {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    tokio::task::spawn_local(session::serve(
                        h.clone(),
                        stream,
                        peer,
                        channel.clone(),
                    ));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off, don't spin.
                    tracing::warn!(channel = %channel, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
    let served = Served {
        task: task.abort_handle(),
        listener: held,
    };
    if let Some(old) = hub.listeners.borrow_mut().insert(name.to_string(), served) {
        old.close();
    }
}

fn abort_all(hub: &Hub) {
    for (_, served) in std::mem::take(&mut *hub.listeners.borrow_mut()) {
        served.close();
    }
}

async fn shutdown(hub: &Rc<Hub>) {
    tracing::info!("stopping: closing listeners and flushing clients");
    hub.ops.health.set(crate::stats::Health::Stopping);
    abort_all(hub);
    for link in hub.take_links() {
        // Send what local clients emitted last, then stop the driver.
        link.flush();
        let any = link.as_any();
        if let Ok(net) = any.clone().downcast::<NetDriver>() {
            net.shutdown();
        }
        if let Ok(nats) = any.downcast::<crate::nats::NatsBridge>() {
            nats.drain(crate::nats::STOP_DRAIN).await;
            nats.shutdown();
        }
    }
    let clients = hub.clients();
    for c in &clients {
        hub.close(
            c,
            Some((ErrorCode::Shutdown, "the server is stopping")),
            "server stopping",
        );
    }
    let deadline = tokio::time::Instant::now() + STOP_FLUSH;
    while tokio::time::Instant::now() < deadline
        && clients.iter().any(|c| !c.out.borrow().is_empty())
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // /healthz answered "stopping" until here.
    hub.ops.http.borrow_mut().take();
    // Let aborted accept tasks drop their listeners (removing socket files).
    tokio::task::yield_now().await;
}

/// The numeric id of a `socketgroup`.
fn resolve_group(spec: &GroupSpec) -> Result<u32, BindError> {
    match spec {
        GroupSpec::Id(g) => Ok(*g),
        GroupSpec::Name(n) => netcluster_local::group_id(n),
    }
}

/// True when running as root (the seed's socket directory is then /var/run).
pub fn is_root() -> bool {
    #[cfg(unix)]
    {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() == 0 }
    }
    #[cfg(not(unix))]
    {
        false
    }
}
