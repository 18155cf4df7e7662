//! What the daemon keeps for its operators beyond the message path: its
//! health phase (for `/healthz`), the HTTP endpoint's handle, and per
//! channel the counters of clients that have left, so that channel totals
//! survive disconnects, with disconnects counted by cause. All of it is
//! updated when a client leaves or the daemon changes phase, never per
//! message: the metrics endpoint adds the live clients' own counters at
//! scrape time.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;

use netcluster_proto::frame::ErrorCode;
use rustc_hash::FxHashMap;

use crate::conn::Conn;

/// Where the daemon is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Binding its sockets.
    Starting,
    /// Every channel bound: serving.
    Serving,
    /// Closing listeners and flushing clients.
    Stopping,
}

impl Health {
    /// Lowercase name, as `/healthz` says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Starting => "starting",
            Health::Serving => "serving",
            Health::Stopping => "stopping",
        }
    }
}

/// Why clients leave, as the `cause` label of the disconnect counter.
pub const CAUSES: [&str; 5] = [
    "left",
    "slow_consumer",
    "protocol_error",
    "channel_removed",
    "shutdown",
];

/// The index in [`CAUSES`] of a close with this error (`None`: the client
/// closed the connection itself).
fn cause(code: Option<ErrorCode>) -> usize {
    match code {
        None => 0,
        Some(ErrorCode::SlowConsumer) => 1,
        Some(ErrorCode::ChannelRemoved) => 3,
        Some(ErrorCode::Shutdown) => 4,
        Some(_) => 2,
    }
}

/// Counters of one channel's clients (summed).
#[derive(Debug, Clone, Copy, Default)]
pub struct ChannelTotals {
    /// Messages the clients emitted.
    pub msgs_in: u64,
    /// Messages queued for the clients.
    pub msgs_out: u64,
    /// Bytes read from the clients.
    pub bytes_in: u64,
    /// Bytes written to the clients.
    pub bytes_out: u64,
    /// Messages dropped by the slow-consumer policy.
    pub dropped: u64,
    /// Times publishers waited for a full queue.
    pub blocked: u64,
    /// Disconnects by cause, indexed like [`CAUSES`].
    pub disconnects: [u64; CAUSES.len()],
}

impl ChannelTotals {
    /// Adds a connection's own counters.
    pub fn add_conn(&mut self, c: &Conn) {
        self.msgs_in += c.stats.msgs_in.get();
        self.msgs_out += c.stats.msgs_out.get();
        self.bytes_in += c.stats.bytes_in.get();
        self.bytes_out += c.stats.bytes_out.get();
        self.dropped += c.stats.dropped.get();
        self.blocked += c.stats.blocked.get();
    }
}

/// The HTTP endpoint being served.
#[derive(Debug)]
pub struct HttpHandle {
    /// The configured address.
    pub configured: SocketAddr,
    /// The accept task; aborting it closes the listener.
    pub task: tokio::task::AbortHandle,
}

impl Drop for HttpHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// See the module docs.
#[derive(Debug)]
pub struct OpsState {
    /// The daemon's phase.
    pub health: Cell<Health>,
    /// The HTTP endpoint, when `http` is configured.
    pub http: RefCell<Option<HttpHandle>>,
    /// Totals of departed clients, by channel name.
    retired: RefCell<FxHashMap<Rc<str>, ChannelTotals>>,
}

impl Default for OpsState {
    fn default() -> Self {
        OpsState {
            health: Cell::new(Health::Starting),
            http: RefCell::new(None),
            retired: RefCell::new(FxHashMap::default()),
        }
    }
}

impl OpsState {
    /// Adds a departing client's counters to its channel's totals.
    pub fn retire(&self, conn: &Conn, code: Option<ErrorCode>) {
        let mut retired = self.retired.borrow_mut();
        let t = retired.entry(conn.channel.clone()).or_default();
        t.add_conn(conn);
        t.disconnects[cause(code)] += 1;
    }

    /// The totals of a channel's departed clients.
    pub fn retired(&self, channel: &str) -> ChannelTotals {
        self.retired
            .borrow()
            .get(channel)
            .copied()
            .unwrap_or_default()
    }

    /// Forgets the totals of channels that no longer exist (a reload
    /// removed them), so the map stays bounded by the configured channels.
    pub fn keep_channels(&self, exists: impl Fn(&str) -> bool) {
        self.retired.borrow_mut().retain(|name, _| exists(name));
    }
}

/// The network's counters for the metrics endpoint, read at scrape time.
#[derive(Debug, Clone)]
pub struct NetMetrics {
    /// The state machine's totals.
    pub stats: netcluster_proto::net::NetStats,
    /// Sends that failed for a reason other than a full buffer.
    pub send_errors: u64,
    /// Messages for channels this node does not have.
    pub unknown_channel: u64,
    /// Messages refused by `acceptfromnet: false`.
    pub refused: u64,
    /// Peers heard from recently.
    pub peers_up: u64,
    /// Peers in the table.
    pub peers: u64,
}
