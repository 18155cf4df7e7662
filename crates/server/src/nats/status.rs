//! The bridge's state as `status()`, `showpeers()` and `/metrics` show it.

use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use super::NatsBridge;

/// The bridge's counters for `/metrics` (see docs/METRICS.md).
#[derive(Debug, Clone, Copy)]
pub struct NatsMetrics {
    /// Connected to a server now.
    pub connected: bool,
    /// Connections after the first.
    pub reconnects: u64,
    /// Messages handed to the NATS client.
    pub messages_out: u64,
    /// Messages from NATS delivered.
    pub messages_in: u64,
    /// Local messages dropped (buffer full, too large).
    pub dropped: u64,
    /// Bytes waiting in the bridge's buffer.
    pub buffered_bytes: u64,
    /// Messages from NATS refused (malformed, unknown channel).
    pub refused: u64,
    /// Messages from NATS dropped as duplicates.
    pub duplicates: u64,
    /// Gaps reported.
    pub gaps: u64,
    /// Messages covered by gaps.
    pub lost: u64,
    /// Publishes the NATS client refused.
    pub publish_errors: u64,
}

impl NatsBridge {
    /// The counters the metrics endpoint shows.
    pub fn metrics(&self) -> NatsMetrics {
        let c = &self.counters;
        let connected = self.client.borrow().as_ref().is_some_and(|c| {
            matches!(
                c.connection_state(),
                async_nats::connection::State::Connected
            )
        });
        NatsMetrics {
            connected,
            reconnects: self.connects.load(Ordering::Relaxed).saturating_sub(1),
            messages_out: c.msgs_out.get(),
            messages_in: c.msgs_in.get(),
            dropped: c.dropped.get(),
            buffered_bytes: self.queued.get() as u64,
            refused: c.refused.get(),
            duplicates: c.duplicates.get(),
            gaps: c.gaps.get(),
            lost: c.lost.get(),
            publish_errors: c.publish_errors.get(),
        }
    }

    /// The bridge's state for `status()` and `showpeers()`.
    pub fn status_json(&self) -> Value {
        let client = self.client.borrow();
        let (state, server) = match client.as_ref() {
            Some(c) => {
                let state = c.connection_state();
                let connected = matches!(state, async_nats::connection::State::Connected);
                let info = c.server_info();
                let server = connected.then(|| format!("{}:{}", info.host, info.port));
                (state.to_string(), server)
            }
            None => ("connecting".to_string(), None),
        };
        let c = &self.counters;
        let mut subjects: Vec<String> = self.subs.borrow().keys().cloned().collect();
        subjects.sort();
        json!({
            "state": state,
            "server": server,
            "servers": self.cfg().servers,
            "prefix": self.cfg().prefix,
            "reconnects": self.connects.load(Ordering::Relaxed).saturating_sub(1),
            "disconnects": self.disconnects.load(Ordering::Relaxed),
            "buffered_bytes": self.queued.get(),
            "buffered_messages": self.queue.borrow().len(),
            "buffer": self.cfg().buffer,
            "dropped": c.dropped.get(),
            "held": c.held.get(),
            "slow_consumer": self.slow.load(Ordering::Relaxed),
            "messages_out": c.msgs_out.get(),
            "messages_in": c.msgs_in.get(),
            "publish_errors": c.publish_errors.get(),
            "refused": c.refused.get(),
            "duplicates": c.duplicates.get(),
            "loops": c.loops.get(),
            "gaps": c.gaps.get(),
            "lost": c.lost.get(),
            "subscriptions": self.subs.borrow().values().filter(|s| s.ready.get()).count(),
            "subjects": subjects,
        })
    }
}
