//! The connection's reader in the supervisor task: reads whenever no
//! application task holds the reading role (see `readside`), handles the
//! frames of each read with `batch`, and here the frames that need waiting
//! (a full subscription stream, a Ping answer without room) and the
//! shared-memory frames.

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use netcluster_proto::frame::{self, Frame, FRAME_OVERHEAD, HEADER_LEN};
use tokio::sync::mpsc::error::TrySendError;

use super::batch::{self, Step};
use super::readside::{complete_frames, ReadState};
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

async fn read_loop(shared: &Arc<Shared>, stream: &Stream) -> Ended {
    let max_body = shared.welcome().max_message + FRAME_OVERHEAD;
    #[cfg(target_os = "linux")]
    let shm: ShmRef = shared.shm.clone().filter(|s| s.on());
    #[cfg(not(target_os = "linux"))]
    let shm: ShmRef = None;
    // Application tasks read the same way, except with shared memory
    // (the descriptors that come with its frames are collected here).
    shared
        .rd
        .begin(stream.clone(), max_body, cfg!(unix) && shm.is_none());
    let mut removals: Vec<u64> = Vec::new();
    loop {
        shared.rd.acquire(stream).await;
        let mut st = shared.rd.take();
        let r = turn(shared, stream, &mut st, &shm, &mut removals).await;
        for id in removals.drain(..) {
            shared.remove_listener(id);
        }
        match r {
            Ok(()) => shared.rd.put_back(st, false),
            Err(e) => {
                shared.rd.put_back(st, true);
                return e;
            }
        }
    }
}

/// One turn of the supervisor with the role: what an application task
/// left, then one read and its frames.
async fn turn(
    shared: &Arc<Shared>,
    stream: &Stream,
    st: &mut ReadState,
    shm: &ShmRef,
    removals: &mut Vec<u64>,
) -> Result<(), Ended> {
    let ended = |reason: String| Ended {
        reason,
        permanent: false,
    };
    if let Some(e) = st.ended.take() {
        return Err(e);
    }
    if st.off < st.chunk.len() {
        let chunk = std::mem::take(&mut st.chunk);
        let mut off = std::mem::take(&mut st.off);
        run(shared, &chunk, &mut off, st.max_body, shm, removals).await?;
    }
    if st.buf.capacity() - st.buf.len() < 4096 {
        st.buf.reserve(READ_CHUNK);
    }
    match try_read(stream, &mut st.buf, shm) {
        Ok(0) => return Err(ended("the daemon closed the connection".into())),
        Ok(_) => shared.allow_direct(),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
        Err(e) => return Err(ended(format!("read failed: {e}"))),
    }
    // Split off the complete frames as one shared buffer; messages point
    // into it.
    let complete = complete_frames(&st.buf, st.max_body)?;
    if complete == 0 {
        return Ok(());
    }
    let chunk = st.buf.split_to(complete).freeze();
    let mut off = 0;
    run(shared, &chunk, &mut off, st.max_body, shm, removals).await
}

/// Handles the frames of `chunk` from `*off`, waiting where a frame needs
/// it.
async fn run(
    shared: &Arc<Shared>,
    chunk: &Bytes,
    off: &mut usize,
    max_body: usize,
    shm: &ShmRef,
    removals: &mut Vec<u64>,
) -> Result<(), Ended> {
    loop {
        match batch::handle(shared, chunk, off, max_body, shm.is_some(), None, removals) {
            Step::Done => return Ok(()),
            Step::Ended(e) => return Err(e),
            Step::Blocked => slow_frame(shared, chunk, off, max_body, shm, removals).await?,
        }
    }
}

/// The frame at `*off` that `batch::handle` left: a delivery to a full
/// stream (waits for room: lossless, the daemon applies backpressure
/// meanwhile), a Ping answer without room, a shared-memory frame.
async fn slow_frame(
    shared: &Arc<Shared>,
    chunk: &Bytes,
    off: &mut usize,
    max_body: usize,
    shm: &ShmRef,
    removals: &mut Vec<u64>,
) -> Result<(), Ended> {
    let bad = |e: &dyn std::fmt::Display| Ended {
        reason: format!("bad frame from the daemon: {e}"),
        permanent: false,
    };
    let node = shared.welcome().node;
    if chunk[*off] == frame::kind::DELIVER {
        let h = &chunk[*off..*off + HEADER_LEN];
        let len = u32::from_le_bytes([h[1], h[2], h[3], h[4]]) as usize;
        let body = &chunk[*off + HEADER_LEN..*off + HEADER_LEN + len];
        *off += HEADER_LEN + len;
        let d = frame::decode_deliver_raw(body)
            .and_then(|r| r.with_event(None))
            .map_err(|e| bad(&e))?;
        let table = shared.listeners.snapshot();
        let (named, all) = table.matching(d.event);
        let msg = Message::from_deliver(chunk, &d, &shared.channel, node);
        dispatch(named.iter().chain(all), &msg, removals).await;
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    if let Some(s) = shm
        .as_ref()
        .filter(|_| frame::shm::is_shm_kind(chunk[*off]))
    {
        let (f, n) = match frame::shm::decode_shm(&chunk[*off..], max_body) {
            Ok(Some(x)) => x,
            Ok(None) => unreachable!("complete frames were measured"),
            Err(e) => return Err(bad(&e)),
        };
        *off += n;
        let (head, payload) = match s.handle(f) {
            Ok(crate::shm::Handled::Done) => return Ok(()),
            Ok(crate::shm::Handled::Deliver(head, payload)) => (head, payload),
            Err(e) => {
                return Err(Ended {
                    reason: format!("bad shared-memory frame from the daemon: {e}"),
                    permanent: false,
                })
            }
        };
        let d = head.with_event(None).map_err(|e| bad(&e))?;
        let table = shared.listeners.snapshot();
        let (named, all) = table.matching(d.event);
        if named.is_empty() && all.is_empty() {
            return Ok(());
        }
        let m = Message::from_shm(chunk, &d, payload, &shared.channel, node);
        dispatch(named.iter().chain(all), &m, removals).await;
        return Ok(());
    }
    let _ = shm;
    let (f, n) = match frame::decode(&chunk[*off..], max_body) {
        Ok(Some(x)) => x,
        Ok(None) => unreachable!("complete frames were measured"),
        Err(e) => return Err(bad(&e)),
    };
    *off += n;
    match f {
        Frame::Ping(token) => {
            let _ = shared.send(|b| frame::encode_ping(b, false, token)).await;
            Ok(())
        }
        other => Err(Ended {
            reason: format!("unexpected frame from the daemon: {other:?}"),
            permanent: false,
        }),
    }
}

#[cfg(target_os = "linux")]
type ShmRef = Option<Arc<crate::shm::Shm>>;
#[cfg(not(target_os = "linux"))]
type ShmRef = Option<()>;

/// Reads what is there without waiting; a connection using shared
/// memory keeps the descriptors that come with the bytes.
fn try_read(rd: &Stream, buf: &mut BytesMut, shm: &ShmRef) -> std::io::Result<usize> {
    #[cfg(target_os = "linux")]
    if let Some(s) = shm {
        let mut fds = Vec::new();
        let r = rd.try_read_buf_fds(buf, &mut fds);
        s.add_fds(&mut fds);
        return r;
    }
    let _ = shm;
    rd.try_read_buf(buf)
}

/// Hands a message to every listener of its event.
pub async fn dispatch<'a>(
    entries: impl Iterator<Item = &'a crate::table::Entry>,
    msg: &Message,
    removals: &mut Vec<u64>,
) {
    for e in entries {
        if !e.take(removals) {
            continue;
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
