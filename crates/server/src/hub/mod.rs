//! The hub: the daemon's shared state and the message path.
//!
//! One hub per running daemon, owned by its single thread. It holds the
//! router, the table of connected clients, the active config and the
//! per-channel settings derived from it, and implements the hot path: a
//! message is routed once at ingress, encoded once per wire variant, and
//! appended to each recipient's queue; queues are flushed once per read
//! batch. Memory per client is bounded by `queuebytes`, enforced here by the
//! recipient channel's slow-consumer policy.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use netcluster_proto::frame::{self, DeliverHeader, ErrorCode};
use netcluster_proto::legacy;
use netcluster_proto::router::{ChannelId, Recipient, Router, Slot};

use crate::config::{Config, SlowConsumer};
use crate::conn::{bump, Conn, Dialect};
use crate::outq::SHARE_PAYLOAD_MIN;

mod describe;
mod links;
mod route;
#[cfg(target_os = "linux")]
mod shm;

/// How a running daemon applies a new config: binding added channels,
/// switching rules, closing removed ones (the server's part, above the hub).
pub type Reloader = fn(&Rc<Hub>, Config) -> Result<serde_json::Value, String>;

/// A message payload as the hub receives it.
#[derive(Debug, Clone)]
pub enum Payload<'a> {
    /// Small payload borrowed from a read buffer; copied into each queue.
    Borrowed(&'a [u8]),
    /// Large payload already in its own buffer; shared by all queues.
    Shared(Bytes),
    /// A slot of a publisher's shared-memory pool: recipients that map the
    /// pool get a descriptor, the others a copy made once on demand.
    #[cfg(target_os = "linux")]
    Pool(&'a crate::shm::ShmMsg),
}

impl Payload<'_> {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Payload::Borrowed(b) => b,
            Payload::Shared(b) => b,
            #[cfg(target_os = "linux")]
            Payload::Pool(m) => m.bytes(),
        }
    }

    /// The payload's length (without copying a shared-memory slot).
    pub fn len(&self) -> usize {
        match self {
            #[cfg(target_os = "linux")]
            Payload::Pool(m) => m.len as usize,
            p => p.as_slice().len(),
        }
    }
}

/// Who sent a message.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    /// Origin node; `None` for this daemon.
    pub node: Option<u64>,
    /// Origin client id on that node.
    pub client: u64,
    /// Per-origin sequence number.
    pub seq: u64,
}

/// Per-channel settings the hot path needs, indexed by `ChannelId`.
#[derive(Debug, Clone)]
pub struct ChannelInfo {
    /// Channel name.
    pub name: Rc<str>,
    /// `dumptoconsole`.
    pub dump: bool,
    /// `slowconsumer`: the policy for this channel's clients.
    pub policy: SlowConsumer,
    /// `blockms`.
    pub block: Duration,
    /// `allowuids`.
    pub allow_uids: Rc<[u32]>,
    /// `allowgids`.
    pub allow_gids: Rc<[u32]>,
}

/// A channel being served: its listener and the task accepting on it.
pub struct Served {
    /// The accept task.
    pub task: tokio::task::AbortHandle,
    /// The listener (also held by the task).
    pub listener: Rc<netcluster_local::LocalListener>,
}

impl Served {
    /// Stops accepting and removes the socket file at once.
    pub fn close(self) {
        self.task.abort();
        self.listener.unlink();
    }
}

/// How many closed clients `showclient` can still describe.
const RECENT_DEPARTED: usize = 256;

/// Counts of disconnected clients by cause.
#[derive(Debug, Clone, Copy, Default)]
pub struct DisconnectCounts {
    /// Every client that left or was closed.
    pub total: u64,
    /// Closed by a slow-consumer policy.
    pub slow_consumer: u64,
    /// Closed for a protocol error or refused access.
    pub protocol_error: u64,
    /// Closed because a reload removed their channel.
    pub channel_removed: u64,
}

/// Reused buffers of the message path, so routing allocates nothing.
#[derive(Default)]
struct Scratch {
    recipients: Vec<Recipient>,
    /// Encoded frame for recipients on the message's own channel.
    own: BytesMut,
    /// Encoded frame for recipients on other channels.
    other: BytesMut,
    /// Encoded packet for legacy recipients.
    legacy: BytesMut,
}

/// What a publisher must do after a message was queued.
#[derive(Debug)]
pub enum Flow {
    /// Go on.
    Continue,
    /// Wait for this recipient's queue to drain below the limit first.
    Block(Rc<Conn>),
}

/// See the module docs.
pub struct Hub {
    /// This daemon run's node id.
    pub node_id: u64,
    /// The directory holding the channel sockets.
    pub socket_dir: PathBuf,
    /// Channels, propagation rules and subscriptions.
    pub router: RefCell<Router>,
    clients: RefCell<Vec<Option<Rc<Conn>>>>,
    free_slots: RefCell<Vec<Slot>>,
    next_client_id: Cell<u64>,
    config: RefCell<Rc<Config>>,
    channels: RefCell<Vec<Option<ChannelInfo>>>,
    scratch: RefCell<Scratch>,
    touched: RefCell<Vec<Rc<Conn>>>,
    /// Connections to close once the current batch is done.
    doomed: RefCell<Vec<(Rc<Conn>, ErrorCode, String)>>,
    /// Read buffer shared by all connections (only one reads at a time).
    pub read_buf: RefCell<BytesMut>,
    /// Bytes held by all sessions' unfinished frames (`partialbytes`).
    pub partial: crate::partial::Budget,
    /// Accept tasks of the open channels, by name; aborting one drops its
    /// listener, which removes the socket file.
    pub listeners: RefCell<std::collections::BTreeMap<String, Served>>,
    /// When the daemon started.
    pub started: std::time::SystemTime,
    /// Records of recently closed clients (channel, id, record), oldest first.
    departed: RefCell<std::collections::VecDeque<(Rc<str>, u64, serde_json::Value)>>,
    /// The record being made of the client being closed.
    last_snapshot: RefCell<Option<serde_json::Value>>,
    disconnects: RefCell<DisconnectCounts>,
    /// The links (network, …) that carry some channels beyond this daemon.
    links: RefCell<Vec<Rc<dyn crate::link::Link>>>,
    /// Applies a new config to the running daemon (set by the server, which
    /// owns listeners and links; see [`Hub::apply_config`]).
    reloader: Cell<Option<Reloader>>,
    /// Live copies of messages for the dashboard's tail (free when none is open).
    pub taps: Rc<crate::tap::Taps>,
    /// The last `nc-gap` announcements, for the dashboard.
    pub gaps: crate::tap::GapLog,
    /// Health, HTTP endpoint and departed clients' totals (see `stats`).
    pub ops: crate::stats::OpsState,
}

impl Hub {
    /// Creates a hub for `config`; channels get ids but no listeners yet.
    pub fn new(node_id: u64, socket_dir: PathBuf, config: Config) -> Rc<Hub> {
        let hub = Rc::new(Hub {
            node_id,
            socket_dir,
            router: RefCell::new(Router::new()),
            clients: RefCell::new(Vec::new()),
            free_slots: RefCell::new(Vec::new()),
            next_client_id: Cell::new(1),
            config: RefCell::new(Rc::new(config)),
            channels: RefCell::new(Vec::new()),
            scratch: RefCell::new(Scratch::default()),
            touched: RefCell::new(Vec::new()),
            doomed: RefCell::new(Vec::new()),
            read_buf: RefCell::new(BytesMut::new()),
            partial: Default::default(),
            listeners: RefCell::new(Default::default()),
            started: std::time::SystemTime::now(),
            links: RefCell::new(Vec::new()),
            reloader: Cell::new(None),
            departed: RefCell::new(Default::default()),
            last_snapshot: RefCell::new(None),
            disconnects: RefCell::new(DisconnectCounts::default()),
            taps: Default::default(),
            gaps: Default::default(),
            ops: Default::default(),
        });
        let cfg = hub.config();
        hub.router.borrow_mut().set_rules(cfg.channel_rules());
        hub.refresh_channel_info();
        hub
    }

    /// The active config.
    pub fn config(&self) -> Rc<Config> {
        self.config.borrow().clone()
    }

    /// Sets how a new config is applied (by the server, at start).
    pub fn set_reloader(&self, reloader: Reloader) {
        self.reloader.set(Some(reloader));
    }

    /// Applies a new config to the running daemon, as `reloadconfig` and
    /// SIGHUP do; refused when no server set a reloader (an embedded hub).
    pub fn apply_config(self: &Rc<Self>, new: Config) -> Result<serde_json::Value, String> {
        match self.reloader.get() {
            Some(apply) => apply(self, new),
            None => Err("this daemon cannot reload its config".into()),
        }
    }

    /// Replaces the active config and the router's rules. Clients of removed
    /// channels are closed. Returns the router's account of the change.
    pub fn set_config(&self, config: Config) -> netcluster_proto::router::RulesChange {
        let rules = config.channel_rules();
        *self.config.borrow_mut() = Rc::new(config);
        let change = self.router.borrow_mut().set_rules(rules);
        self.refresh_channel_info();
        for (name, slots) in &change.removed {
            for &slot in slots {
                if let Some(conn) = self.client(slot) {
                    let msg = format!("channel {name:?} was removed by a configuration reload");
                    self.close(
                        &conn,
                        Some((ErrorCode::ChannelRemoved, &msg)),
                        "channel removed",
                    );
                }
            }
        }
        change
    }

    fn refresh_channel_info(&self) {
        let cfg = self.config();
        let router = self.router.borrow();
        let mut infos = self.channels.borrow_mut();
        infos.clear();
        for ch in &cfg.channels {
            let id = router
                .channel(&ch.name)
                .expect("router has every config channel");
            if infos.len() <= id.index() {
                infos.resize(id.index() + 1, None);
            }
            infos[id.index()] = Some(ChannelInfo {
                name: ch.name.as_str().into(),
                dump: ch.dumptoconsole,
                policy: ch.slowconsumer,
                block: Duration::from_millis(ch.blockms),
                allow_uids: ch.allowuids.as_slice().into(),
                allow_gids: ch.allowgids.as_slice().into(),
            });
        }
    }

    /// Settings of a live channel.
    pub fn channel_info(&self, id: ChannelId) -> ChannelInfo {
        self.channels.borrow()[id.index()]
            .clone()
            .expect("live channel")
    }

    /// Largest payload accepted, in bytes.
    pub fn max_message(&self) -> usize {
        self.config.borrow().maxmessage
    }

    /// Per-client queue limit, in bytes.
    pub fn queue_limit(&self) -> usize {
        self.config.borrow().queuebytes
    }

    /// Reserves a slot and a client id for a new connection.
    pub fn reserve(&self) -> (Slot, u64) {
        let id = self.next_client_id.get();
        self.next_client_id.set(id + 1);
        let slot = match self.free_slots.borrow_mut().pop() {
            Some(s) => s,
            None => {
                let mut c = self.clients.borrow_mut();
                c.push(None);
                (c.len() - 1) as Slot
            }
        };
        (slot, id)
    }

    /// Registers a connection under its reserved slot and joins its channel.
    pub fn register(&self, conn: Rc<Conn>) {
        self.router.borrow_mut().join(conn.slot, conn.channel_id);
        let slot = conn.slot as usize;
        self.clients.borrow_mut()[slot] = Some(conn);
    }

    /// Takes back a provisional registration (a silent connection that
    /// turned out to speak the native protocol): it leaves the router and
    /// the table without a trace, its queued output is discarded, and its
    /// slot stays reserved for the final record.
    pub fn forget_provisional(&self, conn: &Rc<Conn>) {
        self.router.borrow_mut().leave(conn.slot);
        self.interest_changed(conn.channel_id);
        let mut clients = self.clients.borrow_mut();
        if clients
            .get(conn.slot as usize)
            .and_then(Option::as_ref)
            .is_some_and(|c| Rc::ptr_eq(c, conn))
        {
            clients[conn.slot as usize] = None;
        }
    }

    /// Gives back a slot reserved and never registered.
    pub fn release_slot(&self, slot: Slot) {
        self.free_slots.borrow_mut().push(slot);
    }

    /// The connection in a slot.
    pub fn client(&self, slot: Slot) -> Option<Rc<Conn>> {
        self.clients.borrow().get(slot as usize).cloned().flatten()
    }

    /// Every connected client, in slot order.
    pub fn clients(&self) -> Vec<Rc<Conn>> {
        self.clients.borrow().iter().flatten().cloned().collect()
    }

    /// Closes a connection: detaches it, queues an error frame if given,
    /// and wakes its tasks so they finish. Idempotent.
    pub fn close(&self, conn: &Rc<Conn>, error: Option<(ErrorCode, &str)>, reason: &str) {
        if !conn.mark_closed(reason) {
            return;
        }
        // Snapshot (with its subscriptions) before it leaves the router.
        let snapshot = self.client_json(conn);
        self.router.borrow_mut().leave(conn.slot);
        self.interest_changed(conn.channel_id);
        *self.last_snapshot.borrow_mut() = Some(snapshot);
        {
            let mut clients = self.clients.borrow_mut();
            if clients
                .get(conn.slot as usize)
                .and_then(Option::as_ref)
                .is_some_and(|c| Rc::ptr_eq(c, conn))
            {
                clients[conn.slot as usize] = None;
                self.free_slots.borrow_mut().push(conn.slot);
            }
        }
        // What it held of others' pools is theirs again.
        #[cfg(target_os = "linux")]
        self.send_frees(conn.shm.release_all());
        let code = error.map(|(c, _)| c);
        self.remember_departed(conn, code, reason);
        if let Some((code, msg)) = error {
            if code == ErrorCode::SlowConsumer {
                conn.queue_slow_consumer_error(msg);
            } else {
                conn.queue_error(code, 0, true, msg);
            }
        }
        tracing::info!(client = conn.id, name = %conn.name, channel = %conn.channel, reason, "client disconnected");
        conn.wake_all();
    }

    /// Keeps a bounded record of a closed client for `showclient`, and
    /// counts why clients go.
    fn remember_departed(&self, conn: &Conn, code: Option<ErrorCode>, reason: &str) {
        self.ops.retire(conn, code);
        let mut counts = self.disconnects.borrow_mut();
        counts.total += 1;
        match code {
            Some(ErrorCode::SlowConsumer) => counts.slow_consumer += 1,
            Some(ErrorCode::ChannelRemoved) => counts.channel_removed += 1,
            Some(ErrorCode::Shutdown) | None => {}
            Some(_) => counts.protocol_error += 1,
        }
        let Some(mut rec) = self.last_snapshot.borrow_mut().take() else {
            return;
        };
        rec["disconnected"] = crate::timefmt::rfc3339(std::time::SystemTime::now()).into();
        rec["reason"] = reason.into();
        let mut departed = self.departed.borrow_mut();
        if departed.len() == RECENT_DEPARTED {
            departed.pop_front();
        }
        departed.push_back((conn.channel.clone(), conn.id, rec));
    }

    /// The record of a client that left recently, if still kept.
    pub fn departed(&self, channel: &str, id: u64) -> Option<serde_json::Value> {
        self.departed
            .borrow()
            .iter()
            .rev()
            .find(|(c, i, _)| &**c == channel && *i == id)
            .map(|(_, _, r)| r.clone())
    }

    /// The records of the last `n` clients that left, newest first.
    pub fn recent_departed(&self, n: usize) -> Vec<serde_json::Value> {
        let departed = self.departed.borrow();
        departed
            .iter()
            .rev()
            .take(n)
            .map(|(_, _, r)| r.clone())
            .collect()
    }

    /// Why clients were disconnected, so far.
    pub fn disconnect_counts(&self) -> DisconnectCounts {
        *self.disconnects.borrow()
    }

    /// Closes, after the current batch, a connection found misbehaving
    /// while the router or client table is borrowed.
    pub fn close_later(&self, conn: &Rc<Conn>, code: ErrorCode, msg: String) {
        self.doomed.borrow_mut().push((conn.clone(), code, msg));
    }

    /// Marks a connection as having new output to flush after this batch.
    #[inline]
    pub fn touch(&self, conn: &Rc<Conn>) {
        if !conn.touched.get() {
            conn.touched.set(true);
            self.touched.borrow_mut().push(conn.clone());
        }
    }

    /// Flushes every queue that got messages in this batch, then closes the
    /// connections found broken or misbehaving during it.
    pub fn flush_touched(&self) {
        let limit = self.queue_limit();
        let touched = std::mem::take(&mut *self.touched.borrow_mut());
        for c in &touched {
            c.touched.set(false);
            if c.is_closed() {
                continue;
            }
            if let Err(e) = c.flush_or_defer(limit) {
                self.close_later(c, ErrorCode::BadFrame, format!("write failed: {e}"));
            }
        }
        // Give the (now empty) vector back to reuse its capacity.
        let mut t = self.touched.borrow_mut();
        if t.is_empty() {
            let mut touched = touched;
            touched.clear();
            *t = touched;
        }
        drop(t);
        self.flush_links();
        let doomed = std::mem::take(&mut *self.doomed.borrow_mut());
        for (conn, code, msg) in doomed {
            self.close(&conn, Some((code, &msg)), &msg);
        }
    }
}

/// The text form of a message origin: `{node as 16 hex digits}:{client}`.
pub fn origin_string(node: u64, client: u64) -> String {
    format!("{node:016x}:{client}")
}
