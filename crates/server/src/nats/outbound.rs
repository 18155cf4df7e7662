//! What goes out to NATS: the bridge's queue of local messages (bounded by
//! `nats.buffer`), the subject and `Nc-Origin` header of each, and the
//! hand-over to the NATS client in batches.
//!
//! A batch (up to [`BATCH_MESSAGES`] or [`BATCH_BYTES`]) is handed to
//! async-nats, whose connection task writes messages as they come; then
//! a flush is asked for, which completes once the client's socket took
//! everything before it. What was flushed leaves the count against
//! `buffer`. The flush of one batch is not awaited before the next batch
//! is handed over, only after: async-nats writes one batch while the
//! bridge hands over the next (at most two batches are in flight, both
//! still counted against `buffer`).

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Instant;

use async_nats::{HeaderMap, Subject};
use bytes::{Bytes, BytesMut};
use netcluster_proto::nats as wire;

use super::connect::Halt;
use super::{
    Names, NatsBridge, Out, ARENA_CHUNK, ARENA_MAX_PAYLOAD, BATCH_BYTES, BATCH_MESSAGES,
    NAMES_CACHE, ORIGIN_HEADER, QUEUED_OVERHEAD,
};

/// A flush asked of the NATS client: the request is queued behind the
/// batch at once (the first poll sends it), the answer awaited later.
struct Flushing {
    fut: Pin<Box<dyn Future<Output = ()>>>,
    done: bool,
}

impl Flushing {
    async fn start(client: &async_nats::Client) -> Flushing {
        let c = client.clone();
        let mut fut: Pin<Box<dyn Future<Output = ()>>> = Box::pin(async move {
            // An error means the connection is gone; the batch is in the
            // client's queue (or lost with the server, which receivers
            // report as a gap): either way it no longer counts as ours.
            let _ = c.flush().await;
        });
        let done = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx).is_ready())).await;
        Flushing { fut, done }
    }

    async fn wait(self) {
        if !self.done {
            self.fut.await
        }
    }
}

impl NatsBridge {
    /// Queues a local client's message for NATS; never waits. A message
    /// the buffer has no room for is dropped and counted (receivers see
    /// the hole as `nc-gap`); one larger than the server's `max_payload`
    /// is an error for its publisher.
    pub fn send(
        &self,
        channel: &str,
        event: &str,
        payload: &[u8],
        client: u64,
        seq: u64,
    ) -> Result<(), String> {
        {
            // Read from the server's INFO once per batch (`server_info`
            // clones all of it), not per message.
            let max = self.max_payload.get();
            if max > 0 && payload.len() > max {
                self.counters.dropped.set(self.counters.dropped.get() + 1);
                return Err(format!(
                    "{} bytes exceed the NATS server's max_payload ({max} bytes)",
                    payload.len()
                ));
            }
        }
        // The cost is known before anything is built: a message that
        // will be dropped costs no allocation.
        let cfg = self.cfg.borrow();
        let cost =
            payload.len() + cfg.prefix.len() + channel.len() + event.len() + 2 + QUEUED_OVERHEAD;
        let queued = self.queued.get();
        if queued + cost > cfg.buffer.max(cost.min(QUEUED_OVERHEAD)) {
            self.counters.dropped.set(self.counters.dropped.get() + 1);
            return Ok(());
        }
        drop(cfg);
        if queued == 0 {
            self.progress.set(Instant::now());
        }
        self.queued.set(queued + cost);
        let names = self.names(channel, event);
        self.queue.borrow_mut().push_back(Out {
            names,
            client,
            seq,
            payload: self.copy_payload(payload),
            cost,
        });
        Ok(())
    }

    /// `payload` as the NATS client takes it: a small one is copied into
    /// the current chunk (a new chunk when it does not fit), which its
    /// `Bytes` shares, so the queue costs no allocation per message.
    fn copy_payload(&self, payload: &[u8]) -> Bytes {
        if payload.len() > ARENA_MAX_PAYLOAD {
            return Bytes::copy_from_slice(payload);
        }
        let mut arena = self.arena.borrow_mut();
        if arena.capacity() < payload.len() {
            // The old chunk lives on in the messages cut from it.
            *arena = BytesMut::with_capacity(ARENA_CHUNK);
        }
        arena.extend_from_slice(payload);
        arena.split().freeze()
    }

    /// The subject and header values of (`channel`, `event`), from the
    /// cache or computed once.
    fn names(&self, channel: &str, event: &str) -> Rc<Names> {
        if let Some(n) = self.names.borrow().get(channel).and_then(|m| m.get(event)) {
            return n.clone();
        }
        let n = Rc::new(Names {
            subject: Subject::from(wire::subject(&self.cfg().prefix, channel, event)),
            origin: wire::origin_names(channel, event, self.multicast.borrow().contains(channel)),
        });
        let mut cache = self.names.borrow_mut();
        if self.names_len.get() >= NAMES_CACHE {
            cache.clear();
            self.names_len.set(0);
        }
        cache
            .entry(channel.to_string())
            .or_default()
            .insert(event.to_string(), n.clone());
        self.names_len.set(self.names_len.get() + 1);
        n
    }

    /// The header of a queued message (see `netcluster_proto::nats::headers`).
    fn headers(&self, m: &Out) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            ORIGIN_HEADER,
            wire::origin_value(self.node_id, m.client, m.seq, &m.names.origin),
        );
        h
    }

    /// Hands what is queued to `client` in batches until the queue is
    /// empty and the last flush is done; `Err` when the bridge was stopped
    /// or told to reconnect meanwhile.
    pub(super) async fn send_queued(&self, client: &async_nats::Client) -> Result<(), Halt> {
        // The previous batch's flush and cost.
        let mut pending: Option<(Flushing, usize)> = None;
        loop {
            // A reconnect may have reached a server with another limit.
            self.max_payload.set(client.server_info().max_payload);
            let (n, cost) = self.hand_over(client).await?;
            let flush = if n == 0 {
                None
            } else {
                Some((Flushing::start(client).await, cost))
            };
            // While disconnected this waits for the next connection (the
            // batches are in the client's queue); meanwhile the bridge's
            // own queue takes what is emitted, up to `buffer`.
            if let Some((prev, cost)) = std::mem::replace(&mut pending, flush) {
                tokio::select! {
                    biased;
                    _ = prev.wait() => {}
                    _ = self.stop.notified() => return Err(Halt::Stop),
                    _ = self.reconnect.notified() => return Err(Halt::Reconnect),
                }
                self.flushed(cost);
            }
            if pending.is_none() {
                return Ok(());
            }
        }
    }

    /// Hands one batch to the NATS client: (messages, their cost).
    async fn hand_over(&self, client: &async_nats::Client) -> Result<(usize, usize), Halt> {
        let (mut n, mut bytes, mut cost) = (0, 0, 0);
        while n < BATCH_MESSAGES && bytes < BATCH_BYTES {
            let Some(m) = self.queue.borrow_mut().pop_front() else {
                break;
            };
            n += 1;
            bytes += m.payload.len();
            cost += m.cost;
            self.inflight.set(self.inflight.get() + m.cost);
            let headers = self.headers(&m);
            let subject = m.names.subject.clone();
            // The publish first: it is ready at once unless the client's
            // queue is full, and the stop is polled only then (a stop
            // notified meanwhile is kept for the next poll). A message cut
            // off here by a reconnect is lost (receivers see an `nc-gap`).
            let r = tokio::select! {
                biased;
                r = client.publish_with_headers(subject, headers, m.payload) => r,
                _ = self.stop.notified() => return Err(Halt::Stop),
                _ = self.reconnect.notified() => {
                    self.counters.dropped.set(self.counters.dropped.get() + 1);
                    return Err(Halt::Reconnect);
                }
            };
            match r {
                Ok(()) => self.counters.msgs_out.set(self.counters.msgs_out.get() + 1),
                Err(e) => {
                    let n = self.counters.publish_errors.get() + 1;
                    self.counters.publish_errors.set(n);
                    if n == 1 || n % 10_000 == 0 {
                        tracing::warn!(errors = n, "cannot publish to NATS: {e}");
                    }
                }
            }
        }
        Ok((n, cost))
    }

    /// A batch of `cost` reached the socket: it leaves the count against
    /// `buffer`, and publishers held back may go on.
    fn flushed(&self, cost: usize) {
        self.queued.set(self.queued.get() - cost);
        self.inflight.set(self.inflight.get() - cost);
        self.progress.set(Instant::now());
        if self.queued.get() <= self.cfg().buffer / 4 {
            self.room.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn bridge() -> Rc<NatsBridge> {
        let cfg = Config::parse(
            r#"{ "nats": { "servers": ["nats://127.0.0.1:4222"] } }"#,
            "test.json",
        )
        .expect("config");
        NatsBridge::new(&cfg, 1, "test")
    }

    #[test]
    fn payloads_keep_their_bytes_across_chunks() {
        let b = bridge();
        // Sizes at the arena's limits, enough messages to fill several
        // chunks; all kept alive while later ones are cut.
        let sizes = [
            0,
            1,
            64,
            ARENA_MAX_PAYLOAD - 1,
            ARENA_MAX_PAYLOAD,
            ARENA_MAX_PAYLOAD + 1,
            100_000,
        ];
        let mut kept = Vec::new();
        for i in 0..(8 * ARENA_CHUNK / ARENA_MAX_PAYLOAD) {
            let n = sizes[i % sizes.len()];
            let p: Vec<u8> = (0..n).map(|j| (i * 31 + j) as u8).collect();
            let got = b.copy_payload(&p);
            kept.push((p, got));
        }
        for (i, (p, got)) in kept.iter().enumerate() {
            assert_eq!(&p[..], &got[..], "message {i}");
        }
    }

    #[test]
    fn small_payloads_share_a_chunk_and_large_ones_do_not() {
        let b = bridge();
        let x = b.copy_payload(&[1; 64]);
        let y = b.copy_payload(&[2; 64]);
        // Cut one after the other from the same allocation.
        assert_eq!(x.as_ptr() as usize + 64, y.as_ptr() as usize);
        let big = b.copy_payload(&vec![3; ARENA_MAX_PAYLOAD + 1]);
        let z = b.copy_payload(&[4; 64]);
        assert_eq!(y.as_ptr() as usize + 64, z.as_ptr() as usize);
        assert_ne!(z.as_ptr() as usize + 64, big.as_ptr() as usize);
        assert_eq!(
            (&x[..], &y[..], &z[..]),
            (&[1; 64][..], &[2; 64][..], &[4; 64][..])
        );
        assert!(big.iter().all(|&v| v == 3));
    }
}
