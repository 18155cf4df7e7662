//! The async client handle: a cheap `Clone` over one connection.
//!
//! Methods mirror Node's EventEmitter across processes: `emit`, `on`,
//! `once`, `remove_listener`, plus `subscribe` (a `Stream` that
//! unsubscribes on drop), `flush`, `request` (control) and `disconnect`.
//! Configuring and connecting are in `builder`.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use netcluster_proto::frame::{self, DeliverHeader};
use netcluster_proto::names;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::connection::{self, ConnectionState, Shared};
use crate::error::{ConnectError, EmitError, FlushError, RequestError, SubscribeError};
use crate::table::{Entry, Handler, Sink};
use crate::Message;

mod builder;
mod emit;
mod loan;
mod subscription;

use emit::EmitBytes;
pub use loan::Loan;
pub use subscription::Subscription;

pub use builder::{
    default_socket_dir, ClientBuilder, DEFAULT_MAX_PENDING, DEFAULT_OFFLINE_QUEUE,
    DEFAULT_REQUEST_TIMEOUT, DEFAULT_SUBSCRIPTION_CAPACITY,
};

/// Identifies a listener added with [`Client::on`] or [`Client::once`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerId(pub(crate) u64);

/// Closes the connection when the last handle is dropped.
struct CloseOnDrop(Arc<Shared>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        let mut out = self.0.out();
        out.closing = true;
        out.relimit(&self.0.opts);
        drop(out);
        self.0.wake.notify_one();
    }
}

/// A connection to one channel. Clones share the connection; it closes
/// when the last clone is dropped or [`Client::disconnect`] is called.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    /// Closes the connection when the last clone is dropped.
    _guard: Arc<CloseOnDrop>,
    subscription_capacity: usize,
    request_timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("channel", &self.shared.channel)
            .field("client", &self.shared.welcome().client)
            .field("node", &format_args!("{:016x}", self.shared.welcome().node))
            .finish()
    }
}

impl Client {
    /// Connects to `channel` with default options.
    pub async fn connect(channel: &str) -> Result<Client, ConnectError> {
        Client::builder(channel).connect().await
    }

    /// Options for connecting to `channel`.
    pub fn builder(channel: &str) -> ClientBuilder {
        ClientBuilder {
            channel: channel.to_string(),
            socket_dir: None,
            name: None,
            echo: true,
            max_pending: DEFAULT_MAX_PENDING,
            subscription_capacity: DEFAULT_SUBSCRIPTION_CAPACITY,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            reconnect: true,
            offline_bytes: DEFAULT_OFFLINE_QUEUE,
            shm_pool: None,
        }
    }

    /// The channel this client is connected to.
    pub fn channel(&self) -> &str {
        &self.shared.channel
    }

    /// The id the daemon gave this client.
    pub fn client_id(&self) -> u64 {
        self.shared.welcome().client
    }

    /// The daemon's node id.
    pub fn node_id(&self) -> u64 {
        self.shared.welcome().node
    }

    /// The largest payload the daemon accepts.
    pub fn max_message(&self) -> usize {
        self.shared.max_message()
    }

    /// Why the connection is closed for good, or `None` while it is open
    /// or reconnecting.
    pub fn closed_reason(&self) -> Option<String> {
        self.shared.closed()
    }

    /// Why the client is not connected right now: while reconnecting, the
    /// reason the last connection ended (the daemon's error when it sent
    /// one, e.g. "slow consumer: …"); once closed, [`Client::closed_reason`].
    /// `None` while connected.
    pub fn not_connected_reason(&self) -> Option<String> {
        self.shared.not_connected()
    }

    /// Whether the client is connected, reconnecting or closed.
    pub fn state(&self) -> ConnectionState {
        self.shared.state()
    }

    /// A receiver that sees every change of [`Client::state`].
    pub fn watch_state(&self) -> tokio::sync::watch::Receiver<ConnectionState> {
        self.shared.watch_state()
    }

    /// Emits `event` with `data` serialized as JSON.
    pub async fn emit<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> Result<(), EmitError> {
        names::check_event(event)?;
        let max = self.shared.max_message();
        let mut err = None;
        let mut echo_payload = None;
        let wants_echo = self.wants_echo(event);
        let mut encode = Some(|b: &mut BytesMut| {
            let start = b.len();
            frame::encode_publish_header(b, event, 0);
            let body = b.len();
            if let Err(e) = serde_json::to_writer(b.writer(), data) {
                err = Some(EmitError::Serialize(e));
            } else if b.len() - body > max {
                err = Some(EmitError::TooLarge {
                    len: b.len() - body,
                    max,
                });
            }
            if err.is_some() {
                b.truncate(start);
                return;
            }
            if wants_echo {
                echo_payload = Some(Bytes::copy_from_slice(&b[body..]));
            }
            frame::patch_len(b, start);
        });
        // The fast path without the waiting future (see `put_waiting`).
        let s = &self.shared;
        if s.try_put(&mut encode, false)
            .map_err(EmitError::Disconnected)?
            .is_none()
        {
            s.put_waiting(&mut encode, false)
                .await
                .map_err(EmitError::Disconnected)?;
        }
        if let Some(e) = err {
            return Err(e);
        }
        if let Some(p) = echo_payload {
            self.echo(event, &p).await;
        }
        Ok(())
    }

    /// A payload of `len` bytes is within the daemon's largest message.
    fn fits(&self, len: usize) -> Result<(), EmitError> {
        let max = self.shared.max_message();
        if len > max {
            return Err(EmitError::TooLarge { len, max });
        }
        Ok(())
    }

    /// Emits `event` with a raw payload (not necessarily JSON).
    ///
    /// As with an `async fn`, nothing happens until the future is polled.
    /// Its first poll appends the message at once when the output buffer
    /// has room and nothing else is to be done (no shared memory for this
    /// payload, no own listener to echo to), and completes; otherwise it
    /// takes the general path, which waits for room while connected,
    /// queues while reconnecting and reports errors. Order, back-pressure
    /// and errors are the same either way.
    pub fn emit_bytes<'a, P: AsRef<[u8]> + 'a>(
        &'a self,
        event: &'a str,
        payload: P,
    ) -> impl Future<Output = Result<(), EmitError>> + 'a {
        // A small hand-made future rather than an `async fn`: building,
        // polling and dropping the general path's state machine (it holds
        // the waits for room, for a shared-memory slot and for echo) cost
        // about as much as appending a small message. That path is boxed
        // and built only when the buffer is full, once per `max_pending`
        // bytes in a fast publisher.
        EmitBytes::new(self, event, payload, |c: &'a Client, e: &'a str, p: P| {
            c.emit_bytes_general(e, p)
        })
    }

    /// [`Client::emit_bytes`] when [`Client::emit_now`] could not append.
    async fn emit_bytes_general(
        &self,
        event: &str,
        payload: impl AsRef<[u8]>,
    ) -> Result<(), EmitError> {
        names::check_event(event)?;
        let payload = payload.as_ref();
        self.fits(payload.len())?;
        #[cfg(target_os = "linux")]
        {
            let slot = match &self.shared.shm {
                Some(s) => s.put_waiting(payload).await,
                None => None,
            };
            if let (Some((gen, off)), Some(shm)) = (slot, &self.shared.shm) {
                // In the pool: only the descriptor crosses the socket,
                // unless a new connection retired the pool meanwhile
                // (checked under the output buffer's lock).
                let len = payload.len() as u32;
                let sent = self
                    .shared
                    .send(|b| {
                        if shm.is_current(gen) {
                            frame::shm::encode_publish(b, off, len, event)
                        } else {
                            frame::encode_publish(b, event, payload)
                        }
                    })
                    .await;
                if let Err(e) = sent {
                    if shm.is_current(gen) {
                        shm.unput(off);
                    }
                    return Err(EmitError::Disconnected(e));
                }
                if self.wants_echo(event) {
                    self.echo(event, payload).await;
                }
                return Ok(());
            }
        }
        // The fast path without the waiting future (see `put_waiting`).
        let mut encode = Some(|b: &mut BytesMut| frame::encode_publish(b, event, payload));
        let s = &self.shared;
        if s.try_put(&mut encode, false)
            .map_err(EmitError::Disconnected)?
            .is_none()
        {
            s.put_waiting(&mut encode, false)
                .await
                .map_err(EmitError::Disconnected)?;
        }
        if self.wants_echo(event) {
            self.echo(event, payload).await;
        }
        Ok(())
    }

    /// Slots of this client's shared-memory pool that recipients have
    /// not released yet, or that are loaned out ([`Client::loan`]) and not
    /// yet emitted (0 without shared memory). See
    /// [`ClientBuilder::shared_memory`].
    pub fn shared_memory_in_flight(&self) -> usize {
        #[cfg(target_os = "linux")]
        if let Some(s) = &self.shared.shm {
            return s.in_flight();
        }
        0
    }

    // Inline: called on every emit, and with echo off (the common case in
    // fast publishers) it is one load and a branch.
    #[inline]
    fn wants_echo(&self, event: &str) -> bool {
        self.shared.opts.echo
            && !self.shared.listeners.is_empty()
            && self.shared.listeners.snapshot().wants(event)
    }

    /// Delivers an own message to own listeners (echo-to-self).
    async fn echo(&self, event: &str, payload: &[u8]) {
        let s = &self.shared;
        let seq = s.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let h = DeliverHeader {
            node: None,
            client: s.welcome().client,
            seq,
            channel: None,
        };
        let mut b = BytesMut::new();
        frame::encode_deliver(&mut b, &h, event, payload);
        let b = b.freeze();
        let Ok(Some((frame::Frame::Deliver(d), _))) = frame::decode(&b, usize::MAX) else {
            return;
        };
        let msg = Message::from_deliver(&b, &d, &s.channel, s.welcome().node);
        let mut removals = Vec::new();
        let table = s.listeners.snapshot();
        let (named, all) = table.matching(event);
        connection::dispatch(named.iter().chain(all), &msg, &mut removals).await;
        for id in removals {
            s.remove_listener(id);
        }
    }

    /// Adds a listener entry and, if it is the first for its event, tells
    /// the daemon and waits for its acknowledgement.
    async fn add_listener(
        &self,
        event: &str,
        sink: Sink,
        once: bool,
    ) -> Result<u64, SubscribeError> {
        names::check_subscription(event)?;
        let s = &self.shared;
        if let Some(r) = s.closed() {
            return Err(SubscribeError::Disconnected(r));
        }
        let id = s.next_listener_id();
        let fired = once.then(|| Arc::new(AtomicBool::new(false)));
        if s.listeners.add(event, Entry { id, sink, fired })
            && s.state() == ConnectionState::Connected
        {
            let ack = s.next_id();
            let (tx, rx) = oneshot::channel();
            s.pending().acks.insert(ack, tx);
            let sent = s
                .send(|b| frame::encode_subscription(b, true, ack, [event]))
                .await;
            let result = match sent {
                Err(r) => Err(SubscribeError::Disconnected(r)),
                Ok(()) => match rx.await {
                    Ok(Ok(())) => Ok(id),
                    Ok(Err(m)) if s.closed().is_some() => Err(SubscribeError::Disconnected(m)),
                    Ok(Err(m)) => Err(SubscribeError::Refused(m)),
                    Err(_) => Err(SubscribeError::Disconnected(s.closed().unwrap_or_default())),
                },
            };
            if result.is_err() {
                s.pending().acks.remove(&ack);
                s.remove_listener(id);
            }
            return result;
        }
        Ok(id)
    }

    /// Calls `handler` for every message with this event (`*` = all events
    /// of the channel). Handlers run on the connection's reader task, or in
    /// a task of this client awaiting [`Subscription::recv`] when that task
    /// reads the socket itself: keep them short, or hand work to another
    /// task.
    pub async fn on<F>(&self, event: &str, handler: F) -> Result<ListenerId, SubscribeError>
    where
        F: Fn(&Message) + Send + Sync + 'static,
    {
        let h: Handler = Arc::new(handler);
        self.add_listener(event, Sink::Handler(h), false)
            .await
            .map(ListenerId)
    }

    /// Like [`Client::on`], for the next matching message only.
    pub async fn once<F>(&self, event: &str, handler: F) -> Result<ListenerId, SubscribeError>
    where
        F: Fn(&Message) + Send + Sync + 'static,
    {
        let h: Handler = Arc::new(handler);
        self.add_listener(event, Sink::Handler(h), true)
            .await
            .map(ListenerId)
    }

    /// Removes a listener. Returns false if there was none with this id
    /// (already removed, or a `once` listener that fired).
    pub fn remove_listener(&self, id: ListenerId) -> bool {
        self.shared.remove_listener(id.0)
    }

    /// A stream of the messages with this event (`*` = all). Dropping it
    /// unsubscribes.
    pub async fn subscribe(&self, event: &str) -> Result<Subscription, SubscribeError> {
        self.subscribe_many(&[event]).await
    }

    /// One stream of the messages of several events, in the order the
    /// daemon sent them (separate subscriptions would lose the order across
    /// events). `*` among them means all events. Dropping it unsubscribes.
    pub async fn subscribe_many<S: AsRef<str>>(
        &self,
        events: &[S],
    ) -> Result<Subscription, SubscribeError> {
        let (tx, rx) = mpsc::channel(self.subscription_capacity);
        let mut sub = Subscription::new(rx, events.len(), self.shared.clone());
        let all = events
            .iter()
            .any(|e| e.as_ref() == netcluster_proto::frame::WILDCARD);
        let mut names: Vec<&str> = if all {
            vec![netcluster_proto::frame::WILDCARD]
        } else {
            events.iter().map(AsRef::as_ref).collect()
        };
        names.dedup();
        for event in names {
            // On error, dropping `sub` removes what was added.
            let id = self
                .add_listener(event, Sink::Stream(tx.clone()), false)
                .await?;
            sub.add_id(id);
        }
        Ok(sub)
    }

    /// A barrier answered by the daemon: waits until it has handled
    /// everything this client emitted before the call.
    ///
    /// `Ok(())` promises that every message emitted since the previous
    /// `flush` (or since connecting) was read and routed by the daemon:
    /// queued for each recipient connected at that moment (and handed to
    /// the network layer); a daemon crash after that can no longer take it
    /// back from the emitter's side. The daemon handles a connection's
    /// frames in order and answers this Ping only after the frames before
    /// it, so no per-message acknowledgement is needed.
    ///
    /// If the connection broke at any time since the previous `flush`, the
    /// daemon cannot have confirmed all of them: the result is
    /// [`FlushError::Unconfirmed`] with the number of messages emitted since
    /// the previous `flush`. Any of those may be lost (at most once);
    /// those still queued in this client were sent after reconnecting and
    /// may have arrived. A message is never reported by an `Ok` and lost.
    /// Call `flush` often (e.g. every few hundred messages) to keep the
    /// uncertain window small. Closed for good: [`FlushError::Disconnected`]
    /// when nothing was left unconfirmed.
    pub async fn flush(&self) -> Result<(), FlushError> {
        let s = &self.shared;
        let token = s.next_id() as u64;
        let (tx, rx) = oneshot::channel();
        s.pending().pings.insert(token, tx);
        let mark = match s.send_barrier(|b| frame::encode_ping(b, true, token)).await {
            Ok(m) => m,
            Err(reason) => {
                s.pending().pings.remove(&token);
                let count = {
                    let out = s.out();
                    out.appended - out.window.0
                };
                return Err(unconfirmed(count, reason));
            }
        };
        let count = mark.appended - mark.window.0;
        match rx.await {
            Ok(breaks) if breaks == mark.window.1 || count == 0 => Ok(()),
            Ok(_) => Err(unconfirmed(count, s.last_break())),
            Err(_) => {
                let reason = s.not_connected().unwrap_or_else(|| s.last_break());
                Err(unconfirmed(count, reason))
            }
        }
    }

    /// Sends a control request (e.g. `nc-control-showconfig`) and returns
    /// the daemon's JSON answer. Only answered on the `control` channel.
    pub async fn request<T: Serialize + ?Sized>(
        &self,
        name: &str,
        arg: &T,
    ) -> Result<serde_json::Value, RequestError> {
        names::check_event(name)?;
        let s = &self.shared;
        if let Some(r) = s.not_connected() {
            return Err(RequestError::Disconnected(r));
        }
        let arg = serde_json::to_vec(arg).map_err(RequestError::Serialize)?;
        let id = s.next_id();
        let (tx, rx) = oneshot::channel();
        s.pending().requests.insert(id, tx);
        s.send(|b| frame::encode_request(b, id, name, &arg))
            .await
            .map_err(RequestError::Disconnected)?;
        let reply = match tokio::time::timeout(self.request_timeout, rx).await {
            Err(_) => {
                s.pending().requests.remove(&id);
                return Err(RequestError::Timeout(self.request_timeout));
            }
            Ok(Err(_)) => return Err(RequestError::Disconnected(s.closed().unwrap_or_default())),
            Ok(Ok(r)) => r,
        };
        match reply {
            Ok(body) => serde_json::from_slice(&body).map_err(RequestError::BadResponse),
            Err(m) if s.closed().is_some() => Err(RequestError::Disconnected(m)),
            Err(m) => Err(RequestError::Failed(m)),
        }
    }

    /// Writes what is pending, then closes the connection for good.
    /// Safe to call from a handler.
    pub async fn disconnect(&self) -> Result<(), FlushError> {
        let s = &self.shared;
        let done = s.done.notified();
        tokio::pin!(done);
        done.as_mut().enable();
        {
            let mut out = s.out();
            if let Some(r) = &out.closed {
                return Err(FlushError::Disconnected(r.clone()));
            }
            out.closing = true;
            out.relimit(&s.opts);
        }
        if s.state() != ConnectionState::Connected {
            s.close("disconnected by the application");
            return Ok(());
        }
        s.wake.notify_one();
        done.await;
        Ok(())
    }
}

/// The error of a flush whose window saw a break.
fn unconfirmed(count: u64, reason: String) -> FlushError {
    if count == 0 {
        FlushError::Disconnected(reason)
    } else {
        FlushError::Unconfirmed { count, reason }
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("channel", &self.channel)
            .field("path", &self.path)
            .finish()
    }
}
