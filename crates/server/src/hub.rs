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

/// A message payload as the hub receives it.
#[derive(Debug, Clone)]
pub enum Payload<'a> {
    /// Small payload borrowed from a read buffer; copied into each queue.
    Borrowed(&'a [u8]),
    /// Large payload already in its own buffer; shared by all queues.
    Shared(Bytes),
}

impl Payload<'_> {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Payload::Borrowed(b) => b,
            Payload::Shared(b) => b,
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
    /// `propagatetonats`.
    pub to_nats: bool,
    /// `acceptfromnats`.
    pub from_nats: bool,
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
    /// The network driver, when the daemon is connected to the network.
    pub net: RefCell<Option<Rc<crate::net::NetDriver>>>,
    /// The NATS bridge, when the config has a `nats` section.
    pub nats: RefCell<Option<Rc<crate::nats::NatsBridge>>>,
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
            net: RefCell::new(None),
            nats: RefCell::new(None),
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
                to_nats: ch.propagatetonats,
                from_nats: ch.acceptfromnats,
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
        let snapshot = crate::control::client_json(self, conn);
        self.router.borrow_mut().leave(conn.slot);
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

    /// Delivers a message on `channel` to its recipients: the channel's
    /// other subscribers, then those of the channels its rule selects.
    /// `exclude` is the emitter, who never gets its own message back.
    pub fn fan_out(
        &self,
        channel: ChannelId,
        event: &str,
        payload: Payload<'_>,
        origin: Origin,
        exclude: Option<Slot>,
    ) -> Flow {
        self.fan_out_to(channel, event, payload, origin, exclude, true)
    }

    /// Delivers a message to `channel`'s own subscribers only, without
    /// its propagation rule (events the daemon raises per channel, such
    /// as `nc-gap` for network loss, so no client gets one twice).
    pub fn fan_out_own(&self, channel: ChannelId, event: &str, payload: &[u8]) -> Flow {
        let origin = Origin {
            node: None,
            client: 0,
            seq: 0,
        };
        let payload = Payload::Borrowed(payload);
        self.fan_out_to(channel, event, payload, origin, None, false)
    }

    fn fan_out_to(
        &self,
        channel: ChannelId,
        event: &str,
        payload: Payload<'_>,
        origin: Origin,
        exclude: Option<Slot>,
        propagate: bool,
    ) -> Flow {
        let infos = self.channels.borrow();
        let info = infos[channel.index()].as_ref().expect("live channel");
        if info.dump {
            dump_line(&info.name, event, payload.as_slice(), &origin, self.node_id);
        }
        if self.taps.any() {
            let from = (
                origin.node.unwrap_or(self.node_id),
                origin.client,
                origin.seq,
            );
            self.taps.offer(&info.name, event, payload.as_slice(), from);
        }
        let limit = self.queue_limit();
        let router = self.router.borrow();
        let clients = self.clients.borrow();
        let mut sc = self.scratch.borrow_mut();
        let sc = &mut *sc;
        sc.recipients.clear();
        router.route(channel, event, exclude, propagate, &mut sc.recipients);
        if sc.recipients.is_empty() {
            return Flow::Continue;
        }
        let data = payload.as_slice();
        let shared = match &payload {
            Payload::Shared(b) => Some(b.clone()),
            Payload::Borrowed(b) if b.len() >= SHARE_PAYLOAD_MIN && sc.recipients.len() > 1 => {
                Some(Bytes::copy_from_slice(b))
            }
            Payload::Borrowed(_) => None,
        };
        sc.own.clear();
        sc.other.clear();
        sc.legacy.clear();
        let mut flow = Flow::Continue;
        let mut legacy_is_json = None;
        let single = sc.recipients.len() == 1;
        for r in &sc.recipients {
            let Some(target) = clients[r.slot as usize].as_ref() else {
                continue;
            };
            let policy = match infos.get(target.channel_id.index()) {
                Some(Some(i)) => i.policy,
                _ => SlowConsumer::Block,
            };
            if policy == SlowConsumer::Drop && target.out.borrow().len() >= limit {
                target.note_drop();
                continue;
            }
            match target.dialect {
                Dialect::Native if single && shared.is_none() => {
                    // One recipient: encode straight into its queue, one
                    // copy of the payload instead of two.
                    let h = DeliverHeader {
                        node: origin.node,
                        client: origin.client,
                        seq: origin.seq,
                        channel: (!r.own_channel).then_some(&*info.name),
                    };
                    let mut q = target.out.borrow_mut();
                    frame::encode_deliver(q.tail(), &h, event, data);
                    q.seal();
                }
                Dialect::Native => {
                    let buf = if r.own_channel {
                        &mut sc.own
                    } else {
                        &mut sc.other
                    };
                    if buf.is_empty() {
                        let h = DeliverHeader {
                            node: origin.node,
                            client: origin.client,
                            seq: origin.seq,
                            channel: (!r.own_channel).then_some(&*info.name),
                        };
                        match shared {
                            Some(_) => frame::encode_deliver_header(buf, &h, event, data.len()),
                            None => frame::encode_deliver(buf, &h, event, data),
                        }
                    }
                    let mut q = target.out.borrow_mut();
                    match &shared {
                        Some(p) => q.push_shared(buf, p.clone()),
                        None => q.push_copy(buf),
                    }
                }
                Dialect::Legacy => {
                    if sc.legacy.is_empty() {
                        let is_json = *legacy_is_json.get_or_insert_with(|| legacy::is_json(data));
                        let from =
                            origin_string(origin.node.unwrap_or(self.node_id), origin.client);
                        legacy::encode(&mut sc.legacy, &from, &info.name, event, data, is_json);
                    }
                    target.out.borrow_mut().push_copy(&sc.legacy);
                }
            }
            bump(&target.stats.msgs_out, 1);
            self.touch(target);
            if target.out.borrow().len() > limit {
                match policy {
                    SlowConsumer::Block if matches!(flow, Flow::Continue) => {
                        flow = Flow::Block(target.clone())
                    }
                    SlowConsumer::Disconnect => {
                        let msg =
                            format!("slow consumer: queue reached queuebytes ({limit} bytes)");
                        self.close_later(target, ErrorCode::SlowConsumer, msg);
                    }
                    _ => {}
                }
            }
        }
        flow
    }

    /// Copies a local message to the network if its channel propagates
    /// there and the daemon is connected. The hub flushes after the batch.
    pub fn send_to_net(
        &self,
        channel: ChannelId,
        event: &str,
        payload: &[u8],
        client: u64,
        seq: u64,
    ) -> Result<(), String> {
        let net = self.net.borrow();
        let Some(net) = net.as_ref() else {
            return Ok(());
        };
        if !self.router.borrow().rules(channel).to_net {
            return Ok(());
        }
        let name = self.channels.borrow()[channel.index()]
            .as_ref()
            .expect("live channel")
            .name
            .clone();
        net.send(&name, event, payload, client, seq)
            .map_err(|e| format!("not sent to the network: {e}"))
    }

    /// Queues a local client's message for NATS if its channel has
    /// `propagatetonats` and the daemon has a bridge; never waits (a full
    /// buffer drops and counts). Only the local publish path calls this,
    /// so messages from the network or NATS are never sent out again.
    pub fn send_to_nats(
        &self,
        channel: ChannelId,
        event: &str,
        payload: &[u8],
        client: u64,
        seq: u64,
    ) {
        let nats = self.nats.borrow();
        let Some(nats) = nats.as_ref() else {
            return;
        };
        let infos = self.channels.borrow();
        let info = infos[channel.index()].as_ref().expect("live channel");
        if info.to_nats && &*info.name != netcluster_proto::names::CONTROL_CHANNEL {
            nats.send(&info.name, event, payload, client, seq);
        }
    }

    /// Whether `node` is a peer currently up on the multicast network
    /// (its messages come that way, so the NATS path drops them).
    pub fn hears_on_lan(&self, node: u64) -> bool {
        self.net.borrow().as_ref().is_some_and(|n| n.hears(node))
    }

    /// The network driver, if `channel`'s messages go to the network and
    /// too many datagrams wait to leave: its publishers should wait for
    /// [`NetDriver::wait_room`](crate::net::NetDriver::wait_room) before
    /// reading more (back-pressure from a slow receiver on the network).
    pub fn net_backlog(&self, channel: ChannelId) -> Option<Rc<crate::net::NetDriver>> {
        let net = self.net.borrow();
        let net = net.as_ref()?;
        (net.backlogged() && self.router.borrow().rules(channel).to_net).then(|| net.clone())
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
        if let Some(net) = self.net.borrow().as_ref() {
            net.flush();
        }
        if let Some(nats) = self.nats.borrow().as_ref() {
            nats.flush();
        }
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

/// Logs one message as a readable line (`dumptoconsole`).
fn dump_line(channel: &str, event: &str, payload: &[u8], origin: &Origin, local: u64) {
    const SHOW: usize = 200;
    let text = String::from_utf8_lossy(&payload[..payload.len().min(SHOW)]);
    let more = if payload.len() > SHOW {
        format!("… ({} bytes)", payload.len())
    } else {
        String::new()
    };
    tracing::info!(
        target: "netcluster::dump",
        "[{channel}] {event} from {} #{}: {text}{more}",
        origin_string(origin.node.unwrap_or(local), origin.client),
        origin.seq
    );
}
