//! The fast path of `Client::emit_bytes`: the checks that let an emit
//! append at once ([`Client::emit_now`]) and the small future that runs
//! them on its first poll, boxing the general path (waiting for room,
//! shared memory, echo, errors) only when they fail.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use netcluster_proto::names;

use super::Client;
use crate::error::EmitError;

impl Client {
    /// The hot path of [`Client::emit_bytes`], without waiting: true when
    /// the message was appended; false (nothing done) when it needs the
    /// general path: an event name or a size to refuse, a payload for
    /// shared memory, an own listener to echo to, or no room right now.
    #[inline(always)]
    pub(crate) fn emit_now(&self, event: &str, payload: &[u8]) -> bool {
        let s = &self.shared;
        if names::check_event(event).is_err() || payload.len() > s.max_message() {
            return false;
        }
        #[cfg(target_os = "linux")]
        if s.shm.is_some() && payload.len() >= crate::shm::SHM_MIN {
            return false;
        }
        !self.wants_echo(event) && s.try_publish(event, payload)
    }
}

/// The future of [`Client::emit_bytes`]. Its poll is always inlined: the
/// fast path then runs inside the caller's own poll, without a call that
/// saves and restores registers (about 20 instructions of a small emit).
pub(super) struct EmitBytes<'a, P, G, F> {
    client: &'a Client,
    event: &'a str,
    /// Taken by the first poll.
    payload: Option<P>,
    /// Makes the general path's future (`Client::emit_bytes_general`).
    general: G,
    /// The general path, once the fast path could not append.
    slow: General<F>,
}

/// The boxed general path of an emit, if it was needed. Dropped through a
/// call kept out of line, so that dropping an [`EmitBytes`] that took the
/// fast path is a test inlined in the caller.
struct General<F>(Option<Pin<Box<F>>>);

impl<F> Drop for General<F> {
    #[inline(always)]
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            drop_general(f);
        }
    }
}

#[cold]
#[inline(never)]
fn drop_general<F>(f: Pin<Box<F>>) {
    drop(f);
}

impl<'a, P, G, F> EmitBytes<'a, P, G, F> {
    /// The emit of `payload` on `event`; `general` makes the general
    /// path's future when the fast path cannot append.
    pub(super) fn new(client: &'a Client, event: &'a str, payload: P, general: G) -> Self {
        EmitBytes {
            client,
            event,
            payload: Some(payload),
            general,
            slow: General(None),
        }
    }
}

// No field is pinned structurally (the general path is pinned in its box),
// so the future may move even after a poll.
impl<P, G, F> Unpin for EmitBytes<'_, P, G, F> {}

impl<'a, P, G, F> Future for EmitBytes<'a, P, G, F>
where
    P: AsRef<[u8]>,
    G: FnMut(&'a Client, &'a str, P) -> F,
    F: Future<Output = Result<(), EmitError>>,
{
    type Output = Result<(), EmitError>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(p) = this.payload.take() {
            if this.client.emit_now(this.event, p.as_ref()) {
                return Poll::Ready(Ok(()));
            }
            let general = (this.general)(this.client, this.event, p);
            return start(&mut this.slow.0, general, cx);
        }
        match &mut this.slow.0 {
            Some(f) => f.as_mut().poll(cx),
            None => panic!("emit_bytes polled after it completed"),
        }
    }
}

/// Boxes an emit's general path and polls it the first time (kept out of
/// line: the inlined fast path stays small).
#[cold]
#[inline(never)]
fn start<F: Future>(
    slot: &mut Option<Pin<Box<F>>>,
    general: F,
    cx: &mut Context<'_>,
) -> Poll<F::Output> {
    slot.insert(Box::pin(general)).as_mut().poll(cx)
}
