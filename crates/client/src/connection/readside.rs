//! Who reads the socket. Normally the supervisor's reader task reads and
//! feeds every listener; but a task awaiting `Subscription::recv` with
//! nothing queued takes the reading role and reads the socket itself, so
//! that a message for it costs no hop through another task (on a round
//! trip: no reader-task poll and no wake-up of the application's task).
//!
//! The role is one atomic: free; the supervisor waiting for data (idle, an
//! application task may take the role from it); the supervisor busy with a
//! batch; an application task. Whoever holds it reads and handles the
//! frames of one shared state (`ReadState`), so frames are handled once and
//! in order whoever reads. An application task hands the rest of a batch
//! back to the supervisor when a frame would need waiting (another full
//! stream, a Ping answer without room) or when the connection ends, and
//! gives the role back when its `recv` returns or is dropped. The
//! supervisor waits for data through the socket's readiness slot, which the
//! role's holder owns (see `ReadSide::acquire`): it is woken only by data
//! arriving while no application task reads, by a handoff, or by the end.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use netcluster_proto::frame::HEADER_LEN;

use super::batch::{self, Own, Step};
use super::{lock, Ended, Shared, Stream, READ_CHUNK};
use crate::Message;

const FREE: u8 = 0;
/// The supervisor waits for data; an application task may take over.
const IDLE: u8 = 1;
/// The supervisor handles a batch.
const BUSY: u8 = 2;
/// An application task reads.
const APP: u8 = 3;
/// The supervisor, idle, puts its waker into the socket's readiness slot
/// (see `ReadSide::acquire`); nobody may take the role meanwhile.
#[cfg(unix)]
const ARMING: u8 = 4;

/// The reading role and the read state of the current connection.
#[derive(Default)]
pub struct ReadSide {
    role: AtomicU8,
    /// An application task may take the role: connected, on a platform and
    /// a connection where it reads the same way (not with shared memory,
    /// whose descriptors only the supervisor collects).
    app_ok: AtomicBool,
    /// Frames or the connection's end left for the supervisor.
    handoff: AtomicBool,
    /// Turns with the role ended so far (changed only by the holder, after
    /// everything it sent to subscription streams): a task that looked at
    /// its stream before taking the role knows whether to look again.
    turns: AtomicU32,
    state: Mutex<ReadState>,
    /// The supervisor's reader: its waker goes back into the socket's
    /// readiness slot when an application task gives the role back.
    #[cfg_attr(not(unix), allow(dead_code))]
    supervisor: Mutex<Option<Waker>>,
}

/// What the role's holder reads into and handles.
#[derive(Default)]
pub(super) struct ReadState {
    pub stream: Option<Stream>,
    pub buf: BytesMut,
    /// Complete frames not handled yet, from `off`.
    pub chunk: Bytes,
    pub off: usize,
    /// The connection ended (seen by an application task).
    pub ended: Option<Ended>,
    pub max_body: usize,
}

/// What an application task's read did.
pub(crate) enum Pump {
    /// Read and handled a batch (its own messages are in its queue).
    Read,
    /// Nothing to read yet: woken when there is.
    Pending,
    /// The supervisor took over (the role is given back): wait for the
    /// subscription's stream.
    HandedOff,
}

/// How many bytes of `buf` are complete frames.
pub(super) fn complete_frames(buf: &[u8], max_body: usize) -> Result<usize, Ended> {
    let mut complete = 0;
    while buf.len() - complete >= HEADER_LEN {
        let h = &buf[complete..];
        let len = u32::from_le_bytes([h[1], h[2], h[3], h[4]]) as usize;
        if len > max_body {
            return Err(Ended {
                reason: format!("the daemon sent a frame of {len} bytes, over the limit"),
                permanent: false,
            });
        }
        if buf.len() - complete < HEADER_LEN + len {
            break;
        }
        complete += HEADER_LEN + len;
    }
    Ok(complete)
}

impl ReadSide {
    /// A new connection: its socket and a fresh buffer (the role is free:
    /// the previous connection ended with the supervisor holding it).
    pub(super) fn begin(&self, stream: Stream, max_body: usize, app_ok: bool) {
        *lock(&self.state) = ReadState {
            stream: Some(stream),
            buf: BytesMut::with_capacity(READ_CHUNK),
            chunk: Bytes::new(),
            off: 0,
            ended: None,
            max_body,
        };
        self.handoff.store(false, Ordering::Release);
        self.app_ok.store(app_ok, Ordering::Release);
    }

    /// The supervisor's turn: takes the state out (it may wait while
    /// holding it). Called with the role busy.
    pub(super) fn take(&self) -> ReadState {
        self.handoff.store(false, Ordering::Relaxed);
        std::mem::take(&mut *lock(&self.state))
    }

    /// The supervisor puts the state back and frees the role; `ended`:
    /// the connection is over, no application task reads it any more.
    pub(super) fn put_back(&self, mut st: ReadState, ended: bool) {
        if ended {
            self.app_ok.store(false, Ordering::Release);
            st.stream = None;
        }
        *lock(&self.state) = st;
        self.end_turn();
        self.role.store(FREE, Ordering::Release);
    }

    /// Waits until the supervisor holds the role busy: data to read, or
    /// frames an application task left for it.
    ///
    /// While it waits with the role idle, its waker sits in the socket's
    /// read-readiness slot: data wakes it. An application task taking the
    /// role puts its own waker there instead (the slot holds one), so data
    /// then wakes only that task; giving the role back, it puts the
    /// supervisor's waker back (`app_release`), which wakes the supervisor
    /// only if data is already there. So a round trip read by the
    /// application costs the supervisor nothing.
    #[cfg(unix)]
    pub(super) async fn acquire(&self, stream: &Stream) {
        std::future::poll_fn(|cx| {
            self.register(cx);
            loop {
                match self.role.load(Ordering::Acquire) {
                    FREE => {
                        let _ = self.role.compare_exchange(
                            FREE,
                            IDLE,
                            Ordering::Acquire,
                            Ordering::Relaxed,
                        );
                    }
                    IDLE => {
                        if self.handoff.load(Ordering::Acquire) {
                            if self.busy() {
                                return Poll::Ready(());
                            }
                            continue;
                        }
                        // Arming: an application task cannot take the role
                        // while this puts the supervisor's waker into the
                        // slot, so it cannot replace that task's waker
                        // there (the task would never be woken).
                        if self
                            .role
                            .compare_exchange(IDLE, ARMING, Ordering::Acquire, Ordering::Relaxed)
                            .is_err()
                        {
                            continue;
                        }
                        let ready = stream.poll_read_ready(cx).is_ready();
                        self.role.store(IDLE, Ordering::Release);
                        if !ready {
                            return Poll::Pending;
                        }
                        if self.busy() {
                            return Poll::Ready(());
                        }
                    }
                    _ => return Poll::Pending,
                }
            }
        })
        .await
    }

    /// Application tasks never take the role here: the supervisor alone
    /// reads.
    #[cfg(not(unix))]
    pub(super) async fn acquire(&self, stream: &Stream) {
        loop {
            let _ = stream.readable().await;
            if self
                .role
                .compare_exchange(FREE, BUSY, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }

    /// The supervisor takes the role from idle.
    #[cfg(unix)]
    fn busy(&self) -> bool {
        self.role
            .compare_exchange(IDLE, BUSY, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// The holder ends its turn (see `turns`).
    fn end_turn(&self) {
        let n = self.turns.load(Ordering::Relaxed);
        self.turns.store(n.wrapping_add(1), Ordering::Release);
    }

    #[cfg(unix)]
    fn register(&self, cx: &mut Context<'_>) {
        let mut w = lock(&self.supervisor);
        if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *w = Some(cx.waker().clone());
        }
    }
}

impl Shared {
    /// Turns with the reading role ended so far: read before looking at a
    /// subscription's stream, and again once the role is taken.
    pub(crate) fn read_turns(&self) -> u32 {
        self.rd.turns.load(Ordering::Acquire)
    }

    /// An application task takes the reading role, if it may now.
    pub(crate) fn app_acquire(&self) -> bool {
        let rd = &self.rd;
        if !cfg!(unix) || !rd.app_ok.load(Ordering::Acquire) || rd.handoff.load(Ordering::Acquire) {
            return false;
        }
        let r = rd.role.load(Ordering::Relaxed);
        (r == FREE || r == IDLE)
            && rd
                .role
                .compare_exchange(r, APP, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    /// An application task gives the role back. The supervisor's waker
    /// goes back into the socket's readiness slot, while this task still
    /// holds the role (so no other task's waker is replaced): the
    /// supervisor is woken when data comes, now if it is already there,
    /// and at once if it has frames or the connection's end to handle.
    pub(crate) fn app_release(&self) {
        let rd = &self.rd;
        let st = lock(&rd.state);
        let sup = lock(&rd.supervisor);
        let wake = match (&*sup, &st.stream) {
            // The supervisor has not looked at the role yet: it will see
            // it free (it registers before it looks, under this lock).
            (None, _) => None,
            (Some(w), Some(s)) if !rd.handoff.load(Ordering::Acquire) => {
                poll_ready(s, &mut Context::from_waker(w))
                    .is_ready()
                    .then(|| w.clone())
            }
            (Some(w), _) => Some(w.clone()),
        };
        rd.end_turn();
        rd.role.store(FREE, Ordering::Release);
        drop(sup);
        drop(st);
        if let Some(w) = wake {
            w.wake();
        }
    }

    /// Gives the rest to the supervisor (and the role back).
    fn hand_off(&self) -> Pump {
        self.rd.handoff.store(true, Ordering::Release);
        self.app_release();
        Pump::HandedOff
    }

    /// The role holder (an application task) reads once if there is
    /// something to read, and handles the complete frames: messages for
    /// the listeners `ids` go to `queue`. `waited`: the task gave way since
    /// its last emit (see `writer::write_now`).
    pub(crate) fn app_pump(
        &self,
        cx: &mut Context<'_>,
        ids: &[u64],
        queue: &mut VecDeque<Message>,
        waited: bool,
    ) -> Pump {
        let mut guard = lock(&self.rd.state);
        let st = &mut *guard;
        let ended = |reason: String| {
            Some(Ended {
                reason,
                permanent: false,
            })
        };
        loop {
            let Some(stream) = &st.stream else {
                drop(guard);
                return self.hand_off();
            };
            match poll_ready(stream, cx) {
                Poll::Pending => return Pump::Pending,
                Poll::Ready(Err(e)) => {
                    st.ended = ended(format!("read failed: {e}"));
                    drop(guard);
                    return self.hand_off();
                }
                Poll::Ready(Ok(())) => {}
            }
            if st.buf.capacity() - st.buf.len() < 4096 {
                st.buf.reserve(READ_CHUNK);
            }
            match stream.try_read_buf(&mut st.buf) {
                Ok(0) => st.ended = ended("the daemon closed the connection".into()),
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => st.ended = ended(format!("read failed: {e}")),
            }
            drop(guard);
            return self.hand_off();
        }
        if waited {
            self.allow_direct();
        }
        let complete = match complete_frames(&st.buf, st.max_body) {
            Ok(n) => n,
            Err(e) => {
                st.ended = Some(e);
                drop(guard);
                return self.hand_off();
            }
        };
        if complete == 0 {
            return Pump::Read;
        }
        let chunk = st.buf.split_to(complete).freeze();
        let mut off = 0;
        let mut removals = Vec::new();
        let own = Own { ids, queue };
        let step = batch::handle(
            self,
            &chunk,
            &mut off,
            st.max_body,
            false,
            Some(own),
            &mut removals,
        );
        let pump = match step {
            Step::Done => Pump::Read,
            Step::Blocked | Step::Ended(_) => {
                if let Step::Ended(e) = step {
                    st.ended = Some(e);
                }
                st.chunk = chunk;
                st.off = off;
                drop(guard);
                self.hand_off()
            }
        };
        for id in removals {
            self.remove_listener(id);
        }
        pump
    }
}

#[cfg(unix)]
fn poll_ready(stream: &Stream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    stream.poll_read_ready(cx)
}

/// Not used: application tasks do not take the role here (`app_acquire`).
#[cfg(not(unix))]
fn poll_ready(_stream: &Stream, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    Poll::Pending
}
