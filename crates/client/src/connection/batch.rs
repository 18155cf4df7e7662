//! Handling a batch of complete frames without waiting: what both the
//! supervisor's reader and an application task reading the socket itself
//! (see `readside`) run on each read.
//!
//! A frame that would need to wait (a full subscription stream, a Ping
//! answer with no room in the output buffer) or needs the reader's
//! shared-memory state is not touched: [`handle`] stops in front of it and
//! says so, and the supervisor handles it with the waiting paths in
//! `reader`. Nothing of a frame is done before that decision, so a frame is
//! handled exactly once, in order, whoever does it.

use std::collections::VecDeque;

use bytes::Bytes;
use netcluster_proto::frame::{self, ErrorCode, Frame, Status, HEADER_LEN};
use tokio::sync::mpsc::error::TrySendError;

use super::{Ended, Shared};
use crate::table::{Entry, Sink};
use crate::Message;

/// How handling a batch stopped.
pub(super) enum Step {
    /// Every frame was handled.
    Done,
    /// The frame at the offset must be handled by the supervisor, which
    /// may wait.
    Blocked,
    /// The connection must end.
    Ended(Ended),
}

/// Messages for one subscription read by its own task: they go to its
/// local queue instead of through its stream's channel.
pub(super) struct Own<'a> {
    pub ids: &'a [u64],
    pub queue: &'a mut VecDeque<Message>,
}

/// The frames of `chunk` from `*off`; advances `*off` past each frame
/// handled. `shm`: shared-memory frames are expected (and left to the
/// supervisor).
pub(super) fn handle(
    shared: &Shared,
    chunk: &Bytes,
    off: &mut usize,
    max_body: usize,
    shm: bool,
    mut own: Option<Own<'_>>,
    removals: &mut Vec<u64>,
) -> Step {
    let ended = |reason: String| {
        Step::Ended(Ended {
            reason,
            permanent: false,
        })
    };
    let node = shared
        .welcome_node
        .load(std::sync::atomic::Ordering::Acquire);
    let table = shared.listeners.snapshot();
    let mut last_event: Option<(&str, crate::table::Matching<'_>)> = None;
    let mut msg: Option<Message> = None;
    while *off < chunk.len() {
        let kind = chunk[*off];
        if kind == frame::kind::DELIVER {
            // Deliveries, the bulk of the traffic, skip the general
            // decoder. Runs of one event are common: its name is checked
            // (UTF-8) and its listeners looked up once per run, and later
            // frames of the run use the first one's name (same bytes, same
            // chunk).
            let h = &chunk[*off..*off + HEADER_LEN];
            let len = u32::from_le_bytes([h[1], h[2], h[3], h[4]]) as usize;
            let body = &chunk[*off + HEADER_LEN..*off + HEADER_LEN + len];
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
                *off += HEADER_LEN + len;
                continue;
            }
            let m = match &mut msg {
                Some(m) => {
                    m.retarget(&d, node);
                    m
                }
                None => msg.insert(Message::from_deliver(chunk, &d, &shared.channel, node)),
            };
            // The common cases, one `on` handler or one subscription stream
            // with room, first. A stream's message is the last use of this
            // one: moved, not cloned (the next frame builds its own).
            match (named, all) {
                ([only], []) if only.fired.is_none() => match &only.sink {
                    Sink::Handler(h) => h(m),
                    Sink::Stream(_) if is_own(&own, only.id) => {
                        if let (Some(o), Some(m)) = (&mut own, msg.take()) {
                            o.queue.push_back(m);
                        }
                    }
                    Sink::Stream(tx) => {
                        if let Some(m) = msg.take() {
                            match tx.try_send(m) {
                                Ok(()) => {}
                                Err(TrySendError::Closed(_)) => removals.push(only.id),
                                Err(TrySendError::Full(_)) => return Step::Blocked,
                            }
                        }
                    }
                },
                _ => {
                    if !dispatch_now(named.iter().chain(all), m, &mut own, removals) {
                        return Step::Blocked;
                    }
                }
            }
            *off += HEADER_LEN + len;
            continue;
        }
        if shm && frame::shm::is_shm_kind(kind) {
            return Step::Blocked;
        }
        let (f, n) = match frame::decode(&chunk[*off..], max_body) {
            Ok(Some(x)) => x,
            Ok(None) => unreachable!("complete frames were measured"),
            Err(e) => return ended(format!("bad frame from the daemon: {e}")),
        };
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
                    // Still on the connection the window ends on: no break
                    // can be counted between this and the answer.
                    let breaks = shared.out().breaks;
                    let _ = tx.send(breaks);
                }
            }
            Frame::Ping(token) => {
                let mut encode =
                    Some(|b: &mut bytes::BytesMut| frame::encode_ping(b, false, token));
                if let Ok(None) = shared.try_put(&mut encode, false) {
                    // No room: the supervisor waits for it.
                    return Step::Blocked;
                }
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
                return Step::Ended(Ended {
                    reason: message.to_string(),
                    permanent,
                });
            }
            Frame::Error { id, message, .. } => {
                let tx = shared.pending().acks.remove(&id);
                match tx {
                    Some(tx) => {
                        let _ = tx.send(Err(message.to_string()));
                    }
                    None => tracing::warn!(channel = %shared.channel, "daemon reported: {message}"),
                }
            }
            // (Deliver frames were handled above, without this decoder.)
            other => return ended(format!("unexpected frame from the daemon: {other:?}")),
        }
        *off += n;
    }
    Step::Done
}

fn is_own(own: &Option<Own<'_>>, id: u64) -> bool {
    own.as_ref().is_some_and(|o| o.ids.contains(&id))
}

/// Hands a message to every listener of its event if none of them has to
/// wait: the room of every other stream is reserved first, before any
/// `once` is claimed or any handler called. False (nothing done) when a
/// stream is full.
fn dispatch_now<'a>(
    entries: impl Iterator<Item = &'a Entry> + Clone,
    msg: &Message,
    own: &mut Option<Own<'_>>,
    removals: &mut Vec<u64>,
) -> bool {
    let mut permits = Vec::new();
    for e in entries.clone() {
        if let Sink::Stream(tx) = &e.sink {
            if is_own(own, e.id) {
                continue;
            }
            match tx.try_reserve() {
                Ok(p) => permits.push((e.id, p)),
                Err(tokio::sync::mpsc::error::TrySendError::Full(())) => return false,
                Err(tokio::sync::mpsc::error::TrySendError::Closed(())) => {}
            }
        }
    }
    let mut permits = permits.into_iter().peekable();
    for e in entries {
        let permit = match permits.peek() {
            Some((id, _)) if *id == e.id => permits.next().map(|(_, p)| p),
            _ => None,
        };
        if !e.take(removals) {
            continue;
        }
        match &e.sink {
            Sink::Handler(h) => h(msg),
            Sink::Stream(_) if is_own(own, e.id) => {
                if let Some(o) = own {
                    o.queue.push_back(msg.clone());
                }
            }
            Sink::Stream(_) => match permit {
                Some(p) => p.send(msg.clone()),
                // Closed: the subscription was dropped.
                None => removals.push(e.id),
            },
        }
    }
    true
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
