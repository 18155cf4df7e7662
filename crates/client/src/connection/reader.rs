//! The connection's reader: decodes the daemon's frames in batches,
//! dispatches deliveries to the listener table and completes pending
//! requests, subscription acks and pings. Runs inside the supervisor task.

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;

use bytes::BytesMut;
use netcluster_proto::frame::{self, ErrorCode, Frame, Status, FRAME_OVERHEAD, HEADER_LEN};
use tokio::sync::mpsc::error::TrySendError;

use super::{ConnectionState, Ended, Shared, Stream, READ_CHUNK};
use crate::table::Sink;
use crate::Message;

pub(super) async fn reader(shared: &Arc<Shared>, rd: &Stream) -> Ended {
    let closed = shared.done.notified();
    tokio::pin!(closed);
    closed.as_mut().enable();
    let read = read_loop(shared, rd);
    tokio::pin!(read);
    let mut registered = false;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(e) = read.as_mut().poll(cx) {
            return Poll::Ready(e);
        }
        // Polling a `Notified` takes the `Notify`'s lock, and this runs on
        // every wake (every batch of frames). Once polled, it keeps this
        // task's waker and `close` wakes us through it; `close` sets the
        // state to Closed before notifying, so it needs polling again
        // only then.
        if !registered || shared.state() == ConnectionState::Closed {
            registered = true;
            if closed.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ended {
                    reason: shared.closed().unwrap_or_default(),
                    permanent: true,
                });
            }
        }
        Poll::Pending
    })
    .await
}

async fn read_loop(shared: &Arc<Shared>, rd: &Stream) -> Ended {
    let welcome = shared.welcome();
    let max_body = welcome.max_message + FRAME_OVERHEAD;
    let ended = |reason: String| Ended {
        reason,
        permanent: false,
    };
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut removals: Vec<u64> = Vec::new();
    #[cfg(target_os = "linux")]
    let shm: ShmRef = shared.shm.clone().filter(|s| s.on());
    #[cfg(not(target_os = "linux"))]
    let shm: ShmRef = None;
    loop {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(READ_CHUNK);
        }
        match read_more(rd, &mut buf, &shm).await {
            Ok(0) => return ended("the daemon closed the connection".into()),
            Ok(_) => shared.allow_direct(),
            Err(e) => return ended(format!("read failed: {e}")),
        }
        // Split off the complete frames as one shared buffer; messages
        // point into it.
        let mut complete = 0;
        while buf.len() - complete >= HEADER_LEN {
            let h = &buf[complete..];
            let len = u32::from_le_bytes([h[1], h[2], h[3], h[4]]) as usize;
            if len > max_body {
                return ended(format!(
                    "the daemon sent a frame of {len} bytes, over the limit"
                ));
            }
            if buf.len() - complete < HEADER_LEN + len {
                break;
            }
            complete += HEADER_LEN + len;
        }
        if complete == 0 {
            continue;
        }
        let chunk = buf.split_to(complete).freeze();
        let table = shared.listeners.snapshot();
        let mut last_event: Option<(&str, crate::table::Matching<'_>)> = None;
        let mut msg: Option<Message> = None;
        let mut off = 0;
        while off < chunk.len() {
            if chunk[off] == frame::kind::DELIVER {
                // Deliveries, the bulk of the traffic, skip the general
                // decoder. Runs of one event are common: its name is
                // checked (UTF-8) and its listeners looked up once per
                // run, and later frames of the run use the first one's
                // name (same bytes, same chunk).
                let h = &chunk[off..off + HEADER_LEN];
                let len = u32::from_le_bytes([h[1], h[2], h[3], h[4]]) as usize;
                let body = &chunk[off + HEADER_LEN..off + HEADER_LEN + len];
                off += HEADER_LEN + len;
                let raw = match frame::decode_deliver_raw(body) {
                    Ok(r) => r,
                    Err(e) => return ended(format!("bad frame from the daemon: {e}")),
                };
                let (event, (named, all)) = match last_event {
                    Some((e, found)) if same_name(e.as_bytes(), raw.event) => (Some(e), found),
                    _ => (None, ([].as_slice(), [].as_slice())),
                };
                let d = match raw.with_event(event) {
                    Ok(d) => d,
                    Err(e) => return ended(format!("bad frame from the daemon: {e}")),
                };
                let (named, all) = if event.is_some() {
                    (named, all)
                } else {
                    let found = table.matching(d.event);
                    last_event = Some((d.event, found));
                    found
                };
                if named.is_empty() && all.is_empty() {
                    continue;
                }
                let msg = match &mut msg {
                    Some(m) => {
                        m.retarget(&d, welcome.node);
                        m
                    }
                    None => msg.insert(Message::from_deliver(
                        &chunk,
                        &d,
                        &shared.channel,
                        welcome.node,
                    )),
                };
                // The common cases, one `on` handler or one subscription
                // stream with room: served here, without building the
                // general dispatch's future per message.
                if let ([only], []) = (named, all) {
                    match (&only.sink, &only.fired) {
                        (Sink::Handler(h), None) => {
                            h(msg);
                            continue;
                        }
                        (Sink::Stream(tx), None) => match tx.try_send(msg.clone()) {
                            Ok(()) => continue,
                            Err(TrySendError::Closed(_)) => {
                                removals.push(only.id);
                                continue;
                            }
                            // Full: the general path waits for room.
                            Err(TrySendError::Full(_)) => {}
                        },
                        _ => {}
                    }
                }
                dispatch(named.iter().chain(all), msg, &mut removals).await;
                continue;
            }
            #[cfg(target_os = "linux")]
            if let Some(s) = shm.as_ref().filter(|_| frame::shm::is_shm_kind(chunk[off])) {
                let (f, n) = match frame::shm::decode_shm(&chunk[off..], max_body) {
                    Ok(Some(x)) => x,
                    Ok(None) => unreachable!("complete frames were measured"),
                    Err(e) => return ended(format!("bad frame from the daemon: {e}")),
                };
                off += n;
                let (head, payload) = match s.handle(f) {
                    Ok(crate::shm::Handled::Done) => continue,
                    Ok(crate::shm::Handled::Deliver(head, payload)) => (head, payload),
                    Err(e) => {
                        return ended(format!("bad shared-memory frame from the daemon: {e}"))
                    }
                };
                let d = match head.with_event(None) {
                    Ok(d) => d,
                    Err(e) => return ended(format!("bad frame from the daemon: {e}")),
                };
                let (named, all) = table.matching(d.event);
                if named.is_empty() && all.is_empty() {
                    continue;
                }
                let m = Message::from_shm(&chunk, &d, payload, &shared.channel, welcome.node);
                dispatch(named.iter().chain(all), &m, &mut removals).await;
                continue;
            }
            let (f, n) = match frame::decode(&chunk[off..], max_body) {
                Ok(Some(x)) => x,
                Ok(None) => unreachable!("complete frames were measured"),
                Err(e) => return ended(format!("bad frame from the daemon: {e}")),
            };
            off += n;
            match f {
                Frame::Response {
                    id,
                    status,
                    payload,
                } => {
                    let tx = shared.pending().requests.remove(&id);
                    if let Some(tx) = tx {
                        let reply = match status {
                            Status::Ok => Ok(chunk.slice_ref(payload)),
                            Status::Failed => Err(error_text(payload)),
                        };
                        let _ = tx.send(reply);
                    }
                }
                Frame::Ack(id) => {
                    if let Some(tx) = shared.pending().acks.remove(&id) {
                        let _ = tx.send(Ok(()));
                    }
                }
                Frame::Pong(token) => {
                    let tx = shared.pending().pings.remove(&token);
                    if let Some(tx) = tx {
                        // Still on the connection the window ends on: no
                        // break can be counted between this and the answer.
                        let breaks = shared.out().breaks;
                        let _ = tx.send(breaks);
                    }
                }
                Frame::Ping(token) => {
                    let _ = shared.send(|b| frame::encode_ping(b, false, token)).await;
                }
                Frame::Error {
                    code,
                    message,
                    fatal: true,
                    ..
                } => {
                    let permanent = matches!(
                        code,
                        ErrorCode::ChannelRemoved | ErrorCode::Denied | ErrorCode::Version
                    );
                    return Ended {
                        reason: message.to_string(),
                        permanent,
                    };
                }
                Frame::Error { id, message, .. } => {
                    let tx = shared.pending().acks.remove(&id);
                    match tx {
                        Some(tx) => {
                            let _ = tx.send(Err(message.to_string()));
                        }
                        None => {
                            tracing::warn!(channel = %shared.channel, "daemon reported: {message}")
                        }
                    }
                }
                // (Deliver frames were handled above, without this decoder.)
                other => return ended(format!("unexpected frame from the daemon: {other:?}")),
            }
        }
        for id in removals.drain(..) {
            shared.remove_listener(id);
        }
    }
}

#[cfg(target_os = "linux")]
type ShmRef = Option<Arc<crate::shm::Shm>>;
#[cfg(not(target_os = "linux"))]
type ShmRef = Option<()>;

/// Reads more; a connection using shared memory keeps the descriptors
/// that come with the bytes.
async fn read_more(rd: &Stream, buf: &mut BytesMut, shm: &ShmRef) -> std::io::Result<usize> {
    #[cfg(target_os = "linux")]
    if let Some(s) = shm {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(READ_CHUNK);
        }
        let mut fds = Vec::new();
        let r = rd.read_buf_fds(buf, &mut fds).await;
        s.add_fds(&mut fds);
        return r;
    }
    let _ = shm;
    rd.read_buf(buf).await
}

/// Hands a message to every listener of its event.
pub async fn dispatch<'a>(
    entries: impl Iterator<Item = &'a crate::table::Entry>,
    msg: &Message,
    removals: &mut Vec<u64>,
) {
    for e in entries {
        if !e.claim() {
            continue;
        }
        if e.fired.is_some() {
            removals.push(e.id);
        }
        match &e.sink {
            Sink::Handler(h) => h(msg),
            Sink::Stream(tx) => match tx.try_send(msg.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(m)) => {
                    // Lossless: wait for the application to catch up; the
                    // daemon applies backpressure meanwhile.
                    if tx.send(m).await.is_err() {
                        removals.push(e.id);
                    }
                }
                Err(TrySendError::Closed(_)) => removals.push(e.id),
            },
        }
    }
}

/// Byte equality for event names, which are short: a call to `memcmp`
/// costs more than the comparison, and a byte loop (zip) costs about 30
/// instructions for a 5-byte name. Names of 1 to 16 bytes are compared
/// as two overlapping words (first and last bytes), longer ones in 8-byte
/// words, all inline.
#[inline]
fn same_name(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let w8 = |s: &[u8], i: usize| u64::from_ne_bytes(s[i..i + 8].try_into().expect("8 bytes"));
    let w4 = |s: &[u8], i: usize| u32::from_ne_bytes(s[i..i + 4].try_into().expect("4 bytes"));
    match n {
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => w4(a, 0) == w4(b, 0) && w4(a, n - 4) == w4(b, n - 4),
        8..=16 => w8(a, 0) == w8(b, 0) && w8(a, n - 8) == w8(b, n - 8),
        _ => {
            let mut i = 0;
            while i + 8 <= n {
                if w8(a, i) != w8(b, i) {
                    return false;
                }
                i += 8;
            }
            w8(a, n - 8) == w8(b, n - 8)
        }
    }
}

fn error_text(payload: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(payload) {
        Ok(v) => match v.get("error").and_then(|e| e.as_str()) {
            Some(s) => s.to_string(),
            None => v.to_string(),
        },
        Err(_) => String::from_utf8_lossy(payload).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::same_name;

    #[test]
    fn same_name_agrees_with_slice_equality_for_every_length_and_difference() {
        for n in 0..40usize {
            let a: Vec<u8> = (0..n as u8).map(|i| b'a' + i % 26).collect();
            assert!(same_name(&a, &a.clone()), "equal names of {n} bytes");
            for at in 0..n {
                let mut b = a.clone();
                b[at] ^= 0x20;
                assert!(!same_name(&a, &b), "{n} bytes differing at {at}");
            }
            let mut longer = a.clone();
            longer.push(b'x');
            assert!(!same_name(&a, &longer), "{n} against {} bytes", n + 1);
        }
    }
}
