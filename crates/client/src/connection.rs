//! The connection: one socket at a time, owned by a reader and a writer,
//! and a supervisor that reconnects when the daemon goes away. Dialing and
//! the handshake are in `dial`, the reader in `reader`, writing in
//! `writer`, the emit fast path's append in `publish`.
//!
//! Emitters encode frames straight into a shared output buffer under a
//! short lock. The first emit after the application's task gave way
//! writes to the socket itself (no hop to the writer task on a round
//! trip); a tight emit loop writes every 64 KiB and leaves the rest to the
//! writer task, which also waits while the socket is full. All writes take
//! bytes from the head of that one buffer, so order is kept.
//!
//! The reader decodes frames in batches and dispatches deliveries to the
//! listener table, and completes pending requests, subscription acks and
//! pings. A task awaiting a subscription's next message with nothing
//! queued reads the socket itself instead (`readside`), so a round trip
//! costs no hop through the reader task.
//!
//! When the socket breaks, operations waiting for an answer fail, and the
//! supervisor reconnects with backoff (unless reconnecting is off or the
//! daemon refused us for good). Emits made meanwhile stay in the output
//! buffer, up to the offline bound, and are sent after the listeners'
//! subscriptions are renewed on the new connection (without the rest of a
//! frame the break cut). The bytes written before the break, and what the
//! daemon had not handled when it went away, may be lost: `flush` tells
//! (see `Client::flush`), by counting the publishes appended and the
//! connections lost per window between two flush barriers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use netcluster_local::LocalStream;
use netcluster_proto::frame;
use tokio::sync::{oneshot, watch, Notify};

use crate::error::ConnectError;
use crate::table::Listeners;

/// Bytes reserved per read.
const READ_CHUNK: usize = 256 * 1024;
/// First and longest pause between reconnection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The connection's socket, shared by its reader and writer.
type Stream = Arc<LocalStream>;

/// The reply to a request: the JSON text of the result, or the error text.
pub type Reply = Result<Bytes, String>;

/// Whether the client is connected to its daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Connected; messages flow.
    Connected,
    /// The connection broke; the client is trying to reconnect. Emits are
    /// queued up to the offline bound.
    Reconnecting,
    /// Closed for good (by the application, or reconnecting is off or was
    /// refused); every operation fails.
    Closed,
}

/// Operations waiting for an answer from the server.
#[derive(Default)]
pub struct Pending {
    pub requests: HashMap<u32, oneshot::Sender<Reply>>,
    pub acks: HashMap<u32, oneshot::Sender<Result<(), String>>>,
    /// Flush barriers, answered with the count of connections lost so far.
    pub pings: HashMap<u64, oneshot::Sender<u64>>,
}

impl Pending {
    /// Fails everything: answers to these will never come.
    fn fail_all(&mut self, reason: &str) {
        for (_, tx) in self.requests.drain() {
            let _ = tx.send(Err(format!("not connected: {reason}")));
        }
        for (_, tx) in self.acks.drain() {
            let _ = tx.send(Err(format!("not connected: {reason}")));
        }
        self.pings.clear();
    }
}

/// The output side shared by emitters and the writer.
pub struct Out {
    pub buf: BytesMut,
    /// Set once the connection is closed for good, with the reason.
    pub closed: Option<String>,
    /// Set while reconnecting, with the reason the last connection ended.
    pub offline: Option<String>,
    /// The application asked to close after the buffer is written.
    pub closing: bool,
    /// Publish frames ever appended to `buf` (counts messages for flush).
    pub appended: u64,
    /// Connections lost so far: a flush window that saw this change may
    /// have lost messages.
    pub breaks: u64,
    /// Where the current flush window starts: `appended` and `breaks` when
    /// the last flush's barrier was queued.
    pub window: (u64, u64),
    /// Why the last connection was lost.
    pub last_break: String,
    /// The current connection's socket; `None` between connections and
    /// once a write failed.
    pub conn: Option<Stream>,
    /// Bytes at the head of `buf` that finish a frame whose start was
    /// already written (0 when `buf` starts with a whole frame).
    pub head_partial: usize,
    /// The length of `buf` at which an emit next tries a write of its own
    /// (see `writer::write_now`); `usize::MAX` while the writer task waits
    /// for room in a full socket (emits then never try).
    pub retry_at: usize,
    /// Below this length of `buf` an emit may append without looking at
    /// anything else ([`Shared::try_publish`]): `max_pending` while
    /// connected, `offline_bytes` while reconnecting, 0 once closing or
    /// closed. Kept by [`Out::relimit`] whenever `closed`, `closing` or
    /// `offline` changes, so that the hot path makes one comparison.
    pub room_until: usize,
}

/// Where a frame went in the stream of publishes: `appended` publishes
/// before it (itself included if it is one), and the flush window open
/// then: (`appended`, connections lost) at the previous barrier.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    pub appended: u64,
    pub window: (u64, u64),
}

/// What the server told us in its Welcome.
#[derive(Debug, Clone, Copy)]
pub struct Welcome {
    pub node: u64,
    pub client: u64,
    pub max_message: usize,
    /// The daemon accepted shared memory on this connection.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub shm: bool,
}

/// Options for a connection.
pub struct Options {
    pub name: String,
    pub echo: bool,
    pub max_pending: usize,
    pub reconnect: bool,
    pub offline_bytes: usize,
    /// Shared memory: `Some(pool bytes)` when asked for (see `crate::shm`).
    pub shm_pool: Option<usize>,
}

/// State shared by the client handles and the connection's tasks.
pub struct Shared {
    pub channel: Arc<str>,
    pub path: PathBuf,
    pub opts: Options,
    /// The current connection's Welcome, as atomics: read on every emit.
    welcome_node: AtomicU64,
    welcome_client: AtomicU64,
    welcome_max: AtomicU64,
    /// parking_lot's lock, which has no poisoning: taken on every emit,
    /// where std's checks whether the thread is panicking (on lock and on
    /// unlock) were a measurable part of a small emit, and a poisoned
    /// lock was ignored anyway (as for every lock here).
    pub out: parking_lot::Mutex<Out>,
    /// Emitters waiting for room in `out`.
    pub space: Notify,
    /// Wakes the writer.
    pub wake: Notify,
    /// Notified when the connection is closed for good.
    pub done: Notify,
    pub listeners: Listeners,
    /// Who reads the socket (see `readside`).
    pub rd: ReadSide,
    pub pending: Mutex<Pending>,
    state: watch::Sender<ConnectionState>,
    next_id: AtomicU32,
    next_listener: AtomicU64,
    /// Sequence of this client's own messages (for echo-to-self).
    pub seq: AtomicU64,
    /// One emit may write to the socket itself (see [`Shared::try_put`]).
    /// Cleared by that write; set again whenever the reader or the writer
    /// task runs, which tells that the emitting task gave way since.
    direct: AtomicBool,
    /// Shared-memory payloads, when asked for.
    #[cfg(target_os = "linux")]
    pub shm: Option<Arc<crate::shm::Shm>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn out(&self) -> parking_lot::MutexGuard<'_, Out> {
        self.out.lock()
    }

    pub fn pending(&self) -> MutexGuard<'_, Pending> {
        lock(&self.pending)
    }

    /// The current connection's Welcome.
    pub fn welcome(&self) -> Welcome {
        Welcome {
            node: self.welcome_node.load(Ordering::Acquire),
            client: self.welcome_client.load(Ordering::Acquire),
            max_message: self.welcome_max.load(Ordering::Acquire) as usize,
            shm: false,
        }
    }

    /// The largest payload the daemon accepts.
    pub fn max_message(&self) -> usize {
        self.welcome_max.load(Ordering::Acquire) as usize
    }

    fn set_welcome(&self, w: Welcome) {
        self.welcome_node.store(w.node, Ordering::Release);
        self.welcome_client.store(w.client, Ordering::Release);
        self.welcome_max
            .store(w.max_message as u64, Ordering::Release);
    }

    /// A receiver of connection state changes.
    pub fn watch_state(&self) -> watch::Receiver<ConnectionState> {
        self.state.subscribe()
    }

    /// The connection state now.
    pub fn state(&self) -> ConnectionState {
        *self.state.borrow()
    }

    /// A fresh non-zero id for requests, acks and pings.
    pub fn next_id(&self) -> u32 {
        loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                return id;
            }
        }
    }

    pub fn next_listener_id(&self) -> u64 {
        self.next_listener.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The reason the connection is closed for good, if it is.
    pub fn closed(&self) -> Option<String> {
        self.out().closed.clone()
    }

    /// Why the client is not connected right now (closed or reconnecting).
    pub fn not_connected(&self) -> Option<String> {
        let out = self.out();
        out.closed.clone().or_else(|| {
            out.offline
                .as_ref()
                .map(|r| format!("reconnecting to the daemon ({r})"))
        })
    }

    /// Appends a frame with `encode`. While connected it waits when the
    /// buffer is over `max_pending`; while reconnecting it fails once the
    /// buffer holds `offline_bytes`; closed, it fails.
    pub async fn send(&self, encode: impl FnOnce(&mut BytesMut)) -> Result<(), String> {
        self.send_marked(encode, false).await.map(drop)
    }

    /// [`Shared::send`] for a flush barrier: also closes the current flush
    /// window where the frame goes, and returns it (see [`Mark`]).
    pub async fn send_barrier(&self, encode: impl FnOnce(&mut BytesMut)) -> Result<Mark, String> {
        self.send_marked(encode, true).await
    }

    async fn send_marked(
        &self,
        encode: impl FnOnce(&mut BytesMut),
        barrier: bool,
    ) -> Result<Mark, String> {
        let mut encode = Some(encode);
        // Fast path: room now, no waiter registered.
        if let Some(m) = self.try_put(&mut encode, barrier)? {
            return Ok(m);
        }
        self.put_waiting(&mut encode, barrier).await
    }

    /// The rest of [`Shared::send`] once [`Shared::try_put`] found no room:
    /// waits for room, then appends. Hot callers (`emit`) call `try_put`
    /// themselves and build this future only when they must wait: moving
    /// a future with a `Notified` inside costs a copy on every call.
    pub async fn put_waiting(
        &self,
        encode: &mut Option<impl FnOnce(&mut BytesMut)>,
        barrier: bool,
    ) -> Result<Mark, String> {
        loop {
            let space = self.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            if let Some(m) = self.try_put(encode, barrier)? {
                return Ok(m);
            }
            space.await;
        }
    }

    /// Appends with `encode` if there is room: `Ok(Some(_))` when done,
    /// `Ok(None)` when the caller must wait for room.
    #[inline]
    pub fn try_put(
        &self,
        encode: &mut Option<impl FnOnce(&mut BytesMut)>,
        barrier: bool,
    ) -> Result<Option<Mark>, String> {
        let mut out = self.out();
        if let Some(r) = &out.closed {
            return Err(r.clone());
        }
        if out.closing {
            return Err("the client is disconnecting".into());
        }
        let room = match &out.offline {
            Some(why) if out.buf.len() >= self.opts.offline_bytes => {
                return Err(format!(
                    "reconnecting to the daemon ({why}) and the offline queue is full ({} bytes)",
                    self.opts.offline_bytes
                ));
            }
            Some(_) => true,
            None => out.buf.len() < self.opts.max_pending,
        };
        if !room {
            return Ok(None);
        }
        let was_empty = out.buf.is_empty();
        let start = out.buf.len();
        (encode.take().expect("called once"))(&mut out.buf);
        if out.buf.len() > start
            && matches!(
                out.buf[start],
                frame::kind::PUBLISH | frame::shm::kind::SHM_PUBLISH
            )
        {
            out.appended += 1;
        }
        let mark = Mark {
            appended: out.appended,
            window: out.window,
        };
        if barrier {
            out.window = (out.appended, out.breaks);
        }
        self.write_now(&mut out);
        // The writer sleeps while the buffer is empty: whoever makes it
        // non-empty wakes it.
        let wake = was_empty && !out.buf.is_empty();
        drop(out);
        if wake {
            self.wake.notify_one();
        }
        Ok(Some(mark))
    }

    /// Why the last connection was lost.
    pub fn last_break(&self) -> String {
        self.out().last_break.clone()
    }

    /// Closes the connection for good and fails everything pending.
    pub fn close(&self, reason: &str) {
        {
            let mut out = self.out();
            if out.closed.is_some() {
                return;
            }
            out.closed = Some(reason.to_string());
            out.relimit(&self.opts);
            out.breaks += 1;
            out.last_break = reason.to_string();
        }
        tracing::debug!(channel = %self.channel, reason, "connection closed");
        self.pending().fail_all(reason);
        self.listeners.clear();
        self.state.send_replace(ConnectionState::Closed);
        self.space.notify_waiters();
        self.wake.notify_waiters();
        self.done.notify_waiters();
    }
}

/// Connects, performs the handshake and starts the supervisor.
pub async fn open(dir: &Path, channel: &str, opts: Options) -> Result<Arc<Shared>, ConnectError> {
    netcluster_proto::names::check_channel(channel)?;
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(ConnectError::NoRuntime);
    }
    let path = netcluster_local::channel_path(dir, channel);
    #[cfg(target_os = "linux")]
    let shared_opts_shm = opts.shm_pool;
    let shm = cfg!(target_os = "linux") && opts.shm_pool.is_some();
    let (stream, welcome) = dial(&path, channel, &opts.name, shm).await?;
    let mut out = Out::new(BytesMut::new());
    out.relimit(&opts);
    let shared = Arc::new(Shared {
        channel: channel.into(),
        path,
        opts,
        welcome_node: AtomicU64::new(welcome.node),
        welcome_client: AtomicU64::new(welcome.client),
        welcome_max: AtomicU64::new(welcome.max_message as u64),
        out: parking_lot::Mutex::new(out),
        space: Notify::new(),
        wake: Notify::new(),
        done: Notify::new(),
        listeners: Listeners::default(),
        rd: ReadSide::default(),
        pending: Mutex::new(Pending::default()),
        state: watch::Sender::new(ConnectionState::Connected),
        next_id: AtomicU32::new(1),
        next_listener: AtomicU64::new(0),
        seq: AtomicU64::new(0),
        direct: AtomicBool::new(true),
        #[cfg(target_os = "linux")]
        shm: shared_memory(&shared_opts_shm),
    });
    #[cfg(target_os = "linux")]
    if let Some(shm) = &shared.shm {
        let weak = Arc::downgrade(&shared);
        shm.set_wake(Arc::new(move || {
            if let Some(s) = weak.upgrade() {
                s.send_releases();
            }
        }));
        shm_connected(&shared, &stream, welcome.shm);
    }
    tokio::spawn(supervise(shared.clone(), stream));
    Ok(shared)
}

/// How a connection ended.
struct Ended {
    pub(super) reason: String,
    /// The daemon refused us for good (removed channel, denied, version):
    /// reconnecting would not help.
    permanent: bool,
}

/// Runs connections one after the other until the client closes for good.
async fn supervise(shared: Arc<Shared>, first: Stream) {
    let mut stream = first;
    loop {
        shared.out().conn = Some(stream.clone());
        shared.allow_direct();
        let stop = Arc::new(Notify::new());
        let writer = tokio::spawn(writer(shared.clone(), stream.clone(), stop.clone()));
        let ended = reader(&shared, &stream).await;
        // No more writes to this socket; what is emitted now stays in the
        // buffer for the next connection.
        shared.out().disconnected();
        stop.notify_one();
        let _ = writer.await;
        if shared.out().closing {
            shared.close("disconnected by the application");
            return;
        }
        if shared.closed().is_some() || ended.permanent || !shared.opts.reconnect {
            shared.close(&ended.reason);
            return;
        }
        tracing::info!(channel = %shared.channel, reason = %ended.reason, "connection lost; reconnecting");
        {
            let mut out = shared.out();
            out.offline = Some(ended.reason.clone());
            out.relimit(&shared.opts);
            // What was written and not confirmed may be lost: the flush
            // windows open now say so.
            out.breaks += 1;
            out.last_break = ended.reason.clone();
        }
        shared
            .pending()
            .fail_all(&format!("reconnecting to the daemon ({})", ended.reason));
        shared.state.send_replace(ConnectionState::Reconnecting);
        shared.space.notify_waiters();
        match redial(&shared).await {
            Some(s) => stream = s,
            None => return,
        }
    }
}

/// Reconnects with exponential backoff; renews the subscriptions ahead of
/// whatever was emitted while offline. `None` once the client is closed.
async fn redial(shared: &Arc<Shared>) -> Option<Stream> {
    let mut pause = BACKOFF_MIN;
    loop {
        let done = shared.done.notified();
        tokio::pin!(done);
        done.as_mut().enable();
        if shared.closed().is_some() {
            return None;
        }
        if shared.out().closing {
            shared.close("disconnected by the application while reconnecting");
            return None;
        }
        let shm = cfg!(target_os = "linux") && shared.opts.shm_pool.is_some();
        match dial(&shared.path, &shared.channel, &shared.opts.name, shm).await {
            Ok((stream, welcome)) => {
                shared.set_welcome(welcome);
                #[cfg(target_os = "linux")]
                if let Some(shm) = &shared.shm {
                    // Before the new pool replaces the old one.
                    shm.inline_queued(&mut shared.out().buf);
                }
                #[cfg(target_os = "linux")]
                shm_connected(shared, &stream, welcome.shm);
                let events = shared.listeners.snapshot().events();
                {
                    let mut out = shared.out();
                    let queued = std::mem::take(&mut out.buf);
                    if !events.is_empty() {
                        frame::encode_subscription(
                            &mut out.buf,
                            true,
                            0,
                            events.iter().map(String::as_str),
                        );
                    }
                    out.buf.extend_from_slice(&queued);
                    out.offline = None;
                    out.relimit(&shared.opts);
                }
                tracing::info!(channel = %shared.channel, client = welcome.client, "reconnected");
                shared.state.send_replace(ConnectionState::Connected);
                shared.space.notify_waiters();
                return Some(stream);
            }
            Err(e) => tracing::debug!(channel = %shared.channel, "reconnect failed: {e}"),
        }
        // Jitter of up to a quarter, so many clients do not retry in step.
        let jitter = pause.mul_f64(0.25 * (std::process::id() % 97) as f64 / 97.0);
        tokio::select! {
            _ = tokio::time::sleep(pause + jitter) => {}
            _ = &mut done => return None,
        }
        pause = (pause * 2).min(BACKOFF_MAX);
    }
}

impl Shared {
    /// Removes a listener and unsubscribes at the daemon if it was the last
    /// one for its event.
    pub(crate) fn remove_listener(&self, id: u64) -> bool {
        match self.listeners.remove(id) {
            None => false,
            Some((event, last)) => {
                if last && self.closed().is_none() {
                    // Unsubscribing is not awaited: the daemon applies it in
                    // order, and stray messages for the event are ignored.
                    let mut out = self.out();
                    let was_empty = out.buf.is_empty();
                    frame::encode_subscription(&mut out.buf, false, 0, [event.as_str()]);
                    drop(out);
                    if was_empty {
                        self.wake.notify_one();
                    }
                }
                true
            }
        }
    }
}

#[cfg(target_os = "linux")]
mod shm;
#[cfg(target_os = "linux")]
use shm::{shared_memory, shm_connected};
mod batch;
mod dial;
mod publish;
mod reader;
mod readside;
mod writer;
use dial::dial;
pub use reader::dispatch;
use reader::reader;
pub(crate) use readside::Pump;
use readside::ReadSide;
use writer::writer;
