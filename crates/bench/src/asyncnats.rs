//! The `async-nats` roles: a publisher and a subscriber through the NATS
//! client a Rust program would use (the one the bridge is built on), as
//! the second yardstick of the NATS bridge rows beside the hand-written
//! batched client of [`crate::nats`].
//!
//! Each role runs on a current-thread tokio runtime, as `ncserver` does,
//! with async-nats's defaults except where a default would make the row
//! measure something else: the subscriber's queue holds a whole run
//! ([`SUB_CAPACITY`] at most), so a burst is not dropped as a slow
//! consumer while the subscriber shares the CPUs with the publisher and
//! the server. Messages carry no headers (what a plain publisher sends);
//! payloads carry the sequence number every other role checks.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;

use crate::outcome::{PubOut, SubOut};
use crate::payload::{self, Checker, Progress};
use crate::sys::monotonic_ns;

/// Most messages the subscriber's queue holds (async-nats's default is
/// 65 536; a run's count up to this).
pub const SUB_CAPACITY: usize = 1 << 20;

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn url(at: &str) -> String {
    if at.contains("://") {
        at.to_string()
    } else {
        format!("nats://{at}")
    }
}

/// Publishes `count` messages of `size` bytes on `subject`, then flushes
/// and waits for the server's answer to a round trip (all were handled).
pub fn publisher(at: &str, subject: &str, count: u64, size: usize) -> Result<PubOut> {
    runtime()?.block_on(async {
        let client = async_nats::ConnectOptions::new()
            .name("ncbench-async-nats-pub")
            .connect(url(at))
            .await
            .with_context(|| format!("connecting to {at}"))?;
        let subject = async_nats::Subject::from(subject);
        let mut p = payload::new(size);
        let start_ns = monotonic_ns();
        for seq in 0..count {
            payload::set_seq(&mut p, seq);
            client
                .publish(subject.clone(), Bytes::copy_from_slice(&p))
                .await
                .context("publish")?;
        }
        client.flush().await.context("flush")?;
        // A request-less round trip: the server answers the flush's PING
        // only after the messages before it.
        client.flush().await.context("flush")?;
        let end_ns = monotonic_ns();
        Ok(PubOut {
            count,
            start_ns,
            end_ns,
        })
    })
}

/// Receives `count` messages of `size` bytes on `subject`, checked in
/// order and each once; `ready` once the server has the subscription.
pub fn subscriber(
    at: &str,
    subject: &str,
    count: u64,
    size: usize,
    timeout: Duration,
    ready: &mut dyn FnMut(),
) -> Result<SubOut> {
    runtime()?.block_on(async {
        let capacity = usize::try_from(count)
            .unwrap_or(usize::MAX)
            .clamp(1024, SUB_CAPACITY);
        let client = async_nats::ConnectOptions::new()
            .name("ncbench-async-nats-sub")
            .subscription_capacity(capacity)
            .connect(url(at))
            .await
            .with_context(|| format!("connecting to {at}"))?;
        let mut sub = client
            .subscribe(subject.to_string())
            .await
            .context("subscribe")?;
        // The SUB is queued; a flush round trip confirms the server has it.
        client.flush().await.context("flush")?;
        ready();
        let checker = Checker::new(size, count);
        // One timer for the whole run, not one per message.
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut first_ns = 0;
        loop {
            let m = tokio::select! {
                biased;
                m = next_message(&mut sub) => match m {
                    Some(m) => m,
                    None => bail!("async-nats subscription ended after {}", checker.received()),
                },
                _ = &mut deadline => bail!("timed out: {}", checker.finish().unwrap_err()),
            };
            match checker
                .check(&m.payload)
                .map_err(|e| anyhow!("async-nats subscriber: {e}"))?
            {
                Progress::More(1) => first_ns = monotonic_ns(),
                Progress::More(_) => {}
                Progress::Done => break,
            }
        }
        let last_ns = monotonic_ns();
        Ok(SubOut {
            count,
            first_ns: if count == 1 { last_ns } else { first_ns },
            last_ns,
        })
    })
}

/// The subscription's next message (the `Stream` trait without a
/// dependency on `futures`).
async fn next_message(sub: &mut async_nats::Subscriber) -> Option<async_nats::Message> {
    std::future::poll_fn(|cx| futures_core::Stream::poll_next(std::pin::Pin::new(&mut *sub), cx))
        .await
}
