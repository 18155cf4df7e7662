//! [`Subscription`]: a stream of the messages of one or several events.
//!
//! `recv` with nothing queued reads the socket itself when it may take the
//! connection's reading role (see `connection::readside`): its own messages
//! then go to a local queue, without the stream's channel and without a
//! wake-up from the reader task. Otherwise, and for the `Stream` face, the
//! reader task feeds the channel.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::mpsc::{self, error::TryRecvError};

use crate::connection::{Pump, Shared};
use crate::Message;

/// A stream of messages for one or several events; unsubscribes when
/// dropped.
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<Message>,
    ids: Vec<u64>,
    /// Messages this subscription's task read from the socket itself, in
    /// order; never more than one read's worth.
    queue: VecDeque<Message>,
    shared: Arc<Shared>,
}

/// Gives the reading role back when `recv` returns or is dropped.
struct Role<'a> {
    shared: &'a Shared,
    held: bool,
}

impl Drop for Role<'_> {
    fn drop(&mut self) {
        if self.held {
            self.shared.app_release();
        }
    }
}

impl Subscription {
    pub(super) fn new(rx: mpsc::Receiver<Message>, events: usize, shared: Arc<Shared>) -> Self {
        Subscription {
            rx,
            ids: Vec::with_capacity(events),
            queue: VecDeque::new(),
            shared,
        }
    }

    pub(super) fn add_id(&mut self, id: u64) {
        self.ids.push(id);
    }

    /// The next message, or `None` once the connection is closed.
    ///
    /// While it waits, this task may read the connection's socket itself
    /// and hand other listeners their messages (`on` handlers then run
    /// here). Keep a pending `recv` polled (as `select!` does) or drop it:
    /// a `recv` future that is kept but not polled stops the reading for
    /// every listener of the connection until it is.
    pub async fn recv(&mut self) -> Option<Message> {
        let Subscription {
            rx,
            ids,
            queue,
            shared,
        } = self;
        let mut role = Role {
            shared,
            held: false,
        };
        let mut waited = false;
        // Look at the stream before reading the socket: what another
        // reader sent it comes first. Holding the role, nobody else feeds
        // it but echoes of emits and its end (also seen when the socket has
        // nothing), so it is looked at again only between two reads.
        let mut look = true;
        std::future::poll_fn(|cx| loop {
            if let Some(m) = queue.pop_front() {
                return Poll::Ready(Some(m));
            }
            if look || !role.held {
                look = false;
                let turns = role.shared.read_turns();
                match rx.try_recv() {
                    Ok(m) => return Poll::Ready(Some(m)),
                    Err(TryRecvError::Disconnected) => return Poll::Ready(None),
                    Err(TryRecvError::Empty) => {}
                }
                if !role.held {
                    if !role.shared.app_acquire() {
                        // Someone else reads: it feeds the stream.
                        let r = rx.poll_recv(cx);
                        waited |= r.is_pending();
                        return r;
                    }
                    role.held = true;
                    // A reader's turn ended since the look: look again.
                    look = role.shared.read_turns() != turns;
                    continue;
                }
            }
            match role.shared.app_pump(cx, ids, queue, waited) {
                Pump::Read => look = true,
                Pump::HandedOff => role.held = false,
                Pump::Pending => {
                    // Own messages also come through the stream: echoes of
                    // this client's emits, and its end when closed.
                    let r = rx.poll_recv(cx);
                    waited |= r.is_pending();
                    return r;
                }
            }
        })
        .await
    }

    /// The next message if one is waiting.
    pub fn try_recv(&mut self) -> Option<Message> {
        self.queue.pop_front().or_else(|| self.rx.try_recv().ok())
    }
}

impl futures_core::Stream for Subscription {
    type Item = Message;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        if let Some(m) = self.queue.pop_front() {
            return Poll::Ready(Some(m));
        }
        self.rx.poll_recv(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        for &id in &self.ids {
            self.shared.remove_listener(id);
        }
    }
}
