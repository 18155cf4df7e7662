//! One client connection: its identity, counters and outbound queue, and
//! the writer half that drains the queue to the socket.
//!
//! A connection is shared (`Rc`) by its reader task, its writer task and
//! every publisher that queues messages for it; all run on the daemon's
//! single thread, so state lives in `Cell`/`RefCell` and no lock is taken.
//! Publishers write to the socket directly when it has room; the writer task
//! only takes over when the socket is full and waits for it to drain.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use netcluster_proto::frame::{self, ErrorCode};
use netcluster_proto::legacy;
use netcluster_proto::router::{ChannelId, Slot};
use tokio::sync::Notify;

use crate::outq::OutQueue;
use netcluster_local::{LocalStream, PeerInfo};

/// The event telling a client it missed messages.
pub const GAP_EVENT: &str = "nc-gap";

/// How long a closing connection may take to flush its last frames.
const CLOSE_FLUSH: Duration = Duration::from_secs(1);
/// The same for a client closed as a slow consumer: it is, by definition,
/// not reading now, and its error frame comes after a full queue; if it
/// resumes reading within this time it gets its queue and then learns why
/// it was closed, instead of seeing the connection merely end. Meanwhile it
/// holds what it held before (at most `queuebytes` queued) and no more.
pub const SLOW_CLOSE_FLUSH: Duration = Duration::from_secs(10);

/// Which wire format a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// The binary frames of `netcluster_proto::frame`.
    Native,
    /// The seed's NUL-terminated JSON objects.
    Legacy,
}

/// Message and byte counters of a connection.
#[derive(Debug, Default)]
pub struct Stats {
    /// Messages the client emitted.
    pub msgs_in: Cell<u64>,
    /// Messages queued for the client.
    pub msgs_out: Cell<u64>,
    /// Bytes read from the client.
    pub bytes_in: Cell<u64>,
    /// Bytes written to the client.
    pub bytes_out: Cell<u64>,
    /// Messages not queued for the client because of its slow-consumer policy.
    pub dropped: Cell<u64>,
    /// Times a publisher had to wait for this client's queue to drain.
    pub blocked: Cell<u64>,
}

/// Adds to a counter cell.
#[inline]
pub fn bump(c: &Cell<u64>, n: u64) {
    c.set(c.get().wrapping_add(n));
}

/// A connected client. See the module docs.
#[derive(Debug)]
pub struct Conn {
    /// Dense index in the hub and router.
    pub slot: Slot,
    /// Client id, unique for this daemon run.
    pub id: u64,
    /// The channel's name.
    pub channel: Rc<str>,
    /// The channel's id in the router.
    pub channel_id: ChannelId,
    /// Client-reported name.
    pub name: String,
    /// Client-reported pid (the kernel's is in `peer`).
    pub hello_pid: u32,
    /// Kernel-reported credentials.
    pub peer: PeerInfo,
    /// Wire format.
    pub dialect: Dialect,
    /// When it connected.
    pub since: SystemTime,
    /// The socket (shared with the session that reads it, which may hand
    /// it from a provisional record to the final one).
    pub stream: Rc<LocalStream>,
    /// Bytes waiting to be written.
    pub out: RefCell<OutQueue>,
    /// Counters.
    pub stats: Stats,
    /// Last sequence number given to a message from this client.
    seq: Cell<u64>,
    /// The writer task is waiting for the socket to drain; others must not write.
    writer_busy: Cell<bool>,
    /// Queued in the hub's list of connections to flush after this batch.
    pub touched: Cell<bool>,
    /// Publishers waiting for this queue to drain.
    pub waiters: Cell<u32>,
    /// Output is held (queued, not written): a connection still silent,
    /// registered as a legacy listener before its dialect is known.
    pub held: Cell<bool>,
    /// Messages dropped (policy `drop`, or network messages for a full
    /// queue) since the last `nc-gap` event.
    gap: Cell<u64>,
    /// Bytes of the event names the client is subscribed to.
    pub subscribed_bytes: Cell<usize>,
    /// Shared-memory pools, slots and descriptors (see `crate::shm`).
    #[cfg(target_os = "linux")]
    pub shm: crate::shm::ConnShm,
    /// Why the connection was closed, once it is.
    closed: RefCell<Option<String>>,
    /// How long the close may wait for the last frames to leave.
    close_flush: Cell<Duration>,
    wake: Notify,
    /// Notified when the queue drops to or below the limit.
    pub drained: Notify,
    /// Notified when the connection is closed by the daemon.
    pub kill: Notify,
}

/// The fields needed to create a [`Conn`].
pub struct ConnInit {
    pub slot: Slot,
    pub id: u64,
    pub channel: Rc<str>,
    pub channel_id: ChannelId,
    pub name: String,
    pub hello_pid: u32,
    pub peer: PeerInfo,
    pub dialect: Dialect,
    pub stream: Rc<LocalStream>,
}

impl Conn {
    /// Creates a connection record.
    pub fn new(i: ConnInit) -> Self {
        Conn {
            slot: i.slot,
            id: i.id,
            channel: i.channel,
            channel_id: i.channel_id,
            name: i.name,
            hello_pid: i.hello_pid,
            peer: i.peer,
            dialect: i.dialect,
            since: SystemTime::now(),
            stream: i.stream,
            out: RefCell::new(OutQueue::default()),
            stats: Stats::default(),
            seq: Cell::new(0),
            writer_busy: Cell::new(false),
            touched: Cell::new(false),
            waiters: Cell::new(0),
            held: Cell::new(false),
            gap: Cell::new(0),
            subscribed_bytes: Cell::new(0),
            #[cfg(target_os = "linux")]
            shm: Default::default(),
            closed: RefCell::new(None),
            close_flush: Cell::new(CLOSE_FLUSH),
            wake: Notify::new(),
            drained: Notify::new(),
            kill: Notify::new(),
        }
    }

    /// The next per-origin sequence number (starting at 1).
    #[inline]
    pub fn next_seq(&self) -> u64 {
        let s = self.seq.get() + 1;
        self.seq.set(s);
        s
    }

    /// True once the daemon closed (or is closing) this connection.
    pub fn is_closed(&self) -> bool {
        self.closed.borrow().is_some()
    }

    /// Marks the connection closed; returns false if it already was.
    pub fn mark_closed(&self, reason: &str) -> bool {
        let mut c = self.closed.borrow_mut();
        if c.is_some() {
            return false;
        }
        *c = Some(reason.to_string());
        true
    }

    /// Queues the final Error frame of a client closed as a slow
    /// consumer, and gives it [`SLOW_CLOSE_FLUSH`] to leave behind the full
    /// queue.
    pub fn queue_slow_consumer_error(&self, message: &str) {
        self.close_flush.set(SLOW_CLOSE_FLUSH);
        self.queue_error(ErrorCode::SlowConsumer, 0, true, message);
    }

    /// Queues an Error frame, bypassing the queue limit (it is small and the
    /// client needs to know why it is being refused).
    pub fn queue_error(&self, code: ErrorCode, id: u32, fatal: bool, message: &str) {
        match self.dialect {
            Dialect::Native => {
                frame::encode_error(self.out.borrow_mut().tail(), code, id, fatal, message)
            }
            Dialect::Legacy => {
                legacy::encode_error(self.out.borrow_mut().tail(), &self.channel, message)
            }
        }
    }

    /// Runs `f` on the queue's append buffer.
    #[inline]
    pub fn with_tail<R>(&self, f: impl FnOnce(&mut BytesMut) -> R) -> R {
        f(self.out.borrow_mut().tail())
    }

    /// Counts a message not queued for this client (policy `drop`, or a
    /// network message for a full queue).
    pub fn note_drop(&self) {
        bump(&self.stats.dropped, 1);
        self.gap.set(self.gap.get() + 1);
    }

    /// Whether a message that may not wait must be dropped for this
    /// client: its queue is full, or it already missed messages and is not
    /// yet down to half the limit (so that a client at the edge gets one
    /// `nc-gap` for a run of drops, not one per message).
    pub fn must_drop(&self, limit: usize) -> bool {
        let len = self.out.borrow().len();
        len >= limit || (self.gap.get() > 0 && len > limit / 2)
    }

    /// Queues the `nc-gap` event telling the client how many messages it
    /// missed, if it missed any since the last one. Called right before
    /// the next message is queued for it, and when its queue has drained
    /// to half the limit with nothing more for it: either way the event
    /// sits exactly between the last message before the hole and the
    /// first after it.
    pub fn queue_gap(&self, limit: usize) {
        let n = self.gap.get();
        if n == 0 {
            return;
        }
        self.gap.set(0);
        let body = format!(r#"{{"cause":"slowconsumer","dropped":{n},"queuebytes":{limit}}}"#);
        let mut out = self.out.borrow_mut();
        match self.dialect {
            Dialect::Native => {
                let h = frame::DeliverHeader {
                    node: None,
                    client: 0,
                    seq: 0,
                    channel: None,
                };
                frame::encode_deliver(out.tail(), &h, GAP_EVENT, body.as_bytes());
            }
            Dialect::Legacy => legacy::encode(
                out.tail(),
                legacy::DAEMON_ORIGIN,
                &self.channel,
                GAP_EVENT,
                body.as_bytes(),
                true,
            ),
        }
    }

    /// The `nc-gap` of a client that stopped missing messages, once its
    /// queue is down to half the limit.
    fn report_gap(&self, limit: usize) {
        if self.gap.get() > 0 && self.out.borrow().len() <= limit / 2 {
            self.queue_gap(limit);
        }
    }

    /// Writes what the socket takes now. `Ok(true)`: queue empty.
    pub fn flush(&self, limit: usize) -> io::Result<bool> {
        let mut written = 0;
        let res = loop {
            self.report_gap(limit);
            let res = self
                .out
                .borrow_mut()
                .write_to(&mut written, |iov| self.stream.try_write_vectored(iov));
            // One write can empty a queue that was still over half the
            // limit when the gap was last checked; with nothing more queued
            // for the client no later flush would report it, so do it now.
            if matches!(res, Ok(true)) && self.gap.get() > 0 {
                continue;
            }
            break res;
        };
        bump(&self.stats.bytes_out, written as u64);
        if self.waiters.get() > 0 && self.out.borrow().len() <= limit {
            self.drained.notify_waiters();
        }
        res
    }

    /// Called after messages were queued: writes directly when the socket
    /// has room, else hands the rest to the writer task. `Err` means the
    /// socket failed and the connection must be closed.
    pub fn flush_or_defer(&self, limit: usize) -> io::Result<()> {
        if self.writer_busy.get() || self.held.get() {
            return Ok(());
        }
        if !self.flush(limit)? {
            self.writer_busy.set(true);
            self.wake.notify_one();
        }
        Ok(())
    }

    /// The writer task: waits until the socket is full with data queued,
    /// then drains the queue as the socket accepts it. On close it flushes
    /// what is left (error frames) for a bounded time. Returns the error
    /// that broke the socket, if any.
    pub async fn run_writer(&self, limit: impl Fn() -> usize) -> Option<io::Error> {
        loop {
            if self.is_closed() {
                break;
            }
            tokio::select! {
                biased;
                _ = self.kill.notified() => break,
                _ = self.wake.notified() => {}
            }
            // Drain the queue as the socket accepts it.
            let drained = self.stream.write_ready(|| match self.flush(limit()) {
                Ok(true) => Ok(()),
                Ok(false) if self.is_closed() => Ok(()),
                Ok(false) => Err(io::ErrorKind::WouldBlock.into()),
                Err(e) => Err(e),
            });
            tokio::select! {
                biased;
                _ = self.kill.notified() => break,
                r = drained => match r {
                    Ok(()) => self.writer_busy.set(false),
                    Err(e) => return Some(e),
                },
            }
            if self.is_closed() {
                break;
            }
        }
        // Closing: give the last frames (usually an error) a moment to leave.
        let last = self.stream.write_ready(|| match self.flush(usize::MAX) {
            Ok(true) => Ok(()),
            Ok(false) => Err(io::ErrorKind::WouldBlock.into()),
            Err(e) => Err(e),
        });
        let _ = tokio::time::timeout(self.close_flush.get(), last).await;
        None
    }

    /// True when nothing is queued or being written and output is not
    /// held: a frame written straight to the socket now (one carrying a
    /// descriptor) keeps its place in the stream.
    #[cfg(target_os = "linux")]
    pub fn idle_writer(&self) -> bool {
        !self.writer_busy.get() && !self.held.get() && self.out.borrow().is_empty()
    }

    /// Wakes the reader and writer tasks so they notice the close.
    pub fn wake_all(&self) {
        self.kill.notify_waiters();
        self.drained.notify_waiters();
        self.wake.notify_one();
    }
}
