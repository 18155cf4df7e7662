//! The NATS bridge: the tokio shell around `netcluster_proto::nats`.
//!
//! It connects to the configured NATS servers with `async-nats` (which
//! fails over between them and reconnects by itself), publishes messages
//! that local clients emit on channels with `propagatetonats`, and
//! subscribes to `{prefix}.{channel}.*` for every channel with
//! `acceptfromnats`, handing what arrives to the hub as messages from a
//! remote origin. Only local-origin messages ever go out: the hub calls
//! [`NatsBridge::send`] from the publish path of local clients alone, so
//! what came from multicast or NATS is never sent back. Incoming messages
//! pass the per-origin [`Receiver`] (in order, once, loops dropped, gaps
//! reported as `nc-gap` with `"cause":"nats"`).
//!
//! The control channel never crosses NATS (requests and answers are for
//! this daemon only).
//!
//! Sending never waits: messages go to a queue bounded by `nats.buffer`
//! bytes (counting both what waits in the queue and what was handed to
//! the NATS client but is not yet written to its socket), drained by the
//! bridge's own task in batches, each followed by one flush (`outbound.rs`:
//! the queue, the header, and the hand-over, overlapping one batch's flush
//! with handing over the next). A reload that changes the `nats` section
//! replaces the connection (`connect.rs`). While the
//! connection is up and making progress, a queue past half the buffer
//! holds back the local publishers of carried channels (as the multicast
//! link does for slow receivers: the session stops reading them until the
//! queue is down to a quarter), so a burst is paced to what NATS takes
//! instead of dropped; while disconnected, or when the connection made no
//! progress for [`HOLD_LIMIT`], nobody is held and messages past the
//! bound are dropped and counted, so a slow or absent NATS server never
//! stalls local delivery for long. The hub knows the bridge only as one of its links
//! ([`crate::link::Link`], implemented in `link.rs`); which channels it
//! carries and accepts is its own state, updated at start and on reload.
//! Whether an origin is heard on the LAN is asked through a function the
//! server hands over, so the bridge does not depend on the network link.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::{Rc, Weak};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::{HeaderName, Subject};
use bytes::{Bytes, BytesMut};
use netcluster_proto::names;
use netcluster_proto::nats::{self as wire, Receiver};
use rustc_hash::{FxHashMap, FxHashSet};
use tokio::sync::Notify;

use crate::config::{Config, NatsConfig};
use crate::hub::Hub;

mod connect;
mod inbound;
mod interest;
mod link;
mod outbound;
mod status;
pub use link::bridge;

/// The `cause` of the `nc-gap` events the bridge raises.
pub const GAP_CAUSE: &str = "nats";
/// Origin node shown for messages from plain NATS clients (no netcluster
/// headers): the ASCII bytes "NATS" followed by zeros.
pub const FOREIGN_NODE: u64 = 0x4e41_5453_0000_0000;
/// Commands async-nats queues towards its connection task. Our own queue
/// (bounded by bytes) sits in front of it.
const CLIENT_CAPACITY: usize = 4096;
/// Longest wait between reconnect attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);
/// Most messages from NATS delivered before the clients' queues are
/// flushed.
const RECV_BATCH: usize = 256;
/// Longest a stopping daemon waits for queued messages to reach the NATS
/// server.
pub const STOP_DRAIN: Duration = Duration::from_secs(2);
/// Per-message overhead counted against `buffer` besides the payload and
/// the subject (the header and the bookkeeping).
const QUEUED_OVERHEAD: usize = 128;
/// Most messages handed to the NATS client before one flush.
const BATCH_MESSAGES: usize = 1024;
/// Most payload bytes handed to the NATS client before one flush.
const BATCH_BYTES: usize = 1 << 20;
/// Longest the bridge holds local publishers back while the connection
/// makes no progress (no batch flushed); then it drops instead.
pub const HOLD_LIMIT: Duration = Duration::from_secs(1);
/// Payloads up to this size are copied into a shared chunk of
/// [`ARENA_CHUNK`] bytes instead of an allocation of their own (one
/// allocation per chunk, not per message); larger ones, where the copy
/// costs more than the allocation, get their own.
const ARENA_MAX_PAYLOAD: usize = 4 << 10;
/// Size of a chunk of small payloads: it is freed once the NATS client
/// wrote the last message in it, so at most one chunk more than `buffer`
/// is held (and at most [`ARENA_MAX_PAYLOAD`] of each is unused).
const ARENA_CHUNK: usize = 64 << 10;
/// Most (channel, event) pairs whose subject and header values are kept
/// ready; the cache starts afresh past it.
const NAMES_CACHE: usize = 4096;

/// The header's name, built once (a name from a `&str` would be copied
/// for every message).
const ORIGIN_HEADER: HeaderName = HeaderName::from_static(wire::headers::ORIGIN);
/// The header that marks the older five-header format (refused).
const LEGACY_NODE_HEADER: HeaderName = HeaderName::from_static(wire::headers::LEGACY_NODE);

/// A (channel, event) pair's subject and the names part of its
/// `Nc-Origin` value, computed once.
struct Names {
    subject: Subject,
    origin: String,
}

struct Out {
    names: Rc<Names>,
    client: u64,
    seq: u64,
    payload: Bytes,
    cost: usize,
}

/// Asks whether a node is a peer currently up on the LAN.
type LanCheck = Box<dyn Fn(u64) -> bool>;

/// One channel's subscription task; `ready` once the server confirmed
/// the subscription (a round trip after SUB), which `status()` counts.
struct Sub {
    task: tokio::task::AbortHandle,
    ready: Rc<Cell<bool>>,
}

#[derive(Default)]
struct Counters {
    msgs_out: Cell<u64>,
    msgs_in: Cell<u64>,
    dropped: Cell<u64>,
    refused: Cell<u64>,
    duplicates: Cell<u64>,
    loops: Cell<u64>,
    gaps: Cell<u64>,
    lost: Cell<u64>,
    publish_errors: Cell<u64>,
    /// Times a publisher was held back because the queue was high.
    held: Cell<u64>,
}

/// See the module docs.
pub struct NatsBridge {
    /// The `nats` section in force (replaced by a reload, see
    /// `connect.rs`).
    cfg: RefCell<Rc<NatsConfig>>,
    /// The node's name (the connection's default name).
    nodename: String,
    client: RefCell<Option<async_nats::Client>>,
    /// The origin node of every message sent.
    node_id: u64,
    names: RefCell<FxHashMap<String, FxHashMap<String, Rc<Names>>>>,
    names_len: Cell<usize>,
    queue: RefCell<VecDeque<Out>>,
    /// The chunk small payloads are copied into (see [`ARENA_CHUNK`]).
    arena: RefCell<BytesMut>,
    /// Bytes queued plus bytes handed to the NATS client and not yet
    /// flushed to its socket.
    queued: Cell<usize>,
    /// The server's `max_payload` (0 until connected).
    max_payload: Cell<usize>,
    /// When the bridge last made progress (a batch flushed, or the queue
    /// started from empty): a connection that makes none for
    /// [`HOLD_LIMIT`] holds nobody back.
    progress: Cell<Instant>,
    /// Woken when the queue is down to the low mark.
    room: Notify,
    wake: Notify,
    stop: Notify,
    /// Told when a reload changed the connection settings.
    reconnect: Notify,
    /// The part of `queued` handed to the current NATS client and not yet
    /// flushed (forgiven when that client is replaced).
    inflight: Cell<usize>,
    recv: RefCell<Receiver>,
    /// NATS subscriptions by subject (see `interest.rs`).
    subs: RefCell<HashMap<String, Sub>>,
    /// Channels subscribed by event rather than whole (`nats.narrow`).
    narrowed: RefCell<FxHashSet<String>>,
    /// This bridge (for following local interest, which the hub reports
    /// through `&self`).
    me: Weak<NatsBridge>,
    /// The hub, once the bridge runs.
    hub: RefCell<Weak<Hub>>,
    /// Set by [`shutdown`](Self::shutdown): subscriptions no longer
    /// follow local interest.
    stopped: Cell<bool>,
    /// Channels with `propagatetonats` (what [`Link::carries`]). This
    /// and the sets below are looked up for every message, with a cheap
    /// hash (the names are the operator's, not an attacker's).
    ///
    /// [`Link::carries`]: crate::link::Link::carries
    carried: RefCell<FxHashSet<String>>,
    /// Channels with `acceptfromnats`.
    accepted: RefCell<FxHashSet<String>>,
    /// Carried channels whose local messages also go out by multicast
    /// (`connecttonet` and `propagatetonet`): their messages carry the
    /// `lan` flag.
    multicast: RefCell<FxHashSet<String>>,
    /// Channels that take messages from the multicast network
    /// (`connecttonet` and `acceptfromnet`): a flagged message of a node
    /// heard on the LAN arrives on them by multicast already.
    from_lan: RefCell<FxHashSet<String>>,
    /// Whether a node is a peer currently up on the LAN (set by the server
    /// when the daemon is also on the multicast network).
    heard: RefCell<Option<LanCheck>>,
    counters: Counters,
    /// `Connected` events after the first: reconnects.
    connects: Arc<AtomicU64>,
    disconnects: Arc<AtomicU64>,
    /// The NATS client's "slow consumer" events: messages it dropped
    /// because a subscription's queue was full (at least one event per
    /// burst; receivers see the hole as `nc-gap`).
    slow: Arc<AtomicU64>,
}

impl NatsBridge {
    /// A bridge for `cfg`'s `nats` section (which must be set); it starts
    /// connecting when [`run`](Self::run) is spawned.
    pub fn new(cfg: &Config, node_id: u64, nodename: &str) -> Rc<NatsBridge> {
        let nats = cfg.nats.clone().expect("nats section");
        let b = Rc::new_cyclic(|me| NatsBridge {
            me: me.clone(),
            hub: RefCell::new(Weak::new()),
            narrowed: RefCell::new(FxHashSet::default()),
            stopped: Cell::new(false),
            nodename: nodename.to_string(),
            cfg: RefCell::new(Rc::new(nats)),
            client: RefCell::new(None),
            node_id,
            names: RefCell::new(FxHashMap::default()),
            names_len: Cell::new(0),
            queue: RefCell::new(VecDeque::new()),
            arena: RefCell::new(BytesMut::new()),
            queued: Cell::new(0),
            max_payload: Cell::new(0),
            progress: Cell::new(Instant::now()),
            room: Notify::new(),
            wake: Notify::new(),
            stop: Notify::new(),
            reconnect: Notify::new(),
            inflight: Cell::new(0),
            recv: RefCell::new(Receiver::new(node_id)),
            subs: RefCell::new(HashMap::new()),
            carried: RefCell::new(FxHashSet::default()),
            accepted: RefCell::new(FxHashSet::default()),
            multicast: RefCell::new(FxHashSet::default()),
            from_lan: RefCell::new(FxHashSet::default()),
            heard: RefCell::new(None),
            counters: Counters::default(),
            connects: Arc::new(AtomicU64::new(0)),
            disconnects: Arc::new(AtomicU64::new(0)),
            slow: Arc::new(AtomicU64::new(0)),
        });
        b.set_channels(cfg);
        b
    }

    /// Tells the bridge how to ask whether a node is heard on the LAN.
    pub fn set_lan_check(&self, heard: impl Fn(u64) -> bool + 'static) {
        *self.heard.borrow_mut() = Some(Box::new(heard));
    }

    /// Whether a message from NATS reached this daemon by multicast too:
    /// its origin sent it to the LAN (`lan`), this daemon currently hears
    /// that node there, and `channel` takes messages from the network.
    /// Otherwise NATS is its only way here.
    fn came_by_lan(&self, node: u64, lan: bool, channel: &str) -> bool {
        lan && self.heard.borrow().as_ref().is_some_and(|f| f(node))
            && self.from_lan.borrow().contains(channel)
    }

    /// Takes the channel settings of `cfg` (the control channel never
    /// crosses NATS: its requests and answers are for this daemon only).
    fn set_channels(&self, cfg: &Config) {
        let pick = |f: fn(&crate::config::ChannelConfig) -> bool| {
            cfg.channels
                .iter()
                .filter(|c| f(c) && c.name != names::CONTROL_CHANNEL)
                .map(|c| c.name.clone())
                .collect::<FxHashSet<_>>()
        };
        *self.carried.borrow_mut() = pick(|c| c.propagatetonats);
        *self.accepted.borrow_mut() = pick(|c| c.acceptfromnats);
        let (multicast, from_lan) = if cfg.connecttonet {
            (
                pick(|c| c.propagatetonats && c.propagatetonet),
                pick(|c| c.acceptfromnet),
            )
        } else {
            Default::default()
        };
        if *self.multicast.borrow() != multicast {
            // The cached header values hold the `lan` flag.
            *self.multicast.borrow_mut() = multicast;
            self.names.borrow_mut().clear();
            self.names_len.set(0);
        }
        *self.from_lan.borrow_mut() = from_lan;
    }

    /// The `nats` section in force.
    fn cfg(&self) -> Rc<NatsConfig> {
        self.cfg.borrow().clone()
    }

    /// Whether local messages of `channel` go to NATS.
    pub fn carries_channel(&self, channel: &str) -> bool {
        self.carried.borrow().contains(channel)
    }

    /// Waits (at most `limit`) until what local clients emitted last has
    /// reached the server, when connected: called before stopping.
    pub async fn drain(&self, limit: Duration) {
        let Some(client) = self.client.borrow().clone() else {
            return;
        };
        let connected = matches!(
            client.connection_state(),
            async_nats::connection::State::Connected
        );
        if !connected {
            return;
        }
        let _ = tokio::time::timeout(limit, async {
            self.wake.notify_one();
            // Down to zero once the last batch was flushed to the socket.
            while self.queued.get() > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let _ = client.flush().await;
        })
        .await;
    }

    /// Stops the bridge's task (the connection closes when dropped).
    pub fn shutdown(&self) {
        self.stopped.set(true);
        for (_, h) in self.subs.borrow_mut().drain() {
            h.task.abort();
        }
        self.stop.notify_one();
    }

    fn connected(&self) -> bool {
        self.client.borrow().as_ref().is_some_and(|c| {
            matches!(
                c.connection_state(),
                async_nats::connection::State::Connected
            )
        })
    }

    /// The connection has had work for [`HOLD_LIMIT`] without progress.
    fn stalled(&self) -> bool {
        self.progress.get().elapsed() > HOLD_LIMIT
    }

    /// Whether local publishers of carried channels should wait: the
    /// queue is past half the buffer while the connection is up and
    /// progressing (see the module docs).
    pub fn backlogged(&self) -> bool {
        self.queued.get() > self.cfg().buffer / 2 && self.connected() && !self.stalled()
    }

    /// Resolves once the queue is down to a quarter of the buffer, or the
    /// connection is lost or stalled (then holding back would stall local
    /// delivery for nothing: messages past the buffer are dropped).
    pub async fn wait_room(&self) {
        self.counters.held.set(self.counters.held.get() + 1);
        loop {
            let n = self.room.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if self.queued.get() <= self.cfg().buffer / 4 || !self.connected() || self.stalled() {
                return;
            }
            let left = HOLD_LIMIT.saturating_sub(self.progress.get().elapsed());
            tokio::select! {
                _ = n => {}
                _ = tokio::time::sleep(left + Duration::from_millis(1)) => {}
            }
        }
    }

    /// Wakes the sending task after a batch of [`send`](Self::send)s.
    pub fn flush(&self) {
        if !self.queue.borrow().is_empty() {
            self.wake.notify_one();
        }
    }
}
