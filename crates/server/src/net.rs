//! The network driver: the tokio shell around `netcluster_proto::net::Net`.
//!
//! It owns the UDP socket (bound to the group's port with `SO_REUSEADDR`
//! and `SO_REUSEPORT`, joined to the group on the chosen interface, with
//! TTL, loopback and large kernel buffers set), feeds received datagrams
//! and the clock to the state machine, sends what it produces to the group
//! and every unicast peer, and hands messages from other nodes to the hub.
//! Local messages reach it through [`NetDriver::send`]; the hub flushes it
//! after every batch, so a batch of emits leaves in few datagrams without a
//! timer. A full socket buffer stalls sending (the datagram is kept and
//! retried when the socket is writable), never drops. Datagrams lost on the
//! way are repaired by the state machine's NAKs; what cannot be repaired is
//! logged and announced to local clients as an `nc-gap` event on every
//! channel that accepts network messages (see [`GAP_CAUSE`]).

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Instant, SystemTime};

use netcluster_proto::net::{Dest, InMessage, Incoming, Net, NetEvent, OutMessage, SendError};
use tokio::net::UdpSocket;
use tokio::sync::Notify;

use crate::config::Config;
use crate::conn::GAP_EVENT;
use crate::hub::{Hub, Origin, Payload};
use crate::outq::SHARE_PAYLOAD_MIN;

/// Most datagrams read before the messages they carry are delivered.
const RECV_BATCH: usize = 256;
/// Messages from the network queued for local clients between two
/// flushes of their queues.
const FLUSH_EVERY: usize = 32;
/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_536;
/// Publishers to the network wait while more datagrams than this are
/// waiting to leave (flow control holds them back for a slow receiver)…
const BACKLOG_HIGH: usize = 4096;
/// … until no more than this are left.
const BACKLOG_LOW: usize = 1024;

/// The `cause` of the `nc-gap` events this driver raises: messages from
/// another node were lost on the network (its data is
/// `{"cause":"network","node":"<16 hex>","first":N,"last":M}`, N and M the
/// sender's DATA datagram sequence numbers given up on).
pub const GAP_CAUSE: &str = "network";

/// Why the network could not be started.
#[derive(Debug, thiserror::Error)]
#[error("cannot join the network ({group}): {reason}")]
pub struct NetError {
    /// The group and port.
    pub group: SocketAddr,
    /// What failed.
    pub reason: String,
}

/// Where a datagram goes: one address, or the group and every unicast
/// peer (index 0 is the group).
#[derive(Clone, Copy)]
enum Targets {
    One(SocketAddr),
    All { next: usize },
}

/// A datagram the socket would not take yet, and the destinations left.
struct Stalled {
    datagram: Vec<u8>,
    left: Targets,
}

/// See the module docs.
pub struct NetDriver {
    net: RefCell<Net>,
    socket: UdpSocket,
    group: SocketAddr,
    peers: Vec<SocketAddr>,
    name: String,
    dumpnet: Cell<bool>,
    wake: Notify,
    stop: Notify,
    /// Notified when the backlog of datagrams drops to `BACKLOG_LOW`.
    room: Notify,
    /// The time of the last flush, for `send`.
    now: Cell<Instant>,
    stalled: RefCell<Option<Stalled>>,
    txbuf: RefCell<Vec<u8>>,
    /// Sends that failed for a reason other than a full buffer (e.g. no
    /// route to the group), by destination kind.
    send_errors: Cell<u64>,
    /// Messages from the network for channels this node does not have.
    unknown_channel: Cell<u64>,
    /// Messages refused by `acceptfromnet: false`.
    refused: Cell<u64>,
    started: (Instant, SystemTime),
    /// Highest receive memory (all peers) since memory was last returned.
    recv_high: Cell<usize>,
}

impl NetDriver {
    /// Opens the socket and the state machine for `cfg`.
    pub fn open(cfg: &Config, node_id: u64) -> Result<Rc<NetDriver>, NetError> {
        let Plan {
            group,
            iface,
            peers,
            name,
            ncfg,
        } = Plan::new(cfg, node_id)?;
        let fail = |reason: String| NetError { group, reason };
        let socket = setup_socket(cfg, group, iface.as_ref()).map_err(|e| fail(e.to_string()))?;
        let now = Instant::now();
        let socket = UdpSocket::from_std(socket).map_err(|e| fail(e.to_string()))?;
        tracing::info!(
            group = %group,
            interface = iface.as_ref().map(|i| i.name.as_str()).unwrap_or("(by route)"),
            peers = ?peers,
            node = format!("{node_id:016x}"),
            name,
            "joined the network"
        );
        match &cfg.key {
            Some(k) => tracing::info!(key_id = k.id(), "network datagrams are sealed"),
            None => tracing::warn!(
                "no network key: datagrams are neither authenticated nor encrypted, \
                 and anyone on the network can inject messages; set key or keyfile"
            ),
        }
        Ok(Rc::new(NetDriver {
            net: RefCell::new(Net::new(ncfg, now)),
            socket,
            group,
            peers,
            name,
            dumpnet: Cell::new(cfg.dumpnet),
            wake: Notify::new(),
            stop: Notify::new(),
            room: Notify::new(),
            now: Cell::new(now),
            stalled: RefCell::new(None),
            txbuf: RefCell::new(Vec::with_capacity(MAX_DATAGRAM)),
            send_errors: Cell::new(0),
            unknown_channel: Cell::new(0),
            refused: Cell::new(0),
            started: (now, SystemTime::now()),
            recv_high: Cell::new(0),
        }))
    }

    /// Applies the settings that may change while running.
    pub fn set_dumpnet(&self, on: bool) {
        self.dumpnet.set(on);
    }

    /// Applies a reloaded config's network settings that may change while
    /// running: `dumpnet`, `retransmitbytes` and the key (the old key stays
    /// accepted for the grace period).
    pub fn reload(&self, cfg: &Config) {
        self.set_dumpnet(cfg.dumpnet);
        let mut net = self.net.borrow_mut();
        net.set_retransmit_bytes(cfg.retransmitbytes);
        if net.config().key != cfg.key {
            let grace = net.config().key_grace;
            net.set_key(Instant::now(), cfg.key.clone());
            match &cfg.key {
                Some(k) => tracing::info!(
                    key_id = k.id(),
                    grace_s = grace.as_secs(),
                    "network key changed; the previous one is accepted for the grace period"
                ),
                None => tracing::warn!(
                    grace_s = grace.as_secs(),
                    "network key removed: datagrams are sent in clear from now on"
                ),
            }
        }
    }

    /// Stops the driver task.
    pub fn shutdown(&self) {
        self.stop.notify_one();
    }

    /// Queues a local message for the network. The caller flushes.
    pub fn send(
        &self,
        channel: &str,
        event: &str,
        payload: &[u8],
        client: u64,
        seq: u64,
    ) -> Result<(), SendError> {
        if self.dumpnet.get() {
            tracing::info!(target: "netcluster::net", "out [{channel}] {event} #{seq} from client {client}: {}", preview(payload));
        }
        let m = OutMessage {
            channel,
            event,
            payload,
            client,
            seq,
        };
        // The batch timer is zero here (the hub flushes after each read
        // batch), so the time of the last flush is as good as reading the
        // clock for every message.
        self.net.borrow_mut().send(self.now.get(), &m)
    }

    /// Whether so many datagrams wait to leave that publishers to the
    /// network should wait ([`NetDriver::wait_room`]).
    pub fn backlogged(&self) -> bool {
        self.net.borrow().pending_transmits() > BACKLOG_HIGH
    }

    /// Waits until the backlog of datagrams has drained to a low mark.
    pub async fn wait_room(&self) {
        loop {
            let n = self.room.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if self.net.borrow().pending_transmits() <= BACKLOG_LOW {
                return;
            }
            n.await;
        }
    }

    /// Sends every datagram the state machine has ready, as far as the
    /// socket takes them; the driver task retries a stalled one.
    pub fn flush(&self) {
        self.send_ready();
        if self.net.borrow().pending_transmits() <= BACKLOG_LOW {
            self.room.notify_waiters();
        }
    }

    fn send_ready(&self) {
        let now = Instant::now();
        self.now.set(now);
        if !self.retry_stalled() {
            return;
        }
        let mut net = self.net.borrow_mut();
        let mut buf = self.txbuf.borrow_mut();
        while let Some(t) = net.poll_transmit(now, &mut buf) {
            let targets = match t.dest {
                Dest::To(a) => Targets::One(a),
                _ => Targets::All { next: 0 },
            };
            if let Some(left) = self.send_to(&buf, targets) {
                *self.stalled.borrow_mut() = Some(Stalled {
                    datagram: buf.clone(),
                    left,
                });
                self.wake.notify_one();
                return;
            }
        }
    }

    /// Sends a stalled datagram's rest; true if nothing is stalled anymore.
    fn retry_stalled(&self) -> bool {
        let Some(st) = self.stalled.borrow_mut().take() else {
            return true;
        };
        match self.send_to(&st.datagram, st.left) {
            None => true,
            Some(left) => {
                *self.stalled.borrow_mut() = Some(Stalled {
                    datagram: st.datagram,
                    left,
                });
                false
            }
        }
    }

    /// Sends `datagram` to its targets; returns those left when the socket
    /// buffer is full. Other errors (no route to the group, say) are
    /// counted and logged, and the other targets still get the datagram.
    fn send_to(&self, datagram: &[u8], targets: Targets) -> Option<Targets> {
        let (first, one) = match targets {
            Targets::One(a) => (0, Some(a)),
            Targets::All { next } => (next, None),
        };
        let count = if one.is_some() {
            1
        } else {
            1 + self.peers.len()
        };
        for i in first..count {
            let dest = one.unwrap_or(if i == 0 {
                self.group
            } else {
                self.peers[i - 1]
            });
            match self.socket.try_send_to(datagram, dest) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Some(one.map_or(Targets::All { next: i }, Targets::One));
                }
                Err(e) => {
                    let n = self.send_errors.get() + 1;
                    self.send_errors.set(n);
                    // Log the first error and then every 10000th.
                    if n == 1 || n % 10_000 == 0 {
                        tracing::warn!(%dest, errors = n, "cannot send a datagram: {e}");
                    }
                }
            }
        }
        None
    }

    /// The driver task: receives datagrams, runs timers, delivers messages
    /// from other nodes and sends what is due, until shut down.
    pub async fn run(self: Rc<Self>, hub: Rc<Hub>) {
        let mut rbuf = vec![0u8; MAX_DATAGRAM];
        loop {
            let deadline = self
                .net
                .borrow()
                .poll_timeout()
                .map(tokio::time::Instant::from_std);
            let stalled = self.stalled.borrow().is_some();
            tokio::select! {
                biased;
                _ = self.stop.notified() => return,
                r = self.socket.readable() => {
                    if let Err(e) = r {
                        tracing::error!("network socket failed: {e}");
                        return;
                    }
                    self.receive(&mut rbuf);
                }
                r = self.socket.writable(), if stalled => { let _ = r; }
                _ = sleep_until(deadline) => {}
                _ = self.wake.notified(), if !stalled => {}
            }
            // Timers are checked after every wake-up, not only when the
            // sleep wins the select: under a steady stream of datagrams the
            // socket is always readable, and NAKs must still go out.
            let now = Instant::now();
            if self.net.borrow().poll_timeout().is_some_and(|t| t <= now) {
                self.net.borrow_mut().handle_timeout(now);
                self.return_memory();
            }
            self.deliver(&hub);
            self.report_events(&hub);
            self.flush();
            // Let the other tasks and the I/O driver run between batches.
            // Under a steady stream the socket never reports WouldBlock,
            // so without this the loop would keep the thread for as long
            // as tokio's cooperative budget lasts (128 batches of up to
            // RECV_BATCH datagrams: seconds on a busy machine), starving
            // every client's writer and reader.
            tokio::task::yield_now().await;
        }
    }

    fn receive(&self, rbuf: &mut [u8]) {
        let mut net = self.net.borrow_mut();
        self.recv_high
            .set(self.recv_high.get().max(net.receive_memory()));
        // One clock reading per batch: the timers it feeds are milliseconds.
        let now = Instant::now();
        for _ in 0..RECV_BATCH {
            match self.socket.try_recv_from(rbuf) {
                Ok((n, from)) => net.handle_datagram(now, from, &rbuf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    // ICMP errors from earlier sends surface here; not fatal.
                    tracing::debug!("receive error: {e}");
                    break;
                }
            }
        }
    }

    /// Hands every message received from other nodes to local clients,
    /// and announces each gap at its place among them. Never waits: a
    /// client too slow for what the network brings misses it (see
    /// [`Hub::fan_out`]), so a slow local client cannot stall the network
    /// path, its acknowledgements, or the other channels.
    fn deliver(&self, hub: &Rc<Hub>) {
        let mut queued = 0;
        loop {
            let Some(m) = self.net.borrow_mut().poll_incoming() else {
                break;
            };
            match m {
                Incoming::Message(m) => self.deliver_one(hub, m),
                Incoming::Gap { node, first, last } => {
                    tracing::warn!(
                        node = format!("{node:016x}"),
                        first,
                        last,
                        "messages lost on the network: datagrams {first}..={last} could not be recovered"
                    );
                    self.announce_gap(hub, node, first, last);
                }
            }
            // Written every few messages, as far as each socket takes it:
            // a burst of datagrams must not pile up in the queues before
            // any of it is written (a client keeping up would find its
            // queue full), nor leave in one tiny write per message.
            queued += 1;
            if queued % FLUSH_EVERY == 0 {
                hub.flush_touched();
            }
        }
        hub.flush_touched();
    }

    fn deliver_one(&self, hub: &Rc<Hub>, m: InMessage) {
        let channel = {
            let router = hub.router.borrow();
            match router.channel(&m.channel) {
                Some(ch) if router.rules(ch).from_net => ch,
                Some(_) => {
                    self.refused.set(self.refused.get() + 1);
                    return;
                }
                None => {
                    self.unknown_channel.set(self.unknown_channel.get() + 1);
                    return;
                }
            }
        };
        if self.dumpnet.get() {
            tracing::info!(
                target: "netcluster::net",
                "in [{}] {} #{} from {:016x}:{}: {}",
                &*m.channel, &*m.event, m.seq, m.node, m.client, preview(&m.payload)
            );
        }
        let origin = Origin {
            node: Some(m.node),
            client: m.client,
            seq: m.seq,
        };
        let payload = if m.payload.len() >= SHARE_PAYLOAD_MIN {
            Payload::Shared(m.payload.clone())
        } else {
            Payload::Borrowed(&m.payload)
        };
        // Network origin: never a wait (Flow::Continue).
        let _ = hub.fan_out(channel, &m.event, payload, origin, None);
    }

    fn report_events(&self, hub: &Rc<Hub>) {
        loop {
            let Some(e) = self.net.borrow_mut().poll_event() else {
                break;
            };
            match e {
                // Logged and announced in order by `deliver`.
                NetEvent::Gap { .. } => {}
                NetEvent::PeerUp { node, name, addr } => {
                    tracing::info!(peer = %name, node = format!("{node:016x}"), %addr, "peer up")
                }
                NetEvent::PeerDown { node, name, reason } => {
                    tracing::info!(peer = %name, node = format!("{node:016x}"), ?reason, "peer down")
                }
                NetEvent::Dropped {
                    addr,
                    node,
                    reason,
                    count,
                } => self.report_drop(hub, addr, node, &reason, count),
            }
        }
    }

    /// Tells local clients that messages from `node` were lost: one
    /// `nc-gap` event on every channel that accepts network messages (any
    /// of them may have been meant for it), to its clients listening to
    /// `nc-gap` or `*`, not propagated further.
    fn announce_gap(&self, hub: &Rc<Hub>, node: u64, first: u64, last: u64) {
        announce(
            hub,
            serde_json::json!({"cause": GAP_CAUSE, "node": format!("{node:016x}"), "first": first, "last": last}),
        );
    }
}

impl NetDriver {
    /// Whether `node` is a peer that is up (heard recently).
    pub fn hears(&self, node: u64) -> bool {
        self.net.borrow().peers().any(|p| p.node == node && p.up)
    }

    /// The counters the metrics endpoint shows.
    pub fn metrics(&self) -> crate::stats::NetMetrics {
        let net = self.net.borrow();
        crate::stats::NetMetrics {
            stats: net.stats().clone(),
            send_errors: self.send_errors.get(),
            unknown_channel: self.unknown_channel.get(),
            refused: self.refused.get(),
            peers_up: net.peers().filter(|p| p.up).count() as u64,
            peers: net.peers().count() as u64,
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The start of a payload as text, for `dumpnet` lines.
fn preview(payload: &[u8]) -> String {
    const SHOW: usize = 120;
    let text = String::from_utf8_lossy(&payload[..payload.len().min(SHOW)]);
    if payload.len() > SHOW {
        format!("{text}… ({} bytes)", payload.len())
    } else {
        text.into_owned()
    }
}

/// Sends one `nc-gap` event with `body` to every local channel that
/// accepts network messages, to its clients listening to `nc-gap` or `*`,
/// not propagated further, and notes it for the dashboard. Like the
/// messages around it, never waited for: a client whose queue is full
/// misses it and gets its own slow-consumer `nc-gap`, which covers this
/// hole too.
fn announce(hub: &Hub, body: serde_json::Value) {
    let text = body.to_string();
    hub.gaps.note(body);
    let channels: Vec<_> = {
        let router = hub.router.borrow();
        router
            .channel_names()
            .into_iter()
            .filter_map(|n| router.channel(n))
            .filter(|&c| router.rules(c).from_net)
            .collect()
    };
    for c in channels {
        hub.fan_out_own(c, GAP_EVENT, text.as_bytes());
    }
}

mod link;
mod memory;
mod peers;
mod plan;
mod report;
mod socket;
pub use link::driver;
pub use plan::check;
use plan::Plan;
use socket::setup_socket;
