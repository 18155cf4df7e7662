//! A client session: handshake (the `handshake` module), admission, then the read loop.
//!
//! The first byte tells the dialect: `{` starts the seed's JSON packets,
//! anything else must be a native Hello frame; a client that stays silent
//! for [`handshake::LEGACY_SILENCE`] is a seed client that only listens. After the handshake the
//! session reads in batches (into the hub's shared read buffer, so an idle
//! client holds no read memory), handles every complete frame or packet,
//! and flushes all queues touched by the batch at once. When a recipient's
//! queue is over its limit the session stops reading until it drains
//! (lossless backpressure), or closes that recipient after `blockms`.
//! An unfinished frame is kept in the session's own buffer, charged to the
//! daemon-wide `partialbytes` budget (`partial`), and must complete within
//! `frametimeoutms`, else the client gets an error and is closed.

use std::io;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use netcluster_proto::frame::{self, ErrorCode, Frame, FRAME_OVERHEAD, HEADER_LEN};
use netcluster_proto::{legacy, names};
use tokio::time::Instant;

use crate::access;
use crate::conn::{bump, Conn, ConnInit, Dialect};
use crate::control;
use crate::early;
use crate::hub::{Flow, Hub, Origin, Payload};
use crate::outq::SHARE_PAYLOAD_MIN;
use crate::partial::{self, frame_end, holds_partial, restart_clock, too_slow, wanted, Held};
use netcluster_local::{LocalStream, PeerInfo};

mod handshake;
#[cfg(target_os = "linux")]
mod shm;

use handshake::{handshake, Refusal, HANDSHAKE_TIMEOUT};

/// Most bytes of event names one client may be subscribed to (some 30 000
/// names of 32 bytes), so that subscribing cannot grow the daemon without
/// bound; a Subscribe past it is refused with an error, name by name.
const MAX_SUBSCRIBED_BYTES: usize = 1024 * 1024;

/// Result of handling a batch of input.
enum Step {
    /// Everything complete was handled; read more.
    Continue,
    /// Wait for this recipient before handling the rest.
    Block(Rc<Conn>),
    /// Close the session with this error.
    Close(ErrorCode, String),
}

/// Serves one accepted connection until it ends. Called by the accept
/// loop: before the returned future first runs, the connection is already
/// registered as an early listener (see [`early`]), so it gets everything
/// routed to its channel after the accept.
pub fn serve(
    hub: Rc<Hub>,
    stream: LocalStream,
    peer: PeerInfo,
    channel: Rc<str>,
) -> impl std::future::Future<Output = ()> {
    let stream = Rc::new(stream);
    // Until it speaks, it may be a seed client that only listens: it gets
    // its channel's messages from now on (held until the dialect is known).
    let early = early::register(&hub, &stream, &peer, &channel);
    handshake_and_run(hub, stream, peer, channel, early)
}

async fn handshake_and_run(
    hub: Rc<Hub>,
    stream: Rc<LocalStream>,
    peer: PeerInfo,
    channel: Rc<str>,
    early: Option<Rc<Conn>>,
) {
    let mut pending = BytesMut::new();
    let hello = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&stream, &mut pending)).await;
    let dialect = match &hello {
        Ok(Ok(h)) => Some(h.dialect),
        _ => None,
    };
    if let Some(conn) = early::settle(&hub, early, dialect) {
        tracing::info!(client = conn.id, name = %conn.name, channel = %channel, pid = ?conn.peer.pid, dialect = ?conn.dialect, "client connected");
        return run(hub, conn, pending).await;
    }
    let hello = match hello {
        Ok(Ok(h)) => h,
        Ok(Err(Refusal { code, message })) => {
            tracing::debug!(channel = %channel, %message, "handshake refused");
            let mut b = BytesMut::new();
            match pending.first() {
                Some(b'{') => legacy::encode_error(&mut b, &channel, &message),
                _ => frame::encode_error(&mut b, code, 0, true, &message),
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&b)).await;
            return;
        }
        Err(_) => {
            tracing::debug!(channel = %channel, "no hello within {HANDSHAKE_TIMEOUT:?}; closing");
            return;
        }
    };
    let Some(channel_id) = hub.router.borrow().channel(&channel) else {
        let mut b = BytesMut::new();
        frame::encode_error(
            &mut b,
            ErrorCode::ChannelRemoved,
            0,
            true,
            &format!("channel {channel:?} no longer exists"),
        );
        let _ = stream.write_all(&b).await;
        return;
    };
    let info = hub.channel_info(channel_id);
    if let Err(why) = access::check(&channel, &peer, &info.allow_uids, &info.allow_gids) {
        tracing::warn!(channel = %channel, uid = ?peer.uid, pid = ?peer.pid, "{why}");
        let mut b = BytesMut::new();
        match hello.dialect {
            Dialect::Native => frame::encode_error(&mut b, ErrorCode::Denied, 0, true, &why),
            Dialect::Legacy => legacy::encode_error(&mut b, &channel, &why),
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&b)).await;
        return;
    }
    let (slot, id) = hub.reserve();
    let conn = Rc::new(Conn::new(ConnInit {
        slot,
        id,
        channel: channel.clone(),
        channel_id,
        name: hello.name,
        hello_pid: hello.pid,
        peer,
        dialect: hello.dialect,
        stream,
    }));
    hub.register(conn.clone());
    #[cfg(target_os = "linux")]
    conn.shm.on.set(
        hello.flags & frame::shm::HELLO_SHM != 0
            && conn.dialect == Dialect::Native
            && hub.config().shmbytes > 0,
    );
    if conn.dialect == Dialect::Legacy {
        // The seed's clients filter locally: they get every event.
        hub.router
            .borrow_mut()
            .subscribe(conn.slot, frame::WILDCARD);
    }
    tracing::info!(client = id, name = %conn.name, channel = %channel, pid = ?conn.peer.pid, dialect = ?conn.dialect, "client connected");
    if conn.dialect == Dialect::Native {
        conn.with_tail(|b| {
            let start = b.len();
            frame::encode_welcome(b, hub.node_id, id, hub.max_message() as u32, &channel);
            #[cfg(target_os = "linux")]
            if conn.shm.on.get() {
                frame::shm::set_flags(b, start, frame::shm::WELCOME_SHM);
            }
            let _ = start;
        });
        hub.touch(&conn);
        hub.flush_touched();
        #[cfg(target_os = "linux")]
        hub.offer_pools_to(&conn);
    }
    run(hub, conn, pending).await
}

/// Runs an established connection: its writer task and its read loop,
/// until it ends.
async fn run(hub: Rc<Hub>, conn: Rc<Conn>, pending: BytesMut) {
    let (id, channel) = (conn.id, conn.channel.clone());
    let writer = {
        let (hub, conn) = (hub.clone(), conn.clone());
        tokio::task::spawn_local(async move {
            let limit = || hub.queue_limit();
            if let Some(e) = conn.run_writer(limit).await {
                hub.close(&conn, None, &format!("write failed: {e}"));
            }
        })
    };
    let reason = read_loop(&hub, &conn, pending).await;
    match reason {
        Ok(why) => hub.close(&conn, None, why),
        Err((code, msg)) => {
            tracing::warn!(client = id, name = %conn.name, channel = %channel, "closing client after protocol error: {msg}");
            hub.close(&conn, Some((code, &msg)), &msg);
        }
    }
    let _ = writer.await;
}

/// Reads and handles input until the client leaves (`Ok(reason)`) or
/// breaks the protocol (`Err`). An unfinished frame lives in `pending`,
/// charged to the daemon-wide `partialbytes` budget, and must complete
/// within `frametimeoutms` of its first byte; the clock stops while the
/// daemon itself holds the session back (backpressure).
async fn read_loop(
    hub: &Rc<Hub>,
    conn: &Rc<Conn>,
    mut pending: BytesMut,
) -> Result<&'static str, (ErrorCode, String)> {
    let refused = |msg: String| (ErrorCode::TooLarge, msg);
    let mut held = Held::new(&hub.partial);
    let limit = || hub.config().partial_budget();
    if !pending.is_empty() {
        held.set(pending.capacity(), limit())
            .map_err(|_| refused(format!("partialbytes ({} bytes) is used up", limit())))?;
    }
    let mut ready = !pending.is_empty();
    // When the unfinished frame at the start of `pending` began.
    let mut started: Option<Instant> = None;
    loop {
        if conn.is_closed() {
            return Ok("closed by the daemon");
        }
        if ready {
            let before = pending.len();
            let step = process(hub, conn, &mut pending);
            hub.flush_touched();
            restart_clock(&mut started, &pending, before, conn.dialect);
            match step {
                Step::Continue => ready = false,
                Step::Block(target) => {
                    if !wait_drain(hub, Some(conn), target).await {
                        return Ok("closed by the daemon");
                    }
                    started = started.map(|_| Instant::now());
                    continue;
                }
                Step::Close(code, msg) => return Err((code, msg)),
            }
        }
        // An emptied pending buffer still holds its allocation, as large as
        // the largest frame the client sent; let it go before waiting, so
        // that an idle client holds no read memory.
        if pending.is_empty() {
            pending = BytesMut::new();
            held.clear();
        }
        // The network is behind (its receivers acknowledge too slowly):
        // stop taking messages for it until it has room.
        if let Some(link) = hub.link_backlog(conn.channel_id) {
            tokio::select! {
                biased;
                _ = conn.kill.notified() => return Ok("closed by the daemon"),
                _ = link.wait_room() => {}
            }
            started = started.map(|_| Instant::now());
        }
        let timeout = hub.config().frame_timeout();
        let deadline = started.map(|t| t + timeout);
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err((
                ErrorCode::BadFrame,
                too_slow(&pending, conn.dialect, timeout),
            ));
        }
        let expired = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = conn.kill.notified() => return Ok("closed by the daemon"),
            r = conn.stream.readable() => if r.is_err() { return Ok("read error") },
            _ = expired => continue,
        }
        let max = hub.max_message() + FRAME_OVERHEAD;
        let (step, before) = {
            let mut shared = hub.read_buf.borrow_mut();
            let use_shared = pending.is_empty();
            if use_shared {
                let want = wanted(&shared, conn.dialect);
                if shared.capacity() - shared.len() < want.min(4096) {
                    shared.reserve(want);
                }
            } else {
                let want = wanted(&pending, conn.dialect);
                let end = frame_end(&pending, conn.dialect, max);
                partial::make_room(&mut pending, want, end, &mut held, limit()).map_err(refused)?;
            }
            let buf = if use_shared {
                &mut *shared
            } else {
                &mut pending
            };
            match read_some(conn, buf) {
                Ok(0) if holds_partial(buf, conn.dialect) => {
                    if use_shared {
                        shared.clear();
                    }
                    return Ok("closed mid-message");
                }
                Ok(0) => return Ok("closed by the client"),
                Ok(n) => bump(&conn.stats.bytes_in, n as u64),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(_) => return Ok("read error"),
            }
            let before = if use_shared { 0 } else { buf.len() };
            let step = process(hub, conn, buf);
            if use_shared && !shared.is_empty() {
                let kept = partial::keep(&shared, &mut held, limit());
                shared.clear();
                pending = kept.map_err(refused)?;
            }
            (step, before)
        };
        hub.flush_touched();
        restart_clock(&mut started, &pending, before, conn.dialect);
        match step {
            Step::Continue => {}
            Step::Block(target) => {
                if !wait_drain(hub, Some(conn), target).await {
                    return Ok("closed by the daemon");
                }
                started = started.map(|_| Instant::now());
                ready = true;
            }
            Step::Close(code, msg) => return Err((code, msg)),
        }
    }
}

/// Reads what the socket has; a connection using shared memory reads with
/// `recvmsg`, keeping the descriptors that came with the bytes (a bounded
/// number: more is a protocol error, reported as a read error here).
fn read_some(conn: &Conn, buf: &mut BytesMut) -> io::Result<usize> {
    #[cfg(target_os = "linux")]
    if conn.shm.on.get() {
        let mut fds = conn.shm.fds.borrow_mut();
        let n = conn.stream.try_read_buf_fds(buf, &mut fds)?;
        if fds.len() > crate::shm::MAX_PENDING_FDS {
            return Err(io::Error::other("too many unclaimed file descriptors"));
        }
        return Ok(n);
    }
    conn.stream.try_read_buf(buf)
}

/// Waits until `target`'s queue is back under the limit. Returns false if
/// `me` (the waiting publisher, if it is a client) was closed meanwhile.
/// After the channel's `blockms` the target is closed as a slow consumer,
/// which also frees the publisher.
pub(crate) async fn wait_drain(hub: &Hub, me: Option<&Conn>, target: Rc<Conn>) -> bool {
    bump(&target.stats.blocked, 1);
    target.waiters.set(target.waiters.get() + 1);
    let block = hub.channel_info(target.channel_id).block;
    let deadline = Instant::now() + block;
    let killed = async {
        match me {
            Some(m) => m.kill.notified().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(killed);
    let alive = loop {
        if me.is_some_and(Conn::is_closed) {
            break false;
        }
        if target.is_closed() || target.out.borrow().len() <= hub.queue_limit() {
            break true;
        }
        let drained = target.drained.notified();
        tokio::select! {
            _ = drained => {}
            _ = &mut killed => break false,
            _ = tokio::time::sleep_until(deadline) => {
                let msg = format!(
                    "slow consumer: queue stayed above queuebytes ({} bytes) for {} ms",
                    hub.queue_limit(),
                    block.as_millis()
                );
                hub.close(&target, Some((ErrorCode::SlowConsumer, &msg)), "slow consumer");
                break true;
            }
        }
    };
    target.waiters.set(target.waiters.get() - 1);
    alive
}

fn process(hub: &Rc<Hub>, conn: &Rc<Conn>, buf: &mut BytesMut) -> Step {
    match conn.dialect {
        Dialect::Native => process_native(hub, conn, buf),
        Dialect::Legacy => process_legacy(hub, conn, buf),
    }
}

fn process_native(hub: &Rc<Hub>, conn: &Rc<Conn>, buf: &mut BytesMut) -> Step {
    let max_body = hub.max_message() + FRAME_OVERHEAD;
    loop {
        // Large publishes are split off into their own buffer so every
        // recipient shares it instead of copying.
        if buf.len() >= HEADER_LEN && buf[0] == frame::kind::PUBLISH {
            let total = HEADER_LEN + u32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if total >= SHARE_PAYLOAD_MIN && total - HEADER_LEN <= max_body && buf.len() >= total {
                let whole = buf.split_to(total).freeze();
                let flow = match frame::decode(&whole, max_body) {
                    Ok(Some((Frame::Publish { event, payload }, _))) => {
                        publish(hub, conn, event, Payload::Shared(whole.slice_ref(payload)))
                    }
                    Ok(_) => unreachable!("a complete publish frame"),
                    Err(e) => return Step::Close(ErrorCode::BadFrame, e.to_string()),
                };
                if let Flow::Block(t) = flow {
                    return Step::Block(t);
                }
                continue;
            }
        }
        #[cfg(target_os = "linux")]
        if buf.first().is_some_and(|&t| frame::shm::is_shm_kind(t)) {
            match shm::handle(hub, conn, buf, max_body) {
                Ok(None) => return Step::Continue,
                Ok(Some((flow, n))) => {
                    buf.advance(n);
                    if let Flow::Block(t) = flow {
                        return Step::Block(t);
                    }
                    continue;
                }
                Err(msg) => return Step::Close(ErrorCode::BadFrame, msg),
            }
        }
        let (flow, n) = match frame::decode(buf, max_body) {
            Ok(None) => return Step::Continue,
            Ok(Some((f, n))) => match handle_frame(hub, conn, f) {
                Ok(flow) => (flow, n),
                Err(msg) => return Step::Close(ErrorCode::BadFrame, msg),
            },
            Err(e @ frame::FrameError::TooLarge { .. }) => {
                return Step::Close(
                    ErrorCode::TooLarge,
                    format!("{e} (maxmessage is {} bytes)", hub.max_message()),
                )
            }
            Err(e) => return Step::Close(ErrorCode::BadFrame, e.to_string()),
        };
        buf.advance(n);
        if let Flow::Block(t) = flow {
            return Step::Block(t);
        }
    }
}

fn handle_frame(hub: &Rc<Hub>, conn: &Rc<Conn>, f: Frame<'_>) -> Result<Flow, String> {
    match f {
        Frame::Publish { event, payload } => {
            return Ok(publish(hub, conn, event, Payload::Borrowed(payload)))
        }
        Frame::Subscribe { ack, ref events } | Frame::Unsubscribe { ack, ref events } => {
            let subscribe = matches!(f, Frame::Subscribe { .. });
            let mut router = hub.router.borrow_mut();
            let mut bad = None;
            for e in events.iter() {
                if let Err(err) = names::check_subscription(e) {
                    bad = Some((ErrorCode::BadName, err.to_string()));
                    continue;
                }
                let names = &conn.subscribed_bytes;
                if subscribe && router.subscribe(conn.slot, e) {
                    if names.get() + e.len() > MAX_SUBSCRIBED_BYTES {
                        router.unsubscribe(conn.slot, e);
                        let msg = format!(
                            "too many subscriptions: this client's event names would pass \
                             {MAX_SUBSCRIBED_BYTES} bytes; unsubscribe from some first"
                        );
                        bad = Some((ErrorCode::TooLarge, msg));
                        continue;
                    }
                    names.set(names.get() + e.len());
                } else if !subscribe && router.unsubscribe(conn.slot, e) {
                    names.set(names.get().saturating_sub(e.len()));
                }
            }
            drop(router);
            hub.interest_changed(conn.channel_id);
            conn.with_tail(|b| match bad {
                Some((code, msg)) => frame::encode_error(b, code, ack, false, &msg),
                None if ack != 0 => frame::encode_ack(b, ack),
                None => {}
            });
        }
        Frame::Request { id, event, payload } => {
            let reply = control::request(hub, conn, event, payload);
            let (status, body) = match reply {
                Ok(v) => (frame::Status::Ok, v.to_string()),
                Err(msg) => (
                    frame::Status::Failed,
                    serde_json::json!({ "error": msg }).to_string(),
                ),
            };
            conn.with_tail(|b| frame::encode_response(b, id, status, body.as_bytes()));
        }
        Frame::Ping(token) => conn.with_tail(|b| frame::encode_ping(b, false, token)),
        Frame::Pong(_) => {}
        Frame::Hello { .. } => return Err("hello sent twice".into()),
        Frame::Welcome { .. }
        | Frame::Deliver(_)
        | Frame::Response { .. }
        | Frame::Error { .. }
        | Frame::Ack(_) => return Err("received a frame type that only the server sends".into()),
    }
    Ok(replied(hub, conn))
}

/// After queuing a reply to `conn` (an ack, a pong, an answer, an error):
/// a client that sends requests but does not read the answers must not
/// grow its queue without bound, so past the limit its input waits for its
/// own queue to drain, like any slow consumer.
fn replied(hub: &Hub, conn: &Rc<Conn>) -> Flow {
    hub.touch(conn);
    if conn.out.borrow().len() > hub.queue_limit() {
        Flow::Block(conn.clone())
    } else {
        Flow::Continue
    }
}

fn process_legacy(hub: &Rc<Hub>, conn: &Rc<Conn>, buf: &mut BytesMut) -> Step {
    let max = hub.max_message() + FRAME_OVERHEAD;
    loop {
        let (flow, n) = match legacy::split(buf, max) {
            Ok(None) => return Step::Continue,
            Err(e) => return Step::Close(ErrorCode::TooLarge, e.to_string()),
            Ok(Some((packet, n))) if legacy::is_blank(packet) => (Flow::Continue, n),
            Ok(Some((packet, n))) => match legacy::parse(packet) {
                Ok(p) => (publish(hub, conn, &p.event, Payload::Borrowed(p.data)), n),
                // The seed forwarded such packets and its clients never
                // reconnect: refuse just this one, keep the connection.
                Err(e @ legacy::LegacyError::BadEvent(_)) => {
                    let msg = format!("packet dropped: {e}");
                    conn.queue_error(ErrorCode::BadName, 0, false, &msg);
                    (replied(hub, conn), n)
                }
                Err(e) => return Step::Close(ErrorCode::BadFrame, e.to_string()),
            },
        };
        buf.advance(n);
        if let Flow::Block(t) = flow {
            return Step::Block(t);
        }
    }
}

/// Handles one message emitted by `conn`.
fn publish(hub: &Rc<Hub>, conn: &Rc<Conn>, event: &str, payload: Payload<'_>) -> Flow {
    if let Err(e) = names::check_event(event) {
        conn.queue_error(ErrorCode::BadName, 0, false, &e.to_string());
        return replied(hub, conn);
    }
    let len = payload.len();
    if len > hub.max_message() {
        let msg = format!(
            "message of {len} bytes exceeds maxmessage ({} bytes); it was not sent",
            hub.max_message()
        );
        conn.queue_error(ErrorCode::TooLarge, 0, false, &msg);
        return replied(hub, conn);
    }
    bump(&conn.stats.msgs_in, 1);
    if control::is_request(hub, conn, event) {
        let reply = control::request(hub, conn, event, payload.as_slice());
        let body = match reply {
            Ok(v) => v,
            Err(msg) => serde_json::json!({ "error": msg }),
        };
        control::reply_event(conn, &format!("{event}-response"), &body);
        return replied(hub, conn);
    }
    let seq = conn.next_seq();
    if hub.has_links() {
        if let Err(msg) =
            hub.send_to_links(conn.channel_id, event, payload.as_slice(), conn.id, seq)
        {
            conn.queue_error(ErrorCode::TooLarge, 0, false, &msg);
            hub.touch(conn);
        }
    }
    let origin = Origin {
        node: None,
        client: conn.id,
        seq,
    };
    hub.fan_out(conn.channel_id, event, payload, origin, Some(conn.slot))
}
